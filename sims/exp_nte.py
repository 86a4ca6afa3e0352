"""Experiment ``nte-continual``: continual learning with the neural tangent ensemble and baselines.

A grid of runs in one result file: every optimizer in ``optimizers`` at every hidden width in
``widths``; the SGD-based optimizers (``sgd``, ``ewc``) additionally at every momentum in
``momenta`` (``nte`` and ``adam`` run once per width). All runs at one width start from the
same initial weights. Each run trains on the task stream and tests on every task after every
task (Benjamin, Pehle & Daruwalla, NeurIPS 2024: width and momentum against forgetting).

Stored: metrics rows on axis ``step`` (one per run and task: ``run``, ``task``, ``width``,
``momentum``, ``optimizer`` index into the config's ``optimizers``, ``average_accuracy``,
``forgetting``, ``task1_accuracy``, ``train_loss``); arrays ``accuracy_matrices`` (runs, T, T),
``run_optimizer``, ``run_width``, ``run_momentum``, ``run_lr``, ``task1_forgetting``,
``final_average_accuracy``; summary ``task1_forgetting_<label>`` and
``average_accuracy_<label>`` per run, with ``<label>`` like ``sgd_w1000_m0.9``. With momentum β,
SGD and EWC run at ``sgd_lr · (1 − β)`` by default (``fixed_effective_lr``), so that a momentum
sweep compares equal effective rates ``lr / (1 − β)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from plastix.bridges.continual import (
    ContinualResult,
    LearnerConfig,
    make_learner,
    mlp,
    permuted_tasks,
    run_continual,
    split_tasks,
)
from plastix.sims.experiments import RunContext, experiment

OptimizerChoice = Literal["nte", "sgd", "adam", "ewc"]


@dataclass
class NTEContinualConfig:
    dataset: Literal["fashion-mnist", "mnist", "digits", "mnist1d"] = "fashion-mnist"
    scenario: Literal["permuted", "task", "class"] = field(
        default="permuted",
        metadata={
            "help": "permuted: domain-incremental permuted inputs; task: split classes with a "
            "masked head per task; class: split classes, class-incremental"
        },
    )
    n_tasks: int = field(default=5, metadata={"min": 1, "help": "number of tasks"})
    optimizers: tuple[OptimizerChoice, ...] = ("nte", "sgd", "adam")
    widths: tuple[int, ...] = field(
        default=(1000,), metadata={"min": 1, "help": "hidden widths to sweep"}
    )
    depth: int = field(default=2, metadata={"min": 1, "help": "number of hidden layers"})
    standardize: bool = field(
        default=False,
        metadata={"help": "inputs (x − μ)/σ with the training set's μ, σ (the authors' MNIST)"},
    )
    init: Literal["torch", "lecun"] = field(
        default="torch",
        metadata={"help": "weight init: PyTorch default, or Flax's LeCun normal with zero biases"},
    )
    momenta: tuple[float, ...] = field(
        default=(0.0,), metadata={"min": 0.0, "help": "SGD/EWC momenta to sweep"}
    )
    epochs: int = field(default=2, metadata={"min": 1, "help": "epochs per task"})
    batch_size: int = field(default=128, metadata={"min": 1})
    n_train: int | None = field(
        default=10000, metadata={"min": 1, "help": "training examples per task (None: all)"}
    )
    n_test: int | None = field(
        default=2000, metadata={"min": 1, "help": "test examples per task (None: all)"}
    )
    sgd_lr: float = field(
        default=0.01, metadata={"min": 0.0, "min_exclusive": True, "help": "SGD/EWC rate"}
    )
    fixed_effective_lr: bool = field(
        default=True,
        metadata={
            "help": "with momentum β use lr = sgd_lr * (1 - β), so that the effective rate "
            "lr / (1 - β) stays sgd_lr across the momentum sweep; false: lr = sgd_lr for all β"
        },
    )
    adam_lr: float = field(default=1e-3, metadata={"min": 0.0, "min_exclusive": True})
    nte_lr: float = field(
        default=0.01,
        metadata={"min": 0.0, "min_exclusive": True, "help": "NTE likelihood scale η"},
    )
    nte_exponent: float = field(default=1.0, metadata={"min": 0.0, "min_exclusive": True})
    nte_max_delta: float | None = field(
        default=0.1, metadata={"min": 0.0, "min_exclusive": True, "help": "NTE clip (None: off)"}
    )
    nte_expansion: Literal["origin", "init"] = "origin"
    nte_per_example: bool = field(
        default=False, metadata={"help": "exact per-example likelihoods instead of batch form"}
    )
    ewc_lambda: float = field(default=400.0, metadata={"min": 0.0})
    ewc_fisher_samples: int = field(default=200, metadata={"min": 1})
    reset_between_tasks: bool = field(
        default=False, metadata={"help": "clear optimizer state (momentum) at each new task"}
    )

    def validate(self) -> None:
        if len(set(self.optimizers)) != len(self.optimizers):
            raise ValueError(f"optimizers: {self.optimizers!r} repeats a name; list each once")
        if any(m >= 1 for m in self.momenta):
            raise ValueError(f"momenta: {self.momenta!r}: every momentum must be < 1")
        if self.scenario != "permuted" and self.n_tasks not in (1, 2, 5, 10):
            raise ValueError(
                f"n_tasks: {self.n_tasks} does not split 10 classes evenly for scenario "
                f"{self.scenario!r}; use 1, 2, 5 or 10"
            )


@dataclass(frozen=True)
class _Run:
    optimizer: str
    width: int
    momentum: float

    @property
    def label(self) -> str:
        if self.optimizer in ("sgd", "ewc"):
            return f"{self.optimizer}_w{self.width}_m{self.momentum:g}"
        return f"{self.optimizer}_w{self.width}"


def plan_runs(cfg: NTEContinualConfig) -> list[_Run]:
    """Every (optimizer, width, momentum) combination the config asks for, in run order."""
    runs = []
    for width in cfg.widths:
        for name in cfg.optimizers:
            momenta = cfg.momenta if name in ("sgd", "ewc") else (0.0,)
            runs.extend(_Run(name, width, float(m)) for m in momenta)
    return runs


def run_learning_rate(cfg: NTEContinualConfig, run: _Run) -> float:
    """The rate of one run; SGD/EWC with momentum β at ``sgd_lr · (1 − β)`` when
    ``fixed_effective_lr`` (the heavy-ball step settles at lr / (1 − β) times the gradient)."""
    if run.optimizer == "nte":
        return cfg.nte_lr
    if run.optimizer == "adam":
        return cfg.adam_lr
    return cfg.sgd_lr * (1.0 - run.momentum) if cfg.fixed_effective_lr else cfg.sgd_lr


def _learner_config(cfg: NTEContinualConfig, run: _Run, seed: int) -> LearnerConfig:
    lr = run_learning_rate(cfg, run)
    return LearnerConfig(
        optimizer=run.optimizer,
        lr=lr,
        momentum=run.momentum,
        reset_between_tasks=cfg.reset_between_tasks,
        nte_exponent=cfg.nte_exponent,
        nte_max_delta=cfg.nte_max_delta,
        nte_expansion=cfg.nte_expansion,
        nte_per_example=cfg.nte_per_example,
        ewc_lambda=cfg.ewc_lambda,
        ewc_fisher_samples=cfg.ewc_fisher_samples,
        seed=seed,
    )


def _initial_model(in_features: int, width: int, depth: int, n_outputs: int, init: str, seed: int):
    """The MLP at one width, initialised from ``seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return mlp(in_features, [width] * depth, n_outputs, init)


