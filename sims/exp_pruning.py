"""Experiment ``pruning``: dynamic data pruning, strategy x pruning-rate sweep.

Every (strategy, rate) pair trains a fresh network from the same initial weights for ``epochs``
epochs on at most ``(1 - rate)`` of the full-data per-sample passes, scoring and annealing
included (see :mod:`plastix.bridges.pruning`); ``full`` is the full-data reference (rate 0).
Fashion-MNIST / MNIST / digits use a small CNN, CIFAR-10/100 a CIFAR ResNet-18 (He et al.
2016) with random-crop and flip augmentation; ``spiking-mlp`` is an snntorch leaky
integrate-and-fire network (any dataset).

Result: one ``run`` metrics row per pair (``strategy_index`` into ``arrays/strategies``,
``rate``, ``realized_rate``, ``test_accuracy``, ``passes_done``, ``passes_saved``,
``train_wall_s`` with scoring, ``scoring_wall_s``), one ``step`` row per trained epoch, and
strategy x rate arrays ``accuracy``, ``saved_fraction`` and ``train_wall_s``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from plastix.bridges.pruning import (
    UCB,
    EpsilonGreedy,
    IndexedTensorDataset,
    InfoBatch,
    PruningSampler,
    PruningStrategy,
    StaticPruning,
    StaticScores,
    UniformDynamic,
    el2n_scores,
    evaluate_classifier,
    forgetting_scores,
    grand_scores,
    plan_keep_counts,
    train_classifier_epoch,
)
from plastix.sims.experiments import RunContext, experiment

StrategyName = Literal[
    "full", "uniform", "epsilon-greedy", "ucb", "infobatch", "el2n", "grand", "forgetting"
]
STRATEGIES: tuple[str, ...] = (
    "full",
    "uniform",
    "epsilon-greedy",
    "ucb",
    "infobatch",
    "el2n",
    "grand",
    "forgetting",
)


# --------------------------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """conv3x3(c1) - ReLU - maxpool2 - conv3x3(c2) - ReLU - maxpool2 - linear(h) - linear."""

    def __init__(
        self, in_shape: tuple[int, int, int], n_classes: int, widths=(16, 32), hidden: int = 64
    ) -> None:
        super().__init__()
        c, h, w = in_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, widths[0], 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(widths[0], widths[1], 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(widths[1] * (h // 4) * (w // 4), hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN) shortcut (He et al. 2016)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32x32 inputs: 3x3 stem without max-pool, stages of 2 blocks with 64, 128,
    256, 512 channels, global average pool, linear classifier (He et al. 2016, CIFAR form)."""

    def __init__(self, in_channels: int, n_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        )
        layers, in_ch = [], 64
        for out_ch, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch, 1)]
            in_ch = out_ch
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class SpikingMLP(nn.Module):
    """Leaky integrate-and-fire MLP (snntorch ``Leaky``), input as constant current for
    ``steps`` steps; logits are output spike counts plus the final membrane potential."""

    def __init__(self, n_in: int, n_classes: int, hidden: int = 128, steps: int = 8) -> None:
        super().__init__()
        import snntorch as snn
        from snntorch import surrogate

        grad = surrogate.fast_sigmoid()
        self.fc1, self.fc2 = nn.Linear(n_in, hidden), nn.Linear(hidden, n_classes)
        self.lif1 = snn.Leaky(beta=0.9, spike_grad=grad)
        self.lif2 = snn.Leaky(beta=0.9, spike_grad=grad)
        self.steps = steps

    def forward(self, x: Tensor) -> Tensor:
        current = self.fc1(x.flatten(1))
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        count = 0.0
        for _ in range(self.steps):
            spk1, mem1 = self.lif1(current, mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            count = count + spk2
        return count + mem2


def random_crop_flip(x: Tensor, generator: torch.Generator, pad: int = 4) -> Tensor:
    """Standard CIFAR augmentation: zero-pad by ``pad``, random crop back, random h-flip."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.stack(
        [padded[i, :, a : a + h, b : b + w] for i, (a, b) in enumerate(zip(dy, dx, strict=True))]
    )
    return torch.where(flip.view(n, 1, 1, 1).to(out.device), out.flip(3), out)


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


@dataclass
class PruningConfig:
    dataset: Literal["fashion-mnist", "mnist", "digits", "cifar10", "cifar100"] = "fashion-mnist"
    model: Literal["auto", "small-cnn", "resnet18", "spiking-mlp"] = field(
        default="auto",
        metadata={"help": "auto: small-cnn for (fashion-)mnist/digits, resnet18 for cifar"},
    )
    strategies: tuple[StrategyName, ...] = STRATEGIES
    rates: tuple[float, ...] = field(
        default=(0.3, 0.5, 0.7),
        metadata={
            "min": 0.0,
            "max": 1.0,
            "max_exclusive": True,
            "help": "shares of per-sample passes saved over the run",
        },
    )
    epochs: int = field(default=10, metadata={"min": 1, "help": "epochs per run"})
    batch_size: int = field(default=128, metadata={"min": 1})
    lr: float = field(
        default=0.05,
        metadata={
            "min": 0.0,
            "min_exclusive": True,
            "help": "SGD peak learning rate (cosine decay)",
        },
    )
    momentum: float = field(default=0.9, metadata={"min": 0.0, "max": 1.0, "max_exclusive": True})
    weight_decay: float = field(default=5e-4, metadata={"min": 0.0})
    n_train: int | None = field(default=None, metadata={"min": 1, "help": "training subset"})
    n_test: int | None = field(default=None, metadata={"min": 1, "help": "test subset"})
    epsilon: float = field(
        default=0.2, metadata={"min": 0.0, "max": 1.0, "help": "epsilon-greedy exploration share"}
    )
    epsilon_decay: float = field(
        default=1.0,
        metadata={"min": 0.0, "min_exclusive": True, "max": 1.0, "help": "eps *= this per epoch"},
    )
    ucb_c: float = field(default=1.0, metadata={"min": 0.0, "help": "UCB std-dev weight"})
    loss_decay: float = field(
        default=0.5,
        metadata={
            "min": 0.0,
            "max": 1.0,
            "max_exclusive": True,
            "help": "decay of the moving per-sample loss (eps-greedy, UCB)",
        },
    )
    loss_decay_unit: Literal["epoch", "observation"] = field(
        default="epoch",
        metadata={"help": "moving loss decays per epoch since last seen, or per loss"},
    )
    rl_anneal_epochs: int = field(
        default=0, metadata={"min": 0, "help": "eps-greedy, UCB: final full-data epochs"}
    )
    infobatch_delta: float = field(
        default=0.875,
        metadata={
            "min": 0.0,
            "min_exclusive": True,
            "max": 1.0,
            "help": "InfoBatch: prune before delta*epochs, then full data",
        },
    )
    score_epochs: int = field(default=1, metadata={"min": 1, "help": "EL2N pre-training epochs"})
    score_models: int = field(default=1, metadata={"min": 1, "help": "EL2N/GraNd models averaged"})
    forgetting_epochs: int = field(
        default=2, metadata={"min": 2, "help": "epochs watched for forgetting"}
    )
    augment: Literal["auto", "on", "off"] = field(
        default="auto", metadata={"help": "random crop + flip; auto: on for cifar"}
    )

    def scoring_epochs(self, strategy: str) -> int:
        """Full-data-epoch equivalents a static strategy spends on scoring."""
        return {
            "el2n": self.score_models * (self.score_epochs + 1),
            "grand": self.score_models,
            "forgetting": self.forgetting_epochs,
        }.get(strategy, 0)

    def anneal_epochs(self, strategy: str) -> int:
        """Final full-data epochs of a strategy (InfoBatch, epsilon-greedy, UCB)."""
        if strategy in ("epsilon-greedy", "ucb"):
            return self.rl_anneal_epochs
        if strategy != "infobatch":
            return 0
        return InfoBatch(self.infobatch_delta).anneal_epochs(self.epochs)

    def validate(self) -> None:
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError(f"strategies: {self.strategies} repeats a name; list each once")
        if len(set(self.rates)) != len(self.rates):
            raise ValueError(f"rates: {self.rates} repeats a rate; list each once")
        for strategy in self.strategies:
            if strategy == "full":
                continue
            fixed = self.scoring_epochs(strategy) + self.anneal_epochs(strategy)
            for rate in self.rates:
                if (1.0 - rate) * self.epochs - fixed <= 0:
                    fix = (
                        f"use rates below {1 - fixed / self.epochs:.2f} or more epochs"
                        if fixed < self.epochs
                        else f"use more than {fixed} epochs"
                    )
                    raise ValueError(
                        f"rates: {rate} is out of reach for {strategy!r}: its scoring and "
                        f"annealing alone cost {fixed} of the {self.epochs} full-data epochs; "
                        f"{fix}"
                    )

    def check_data(self, data) -> None:
        """Every pruned epoch must train on at least one sample: refuse, before any run trains,
        a rate that the training set's size puts out of reach (:func:`plan_keep_counts`)."""
        n = len(data.y_train)
        for strategy in self.strategies:
            if strategy == "full":
                continue
            scoring, anneal = self.scoring_epochs(strategy) * n, self.anneal_epochs(strategy)
            for rate in self.rates:
                try:
                    plan_keep_counts(n, self.epochs, rate, scoring, anneal)
                except ValueError as exc:
                    problem = f"rates: for {strategy!r} on {n} training samples, {exc}"
                    raise ValueError(problem) from None

    @property
    def use_augmentation(self) -> bool:
        return self.augment == "on" or (self.augment == "auto" and self.dataset.startswith("cifar"))


def model_kind(cfg: PruningConfig) -> str:
    if cfg.model == "auto":
        return "resnet18" if cfg.dataset.startswith("cifar") else "small-cnn"
    return cfg.model


def make_model_factory(cfg: PruningConfig, sample_shape: tuple[int, ...], n_classes: int):
    kind = model_kind(cfg)
    if kind == "resnet18":
        return lambda: ResNet18(sample_shape[0], n_classes)
    if kind == "spiking-mlp":
        return lambda: SpikingMLP(int(np.prod(sample_shape)), n_classes)
    return lambda: SmallCNN(sample_shape, n_classes)


def make_strategy(cfg: PruningConfig, name: str, scores: StaticScores | None) -> PruningStrategy:
    if name in ("full", "uniform"):
        return UniformDynamic()
    moving_loss = {
        "decay": cfg.loss_decay,
        "decay_unit": cfg.loss_decay_unit,
        "anneal_epochs": cfg.rl_anneal_epochs,
    }
    if name == "epsilon-greedy":
        return EpsilonGreedy(cfg.epsilon, cfg.epsilon_decay, **moving_loss)
    if name == "ucb":
        return UCB(cfg.ucb_c, **moving_loss)
    if name == "infobatch":
        return InfoBatch(delta=cfg.infobatch_delta)
    return StaticPruning(scores)


# --------------------------------------------------------------------------------------------
# the experiment
# --------------------------------------------------------------------------------------------


def _seeded(seed: int, factory):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


@experiment(
    "pruning",
    PruningConfig,
    description="dynamic data pruning: accuracy vs. passes saved per strategy (Raju 2021, "
    "InfoBatch 2024, EL2N/GraNd, forgetting)",
)
def run_pruning(cfg: PruningConfig, ctx: RunContext) -> None:
    ds = ctx.dataset(cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test)
    x_train, y_train = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
    x_test, y_test = torch.from_numpy(ds.x_test), torch.from_numpy(ds.y_test)
    n = len(y_train)
    factory = make_model_factory(cfg, ds.sample_shape, ds.n_classes)
    aug_gen = torch.Generator().manual_seed(ctx.seed + 7)
    transform = (lambda xb: random_crop_flip(xb, aug_gen)) if cfg.use_augmentation else None

    def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )

    runs = [("full", 0.0)] if "full" in cfg.strategies else []
    runs += [(s, r) for s in cfg.strategies if s != "full" for r in cfg.rates]
    state = ctx.resume_state() or {"done": []}
    names = np.array(cfg.strategies, dtype="S")
    grid = {
        k: np.full((len(cfg.strategies), len(cfg.rates)), np.nan)
        for k in ("accuracy", "saved_fraction", "train_wall_s")
    }
    for run_index, (name, rate) in enumerate(ctx.progress(runs, desc="run")):
        if run_index < len(state["done"]):
            outcome = state["done"][run_index]
        else:
            outcome = _one_run(
                cfg,
                ctx,
                name,
                rate,
                run_index,
                run_index * cfg.epochs,  # first step: runs log cfg.epochs steps each
                factory,
                make_optimizer,
                transform,
                (x_train, y_train, x_test, y_test),
            )
            state["done"].append(outcome)
            ctx.log(run=run_index, **outcome)
            ctx.checkpoint(state)
        row = cfg.strategies.index(name)
        cols = range(len(cfg.rates)) if name == "full" else [cfg.rates.index(rate)]
        for col in cols:
            grid["accuracy"][row, col] = outcome["test_accuracy"]
            grid["saved_fraction"][row, col] = outcome["realized_rate"]
            grid["train_wall_s"][row, col] = outcome["train_wall_s"]
    ctx.save_array("strategies", names)
    ctx.save_array("rates", np.asarray(cfg.rates, dtype=float))
    for key, value in grid.items():
        ctx.save_array(key, value)
    by_name = {(s, r): o for (s, r), o in zip(runs, state["done"], strict=True)}
    summary = {"n_runs": len(runs), "n_train": n}
    if ("full", 0.0) in by_name:
        summary["test_accuracy"] = by_name[("full", 0.0)]["test_accuracy"]
    for (s, r), o in by_name.items():
        key = s if s == "full" else f"{s}@{r:g}"
        summary[f"test_accuracy[{key}]"] = o["test_accuracy"]
        summary[f"train_wall_s[{key}]"] = o["train_wall_s"]
    ctx.summary(**summary)


