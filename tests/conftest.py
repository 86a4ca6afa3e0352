"""Shared pytest fixtures."""

import os
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def brian_build_cache() -> Path:
    """Folder for cached Brian2 standalone builds, kept between test runs (gitignored).

    Pass it as ``activate_backend(..., cache_root=brian_build_cache)``: a network whose
    generated code is unchanged reuses its compiled binary instead of recompiling.
    ``$PLASTIX_BUILD_CACHE`` moves it elsewhere.
    """
    env = os.environ.get("PLASTIX_BUILD_CACHE")
    root = Path(env) if env else Path(__file__).resolve().parents[1] / ".brian_builds"
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(autouse=True)
def close_figures():
    """Close every matplotlib figure a test left open (plot functions return their figures)."""
    yield
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


@pytest.fixture
def one_torch_thread():
    """One torch CPU thread for the test (the machine's cores are shared; small per-sample
    steps run fastest on one), restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
