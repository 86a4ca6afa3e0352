"""Shared pytest fixtures."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

#: Cached Brian2 standalone builds of the test suite, kept between test runs (gitignored);
#: ``$PLASTIX_TEST_BUILD_CACHE`` moves them elsewhere.
TEST_BUILD_CACHE = Path(
    os.environ.get("PLASTIX_TEST_BUILD_CACHE")
    or Path(__file__).resolve().parents[1] / ".brian_builds"
)
# Runs started by the tests (in this process or as `plastix` subprocesses) keep their compiled
# circuits here, not in the user's ~/.cache.
os.environ.setdefault("PLASTIX_BUILD_CACHE", str(TEST_BUILD_CACHE / "runs"))


@pytest.fixture(scope="session", autouse=True)
def numpy_code_generation():
    """Brian2's runtime device generates numpy code in the tests, not Cython (Brian2's default).

    Cython compiles one extension per generated code object (about 5 s each on 2 cores, over
    170 for the suite, cached in ~/.cython after the first run): on a fresh machine the suite
    took 21 minutes with Cython and 6 with numpy. Tests that need Cython ask for the
    ``"cython"`` backend; ``test_cython_runtime_trains_like_numpy`` checks that it trains
    exactly like numpy.
    """
    from brian2 import prefs

    prefs.codegen.target = "numpy"


@pytest.fixture(scope="session")
def brian_build_cache() -> Path:
    """Folder for cached Brian2 standalone builds (:data:`TEST_BUILD_CACHE`).

    Pass it as ``activate_backend(..., cache_root=brian_build_cache)``: a network whose
    generated code is unchanged reuses its compiled binary instead of recompiling.
    """
    TEST_BUILD_CACHE.mkdir(parents=True, exist_ok=True)
    return TEST_BUILD_CACHE


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


@pytest.fixture
def sweep_env(tmp_path, monkeypatch):
    """The test experiments of tests/sweep_experiments.py importable here and in `plastix`
    subprocesses; returns their journal file (one line per epoch run) and kill-marker path."""
    tests = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", tests + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.syspath_prepend(tests)
    journal = tmp_path / "journal.txt"
    marker = tmp_path / "kill-marker"
    monkeypatch.setenv("PLASTIX_TEST_JOURNAL", str(journal))
    monkeypatch.setenv("PLASTIX_TEST_KILL", str(marker))
    return journal, marker


@pytest.fixture
def sweep_experiments(sweep_env):
    """The experiments of tests/sweep_experiments.py registered; returns their journal."""
    from plastix.sims.experiments import import_modules

    import_modules(["sweep_experiments"])
    return sweep_env[0]


@pytest.fixture
def fake_circuit_trainers(monkeypatch):
    """Replace ib-spiking's Brian2 trainers by a stand-in: every training pass adds 1 to the
    hidden and readout weights, 2 to the bias and 1 to the rate means, is right on every
    sample with hidden layer k at 10 (k + 1)^2 Hz (10, 40, ...) and takes 2 s; every test
    pass keeps its samples, is wrong on every sample at 50 Hz, takes 1 s and records two
    input spikes. Returns the trainers built, in order."""
    from plastix.circuits.ib_network import CircuitWeights, PassResult
    from plastix.sims import exp_ib_spiking

    made = []

    class FakeTrainer:
        def __init__(self, spec, weights, *args, **options):
            self.spec, self.args, self.options = spec, args, options
            self.weights = weights.copy()
            self.rate_means = [np.zeros(n) for n in spec.hidden]
            self.warmup_skipped = False
            self.train_inputs, self.test_inputs = [], []
            made.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def skip_warmup(self):
            self.warmup_skipped = True

        def train_epoch(self, x, y):
            self.train_inputs.append((x.copy(), y.copy()))
            w = self.weights
            self.weights = CircuitWeights([h + 1 for h in w.hidden], w.readout + 1, w.bias + 2)
            self.rate_means = [m + 1 for m in self.rate_means]
            rates = [np.full(n, 10.0 * (k + 1) ** 2) for k, n in enumerate(self.spec.hidden)]
            return PassResult(y.copy(), y, rates, 2.0)

        def evaluate(self, x, y):
            self.test_inputs.append((x.copy(), y.copy()))
            spikes = {"input": (np.array([0, 3]), np.array([0.001, 0.002]))}
            rates = [np.full(n, 50.0) for n in self.spec.hidden]
            return PassResult((y + 1) % 10, y, rates, 1.0, spikes)

        def run_epoch(self, x, y, x_test, y_test):
            return self.train_epoch(x, y), self.evaluate(x_test, y_test)

    class FakeExact(FakeTrainer):
        kind = "exact"

    class FakeCompiled(FakeTrainer):
        kind = "compiled"

    monkeypatch.setattr(exp_ib_spiking, "ExactXiTrainer", FakeExact)
    monkeypatch.setattr(exp_ib_spiking, "CompiledEpochTrainer", FakeCompiled)
    return made
