"""Trainers for rate networks: the IB three-factor rule and its baselines, in one harness.

- :class:`IBTrainer` — the information-bottleneck Hebbian rule of Daruwalla & Lipasti (2024):
  a sliding window of the last ``B`` samples over a shuffled stream (``window_shift = 1``, each
  sample is "current" once per epoch). Every hidden layer gets the global signal ``xi`` for the
  current sample (:func:`plastix.plasticity.hsic.modulatory_signal`) and changes its weights by
  ``dW = -eta (xi * f'(a_B)) outer p_B`` — the layer-local VJP through Dense -> ReLU (and the
  LayerNorm when ``xi_site = "norm"``; it couples the units of one layer but stays inside it).
  The readout is trained by softmax cross-entropy over the window. No gradient crosses layers.
- :class:`BackpropTrainer` — end-to-end cross-entropy, minibatches of ``B`` samples.
- :class:`LayerwiseHSICTrainer` — every hidden layer minimises its own exact HSIC objective
  ``HSIC(X, Z) - gamma HSIC(Y, Z)`` over the same sliding window, by autograd (Ma et al. 2020;
  the ``create_hsic_step`` baseline of Daruwalla & Lipasti).
- :class:`ReadoutOnlyTrainer` — control: hidden layers frozen at initialisation, readout by
  cross-entropy (what any rule must beat for its hidden-layer learning to count).
- :class:`PHSICTrainer` — Pogodin & Latham (NeurIPS 2020): every hidden layer minimises
  ``pHSIC(Z, Z) - gamma pHSIC(Z, Y)`` (Gaussian kernel on Z without sqrt(dim) scaling,
  cosine kernel on centred one-hot labels), minibatches of ``B``, layer inputs detached.

All use AdamW (b1 0.9, b2 0.99, weight decay 1e-4, as in the reference code). Labels are
int64 class indices; inputs float tensors ``(n, *sample_shape)``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from plastix.bridges.checks import check_adam_betas, check_labels
from plastix.bridges.rate_networks import (
    XI_SITES,
    ConvBlock,
    LeakyRateMLP,
    RateNetwork,
    XiSite,
)
from plastix.plasticity.hsic import (
    XI_METHODS,
    XiMethod,
    cosine_kernel,
    gaussian_kernel,
    hsic,
    layer_objective,
    modulatory_weights,
    plausible_hsic,
    sliding_windows,
    xi_from_weights,
)
from plastix.scalars import is_finite_real, is_integer

Method = Literal["ib", "backprop", "hsic", "phsic", "readout"]
METHODS: tuple[str, ...] = ("ib", "backprop", "hsic", "phsic", "readout")
WEIGHT_CHUNK_ELEMENTS = 2**23  # bound on the windows x B x dim block whose xi weights are
# computed in one vectorised call (32 MB in float32)

__all__ = [
    "METHODS",
    "AdamWSettings",
    "BackpropTrainer",
    "EpochStats",
    "IBRule",
    "IBTrainer",
    "LayerwiseHSICTrainer",
    "PHSICRule",
    "PHSICTrainer",
    "ReadoutOnlyTrainer",
    "evaluate",
    "ib_gradients",
    "layer_hsic",
    "make_trainer",
    "stream_order",
]


def _finite(value: float, name: str, minimum: float | None = None, strict: bool = False):
    """``value`` as a float: any finite real number (numpy's too) but bool, above ``minimum``."""
    if not is_finite_real(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        op = ">" if strict else ">="
        raise ValueError(f"{name}: must be {op} {minimum}, got {value!r}")
    return float(value)


def _set_finite(settings, name: str, minimum: float | None = None, strict: bool = False):
    """Check the number field ``name`` of frozen ``settings`` and store it as a float."""
    object.__setattr__(settings, name, _finite(getattr(settings, name), name, minimum, strict))


@dataclass(frozen=True)
class IBRule:
    """Parameters of the IB three-factor rule (defaults: the MNIST config of the reference
    code, ``configs/data_task/train-hsic/mnist.yaml``, with B = 8)."""

    gamma: float = 2.0
    sigmas: tuple[float, float, float] = (0.5, 0.1, 1.0)
    window: int = 8
    xi_method: XiMethod = "exact"
    xi_site: XiSite = "norm"

    def __post_init__(self) -> None:
        _set_finite(self, "gamma")
        if len(self.sigmas) != 3:
            raise ValueError(f"sigmas: expected (sigma_x, sigma_y, sigma_z), got {self.sigmas!r}")
        sigmas = tuple(
            _finite(s, f"sigmas[{i}]", 0.0, strict=True) for i, s in enumerate(self.sigmas)
        )
        object.__setattr__(self, "sigmas", sigmas)
        if not is_integer(self.window) or self.window < 2:
            raise ValueError(f"window: B = {self.window!r}; the rule needs B >= 2")
        object.__setattr__(self, "window", int(self.window))
        if self.xi_method not in XI_METHODS:
            raise ValueError(f"xi_method: {self.xi_method!r} is not one of {XI_METHODS}")
        if self.xi_site not in XI_SITES:
            raise ValueError(f"xi_site: {self.xi_site!r} is not one of {XI_SITES}")


@dataclass(frozen=True)
class PHSICRule:
    """pHSIC objective ``pHSIC(Z, Z) - gamma pHSIC(Z, Y)`` of Pogodin & Latham (2020):
    gamma 2, Gaussian sigma_z 5 (no sqrt(dim) scaling), cosine kernel on centred labels."""

    gamma: float = 2.0
    sigma_z: float = 5.0

    def __post_init__(self) -> None:
        _set_finite(self, "gamma")
        _set_finite(self, "sigma_z", 0.0, strict=True)


@dataclass(frozen=True)
class AdamWSettings:
    """AdamW as in the reference code (optax.adamw: b1 0.9, b2 0.99, eps 1e-8, wd 1e-4)."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        _set_finite(self, "lr", 0.0, strict=True)
        _set_finite(self, "eps", 0.0, strict=True)
        _set_finite(self, "weight_decay", 0.0)
        check_adam_betas("betas", self.betas)

    def build(self, params) -> torch.optim.AdamW:
        return torch.optim.AdamW(
            params,
            lr=self.lr,
            betas=self.betas,
            eps=self.eps,
            weight_decay=self.weight_decay,
            foreach=True,
        )


@dataclass
class EpochStats:
    """What one training epoch did: training steps (windows for the sliding-window rules,
    minibatches otherwise), seconds, samples seen and the mean training loss where the
    method computes one (NaN otherwise)."""

    steps: int
    seconds: float
    samples: int
    loss: float = float("nan")
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(self.steps, 1)


def check_window_data(x: Tensor, y: Tensor, n_classes: int, window: int) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x: expected a float torch.Tensor, got {type(x).__name__}")
    if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.ndim != 1:
        raise TypeError("y: expected a 1-D int64 tensor of class indices")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x, y: {x.shape[0]} inputs but {y.shape[0]} labels")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x: contains NaN or inf; clean or drop those samples")
    if x.shape[0] < window:
        raise ValueError(
            f"x: {x.shape[0]} samples is fewer than the window B = {window}; use more data"
        )
    check_labels(
        y, n_classes, f"the readout has {n_classes} outputs; give class indices 0..{n_classes - 1}"
    )


def stream_order(n: int, window: int, generator: torch.Generator | None) -> Tensor:
    """Indices of a shuffled stream, extended at the front by its last ``window - 1`` entries,
    so that the ``n`` sliding windows make every sample "current" (last) exactly once."""
    perm = torch.randperm(n, generator=generator)
    return torch.cat([perm[n - (window - 1) :], perm])


def ib_gradients(
    net: RateNetwork,
    x_window: Tensor,
    y_window: Tensor,
    weights: Tensor,
    rule: IBRule,
) -> list[Tensor]:
    """Weight changes (before the optimiser) of one IB step on one window.

    Hidden block l: ``xi_l`` from the weights ``w`` (:func:`modulatory_weights`, shared by all
    layers) and the block's window activity ``z_l``, then the three-factor
    ``dW_l = (xi_l * f'(a_B)) outer p_B``. Readout: ``dW = (softmax(o) - y)^T p / B``, the
    cross-entropy gradient over the window. Returns one tensor per ``net.parameters()``.
    """
    sigma_z = rule.sigmas[2]
    with torch.no_grad():
        traces, logits = net.trace(x_window)
        grads: list[Tensor] = []
        for block, t in zip(net.blocks, traces, strict=True):
            xi = xi_from_weights(weights, t.z(rule.xi_site), sigma_z)
            grads.extend(block.three_factor_grads(t, xi, rule.xi_site))
        grads.extend(readout_gradients(logits, y_window, traces[-1].n.flatten(1), 1.0))
    return grads


def readout_gradients(logits: Tensor, y_onehot: Tensor, p: Tensor, gain: float) -> list[Tensor]:
    g = (torch.softmax(logits, -1) - y_onehot) * (gain / logits.shape[0])
    return [g.T @ p, g.sum(0)]


class _Trainer:
    """Shared pieces: optimiser, data checks, evaluation."""

    method: str

    def __init__(self, net: RateNetwork, optim: AdamWSettings, window: int, params=None):
        if not isinstance(net, RateNetwork):
            raise TypeError(f"net: expected a plastix RateNetwork, got {type(net).__name__}")
        if not is_integer(window) or window < 2:
            raise ValueError(
                f"window / batch: {window!r}; give an integer >= 2 (the kernels and the "
                "minibatch steps need at least two samples)"
            )
        self.net = net
        self.window = int(window)
        self.params = list(net.parameters() if params is None else params)
        self.optimizer = optim.build(self.params)
        self.n_classes = net.readout.out_features

    def _onehot(self, y: Tensor) -> Tensor:
        return F.one_hot(y, self.n_classes).to(self.params[0].dtype)

    def _apply(self, grads: Sequence[Tensor]) -> None:
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g
        self.optimizer.step()

    def train_epoch(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None):
        raise NotImplementedError

    def _minibatch_epoch(self, x, y, generator, loss_fn) -> EpochStats:
        check_window_data(x, y, self.n_classes, self.window)
        order = torch.randperm(x.shape[0], generator=generator)
        start = time.perf_counter()
        total, steps, seen = 0.0, 0, 0
        for begin in range(0, x.shape[0], self.window):
            idx = order[begin : begin + self.window]
            if idx.numel() < 2:  # a last minibatch of one sample is skipped, not counted
                continue
            self.optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(x[idx], y[idx])
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach())
            steps += 1
            seen += idx.numel()
        return EpochStats(steps, time.perf_counter() - start, seen, total / max(steps, 1))


class IBTrainer(_Trainer):
    """IB three-factor rule on a sliding window of the last ``B`` samples (see module doc)."""

    method = "ib"

    def __init__(self, net: RateNetwork, rule: IBRule | None = None, optim=None):
        rule = rule or IBRule()
        super().__init__(net, optim or AdamWSettings(lr=1e-4), rule.window)
        if rule.xi_site != "relu" and any(isinstance(b, ConvBlock) for b in net.blocks):
            raise ValueError(
                f"rule.xi_site: {rule.xi_site!r} is not implemented for convolutional blocks; "
                "use IBRule(xi_site='relu') with a RateCNN"
            )
        self.rule = rule
        self.leaky = isinstance(net, LeakyRateMLP)

    def window_weights(self, x: Tensor, y_onehot: Tensor) -> Tensor:
        """``w`` for every sliding window of a stream ``(N + B - 1, ...)``: ``(N, B)``."""
        sx, sy, _ = self.rule.sigmas
        xw = sliding_windows(x.flatten(1), self.window)
        yw = sliding_windows(y_onehot, self.window)
        return modulatory_weights(
            gaussian_kernel(xw, sx), gaussian_kernel(yw, sy), self.rule.gamma, self.rule.xi_method
        )

    def step(self, x_window: Tensor, y_window: Tensor, weights: Tensor) -> None:
        """One update from one window (labels one-hot); ``weights`` from :meth:`window_weights`."""
        if self.leaky:
            self._leaky_step(x_window, y_window, weights)
        else:
            self._apply(ib_gradients(self.net, x_window, y_window, weights, self.rule))

    def _leaky_step(self, x_window: Tensor, y_window: Tensor, weights: Tensor) -> None:
        """Leaky units: the window is integrated from rest for ``steps`` Euler steps and the
        three-factor update is applied at every step (``create_lif_biohsic_step``)."""
        net: LeakyRateMLP = self.net  # type: ignore[assignment]
        sigma_z, site = self.rule.sigmas[2], self.rule.xi_site
        rate = net.integration.rate
        with torch.no_grad():
            state = net.initial_state(x_window.shape[0], x_window)
            for _ in range(net.integration.steps):
                state, traces, out = net.time_step(x_window, state)
                grads: list[Tensor] = []
                for block, t in zip(net.blocks, traces, strict=True):
                    xi = xi_from_weights(weights, t.z(site), sigma_z)
                    grads.extend(block.three_factor_grads(t, xi, site))
                grads.extend(readout_gradients(out, y_window, traces[-1].n.flatten(1), rate))
                self._apply(grads)

    def train_epoch(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None):
        check_window_data(x, y, self.n_classes, self.window)
        n, window = x.shape[0], self.window
        order = stream_order(n, window, generator)
        start = time.perf_counter()
        chunk_size = max(1, min(512, WEIGHT_CHUNK_ELEMENTS // (window * x[0].numel())))
        for chunk in range(0, n, chunk_size):
            idx = order[chunk : min(chunk + chunk_size, n) + window - 1]
            xs, ys = x[idx], self._onehot(y[idx])
            with torch.no_grad():
                weights = self.window_weights(xs, ys)
            for t in range(weights.shape[0]):
                self.step(xs[t : t + window], ys[t : t + window], weights[t])
        return EpochStats(n, time.perf_counter() - start, n)


class BackpropTrainer(_Trainer):
    """End-to-end softmax cross-entropy by backprop, minibatches of ``batch`` samples."""

    method = "backprop"

    def __init__(self, net: RateNetwork, batch: int = 8, optim=None):
        super().__init__(net, optim or AdamWSettings(lr=1e-3), batch)

    def train_epoch(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None):
        return self._minibatch_epoch(
            x, y, generator, lambda xb, yb: F.cross_entropy(self.net(xb), yb)
        )


class ReadoutOnlyTrainer(_Trainer):
    """Control: hidden layers frozen at their initial weights, readout trained by
    cross-entropy on minibatches of ``batch`` ("last layer only", Pogodin & Latham 2020)."""

    method = "readout"

    def __init__(self, net: RateNetwork, batch: int = 8, optim=None):
        optim = optim or AdamWSettings(lr=1e-3)
        readout = net.readout.parameters() if isinstance(net, RateNetwork) else None
        super().__init__(net, optim, batch, params=readout)

    def train_epoch(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None):
        def loss_fn(xb: Tensor, yb: Tensor) -> Tensor:
            with torch.no_grad():
                traces, _ = self.net.trace(xb)
            return F.cross_entropy(self.net.readout(traces[-1].n.flatten(1)), yb)

        return self._minibatch_epoch(x, y, generator, loss_fn)


class LayerwiseHSICTrainer(_Trainer):
    """Each hidden layer minimises its exact ``HSIC(X, Z) - gamma HSIC(Y, Z)`` over the
    sliding window by autograd (inputs detached: no gradient crosses layers); the readout
    minimises cross-entropy. Same data schedule as :class:`IBTrainer`."""

    method = "hsic"

    def __init__(self, net: RateNetwork, rule: IBRule | None = None, optim=None):
        if isinstance(net, LeakyRateMLP):
            raise TypeError("net: the layer-wise HSIC baseline supports RateMLP/RateCNN only")
        rule = rule or IBRule()
        super().__init__(net, optim or AdamWSettings(lr=1e-4), rule.window)
        self.rule = rule

    def train_epoch(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None):
        check_window_data(x, y, self.n_classes, self.window)
        n, window = x.shape[0], self.window
        order = stream_order(n, window, generator)
        start, total = time.perf_counter(), 0.0
        for t in range(n):
            idx = order[t : t + window]
            xw, yw = x[idx], y[idx]
            y1 = self._onehot(yw)
            self.optimizer.zero_grad(set_to_none=True)
            traces, logits = self.net.trace(xw, detach_inputs=True)
            xf = xw.flatten(1)
            loss = F.cross_entropy(logits, yw)
            total += float(loss.detach())
            for tr in traces:
                loss = loss + layer_objective(
                    xf, y1, tr.z(self.rule.xi_site), self.rule.gamma, self.rule.sigmas
                )
            loss.backward()
            self.optimizer.step()
        return EpochStats(n, time.perf_counter() - start, n, total / n)


class PHSICTrainer(_Trainer):
    """Pogodin & Latham (2020) pHSIC layer-local objectives, minibatches of ``batch``."""

    method = "phsic"

    def __init__(self, net: RateNetwork, rule: PHSICRule | None = None, batch: int = 8, optim=None):
        if isinstance(net, LeakyRateMLP):
            raise TypeError("net: the pHSIC baseline supports RateMLP/RateCNN only")
        super().__init__(net, optim or AdamWSettings(lr=1e-3), batch)
        self.rule = rule or PHSICRule()

    def _loss(self, xb: Tensor, yb: Tensor) -> Tensor:
        traces, logits = self.net.trace(xb, detach_inputs=True)
        y1 = self._onehot(yb)
        ky = cosine_kernel(y1 - y1.mean(-1, keepdim=True))
        loss = F.cross_entropy(logits, yb)
        for tr in traces:
            kz = gaussian_kernel(tr.h.flatten(1), self.rule.sigma_z, scale_by_dim=False)
            loss = loss + plausible_hsic(kz, kz) - self.rule.gamma * plausible_hsic(ky, kz)
        return loss

    def train_epoch(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None):
        return self._minibatch_epoch(x, y, generator, self._loss)


def make_trainer(
    method: Method,
    net: RateNetwork,
    *,
    window: int = 8,
    lr: float | None = None,
    ib_rule: IBRule | None = None,
    phsic_rule: PHSICRule | None = None,
    weight_decay: float = 1e-4,
) -> _Trainer:
    """Build the trainer for ``method`` with ``window`` = B (the IB window, or the minibatch
    of the batched methods). Default learning rates: 1e-4 for the HSIC rules (reference
    code), 1e-3 for backprop, pHSIC and the readout-only control."""
    if method not in METHODS:
        raise ValueError(f"method: {method!r} is not one of {METHODS}")
    default_lr = 1e-4 if method in ("ib", "hsic") else 1e-3
    optim = AdamWSettings(lr=default_lr if lr is None else lr, weight_decay=weight_decay)
    if method in ("ib", "hsic"):
        rule = ib_rule or IBRule(window=window)
        if rule.window != window:
            raise ValueError(f"window: {window} differs from ib_rule.window = {rule.window}")
        cls = IBTrainer if method == "ib" else LayerwiseHSICTrainer
        return cls(net, rule, optim)
    if method == "phsic":
        return PHSICTrainer(net, phsic_rule, window, optim)
    if method == "readout":
        return ReadoutOnlyTrainer(net, window, optim)
    return BackpropTrainer(net, window, optim)


def evaluate(net: RateNetwork, x: Tensor, y: Tensor, batch: int = 2048) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of ``net`` on ``(x, y)``."""
    check_window_data(x, y, net.readout.out_features, window=0)  # any number of samples
    correct, loss = 0, 0.0
    with torch.no_grad():
        for begin in range(0, x.shape[0], batch):
            logits = net(x[begin : begin + batch])
            yb = y[begin : begin + batch]
            loss += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(-1) == yb).sum())
    n = max(x.shape[0], 1)
    return correct / n, loss / n


def layer_hsic(net: RateNetwork, x: Tensor, y: Tensor, rule: IBRule) -> list[tuple[float, float]]:
    """``(HSIC(X, Z_l), HSIC(Y, Z_l))`` of every hidden layer on one batch (the information
    plane of Ma et al. 2020), with the rule's kernels."""
    sx, sy, sz = rule.sigmas
    n_classes = net.readout.out_features
    check_window_data(x, y, n_classes, window=0)  # any number of samples
    with torch.no_grad():
        traces, _ = net.trace(x)
        kx = gaussian_kernel(x.flatten(1), sx)
        ky = gaussian_kernel(F.one_hot(y, n_classes).to(x.dtype), sy)
        out = []
        for t in traces:
            kz = gaussian_kernel(t.z(rule.xi_site), sz)
            out.append((float(hsic(kx, kz)), float(hsic(ky, kz))))
    return out
