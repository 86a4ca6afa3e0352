"""Experiments used by the sweep and lock tests; imported by Dask workers through ``imports=``."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from plastix.sims.experiments import RunContext, experiment


@dataclass
class StepConfig:
    epochs: int = 4
    scale: float = 1.0
    fail: bool = False
    label: str = ""


@experiment("test-sweep-steps", StepConfig, description="sweep test: logs epochs, can crash")
def run_steps(cfg: StepConfig, ctx: RunContext) -> None:
    journal = Path(os.environ["PLASTIX_TEST_JOURNAL"])
    kill_marker = Path(os.environ["PLASTIX_TEST_KILL"])
    state = ctx.resume_state() or {"epoch": -1}
    for epoch in range(state["epoch"] + 1, cfg.epochs):
        if cfg.fail:
            raise RuntimeError("this configuration fails on purpose")
        with journal.open("a") as fh:
            fh.write(f"{cfg.scale} {ctx.seed} {epoch}\n")
        ctx.log(epoch=epoch, value=cfg.scale * epoch)
        ctx.checkpoint({"epoch": epoch})
        if epoch == 1 and cfg.scale == 2.0 and ctx.seed == 1 and kill_marker.exists():
            kill_marker.unlink()
            os._exit(1)  # the worker process dies mid-run, as on a crash or a kill -9
    ctx.summary(final=cfg.scale * (cfg.epochs - 1))


@experiment("test-sweep-other", StepConfig, description="sweep test: a second experiment")
def run_other(cfg: StepConfig, ctx: RunContext) -> None:
    ctx.summary(final=0.0)


@dataclass
class WaitConfig:
    go_file: str = ""


@experiment("test-waits", WaitConfig, description="lock test: waits for go_file after epoch 0")
def run_waits(cfg: WaitConfig, ctx: RunContext) -> None:
    """Logs and checkpoints epoch 0, then waits (at most 120 s) until ``go_file`` exists."""
    if ctx.resume_state() is None:
        ctx.log(epoch=0, value=1.0)
        ctx.checkpoint({"epoch": 0})
    deadline = time.monotonic() + 120.0
    while not Path(cfg.go_file).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{cfg.go_file} did not appear")
        time.sleep(0.02)
    ctx.log(epoch=1, value=2.0)
    ctx.summary(final=2.0)
