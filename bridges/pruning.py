"""Dynamic data pruning for torch training loops: one sampler, pluggable selection strategies.

A :class:`PruningSampler` is a plain ``torch.utils.data.Sampler``. Each time a DataLoader
iterates it, it starts a new epoch and yields the (shuffled) indices its strategy selected.
After every batch the training loop reports the per-sample losses back::

    dataset = IndexedTensorDataset(x, y)                  # items are (x, y, index)
    sampler = PruningSampler(len(dataset), UCB(), rate=0.5, epochs=10, seed=0)
    loader = DataLoader(dataset, batch_size=128, sampler=sampler)
    for epoch in range(10):
        for xb, yb, idx in loader:
            per_sample = F.cross_entropy(model(xb), yb, reduction="none")
            weights = sampler.update(idx, per_sample)     # ones, or InfoBatch rescaling
            (per_sample * weights).mean().backward(); ...
    sampler.stats()                                       # passes done / saved, realised rate

The pruning **rate** is the share of per-sample passes saved over the whole run, counted
against ``epochs * n_samples`` full-data passes; full-data annealing epochs and the passes a
static score spends on scoring are included (InfoBatch, Qin et al. 2024, Table 1 convention).
Every per-sample forward, with or without a backward, counts as one pass; the sampler counts
the samples reported to ``update`` (those trained), not the indices drawn.

Strategies: :class:`UniformDynamic` (random subset every epoch; Raju et al. 2021, RS2 by
Okanovic et al. 2023), :class:`EpsilonGreedy` and :class:`UCB` over moving-average per-sample
losses (Raju, Daruwalla & Lipasti 2021, arXiv 2111.12621), :class:`InfoBatch` soft pruning
with loss rescaling and annealing (Qin et al., ICLR 2024), and :class:`StaticPruning` driven by
:func:`el2n_scores`, :func:`grand_scores` (Paul et al. 2021) or :func:`forgetting_scores`
(Toneva et al. 2019).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from plastix.bridges.checks import check_labels, plain_seed
from plastix.scalars import is_integer, is_real

__all__ = [
    "UCB",
    "EpochResult",
    "EpsilonGreedy",
    "ForgettingCounter",
    "IndexedTensorDataset",
    "InfoBatch",
    "PruningSampler",
    "PruningStats",
    "PruningStrategy",
    "StaticPruning",
    "StaticScores",
    "UniformDynamic",
    "el2n_scores",
    "evaluate_classifier",
    "forgetting_scores",
    "grand_scores",
    "plan_keep_counts",
    "train_classifier_epoch",
]


# --------------------------------------------------------------------------------------------
# dataset wrapper
# --------------------------------------------------------------------------------------------


class IndexedTensorDataset(Dataset):
    """Tensors indexed along their first axis; an item is ``(*tensors[i], i)``.

    ``index`` may be an int (per-item loading) or a sequence of ints, which lets a DataLoader
    fetch a whole batch at once: ``DataLoader(ds, sampler=BatchSampler(sampler, B, False),
    batch_size=None)``.
    """

    def __init__(self, *tensors: Tensor) -> None:
        if not tensors:
            raise ValueError("tensors: got none; pass at least one tensor, e.g. (x, y)")
        for position, tensor in enumerate(tensors):
            if not isinstance(tensor, Tensor):
                raise TypeError(
                    f"tensors[{position}]: expected a torch.Tensor, got {type(tensor).__name__}; "
                    "convert with torch.as_tensor"
                )
        n = tensors[0].shape[0] if tensors[0].ndim else 0
        for position, tensor in enumerate(tensors):
            if tensor.ndim == 0 or tensor.shape[0] != n:
                raise ValueError(
                    f"tensors[{position}]: first dimension {tuple(tensor.shape)[:1]} differs from "
                    f"tensors[0]'s {n}; all tensors need the same number of samples"
                )
        self.tensors = tensors

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, index):
        if isinstance(index, int):
            return (*(t[index] for t in self.tensors), index)
        index = torch.as_tensor(index, dtype=torch.long)
        return (*(t[index] for t in self.tensors), index)


# --------------------------------------------------------------------------------------------
# budget
# --------------------------------------------------------------------------------------------


def plan_keep_counts(
    n_samples: int, epochs: int, rate: float, scoring_passes: int = 0, anneal_epochs: int = 0
) -> list[int]:
    """Samples to train on in each epoch so that the whole run saves ``rate`` of the passes.

    Budget: ``sum_e K_e + S = round((1 - rate) * E * N)`` with ``K_e = N`` in the last
    ``anneal_epochs`` epochs and the remainder spread evenly over the others (earlier epochs
    take the leftover units). ``S`` is the scoring cost of a static method.
    """
    _check_rate(rate)
    n_samples = _check_int("n_samples", n_samples)
    epochs = _check_int("epochs", epochs)
    scoring_passes = _check_int("scoring_passes", scoring_passes, minimum=0)
    anneal_epochs = _check_int("anneal_epochs", anneal_epochs, minimum=0)
    if anneal_epochs > epochs:
        raise ValueError(
            f"anneal_epochs: {anneal_epochs} exceeds the run's {epochs} epochs; use at most "
            f"{epochs} final full-data epochs"
        )
    allowed = round((1.0 - rate) * epochs * n_samples) - scoring_passes - anneal_epochs * n_samples
    pruned_epochs = epochs - anneal_epochs
    if pruned_epochs == 0:
        if allowed != 0:
            raise ValueError(
                f"rate: {rate} cannot be met when all {epochs} epochs are full-data annealing "
                "epochs; use rate=0 or fewer annealing epochs"
            )
        return [n_samples] * epochs
    if allowed < pruned_epochs:
        max_rate = 1.0 - (scoring_passes + anneal_epochs * n_samples + pruned_epochs) / (
            epochs * n_samples
        )
        raise ValueError(
            f"rate: {rate} leaves no passes to train on after {scoring_passes} scoring passes "
            f"and {anneal_epochs} full-data annealing epoch(s) over {epochs} epochs of "
            f"{n_samples} samples; use rate <= {max_rate:.3f}, more epochs, or cheaper scoring"
        )
    base, extra = divmod(allowed, pruned_epochs)
    counts = [base + (1 if e < extra else 0) for e in range(pruned_epochs)]
    return counts + [n_samples] * anneal_epochs


def _check_rate(rate: float) -> None:
    if not is_real(rate):
        raise TypeError(f"rate: expected a float in [0, 1), got {type(rate).__name__}")
    if not (0.0 <= rate < 1.0):
        raise ValueError(
            f"rate: {rate} is outside [0, 1); it is the share of per-sample passes saved, "
            "e.g. 0.5 trains on half of the full-data passes"
        )


def _check_int(name: str, value: int, minimum: int = 1) -> int:
    """``value`` as a plain int; any integer (numpy's too) but bool, at least ``minimum``."""
    if not is_integer(value):
        raise TypeError(f"{name}: expected an int >= {minimum}, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: {value} must be >= {minimum}")
    return int(value)


def _check_fraction(name: str, value: float, *, low_open: bool, high_open: bool) -> None:
    if not is_real(value) or math.isnan(value):
        raise TypeError(f"{name}: expected a float, got {value!r}")
    low_ok = value > 0.0 if low_open else value >= 0.0
    high_ok = value < 1.0 if high_open else value <= 1.0
    if not (low_ok and high_ok):
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise ValueError(f"{name}: {value} is outside {interval}")


DECAY_UNITS = ("epoch", "observation")


def _top_k_random_ties(score: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """Indices of the ``k`` largest scores; equal scores are ordered at random."""
    order = torch.randperm(score.numel(), generator=generator)
    ranked = torch.argsort(score[order], descending=True, stable=True)
    return order[ranked[:k]]


# --------------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------------


class PruningStrategy(ABC):
    """Chooses the samples of each epoch. ``select`` gets the number to keep from the sampler."""

    name: str = "strategy"

    def reset(self, n_samples: int) -> None:  # noqa: B027 - optional hook
        """Prepare per-sample state for a dataset of ``n_samples``."""

    @property
    def scoring_passes(self) -> int:
        """Passes spent scoring before training (static methods)."""
        return 0

    def anneal_epochs(self, epochs: int) -> int:
        """Final epochs that train on the full data set."""
        return 0

    @abstractmethod
    def select(
        self, epoch: int, n_keep: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor | None]:
        """Return the indices to train on this epoch and, optionally, per-index loss weights."""

    def observe(self, indices: Tensor, losses: Tensor) -> None:  # noqa: B027 - optional hook
        """Record detached per-sample losses of a trained batch (CPU, float64)."""


class UniformDynamic(PruningStrategy):
    """A fresh uniform random subset of ``n_keep`` samples every epoch (Raju et al. 2021)."""

    name = "uniform"

    def reset(self, n_samples: int) -> None:
        self.n_samples = n_samples

    def select(self, epoch, n_keep, generator):
        return torch.randperm(self.n_samples, generator=generator)[:n_keep], None


class _MovingLoss(PruningStrategy):
    """Exponential moving mean and variance of each sample's loss (Finch 2009 update).

    ``d = l - mu;  mu <- mu + a d;  var <- (1 - a)(var + a d^2)`` with ``a = 1 - decay**g``.
    ``decay_unit="epoch"``: ``g`` is the number of epochs since the sample was last trained,
    so a loss measured many epochs (and model updates) ago is discounted as the time passed
    rather than as one observation; ``decay_unit="observation"``: ``g = 1`` (plain EMA per
    observation, as in Raju et al. 2021). The first observation sets ``mu = l``. Unseen
    samples score ``+inf`` (optimistic start, this package's choice; Raju et al. start from a
    constant), so the first epochs cover the data set before any sample is revisited. The
    last ``anneal_epochs`` epochs train on all samples (InfoBatch-style annealing, Qin et al.
    2024); the sampler prunes the earlier epochs harder so that the whole run still saves
    ``rate`` of the passes.
    """

    def __init__(
        self, *, decay: float = 0.5, decay_unit: str = "epoch", anneal_epochs: int = 0
    ) -> None:
        _check_fraction("decay", decay, low_open=False, high_open=True)
        if not is_integer(anneal_epochs):
            raise TypeError(
                f"anneal_epochs: expected an int >= 0, got {type(anneal_epochs).__name__}"
            )
        if anneal_epochs < 0:
            raise ValueError(
                f"anneal_epochs: {anneal_epochs} is negative; use 0 (no annealing) or the "
                "number of final full-data epochs"
            )
        if decay_unit not in DECAY_UNITS:
            raise ValueError(
                f"decay_unit: {decay_unit!r} is not one of {DECAY_UNITS}; 'epoch' discounts a "
                "stale loss by the epochs since it was measured, 'observation' per update"
            )
        self.decay = float(decay)
        self.n_anneal = int(anneal_epochs)
        self.decay_unit = decay_unit

    def anneal_epochs(self, epochs: int) -> int:
        return self.n_anneal

    def reset(self, n_samples: int) -> None:
        self.mean = torch.zeros(n_samples, dtype=torch.float64)
        self.var = torch.zeros(n_samples, dtype=torch.float64)
        self.seen = torch.zeros(n_samples, dtype=torch.bool)
        self.last_epoch = torch.zeros(n_samples, dtype=torch.long)
        self._epoch = 0

    def observe(self, indices, losses):
        if self.decay_unit == "epoch":
            gap = (self._epoch - self.last_epoch[indices]).clamp(min=1).double()
            alpha = 1.0 - self.decay**gap
        else:
            alpha = torch.full_like(losses, 1.0 - self.decay)
        first = ~self.seen[indices]
        diff = losses - self.mean[indices]
        mean = self.mean[indices] + alpha * diff
        var = (1.0 - alpha) * (self.var[indices] + alpha * diff * diff)
        self.mean[indices] = torch.where(first, losses, mean)
        self.var[indices] = torch.where(first, torch.zeros_like(var), var)
        self.seen[indices] = True
        self.last_epoch[indices] = self._epoch

    def select(self, epoch, n_keep, generator):
        self._epoch = epoch
        if n_keep == self.mean.numel():
            return torch.randperm(n_keep, generator=generator), None
        return self._select(epoch, n_keep, generator), None

    @abstractmethod
    def _select(self, epoch: int, n_keep: int, generator: torch.Generator) -> Tensor:
        """Indices of the ``n_keep`` samples to train on in a pruned epoch."""

    def _optimistic(self, score: Tensor) -> Tensor:
        return torch.where(self.seen, score, torch.full_like(score, math.inf))


class EpsilonGreedy(_MovingLoss):
    """Keep the ``(1 - eps) K`` highest moving-average losses plus ``eps K`` random others.

    Raju, Daruwalla & Lipasti (2021), arXiv 2111.12621: greedy exploitation of the running
    loss with an ``eps`` share of uniform exploration; no loss rescaling. While unseen samples
    (score ``+inf``) remain, those left over by the greedy share fill the exploration share
    first, which keeps the optimistic start's coverage. ``eps`` may decay
    per epoch, ``eps_e = eps * epsilon_decay**e``. ``moving_loss``: ``decay``, ``decay_unit``,
    ``anneal_epochs`` of :class:`_MovingLoss`. The paper's values of ``eps`` and the decay
    were not available; the defaults are this package's choice.
    """

    name = "epsilon-greedy"

    def __init__(self, epsilon: float = 0.2, epsilon_decay: float = 1.0, **moving_loss) -> None:
        super().__init__(**moving_loss)
        _check_fraction("epsilon", epsilon, low_open=False, high_open=False)
        _check_fraction("epsilon_decay", epsilon_decay, low_open=True, high_open=False)
        self.epsilon = float(epsilon)
        self.epsilon_decay = float(epsilon_decay)

    def _select(self, epoch, n_keep, generator):
        epsilon = self.epsilon * self.epsilon_decay**epoch
        n_greedy = round((1.0 - epsilon) * n_keep)
        score = self._optimistic(self.mean)
        greedy = _top_k_random_ties(score, n_greedy, generator)
        rest = torch.ones(score.numel(), dtype=torch.bool)
        rest[greedy] = False
        candidates = rest.nonzero().squeeze(1)
        explore = candidates[torch.randperm(candidates.numel(), generator=generator)]
        if not self.seen.all():  # unseen first, each group in random order
            explore = explore[torch.argsort(self.seen[explore].byte(), stable=True)]
        return torch.cat([greedy, explore[: n_keep - n_greedy]])


class UCB(_MovingLoss):
    """Keep the ``K`` largest upper confidence bounds ``mu_i + c * sigma_i`` of the loss.

    Raju, Daruwalla & Lipasti (2021), arXiv 2111.12621: the moving mean ``mu`` of a sample's
    loss plus ``c`` times its moving standard deviation ``sigma``; no loss rescaling.
    ``moving_loss``: ``decay``, ``decay_unit``, ``anneal_epochs`` of :class:`_MovingLoss`. The
    defaults of ``c`` and the decay are this package's choice (the paper's were not available).
    """

    name = "ucb"

    def __init__(self, c: float = 1.0, **moving_loss) -> None:
        super().__init__(**moving_loss)
        if not is_real(c) or not c >= 0.0:
            raise ValueError(f"c: {c!r} must be a float >= 0 (exploration weight)")
        self.c = float(c)

    def _select(self, epoch, n_keep, generator):
        score = self._optimistic(self.mean + self.c * self.var.sqrt())
        return _top_k_random_ties(score, n_keep, generator)


class InfoBatch(PruningStrategy):
    """Soft pruning of well-learned samples with loss rescaling and full-data annealing.

    Qin et al., "InfoBatch", ICLR 2024. A sample is *well learned* when its last loss is below
    the mean over seen samples (set ``W``, size ``w``; the rest ``H``, size ``h``, includes
    unseen samples). To keep ``K`` samples, ``W`` is kept with probability
    ``p_W = max(lam K/N, (K - h)/w)`` (at most ``K/N``), ``H`` with ``p_H = (K - p_W w)/h``
    (InfoBatch itself is the case ``p_H = 1``). Kept samples of ``W`` get the loss weight
    ``p_H / p_W`` and those of ``H`` weight 1, so the expected gradient of an epoch points
    along the full-data one (InfoBatch's ``1/(1 - r)`` rescaling when ``p_H = 1``). The last
    ``E - ceil(delta E)`` epochs use all data with weight 1. ``lam = min_relative_keep``
    bounds the weights when ``K < h``. Before any loss is seen every sample is in ``H``.
    """

    name = "infobatch"

    def __init__(self, delta: float = 0.875, min_relative_keep: float = 0.5) -> None:
        _check_fraction("delta", delta, low_open=True, high_open=False)
        _check_fraction("min_relative_keep", min_relative_keep, low_open=True, high_open=False)
        self.delta = float(delta)
        self.min_relative_keep = float(min_relative_keep)

    def reset(self, n_samples: int) -> None:
        self.score = torch.zeros(n_samples, dtype=torch.float64)
        self.seen = torch.zeros(n_samples, dtype=torch.bool)

    def anneal_epochs(self, epochs: int) -> int:
        return epochs - math.ceil(self.delta * epochs - 1e-9)

    def observe(self, indices, losses):
        self.score[indices] = losses
        self.seen[indices] = True

    def select(self, epoch, n_keep, generator):
        n = self.score.numel()
        if n_keep == n:
            return torch.arange(n), None
        if self.seen.any():
            well = self.seen & (self.score < self.score[self.seen].mean())
        else:
            well = torch.zeros(n, dtype=torch.bool)
        well_idx, hard_idx = well.nonzero().squeeze(1), (~well).nonzero().squeeze(1)
        w, h = well_idx.numel(), hard_idx.numel()
        fraction = n_keep / n
        p_well = min(fraction, max(self.min_relative_keep * fraction, (n_keep - h) / max(w, 1)))
        keep_well = min(min(w, n_keep), max(n_keep - h, round(p_well * w)))
        keep_hard = n_keep - keep_well
        kept_well = well_idx[torch.randperm(w, generator=generator)[:keep_well]]
        kept_hard = hard_idx[torch.randperm(h, generator=generator)[:keep_hard]]
        # weight 1/p per group, normalised so that H keeps weight 1 (InfoBatch: p_H = 1)
        relative = (w * keep_hard) / (keep_well * h) if keep_well and keep_hard else 1.0
        weights = torch.cat(
            [
                torch.full((keep_well,), relative, dtype=torch.float64),
                torch.ones(keep_hard, dtype=torch.float64),
            ]
        )
        return torch.cat([kept_well, kept_hard]), weights


@dataclass(frozen=True)
class StaticScores:
    """Per-sample difficulty scores of a static method and what computing them cost."""

    method: str
    scores: Tensor
    passes: int
    wall_s: float


class StaticPruning(PruningStrategy):
    """Train every epoch on the fixed set of highest-scoring (hardest) samples.

    EL2N / GraNd (Paul et al. 2021) and forgetting scores (Toneva et al. 2019) rank samples
    before training; their scoring passes come out of the run's pass budget.
    """

    def __init__(self, scores: StaticScores) -> None:
        if not isinstance(scores, StaticScores):
            raise TypeError(
                f"scores: expected StaticScores, got {type(scores).__name__}; "
                "compute them with el2n_scores, grand_scores or forgetting_scores"
            )
        if scores.scores.ndim != 1 or not torch.isfinite(scores.scores).all():
            raise ValueError("scores.scores: must be a finite 1-D tensor, one score per sample")
        _check_int("scores.passes", scores.passes, minimum=0)
        self.static = scores
        self.name = scores.method

    @property
    def scoring_passes(self) -> int:
        return int(self.static.passes)

    def reset(self, n_samples: int) -> None:
        if self.static.scores.numel() != n_samples:
            raise ValueError(
                f"scores: {self.static.scores.numel()} scores for a data set of {n_samples} "
                "samples; score the same data the sampler draws from"
            )
        self._order: Tensor | None = None

    def select(self, epoch, n_keep, generator):
        if self._order is None:
            scores = self.static.scores.to(torch.float64).cpu()
            self._order = _top_k_random_ties(scores, scores.numel(), generator)
        return self._order[:n_keep].clone(), None


# --------------------------------------------------------------------------------------------
# sampler
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PruningStats:
    """Pass accounting of a run so far (one pass = one sample through the network)."""

    strategy: str
    target_rate: float
    epochs_planned: int
    epochs_started: int
    n_samples: int
    training_passes: int
    scoring_passes: int
    scoring_wall_s: float

    @property
    def full_data_passes(self) -> int:
        return self.epochs_started * self.n_samples

    @property
    def passes_done(self) -> int:
        return self.training_passes + self.scoring_passes

    @property
    def passes_saved(self) -> int:
        return self.full_data_passes - self.passes_done

    @property
    def realized_rate(self) -> float:
        full = self.full_data_passes
        return self.passes_saved / full if full else 0.0

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "strategy": self.strategy,
            "target_rate": self.target_rate,
            "epochs": self.epochs_started,
            "passes_done": self.passes_done,
            "passes_saved": self.passes_saved,
            "training_passes": self.training_passes,
            "scoring_passes": self.scoring_passes,
            "full_data_passes": self.full_data_passes,
            "realized_rate": self.realized_rate,
            "scoring_wall_s": self.scoring_wall_s,
        }


class PruningSampler(Sampler[int]):
    """Sampler whose every iteration is one epoch over the samples its strategy keeps.

    Each iteration selects its epoch's samples when it starts, after the losses of the
    previous epoch have been reported. ``len(sampler)`` is the size of the epoch in progress,
    or, once all of its indices have been drawn or its iteration was closed early, the planned
    size of the next epoch (0 after the last); it never selects. The number kept per epoch
    follows :func:`plan_keep_counts`, so after ``epochs`` epochs exactly ``rate`` of the
    full-data passes have been saved.
    ``update(indices, per_sample_loss)`` must follow each trained batch; it returns the loss
    weights (InfoBatch rescaling, ones otherwise) to multiply into the per-sample loss. Passes
    done are the samples reported there, so indices drawn but not trained (``drop_last``, an
    epoch left early) are not counted.
    """

    def __init__(
        self,
        n_samples: int,
        strategy: PruningStrategy,
        *,
        rate: float,
        epochs: int,
        seed: int = 0,
    ) -> None:
        n_samples = _check_int("n_samples", n_samples)
        epochs = _check_int("epochs", epochs)
        if not isinstance(strategy, PruningStrategy):
            raise TypeError(
                f"strategy: expected a PruningStrategy (UniformDynamic(), EpsilonGreedy(), UCB(), "
                f"InfoBatch(), StaticPruning(scores)), got {type(strategy).__name__}"
            )
        _check_rate(rate)
        strategy.reset(n_samples)
        self.keep_counts = plan_keep_counts(
            n_samples, epochs, rate, strategy.scoring_passes, strategy.anneal_epochs(epochs)
        )
        self.n_samples, self.strategy, self.rate, self.epochs = n_samples, strategy, rate, epochs
        self._generator = torch.Generator().manual_seed(plain_seed(seed))
        self._epoch = 0
        self._in_epoch = False
        self._current_size = 0
        self._served = torch.zeros(n_samples, dtype=torch.bool)
        self._weights = torch.ones(n_samples, dtype=torch.float64)
        self._training_passes = 0

    @property
    def epoch(self) -> int:
        """Number of epochs started so far."""
        return self._epoch

    def __len__(self) -> int:
        if self._in_epoch:
            return self._current_size
        return self.keep_counts[self._epoch] if self._epoch < self.epochs else 0

    def __iter__(self) -> Iterator[int]:
        if self._epoch >= self.epochs:
            raise RuntimeError(
                f"epochs: the sampler was planned for {self.epochs} epochs and all have "
                "run; create a new PruningSampler with more epochs"
            )
        n_keep = self.keep_counts[self._epoch]
        indices, weights = self.strategy.select(self._epoch, n_keep, self._generator)
        if indices.numel() != n_keep:
            raise RuntimeError(
                f"strategy {self.strategy.name!r} selected {indices.numel()} samples, "
                f"expected {n_keep}"
            )
        indices = indices.long()
        self._epoch += 1
        self._in_epoch = True
        self._current_size = indices.numel()
        self._served.zero_()
        self._served[indices] = True
        self._weights.fill_(1.0)
        if weights is not None:
            self._weights[indices] = weights.to(torch.float64)
        order = indices[torch.randperm(indices.numel(), generator=self._generator)]
        return self._serve(order.tolist(), self._epoch)

    def _serve(self, order: list[int], epoch: int) -> Iterator[int]:
        """Yield ``order``; the epoch ends when it is exhausted or closed (a loop left early)."""
        try:
            yield from order
        finally:
            if self._epoch == epoch:
                self._in_epoch = False

    def update(self, indices: Tensor, per_sample_loss: Tensor) -> Tensor:
        """Record the un-reduced loss of a trained batch; return its loss weights.

        ``indices``: 1-D integer tensor of dataset indices served this epoch.
        ``per_sample_loss``: 1-D float tensor of the same length (``reduction="none"``).
        """
        if (
            not isinstance(indices, Tensor)
            or indices.dtype.is_floating_point
            or indices.is_complex()
        ):
            raise TypeError(
                f"indices: expected an integer torch.Tensor of dataset indices, got "
                f"{getattr(indices, 'dtype', type(indices).__name__)}; use the index the "
                "dataset returns (IndexedTensorDataset)"
            )
        if indices.dtype == torch.bool:
            raise TypeError("indices: got a bool tensor; pass integer dataset indices")
        if not isinstance(per_sample_loss, Tensor) or not per_sample_loss.is_floating_point():
            raise TypeError(
                "per_sample_loss: expected a floating-point torch.Tensor, got "
                f"{getattr(per_sample_loss, 'dtype', type(per_sample_loss).__name__)}"
            )
        if indices.ndim != 1:
            raise ValueError(f"indices: shape {tuple(indices.shape)}; expected a 1-D tensor")
        if per_sample_loss.ndim == 0:
            raise ValueError(
                "per_sample_loss: got a scalar, i.e. an already reduced loss; compute it with "
                "reduction='none' so there is one loss per sample"
            )
        if tuple(per_sample_loss.shape) != (indices.numel(),):
            raise ValueError(
                f"per_sample_loss: shape {tuple(per_sample_loss.shape)} does not match "
                f"indices of shape {tuple(indices.shape)}; expected ({indices.numel()},), one "
                "un-reduced loss per sample"
            )
        if self._epoch == 0:
            raise RuntimeError(
                "update: no epoch has started; iterate the DataLoader (or the sampler) first"
            )
        idx = indices.detach().cpu().long()
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.n_samples):
            raise ValueError(
                f"indices: values must lie in [0, {self.n_samples}), got range "
                f"[{int(idx.min())}, {int(idx.max())}]"
            )
        not_served = idx[~self._served[idx]]
        if not_served.numel():
            raise ValueError(
                f"indices: {not_served[:5].tolist()} (of {not_served.numel()}) were not served "
                f"in epoch {self._epoch - 1}; pass the indices of the batch just trained"
            )
        loss = per_sample_loss.detach().to("cpu", torch.float64)
        if not torch.isfinite(loss).all():
            raise ValueError("per_sample_loss: contains NaN or inf; training has diverged")
        self.strategy.observe(idx, loss)
        self._training_passes += idx.numel()
        return self._weights[idx].to(per_sample_loss.device, per_sample_loss.dtype)

    def stats(self) -> PruningStats:
        static = self.strategy.static if isinstance(self.strategy, StaticPruning) else None
        return PruningStats(
            strategy=self.strategy.name,
            target_rate=self.rate,
            epochs_planned=self.epochs,
            epochs_started=self._epoch,
            n_samples=self.n_samples,
            training_passes=self._training_passes,
            scoring_passes=self.strategy.scoring_passes,
            scoring_wall_s=static.wall_s if static is not None else 0.0,
        )