def _one_run(cfg, ctx, name, rate, run_index, step, factory, make_optimizer, transform, data):
    x_train, y_train, x_test, y_test = data
    model_seed = ctx.seed * 1000 + 1
    start = time.perf_counter()
    scores = None
    if name == "el2n":
        scores = el2n_scores(
            lambda: _seeded(model_seed + 10, factory),
            make_optimizer,
            x_train,
            y_train,
            score_epochs=cfg.score_epochs,
            n_models=cfg.score_models,
            batch_size=cfg.batch_size,
            seed=ctx.seed,
            device=ctx.device,
            transform=transform,
        )
    elif name == "grand":
        scores = grand_scores(
            lambda: _seeded(model_seed + 20, factory),
            x_train,
            y_train,
            n_models=cfg.score_models,
            vectorize=model_kind(cfg) != "spiking-mlp",
            device=ctx.device,
        )
    elif name == "forgetting":
        scores = forgetting_scores(
            lambda: _seeded(model_seed + 30, factory),
            make_optimizer,
            x_train,
            y_train,
            score_epochs=cfg.forgetting_epochs,
            batch_size=cfg.batch_size,
            seed=ctx.seed,
            device=ctx.device,
            transform=transform,
        )
    sampler = PruningSampler(
        len(y_train),
        make_strategy(cfg, name, scores),
        rate=rate,
        epochs=cfg.epochs,
        seed=ctx.seed * 1000 + run_index,
    )
    loader = DataLoader(
        IndexedTensorDataset(x_train, y_train), batch_size=cfg.batch_size, sampler=sampler
    )
    model = _seeded(model_seed, factory).to(ctx.device)
    optimizer = make_optimizer(model)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    for epoch in range(cfg.epochs):
        result = train_classifier_epoch(
            model, optimizer, loader, sampler=sampler, device=ctx.device, transform=transform
        )
        schedule.step()
        ctx.log(
            step=step + epoch,
            epoch_run=run_index,
            epoch=epoch,
            train_loss=result.loss,
            train_accuracy=result.accuracy,
            epoch_passes=result.passes,
        )
        if not math.isfinite(result.loss):
            raise FloatingPointError(f"{name} at rate {rate}: training loss diverged; lower lr")
    train_wall_s = time.perf_counter() - start
    stats = sampler.stats()
    return {
        "strategy_index": cfg.strategies.index(name),
        "rate": rate,
        "realized_rate": stats.realized_rate,
        "test_accuracy": evaluate_classifier(model, x_test, y_test, device=ctx.device),
        "passes_done": stats.passes_done,
        "passes_saved": stats.passes_saved,
        "scoring_passes": stats.scoring_passes,
        "train_wall_s": train_wall_s,
        "scoring_wall_s": stats.scoring_wall_s,
    }
