"""An experiment used by the sweep tests; imported by Dask workers through ``imports=``."""

from __future__ import annotations

import os
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