# --------------------------------------------------------------------------------------------
# classifier training helpers (used by the static scorers, the experiment and the benchmark)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpochResult:
    """Mean training loss and accuracy over the samples trained in one epoch."""

    loss: float
    accuracy: float
    passes: int
    wall_s: float


def train_classifier_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    *,
    sampler: PruningSampler | None = None,
    device: str | torch.device = "cpu",
    transform: Callable[[Tensor], Tensor] | None = None,
    on_batch: Callable[[Tensor, Tensor, Tensor], None] | None = None,
) -> EpochResult:
    """One epoch of cross-entropy training over a loader of ``(x, y, index)`` batches.

    ``model(x)`` must return logits ``(batch, classes)`` (for a spiking network: e.g. spike
    counts or membrane potentials summed over time). With a ``sampler`` the per-sample loss
    goes through ``sampler.update`` and the returned weights scale it before the mean.
    ``on_batch(indices, logits, targets)`` sees every batch (detached), e.g. for forgetting.
    """
    model.train()
    start = time.perf_counter()
    total_loss, total_correct, passes = 0.0, 0, 0
    for xb, yb, idx in loader:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        if transform is not None:
            xb = transform(xb)
        logits = model(xb)
        per_sample = F.cross_entropy(logits, yb, reduction="none")
        weights = sampler.update(idx, per_sample) if sampler is not None else None
        loss = (per_sample * weights).mean() if weights is not None else per_sample.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        detached = logits.detach()
        if on_batch is not None:
            on_batch(idx, detached, yb)
        total_loss += float(per_sample.detach().sum())
        total_correct += int((detached.argmax(1) == yb).sum())
        passes += yb.numel()
    return EpochResult(
        loss=total_loss / max(passes, 1),
        accuracy=total_correct / max(passes, 1),
        passes=passes,
        wall_s=time.perf_counter() - start,
    )