@experiment(
    "nte-continual",
    NTEContinualConfig,
    description="continual learning: neural tangent ensemble vs SGD/momentum/Adam/EWC, "
    "sweeping width and momentum",
)
def run_nte_continual(cfg: NTEContinualConfig, ctx: RunContext) -> None:
    ds = ctx.dataset(cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test).flat()
    if cfg.standardize:
        ds = ds.standardized()
    if cfg.scenario == "permuted":
        tasks = permuted_tasks(
            ds.x_train, ds.y_train, ds.x_test, ds.y_test, cfg.n_tasks, seed=ctx.seed
        )
        scenario = "domain"
    else:
        tasks = split_tasks(ds.x_train, ds.y_train, ds.x_test, ds.y_test, cfg.n_tasks)
        scenario = cfg.scenario
    device = torch.device(ctx.device)
    for task in tasks:
        task.x_train, task.y_train = task.x_train.to(device), task.y_train.to(device)
        task.x_test, task.y_test = task.x_test.to(device), task.y_test.to(device)
    runs = plan_runs(cfg)
    n_outputs = ds.n_classes
    state = ctx.resume_state() or {"finished": [], "current": None}
    finished: list[ContinualResult] = state["finished"]
    for r in ctx.progress(range(len(finished), len(runs)), desc="run", total=len(runs)):
        run = runs[r]
        model = _initial_model(
            ds.x_train.shape[1], run.width, cfg.depth, n_outputs, cfg.init, ctx.seed
        )
        model.to(device)
        learner = make_learner(model, _learner_config(cfg, run, ctx.seed))
        start, partial = 0, None
        current = state["current"]
        if current is not None and current["run"] == r:
            model.load_state_dict(current["model"])
            learner.load_state_dict(current["learner"])
            start, partial = current["task"] + 1, current["result"]

        def on_task_end(
            i: int, result: ContinualResult, r: int = r, run: _Run = run, learner=learner
        ) -> None:
            ctx.log(
                step=r * len(tasks) + i,
                run=r,
                task=i,
                width=run.width,
                momentum=run.momentum,
                optimizer=cfg.optimizers.index(run.optimizer),
                average_accuracy=result.average_accuracy[i],
                forgetting=result.forgetting[i] if i else 0.0,
                task1_accuracy=result.accuracy_matrix[i, 0],
                train_loss=result.train_loss[i],
            )
            ctx.checkpoint(
                {
                    "finished": finished,
                    "current": {
                        "run": r,
                        "task": i,
                        "model": learner.model.state_dict(),
                        "learner": learner.state_dict(),
                        "result": result,
                    },
                }
            )

        result = run_continual(
            learner,
            tasks,
            scenario,
            n_outputs=n_outputs,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            seed=ctx.seed,
            start_task=start,
            partial=partial,
            on_task_end=on_task_end,
        )
        finished.append(result)
        ctx.summary(
            **{
                f"task1_forgetting_{run.label}": result.task1_forgetting,
                f"average_accuracy_{run.label}": float(result.average_accuracy[-1]),
            }
        )
        state = {"finished": finished, "current": None}
        ctx.checkpoint(state)
    matrices = np.stack([res.accuracy_matrix for res in finished])
    ctx.save_array("accuracy_matrices", matrices)
    ctx.save_array("run_optimizer", np.array([cfg.optimizers.index(r.optimizer) for r in runs]))
    ctx.save_array("run_width", np.array([r.width for r in runs]))
    ctx.save_array("run_momentum", np.array([r.momentum for r in runs]))
    ctx.save_array("run_lr", np.array([run_learning_rate(cfg, r) for r in runs]))
    ctx.save_array("task1_forgetting", np.array([res.task1_forgetting for res in finished]))
    ctx.save_array(
        "final_average_accuracy", np.array([res.average_accuracy[-1] for res in finished])
    )