@torch.no_grad()
def _logits(model: nn.Module, x: Tensor, batch_size: int, device) -> Tensor:
    model.eval()
    return torch.cat(
        [model(x[s : s + batch_size].to(device)).cpu() for s in range(0, x.shape[0], batch_size)]
    )


def evaluate_classifier(
    model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 1000, device="cpu"
) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    return float((_logits(model, x, batch_size, device).argmax(1) == y.cpu()).float().mean())


def _check_scoring_inputs(
    x: Tensor, y: Tensor, n_models: int, score_epochs: int | None
) -> tuple[int, int | None]:
    """Check the data and counts of a scoring method; returns the counts as plain ints."""
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError("x, y: expected torch tensors of inputs and integer class labels")
    if y.ndim != 1 or y.shape[0] != x.shape[0] or y.dtype.is_floating_point:
        raise ValueError(
            f"y: shape {tuple(y.shape)}, dtype {y.dtype}; expected integer labels of shape "
            f"({x.shape[0]},)"
        )
    n_models = _check_int("n_models", n_models)
    if score_epochs is not None:
        score_epochs = _check_int("score_epochs", score_epochs)
    return n_models, score_epochs


def _check_labels_fit(model: nn.Module, x: Tensor, y: Tensor, device) -> None:
    """Refuse labels outside the model's outputs, read from one forward pass on ``x[:1]``
    (the global RNG state is restored, so later training draws the same numbers)."""
    if y.numel() == 0:
        return
    cuda = [device] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        n_outputs = _logits(model, x[:1], 1, device).shape[1]
    check_labels(
        y, n_outputs, f"the model has {n_outputs} outputs; give class indices 0..{n_outputs - 1}"
    )


def _pretrain(
    model,
    make_optimizer,
    x,
    y,
    epochs,
    batch_size,
    generator,
    device,
    transform,
    on_batch=None,
):
    optimizer = make_optimizer(model)
    loader = DataLoader(
        IndexedTensorDataset(x, y), batch_size=batch_size, shuffle=True, generator=generator
    )
    passes = 0
    for _ in range(epochs):
        passes += train_classifier_epoch(
            model, optimizer, loader, device=device, transform=transform, on_batch=on_batch
        ).passes
    return passes


def el2n_scores(
    make_model: Callable[[], nn.Module],
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    x: Tensor,
    y: Tensor,
    *,
    score_epochs: int = 1,
    n_models: int = 1,
    batch_size: int = 128,
    seed: int = 0,
    device="cpu",
    transform: Callable[[Tensor], Tensor] | None = None,
) -> StaticScores:
    """EL2N score ``E_w || softmax(f_w(x)) - onehot(y) ||_2`` (Paul et al., NeurIPS 2021).

    Each of ``n_models`` fresh models trains ``score_epochs`` full-data epochs, then one
    forward pass scores every sample; cost ``n_models * (score_epochs + 1) * N`` passes.
    """
    n_models, score_epochs = _check_scoring_inputs(x, y, n_models, score_epochs)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(plain_seed(seed))
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    passes = 0
    for _ in range(n_models):
        model = make_model().to(device)
        _check_labels_fit(model, x, y, device)
        trained = _pretrain(
            model, make_optimizer, x, y, score_epochs, batch_size, generator, device, transform
        )
        probs = _logits(model, x, 1000, device).softmax(1)
        error = probs - F.one_hot(y.cpu(), probs.shape[1]).to(probs.dtype)
        total += error.norm(dim=1).double()
        passes += trained + x.shape[0]
    return StaticScores("el2n", total / n_models, passes, time.perf_counter() - start)


def grand_scores(
    make_model: Callable[[], nn.Module],
    x: Tensor,
    y: Tensor,
    *,
    n_models: int = 1,
    batch_size: int = 256,
    vectorize: bool = True,
    device="cpu",
) -> StaticScores:
    """GraNd score ``E_w || grad_w CE(f_w(x), y) ||_2`` at initialisation (Paul et al. 2021).

    Per-sample gradients use ``torch.func`` (``vectorize=True``) or one backward per sample
    (``vectorize=False``, needed for networks with custom autograd functions such as
    snntorch surrogate spikes). Cost ``n_models * N`` passes.
    """
    n_models, _ = _check_scoring_inputs(x, y, n_models, None)
    start = time.perf_counter()
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for _ in range(n_models):
        model = make_model().to(device).eval()
        _check_labels_fit(model, x, y, device)
        for s in range(0, x.shape[0], batch_size):
            xb, yb = x[s : s + batch_size].to(device), y[s : s + batch_size].to(device)
            norms = (_grad_norms_vmap if vectorize else _grad_norms_loop)(model, xb, yb)
            total[s : s + batch_size] += norms.double().cpu()
    return StaticScores(
        "grand", total / n_models, n_models * x.shape[0], time.perf_counter() - start
    )


def _grad_norms_vmap(model: nn.Module, xb: Tensor, yb: Tensor) -> Tensor:
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = dict(model.named_buffers())

    def loss_one(p, b, xi, yi):
        out = functional_call(model, (p, b), (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    grads = vmap(grad(loss_one), in_dims=(None, None, 0, 0))(params, buffers, xb, yb)
    return torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.values()))


def _grad_norms_loop(model: nn.Module, xb: Tensor, yb: Tensor) -> Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    norms = torch.empty(xb.shape[0])
    for i in range(xb.shape[0]):
        loss = F.cross_entropy(model(xb[i : i + 1]), yb[i : i + 1])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        norms[i] = torch.sqrt(sum(g.pow(2).sum() for g in grads if g is not None))
    return norms


class ForgettingCounter:
    """Counts forgetting events: a sample classified correctly at one presentation and wrongly
    at its next (Toneva et al., ICLR 2019). ``record`` takes each trained batch."""

    def __init__(self, n_samples: int) -> None:
        n_samples = _check_int("n_samples", n_samples)
        self.previous = torch.zeros(n_samples, dtype=torch.bool)
        self.learned = torch.zeros(n_samples, dtype=torch.bool)
        self.events = torch.zeros(n_samples, dtype=torch.float64)
        self.presentations = torch.zeros(n_samples, dtype=torch.long)

    def record(self, indices: Tensor, logits: Tensor, targets: Tensor) -> None:
        idx = indices.cpu().long()
        correct = (logits.argmax(1) == targets).cpu()
        self.events[idx] += (self.previous[idx] & ~correct).double()
        self.previous[idx] = correct
        self.learned[idx] |= correct
        self.presentations[idx] += 1

    def scores(self) -> Tensor:
        """Forgetting events per sample; never-learned samples score above any possible count
        (one more than the most presentations), as Toneva et al. rank them first."""
        never = float(self.presentations.max()) + 1.0
        return torch.where(self.learned, self.events, torch.full_like(self.events, never))


def forgetting_scores(
    make_model: Callable[[], nn.Module],
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    x: Tensor,
    y: Tensor,
    *,
    score_epochs: int = 2,
    batch_size: int = 128,
    seed: int = 0,
    device="cpu",
    transform: Callable[[Tensor], Tensor] | None = None,
) -> StaticScores:
    """Forgetting scores from ``score_epochs`` of full-data training of a fresh model
    (:class:`ForgettingCounter`; Toneva et al., ICLR 2019). Cost ``score_epochs * N`` passes:
    the scores come from the training forward passes themselves.
    """
    _, score_epochs = _check_scoring_inputs(x, y, 1, score_epochs)
    start = time.perf_counter()
    counter = ForgettingCounter(x.shape[0])
    generator = torch.Generator().manual_seed(plain_seed(seed))
    model = make_model().to(device)
    _check_labels_fit(model, x, y, device)
    passes = _pretrain(
        model,
        make_optimizer,
        x,
        y,
        score_epochs,
        batch_size,
        generator,
        device,
        transform,
        on_batch=counter.record,
    )
    return StaticScores("forgetting", counter.scores(), passes, time.perf_counter() - start)
