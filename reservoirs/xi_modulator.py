"""The xi-modulator: an echo-state reservoir trained a priori, on synthetic streams and
independently of any dataset, to output the global signal xi of the IB Hebbian rule for the
current sample from the stream of ``(x, y, z)`` samples it has seen (Daruwalla & Lipasti
2024, section 2 of the reference: the reservoir is the working memory that holds the last
``B - 1`` samples).

Target. For a window of ``B`` samples ending at the current one,
``xi = -(2 / s_z^2) / (B - 1)^2 sum_j w_j K_Z[B, j] (z_B - z_j)`` with
``w = (H (K_X - gamma K_Y) H)[B, :]`` (:func:`plastix.plasticity.hsic.modulatory_signal`).
The readout learns the scale-free ``xi_hat = xi (B - 1)^2 s_z^2 / 2``.

Why a plain reservoir struggles. ``xi`` is a *product* of the current sample with the memory:
the weights ``w_j`` compare sample ``j`` with the current one, and multiply the remembered
``z_j``. A linear readout of a reservoir cannot form that product; only the reservoir's
nonlinearity can, weakly. With labels one-hot and ``sigma_y`` small, ``K_Y[B, j]`` is
``1[y_j = y_B]`` and the label part of ``w`` dominates. Written with the window's class
counts ``n_k``, the neuron's window sum ``S_i = sum_j z_ji`` and class sums
``M_ki = sum_j 1[y_j = k] z_ji``, the label part of ``xi_i`` (double centring included,
``K_Z`` set to 1, up to the positive factor ``2 / ((B - 1)^2 s_z^2)``) is

    -gamma (M_ci - (n_c / B) S_i - (1 / B) sum_k n_k M_ki + (||n||^2 / B^2) S_i),  c = y_B,

i.e. window statistics that are *linear* in the remembered ``(y_j, y_j z_ji, z_ji)``, a
selection by the current label ``c`` and products of counts with sums. Architectures:

- ``"global"`` (the reference code's): one reservoir fed ``[P x / s_x, y, z]`` with ``P`` a
  random projection to ``x_projection`` dimensions (it keeps distances, so ``K_X``; Johnson &
  Lindenstrauss 1984) and one linear readout to all ``dz`` outputs.
- ``"factorised"``: one small reservoir per modulated neuron ``i``, all with the same weights,
  fed ``[y, y z_i, z_i]`` (label, label-conjunctive activity and activity), so each holds the
  window statistics of its neuron linearly (identity activation by default). The readout is
  shared by all neurons. It does not see ``x`` nor the other neurons: the ``K_X`` and ``K_Z``
  parts of ``w`` are left to the fit.

- ``"kernel-memory"``: a linear working memory plus fixed kernel units, which computes the
  per-pair similarities the factorised form cannot (see :class:`KernelMemoryModulator`). Each
  sample is coded ``u_t = [P x_t / s_x, y_t / s_y, z_t / s_z]`` (``s = sigma sqrt(dim)``, ``P``
  from :func:`distance_preserving_projection`), so that every kernel is ``exp(-||u - u'||^2 /
  2)`` on its block. An echo-state reservoir with linear units is driven by ``u_t``; a ridge
  readout, fitted a priori on synthetic streams, decodes the last ``B - 1`` codes
  ``u_{t-1} .. u_{t-B+1}`` from its state (``memory_topology``: ``"delay-line"``, the
  delay-line reservoir of Rodan & Tino 2011 with one line per code dimension, whose decoding is
  exact with ``N = (B - 1) dim(u)`` units; or ``"orthogonal"``, a random orthogonal ``W`` at
  ``spectral_radius`` with ``N = memory_ratio (B - 1) dim(u)``, approximate). The kernel units
  compare the current code with each decoded one: ``K_X[B, j]``, ``K_Y[B, j]``, ``K_Z[B, j]``;
  the weights ``w_j`` follow ``xi_method`` (``"row-centred"``: the current row only;
  ``"exact"`` / ``"diagonal"`` also need the pairs among remembered samples), and
  ``xi = -(2 / s_z) / (B - 1)^2 sum_j w_j K_Z[B, j] (u^z_B - u^z_j)``. When the decoding is
  exact this is :func:`~plastix.plasticity.hsic.modulatory_signal` with the x-kernel taken on
  the projected distances ``||P (x_i - x_j)||`` at the bandwidth of the original dimension,
  ``sigma_x sqrt(dim x)`` (so equal to it on ``(x, y, z)`` when ``P`` is an isometry,
  ``x_projection >= dim(x)``). Nothing is learnt about xi: only the memory readout is fitted.

``gated=True`` makes the readout label-gated: one ridge readout per current label (the
teaching signal selects the readout weights: a linear readout of ``features (x) y``).
``window_products=True`` (factorised only) adds a second-order stage: a linear "statistics"
readout decodes ``n``, ``S_i`` and ``M_i`` from the reservoir, and the products
``n_k S_i``, ``n_k M_ki`` and ``||n||^2 S_i`` join the features of the gated readout — a
multiplicative (gain-modulated) readout on top of a linear working memory.

Training data (:func:`synthetic_streams`): labels uniform; ``x`` and the layer's pre-activation
are class means of random strength plus noise; ``z = LayerNorm(ReLU(.))`` as in the reference
MLP. Nothing is drawn from a dataset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from plastix.plasticity.hsic import (
    XI_METHODS,
    XiMethod,
    gaussian_kernel,
    modulatory_signal,
    modulatory_weights,
    xi_from_weights,
)
from plastix.scalars import is_finite_real, is_integer

from .esn import ESNConfig, ESNWeights, esn_step, init_esn_weights, run_esn
from .readouts import RidgeReadout

Architecture = Literal["factorised", "global", "kernel-memory"]
ARCHITECTURES: tuple[str, ...] = ("factorised", "global", "kernel-memory")
MemoryTopology = Literal["delay-line", "orthogonal"]
MEMORY_TOPOLOGIES: tuple[str, ...] = ("delay-line", "orthogonal")
LN_EPS = 1e-6
MEMORY_JITTER = 0.1  # relative jitter of the codes that fit the kernel-memory readout

__all__ = [
    "ARCHITECTURES",
    "MEMORY_TOPOLOGIES",
    "KernelMemoryModulator",
    "XiAgreement",
    "XiModulator",
    "XiModulatorConfig",
    "delay_line_weights",
    "distance_preserving_projection",
    "fit_kernel_memory_modulator",
    "fit_xi_modulator",
    "kernel_stage_xi",
    "layer_norm_projection",
    "synthetic_streams",
    "training_streams",
    "xi_agreement",
    "xi_targets",
]


def _int(value, name: str, minimum: int) -> int:
    if not is_integer(value) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def _set_int(config, name: str, minimum: int) -> None:
    """Check the integer field ``name`` of a frozen config and store it as a plain int."""
    object.__setattr__(config, name, _int(getattr(config, name), name, minimum))


def _real(value, name: str, low: float = 0.0, strict: bool = False) -> float:
    if not is_finite_real(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if value < low or (strict and value == low):
        raise ValueError(f"{name}: {value} must be {'>' if strict else '>='} {low}")
    return float(value)


@dataclass(frozen=True)
class XiModulatorConfig:
    """A xi-modulator for one layer of ``n_neurons`` units, ``n_classes`` labels, window
    ``B = window``. ``n_units`` is the size of each per-neuron reservoir (factorised) or of
    the one reservoir (global). Training: ``n_chunks`` batches of ``n_streams`` synthetic
    streams of ``stream_length`` samples; for the factorised form only ``train_neurons``
    randomly chosen neurons per stream are simulated (all share one readout).
    ``window_products`` (factorised only) adds the second-order readout stage (module doc);
    ``class_strength`` bounds how class-driven the synthetic activity is.

    Kernel-memory only (module doc): ``memory_topology``, ``memory_ratio`` (reservoir size
    ``N = memory_ratio (B - 1) (x_projection + n_classes + n_neurons)``; 1 for the delay line),
    ``memory_ridge`` (ridge of the memory readout) and ``xi_method`` (which xi the kernel stage
    computes; the other architectures learn the exact one). ``spectral_radius``,
    ``input_scaling`` and ``activation`` set the orthogonal memory reservoir."""

    n_neurons: int = 64
    n_classes: int = 10
    window: int = 8
    gamma: float = 2.0
    sigmas: tuple[float, float, float] = (0.5, 0.1, 1.0)
    architecture: Architecture = "factorised"
    gated: bool = True
    n_units: int = 400
    spectral_radius: float = 0.9
    leak: float = 1.0
    connectivity: float = 0.05
    input_scaling: float = 0.5
    activation: Literal["tanh", "identity"] = "identity"
    x_projection: int = 16
    ridge: float = 1e-2
    n_streams: int = 8
    stream_length: int = 256
    n_chunks: int = 4
    train_neurons: int = 16
    window_products: bool = True
    class_strength: float = 1.5
    memory_topology: MemoryTopology = "delay-line"
    memory_ratio: float = 1.0
    memory_ridge: float = 1e-8
    xi_method: XiMethod = "exact"
    seed: int = 0

    def __post_init__(self) -> None:
        _set_int(self, "n_neurons", 1)
        _set_int(self, "n_classes", 2)
        _set_int(self, "window", 2)
        _real(self.gamma, "gamma", low=-math.inf)
        if len(self.sigmas) != 3:
            raise ValueError(f"sigmas: expected (sigma_x, sigma_y, sigma_z), got {self.sigmas!r}")
        for i, s in enumerate(self.sigmas):
            _real(s, f"sigmas[{i}]", strict=True)
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture: {self.architecture!r} is not one of {ARCHITECTURES}")
        if self.window_products and self.architecture != "factorised":
            raise ValueError(
                "window_products: the second-order window terms exist for the factorised "
                f"architecture only; set window_products=False for {self.architecture!r}"
            )
        if self.xi_method not in XI_METHODS:
            raise ValueError(f"xi_method: {self.xi_method!r} is not one of {XI_METHODS}")
        _real(self.memory_ratio, "memory_ratio", strict=True)  # checked whatever the architecture
        _real(self.memory_ridge, "memory_ridge")
        if self.architecture == "kernel-memory":
            self._check_kernel_memory()
        elif self.xi_method != "exact":
            raise ValueError(
                f"xi_method: {self.xi_method!r} needs architecture='kernel-memory'; the "
                f"{self.architecture!r} readout is fitted to the exact xi (set xi_method='exact')"
            )
        _set_int(self, "n_units", 1)
        _set_int(self, "x_projection", 1)
        _real(self.ridge, "ridge")
        _set_int(self, "n_streams", 1)
        _set_int(self, "n_chunks", 1)
        _set_int(self, "train_neurons", 1)
        _real(self.class_strength, "class_strength")
        _set_int(self, "seed", 0)
        if not is_integer(self.stream_length) or self.stream_length < self.window + 1:
            raise ValueError(
                f"stream_length: {self.stream_length!r} must be an int > window = {self.window}"
            )
        object.__setattr__(self, "stream_length", int(self.stream_length))
        # the reservoir's own checks (radius, leak, connectivity, scaling, activation)
        self.esn_config()

    def _check_kernel_memory(self) -> None:
        if self.gated:
            raise ValueError(
                "gated: the kernel-memory architecture has no learnt xi readout to gate by "
                "label; set gated=False"
            )
        if self.memory_topology not in MEMORY_TOPOLOGIES:
            raise ValueError(
                f"memory_topology: {self.memory_topology!r} is not one of {MEMORY_TOPOLOGIES}"
            )
        if self.memory_topology == "delay-line":
            if self.memory_ratio != 1.0:
                raise ValueError(
                    f"memory_ratio: {self.memory_ratio} but a delay line holds exactly B - 1 "
                    "codes (N = (B - 1) dim(u)); use memory_ratio=1.0, or "
                    "memory_topology='orthogonal' for other sizes"
                )
            if self.activation != "identity" or self.leak != 1.0:
                raise ValueError(
                    f"activation, leak: {self.activation!r}, {self.leak} but a delay line "
                    "copies codes unchanged; use activation='identity', leak=1.0"
                )

    @property
    def n_inputs(self) -> int:
        """Reservoir inputs: ``2C + 1`` (factorised) or ``k + C + dz`` (global, and the code
        ``u`` of kernel-memory)."""
        if self.architecture == "factorised":
            return 2 * self.n_classes + 1
        return self.x_projection + self.n_classes + self.n_neurons

    @property
    def memory_units(self) -> int:
        """Kernel-memory reservoir size ``N = memory_ratio (B - 1) dim(u)`` (at least 1)."""
        return max(1, round(self.memory_ratio * (self.window - 1) * self.n_inputs))

    def esn_config(self) -> ESNConfig:
        """The reservoir of the factorised / global forms, or the orthogonal memory reservoir
        of kernel-memory (the delay line is built by :func:`delay_line_weights`)."""
        memory = self.architecture == "kernel-memory"
        return ESNConfig(
            n_inputs=self.n_inputs,
            n_units=self.memory_units if memory else self.n_units,
            spectral_radius=self.spectral_radius,
            connectivity=self.connectivity,
            input_scaling=self.input_scaling,
            leak=self.leak,
            activation=self.activation,
            recurrent_init="orthogonal" if memory else "sparse_normal",
        )

    @property
    def xi_scale(self) -> float:
        """``xi = xi_hat * xi_scale``: ``2 / ((B - 1)^2 s_z^2)``, ``s_z = sigma_z sqrt(dz)``."""
        s_z2 = self.sigmas[2] ** 2 * self.n_neurons
        return 2.0 / ((self.window - 1) ** 2 * s_z2)


def layer_norm_projection(v: Tensor, n: Tensor) -> Tensor:
    """``v - mean(v) - n mean(v n)``: the part of ``v`` that survives the VJP of a LayerNorm
    (no affine) whose output is ``n`` (up to the ``1 / std`` factor). Only this part of
    ``xi`` changes the weights of a ReLU+LayerNorm layer."""
    v = v - v.mean(-1, keepdim=True)
    return v - n * (v * n).mean(-1, keepdim=True)


@dataclass(frozen=True)
class XiAgreement:
    """``cosine``: mean over samples of cos(pred, exact); ``nrmse``: ``||pred - exact|| /
    ||exact - mean(exact)||`` over all samples and units; ``effective_cosine``: the cosine
    after :func:`layer_norm_projection` (NaN when no activity was given)."""

    cosine: float
    nrmse: float
    effective_cosine: float
    n_samples: int


def xi_agreement(predicted: Tensor, exact: Tensor, z_current: Tensor | None = None) -> XiAgreement:
    """Agreement between predicted and exact xi, both ``(..., dz)``; ``z_current`` is the
    layer's (LayerNorm) output for the same samples, for the effective cosine."""
    if predicted.shape != exact.shape:
        raise ValueError(
            f"predicted, exact: shapes {tuple(predicted.shape)} and {tuple(exact.shape)} differ"
        )
    p = predicted.reshape(-1, predicted.shape[-1]).double()
    e = exact.reshape(-1, exact.shape[-1]).double()
    cos = torch.nn.functional.cosine_similarity(p, e, dim=-1, eps=1e-30).mean()
    nrmse = (p - e).norm() / (e - e.mean(0)).norm().clamp_min(1e-300)
    eff = float("nan")
    if z_current is not None:
        if z_current.shape != predicted.shape:
            raise ValueError(
                f"z_current: shape {tuple(z_current.shape)} differs from xi's "
                f"{tuple(predicted.shape)}"
            )
        n = z_current.reshape(-1, z_current.shape[-1]).double()
        eff = float(
            torch.nn.functional.cosine_similarity(
                layer_norm_projection(p, n), layer_norm_projection(e, n), dim=-1, eps=1e-30
            ).mean()
        )
    return XiAgreement(float(cos), float(nrmse), eff, p.shape[0])


def _layer_norm(h: Tensor) -> Tensor:
    centred = h - h.mean(-1, keepdim=True)
    return centred / torch.sqrt((centred * centred).mean(-1, keepdim=True) + LN_EPS)


def synthetic_streams(
    n_streams: int,
    length: int,
    n_classes: int,
    n_neurons: int,
    x_dim: int,
    sigma_x: float,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    class_strength: float = 1.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """Dataset-free training streams ``(x, y_onehot, z)``, shapes ``(S, T, x_dim)``,
    ``(S, T, C)``, ``(S, T, dz)``.

    Per stream: labels uniform; ``x = s_x (a m_y + b e) / sqrt(x_dim)`` with class means
    ``m ~ N(0, I)``, noise ``e ~ N(0, I)``, ``a ~ U(0, 0.7)``, ``b ~ U(0.3, 0.8)`` and
    ``s_x = sigma_x sqrt(x_dim)`` (kernel values ``K_X`` from about 0.3 to 0.95, the range of
    digits / Fashion-MNIST pixels); ``z = LayerNorm(ReLU(c M_y + E))`` with ``M, E ~ N(0, I)``
    and ``c ~ U(0, class_strength)`` (activity from unrelated to strongly class-driven).
    """
    g = generator
    s, t, c = n_streams, length, n_classes
    labels = torch.randint(0, c, (s, t), generator=g)
    y = torch.nn.functional.one_hot(labels, c).to(dtype)
    a = 0.7 * torch.rand(s, 1, 1, generator=g, dtype=dtype)
    b = 0.3 + 0.5 * torch.rand(s, 1, 1, generator=g, dtype=dtype)
    means_x = torch.randn(s, c, x_dim, generator=g, dtype=dtype)
    x = a * torch.gather(means_x, 1, labels[..., None].expand(s, t, x_dim))
    x = x + b * torch.randn(s, t, x_dim, generator=g, dtype=dtype)
    x = x * sigma_x  # s_x / sqrt(x_dim) = sigma_x
    strength = class_strength * torch.rand(s, 1, 1, generator=g, dtype=dtype)
    means_z = torch.randn(s, c, n_neurons, generator=g, dtype=dtype)
    pre = strength * torch.gather(means_z, 1, labels[..., None].expand(s, t, n_neurons))
    pre = pre + torch.randn(s, t, n_neurons, generator=g, dtype=dtype)
    return x, y, _layer_norm(torch.relu(pre))


def xi_targets(x: Tensor, y_onehot: Tensor, z: Tensor, config: XiModulatorConfig) -> Tensor:
    """Exact xi for every full window of streams ``(..., T, d)``: ``(..., T - B + 1, dz)``;
    entry ``t`` belongs to the window ending at sample ``t + B - 1``."""
    b = config.window

    def windows(a: Tensor) -> Tensor:
        return a.unfold(-2, b, 1).movedim(-1, -2)

    return modulatory_signal(
        windows(x.to(z.dtype)),
        windows(y_onehot.to(z.dtype)),
        windows(z),
        config.gamma,
        config.sigmas,
    )


class XiModulator:
    """A trained xi-modulator (see module doc): reservoir weights, input encoding, readout(s).

    Offline: :meth:`predict` on whole streams. In the loop: :meth:`reset` then :meth:`step`
    once per sample. Predictions are in the units of xi (not ``xi_hat``).
    """

    def __init__(
        self,
        config: XiModulatorConfig,
        weights: ESNWeights,
        readouts: list[RidgeReadout],
        statistics: RidgeReadout | None = None,
    ) -> None:
        self.config = config
        self.weights = weights
        self.readouts = readouts
        self.statistics = statistics
        self._projections: dict[int, Tensor] = {}
        self._state: Tensor | None = None

    # -- encoding ---------------------------------------------------------------------
    def projection(self, x_dim: int) -> Tensor:
        """``P (k, x_dim)``, entries ``N(0, 1/k)`` (seeded by config.seed and ``x_dim``),
        scaled by ``1 / s_x`` so that ``||P (x - x')||^2 ~ ||x - x'||^2 / s_x^2``."""
        if x_dim not in self._projections:
            k = self.config.x_projection
            gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + x_dim)
            p = torch.randn(k, x_dim, generator=gen, dtype=torch.float64) / math.sqrt(k)
            s_x = self.config.sigmas[0] * math.sqrt(x_dim)
            self._projections[x_dim] = p / s_x
        return self._projections[x_dim]

    def encode(self, x: Tensor, y_onehot: Tensor, z: Tensor) -> Tensor:
        """Reservoir input. Factorised: ``(..., dz, 2C + 1)`` = ``[y, y z_i, z_i]`` per neuron;
        global: ``(..., k + C + dz)`` = ``[P x / s_x, y, z]`` (see :meth:`projection`)."""
        if self.config.architecture == "factorised":
            return self._encode(None, y_onehot, z)
        proj = self.projection(x.shape[-1]).to(self.weights.dtype)
        return self._encode(x.to(self.weights.dtype) @ proj.T, y_onehot, z)

    def _encode(self, x_coords: Tensor | None, y_onehot: Tensor, z: Tensor) -> Tensor:
        """Encoding from kernel-normalised input coordinates ``x_coords`` (``||u - u'||^2 =
        ||x - x'||^2 / s_x^2``; unused by the factorised form)."""
        cfg = self.config
        dtype = self.weights.dtype
        y = y_onehot.to(dtype)
        z = z.to(dtype)
        if cfg.architecture == "factorised":
            zi = z.unsqueeze(-1)  # (..., dz, 1)
            yy = y.unsqueeze(-2).expand(*z.shape, cfg.n_classes)
            return torch.cat([yy, yy * zi, zi], -1)
        return torch.cat([x_coords.to(dtype), y, z], -1)

    # -- readout ----------------------------------------------------------------------
    def expand(self, features: Tensor) -> Tensor:
        """With ``window_products``: append the second-order window terms to the features
        ``(..., F)`` of each neuron. The statistics readout decodes the window's class counts
        ``n_k``, the neuron's window sum ``S_i`` and class sums ``M_ki`` (all linear in the
        memory); appended are ``n_k S_i``, ``n_k M_ki`` (k = 1..C) and ``||n||^2 S_i``."""
        if self.statistics is None:
            return features
        c = self.config.n_classes
        stats = self.statistics.predict(features)
        counts, total, per_class = stats[..., :c], stats[..., c : c + 1], stats[..., c + 1 :]
        products = [
            counts * total,
            counts * per_class,
            (counts * counts).sum(-1, keepdim=True) * total,
        ]
        return torch.cat([features, *products], -1)

    def _readout(self, features: Tensor, labels: Tensor) -> Tensor:
        """``xi_hat`` from features ``(..., F)`` (factorised: ``(..., dz, F)``) and the current
        labels ``(...)``."""
        cfg = self.config
        if not cfg.gated:
            out = self.readouts[0].predict(features)
        else:
            w = torch.stack([r.weight for r in self.readouts])  # (C, O, F)
            b = torch.stack([r.bias for r in self.readouts])  # (C, O)
            if cfg.architecture == "factorised":
                wl, bl = w[labels, 0], b[labels, 0]  # (..., F), (...)
                return (features * wl.unsqueeze(-2)).sum(-1) + bl.unsqueeze(-1)
            return (features.unsqueeze(-2) @ w[labels].transpose(-1, -2)).squeeze(-2) + b[labels]
        return out.squeeze(-1) if cfg.architecture == "factorised" else out

    # -- offline ----------------------------------------------------------------------
    def features(self, x: Tensor, y_onehot: Tensor, z: Tensor) -> Tensor:
        """Readout features ``[reservoir state, input]`` (plus the window products, see
        :meth:`expand`) for streams ``(S, T, .)``: factorised ``(S, T, dz, F)``, global
        ``(S, T, N + k + C + dz)``."""
        e = self.encode(x, y_onehot, z)
        if self.config.architecture == "factorised":
            s, t, dz, n_in = e.shape
            flat = e.permute(0, 2, 1, 3).reshape(s * dz, t, n_in)
            states, _ = run_esn(self.weights, flat)
            feats = self.expand(torch.cat([states, flat], -1)).reshape(s, dz, t, -1)
            return feats.permute(0, 2, 1, 3)
        states, _ = run_esn(self.weights, e)
        return torch.cat([states, e], -1)

    def predict(self, x: Tensor, y_onehot: Tensor, z: Tensor) -> Tensor:
        """xi predicted at every sample of streams ``x (S, T, dx)``, ``y (S, T, C)``,
        ``z (S, T, dz)`` (or without the stream dim): ``(S, T, dz)``. The first ``B - 1``
        entries are warm-up (the window is not yet full)."""
        single = z.ndim == 2
        if single:
            x, y_onehot, z = x.unsqueeze(0), y_onehot.unsqueeze(0), z.unsqueeze(0)
        _check_stream(self.config, x, y_onehot, z)
        labels = y_onehot.argmax(-1)
        out = self._readout(self.features(x, y_onehot, z), labels) * self.config.xi_scale
        out = out.to(z.dtype)
        return out.squeeze(0) if single else out

    # -- online -----------------------------------------------------------------------
    def reset(self, n_streams: int = 1) -> None:
        """Zero the reservoir state for ``n_streams`` parallel streams."""
        n_streams = _int(n_streams, "n_streams", 1)
        cfg = self.config
        rows = n_streams * cfg.n_neurons if cfg.architecture == "factorised" else n_streams
        self._state = torch.zeros(rows, cfg.n_units, dtype=self.weights.dtype)

    def step(self, x: Tensor, y_onehot: Tensor, z: Tensor) -> Tensor:
        """Feed one sample per stream (``x (S, dx)``, ``y (S, C)``, ``z (S, dz)``) and return
        xi for it ``(S, dz)``."""
        if self._state is None:
            raise RuntimeError("reset: call reset(n_streams) before step()")
        _check_step_sample(self.config, x, y_onehot, z)
        cfg = self.config
        e = self.encode(x, y_onehot, z)  # (S, dz, n_in) or (S, n_in)
        flat = e.reshape(-1, e.shape[-1])
        if flat.shape[0] != self._state.shape[0]:
            raise ValueError(
                f"x: {x.shape[0]} streams but reset() was called for a different number"
            )
        drive = flat @ self.weights.input.T + self.weights.bias
        self._state = esn_step(self.weights, self._state, drive)
        feats = self.expand(torch.cat([self._state, flat], -1)).reshape(*e.shape[:-1], -1)
        xi_hat = self._readout(feats, y_onehot.argmax(-1))
        return (xi_hat * cfg.xi_scale).to(z.dtype)


def _check_step_sample(cfg: XiModulatorConfig, x: Tensor, y: Tensor, z: Tensor) -> None:
    """One sample per stream for ``step``: ``(S, d)`` tensors, then :func:`_check_stream`."""
    for name, a in (("x", x), ("y_onehot", y), ("z", z)):
        if not isinstance(a, Tensor):
            raise TypeError(f"{name}: expected a float torch.Tensor")
        if a.ndim != 2:
            raise ValueError(
                f"{name}: shape {tuple(a.shape)}; step() takes (S, d) tensors with one row per "
                f"stream (for one stream pass {name}.unsqueeze(0))"
            )
    _check_stream(cfg, x.unsqueeze(1), y.unsqueeze(1), z.unsqueeze(1))


def _check_stream(cfg: XiModulatorConfig, x: Tensor, y: Tensor, z: Tensor) -> None:
    for name, a in (("x", x), ("y_onehot", y), ("z", z)):
        if not isinstance(a, Tensor) or not a.is_floating_point():
            raise TypeError(f"{name}: expected a float torch.Tensor")
    if z.shape[-1] != cfg.n_neurons:
        raise ValueError(
            f"z: {z.shape[-1]} units but the modulator was trained for n_neurons="
            f"{cfg.n_neurons}; fit one with XiModulatorConfig(n_neurons={z.shape[-1]})"
        )
    if y.shape[-1] != cfg.n_classes:
        raise ValueError(
            f"y_onehot: {y.shape[-1]} classes but the modulator has n_classes={cfg.n_classes}"
        )
    if x.shape[:-1] != z.shape[:-1] or y.shape[:-1] != z.shape[:-1]:
        raise ValueError(
            f"x, y_onehot, z: leading shapes {tuple(x.shape[:-1])}, {tuple(y.shape[:-1])}, "
            f"{tuple(z.shape[:-1])} differ"
        )


# -- kernel-memory architecture ------------------------------------------------------------


def distance_preserving_projection(k: int, x_dim: int, generator: torch.Generator) -> Tensor:
    """A ``(k, x_dim)`` map that keeps distances: for ``k >= x_dim`` an isometry (orthonormal
    columns from the QR of a Gaussian matrix, ``||P v|| = ||v||`` exactly); for ``k < x_dim``
    a Gaussian random projection with entries ``N(0, 1/k)``, ``E ||P v||^2 = ||v||^2`` and
    relative distortion about ``sqrt(2 / k)`` (Johnson & Lindenstrauss 1984)."""
    k, x_dim = _int(k, "k", 1), _int(x_dim, "x_dim", 1)
    gauss = torch.randn(k, x_dim, generator=generator, dtype=torch.float64)
    if k >= x_dim:
        q, r = torch.linalg.qr(gauss)
        return q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    return gauss / math.sqrt(k)


def delay_line_weights(
    code_dim: int, n_slots: int, dtype: torch.dtype = torch.float64
) -> ESNWeights:
    """Delay-line reservoir (the DLR of Rodan & Tino 2011, IEEE TNN 22(1), unit weights), one
    line of ``n_slots`` units per code dimension: ``x_{t+1} = [u_t, x_t[: -code_dim]]``, i.e.
    block ``d`` of the state after input ``t`` holds ``u_{t-d}`` exactly. ``N = n_slots
    code_dim`` linear units; ``W`` is the block shift (nilpotent: older codes leave the line)."""
    code_dim, n_slots = _int(code_dim, "code_dim", 1), _int(n_slots, "n_slots", 1)
    n = code_dim * n_slots
    recurrent = torch.zeros(n, n, dtype=dtype)
    recurrent[code_dim:, : n - code_dim] = torch.eye(n - code_dim, dtype=dtype)
    inputs = torch.zeros(n, code_dim, dtype=dtype)
    inputs[:code_dim] = torch.eye(code_dim, dtype=dtype)
    return ESNWeights(
        recurrent=recurrent,
        input=inputs,
        feedback=torch.zeros(n, 0, dtype=dtype),
        bias=torch.zeros(n, dtype=dtype),
        activation="identity",
    )


def _kernel_row(codes: Tensor) -> Tensor:
    """Kernel units of one block: ``exp(-||u_j - u_B||^2 / 2)`` for every sample ``j`` of the
    window ``(..., B, d)`` against the current (last) one; ``(..., B)``."""
    return torch.exp(-0.5 * ((codes - codes[..., -1:, :]) ** 2).sum(-1))


def kernel_stage_xi(
    window_codes: Tensor,
    block_sizes: tuple[int, int, int],
    gamma: float,
    sigma_z: float,
    method: XiMethod = "row-centred",
) -> Tensor:
    """xi of the current (last) sample from a window of codes ``u_j = [x_j / s_x, y_j / s_y,
    z_j / s_z]`` ``(..., B, k + C + dz)`` (blocks of ``block_sizes``), every kernel being
    ``exp(-||u_B - u_j||^2 / 2)`` on its block. ``"row-centred"``: ``w_j = A[B, j] - mean_k
    A[B, k]`` with ``A[B, j] = K_X[B, j] - gamma K_Y[B, j]`` (current row only, Daruwalla's
    ``globalerror.jl``, reference 1.3a); ``"exact"`` / ``"diagonal"``: the pairwise kernels and
    :func:`~plastix.plasticity.hsic.modulatory_weights`. Then, with ``z_j = s_z u^z_j``,
    ``xi = -(2 / s_z^2) sum_j w_j K_Z[B, j] (z_B - z_j) / (B - 1)^2``
    (:func:`~plastix.plasticity.hsic.xi_from_weights`); ``s_z = sigma_z sqrt(dz)``."""
    if method not in XI_METHODS:
        raise ValueError(f"method: {method!r} is not one of {XI_METHODS}")
    kx_dim, c, dz = block_sizes
    if window_codes.shape[-1] != kx_dim + c + dz:
        raise ValueError(
            f"window_codes: last dim {window_codes.shape[-1]} is not the sum of block_sizes "
            f"{block_sizes}"
        )
    ux, uy, uz = window_codes.split([kx_dim, c, dz], -1)
    if method == "row-centred":
        row = _kernel_row(ux) - gamma * _kernel_row(uy)
        weights = row - row.mean(-1, keepdim=True)
    else:
        weights = modulatory_weights(
            gaussian_kernel(ux, 1.0, scale_by_dim=False),
            gaussian_kernel(uy, 1.0, scale_by_dim=False),
            gamma,
            method,
        )
    return xi_from_weights(weights, uz * (sigma_z * math.sqrt(dz)), sigma_z)


class KernelMemoryModulator:
    """Kernel-memory xi-modulator (module doc): a linear working-memory reservoir whose ridge
    readout decodes the last ``B - 1`` sample codes, and fixed kernel units that compute xi
    from the decoded window (:func:`kernel_stage_xi`). Same interface as
    :class:`XiModulator`: :meth:`predict` offline, :meth:`reset` / :meth:`step` in the loop.

    The xi of step ``t`` uses the memory state *before* ``u_t`` enters (it holds ``u_{t-1} ..
    u_{t-B+1}``); then ``u_t`` is written: ``r_t = f(W r_{t-1} + W_in u_t)``.
    """

    def __init__(self, config: XiModulatorConfig, weights: ESNWeights, memory: RidgeReadout):
        if config.architecture != "kernel-memory":
            raise ValueError(
                f"config.architecture: {config.architecture!r}; KernelMemoryModulator needs "
                "'kernel-memory' (use XiModulator for the others)"
            )
        self.config = config
        self.weights = weights
        self.memory = memory
        self._projections: dict[int, Tensor] = {}
        self._state: Tensor | None = None

    @property
    def block_sizes(self) -> tuple[int, int, int]:
        cfg = self.config
        return cfg.x_projection, cfg.n_classes, cfg.n_neurons

    def projection(self, x_dim: int) -> Tensor:
        """``P / s_x`` ``(k, x_dim)``: :func:`distance_preserving_projection` (seeded by
        config.seed and ``x_dim``) over ``s_x = sigma_x sqrt(x_dim)``."""
        if x_dim not in self._projections:
            gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + x_dim)
            p = distance_preserving_projection(self.config.x_projection, x_dim, gen)
            self._projections[x_dim] = p / (self.config.sigmas[0] * math.sqrt(x_dim))
        return self._projections[x_dim]

    def encode(self, x: Tensor, y_onehot: Tensor, z: Tensor) -> Tensor:
        """Codes ``u = [P x / s_x, y / s_y, z / s_z]`` ``(..., k + C + dz)``."""
        dtype = self.weights.dtype
        proj = self.projection(x.shape[-1]).to(dtype)
        return self._code(x.to(dtype) @ proj.T, y_onehot.to(dtype), z.to(dtype))

    def _code(self, x_coords: Tensor, y: Tensor, z: Tensor) -> Tensor:
        """Codes from input coordinates already divided by ``s_x``."""
        cfg = self.config
        s_y = cfg.sigmas[1] * math.sqrt(cfg.n_classes)
        s_z = cfg.sigmas[2] * math.sqrt(cfg.n_neurons)
        return torch.cat([x_coords, y / s_y, z / s_z], -1)

    def decode(self, states: Tensor) -> Tensor:
        """Remembered codes ``(..., B - 1, dim(u))``, oldest first, from memory states
        ``(..., N)``."""
        out = self.memory.predict(states)
        return out.reshape(*states.shape[:-1], self.config.window - 1, self.config.n_inputs)

    def _xi(self, memory_states: Tensor, codes: Tensor) -> Tensor:
        cfg = self.config
        window = torch.cat([self.decode(memory_states), codes.unsqueeze(-2)], -2)
        return kernel_stage_xi(window, self.block_sizes, cfg.gamma, cfg.sigmas[2], cfg.xi_method)

    def predict(self, x: Tensor, y_onehot: Tensor, z: Tensor) -> Tensor:
        """xi at every sample of streams ``(S, T, .)`` (or ``(T, .)``): ``(S, T, dz)``; the
        first ``B - 1`` entries are warm-up (the memory is not yet full)."""
        single = z.ndim == 2
        if single:
            x, y_onehot, z = x.unsqueeze(0), y_onehot.unsqueeze(0), z.unsqueeze(0)
        _check_stream(self.config, x, y_onehot, z)
        codes = self.encode(x, y_onehot, z)
        states, _ = run_esn(self.weights, codes)
        before = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], 1)
        out = self._xi(before, codes).to(z.dtype)
        return out.squeeze(0) if single else out

    def reset(self, n_streams: int = 1) -> None:
        """Empty the memory of ``n_streams`` parallel streams."""
        n_streams = _int(n_streams, "n_streams", 1)
        self._state = torch.zeros(n_streams, self.weights.n_units, dtype=self.weights.dtype)

    def step(self, x: Tensor, y_onehot: Tensor, z: Tensor) -> Tensor:
        """xi for one sample per stream (``x (S, dx)``, ``y (S, C)``, ``z (S, dz)``), then
        write the sample into the memory; returns ``(S, dz)``."""
        if self._state is None:
            raise RuntimeError("reset: call reset(n_streams) before step()")
        _check_step_sample(self.config, x, y_onehot, z)
        if x.shape[0] != self._state.shape[0]:
            raise ValueError(
                f"x: {x.shape[0]} streams but reset() was called for {self._state.shape[0]}"
            )
        codes = self.encode(x, y_onehot, z)
        xi = self._xi(self._state, codes)
        drive = codes @ self.weights.input.T + self.weights.bias
        self._state = esn_step(self.weights, self._state, drive)
        return xi.to(z.dtype)


def _block_rms(codes: Tensor, block_sizes: tuple[int, int, int]) -> Tensor:
    """Root-mean-square entry of each block of codes ``(..., D)``, broadcast to ``(D,)``."""
    parts = codes.split(list(block_sizes), -1)
    return torch.cat([p.square().mean().sqrt().expand(p.shape[-1]) for p in parts])


def training_streams(
    config: XiModulatorConfig, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """One batch of the fits' training streams: :func:`synthetic_streams` with the sizes,
    ``x_projection``, ``sigma_x`` and ``class_strength`` of ``config``."""
    return synthetic_streams(
        config.n_streams,
        config.stream_length,
        config.n_classes,
        config.n_neurons,
        config.x_projection,
        config.sigmas[0],
        generator,
        class_strength=config.class_strength,
    )


def fit_kernel_memory_modulator(config: XiModulatorConfig) -> KernelMemoryModulator:
    """Build the memory reservoir (delay line, or orthogonal drawn with seed ``config.seed``)
    and fit the ridge readout that decodes ``u_{t-B+2} .. u_t`` from the state after ``u_t``,
    on ``n_chunks x n_streams`` synthetic streams coded like real samples (the synthetic
    inputs already live in ``x_projection`` coordinates). The codes are jittered by
    ``N(0, (MEMORY_JITTER rms)^2)`` per block so that the readout sees every direction
    (LayerNorm outputs sum to 0 and one-hot labels to 1: without jitter those directions
    would be unseen and decoded as constants). No xi target is used."""
    b, dim = config.window, config.n_inputs
    if config.memory_topology == "delay-line":
        weights = delay_line_weights(dim, b - 1)
    else:
        weights = init_esn_weights(config.esn_config(), seed=config.seed, dtype=torch.float64)
    memory = RidgeReadout(weights.n_units, (b - 1) * dim, config.memory_ridge)
    modulator = KernelMemoryModulator(config, weights, memory)
    gen = torch.Generator().manual_seed(config.seed + 1)
    k = config.x_projection
    for _ in range(config.n_chunks):
        x, y, z = training_streams(config, gen)
        codes = modulator._code(x / (config.sigmas[0] * math.sqrt(k)), y, z)
        codes = codes + MEMORY_JITTER * _block_rms(codes, modulator.block_sizes) * torch.randn(
            codes.shape, generator=gen, dtype=codes.dtype
        )
        states, _ = run_esn(weights, codes)
        held = codes.unfold(1, b - 1, 1).movedim(-1, -2).flatten(-2)  # (S, T - B + 2, (B-1)D)
        memory.accumulate(states[:, b - 2 :], held)
    memory.solve()
    return modulator


def _window_statistics(y: Tensor, z: Tensor, window: int) -> Tensor:
    """Exact ``[n (C), S_i, M_i (C)]`` over each full window of streams ``y (S, T, C)``,
    ``z (S, T, k)``: ``(S, T - B + 1, k, 2C + 1)`` (see :meth:`XiModulator.expand`)."""
    yw = y.unfold(1, window, 1)  # (S, T', C, B)
    zw = z.unfold(1, window, 1)  # (S, T', k, B)
    counts = yw.sum(-1)  # (S, T', C)
    total = zw.sum(-1)  # (S, T', k)
    per_class = torch.einsum("stcb,stkb->stkc", yw, zw)
    k = z.shape[-1]
    return torch.cat(
        [counts.unsqueeze(2).expand(-1, -1, k, -1), total.unsqueeze(-1), per_class], -1
    )


def fit_xi_modulator(config: XiModulatorConfig) -> XiModulator | KernelMemoryModulator:
    """Draw the reservoir (seed ``config.seed``) and fit its ridge readout(s) on
    ``n_chunks x n_streams`` synthetic streams (:func:`synthetic_streams`), targets the exact
    ``xi_hat`` of every full window. With ``window_products`` one more batch of streams first
    fits the statistics readout (targets: the exact window statistics). The kernel-memory
    architecture is built by :func:`fit_kernel_memory_modulator`."""
    if not isinstance(config, XiModulatorConfig):
        raise TypeError(f"config: expected XiModulatorConfig, got {type(config).__name__}")
    if config.architecture == "kernel-memory":
        return fit_kernel_memory_modulator(config)
    weights = init_esn_weights(config.esn_config(), seed=config.seed, dtype=torch.float64)
    n_features = config.n_units + config.n_inputs
    statistics = None
    if config.window_products:
        statistics = RidgeReadout(n_features, 2 * config.n_classes + 1, config.ridge)
        n_features += 2 * config.n_classes + 1
    outputs = 1 if config.architecture == "factorised" else config.n_neurons
    n_readouts = config.n_classes if config.gated else 1
    readouts = [RidgeReadout(n_features, outputs, config.ridge) for _ in range(n_readouts)]
    modulator = XiModulator(config, weights, readouts)
    gen = torch.Generator().manual_seed(config.seed + 1)
    b = config.window
    x_dim = config.x_projection
    stages = ["statistics"] * (statistics is not None) + ["readout"] * config.n_chunks
    for stage in stages:
        x, y, z = training_streams(config, gen)
        if config.architecture == "factorised":
            k = min(config.train_neurons, config.n_neurons)
            pick = torch.randperm(config.n_neurons, generator=gen)[:k]
            e = modulator._encode(None, y, z)[:, :, pick]  # (S, T, k, n_in)
            s, t, _, n_in = e.shape
            flat = e.permute(0, 2, 1, 3).reshape(s * k, t, n_in)
            states, _ = run_esn(weights, flat)
            feats = torch.cat([states, flat], -1).reshape(s, k, t, -1).permute(0, 2, 1, 3)
            feats = feats[:, b - 1 :]  # (S, T', k, F)
            if stage == "statistics":
                statistics.accumulate(feats, _window_statistics(y, z[..., pick], b))
                statistics.solve()
                modulator.statistics = statistics
                continue
            feats = modulator.expand(feats)
            tgt = (xi_targets(x, y, z, config) / config.xi_scale)[..., pick].unsqueeze(-1)
            groups = y[:, b - 1 :].argmax(-1).unsqueeze(-1).expand(-1, -1, k)
        else:
            # synthetic x already lives in the k projected dimensions: normalise by s_x
            x_enc = modulator._encode(x / (config.sigmas[0] * math.sqrt(x_dim)), y, z)
            states, _ = run_esn(weights, x_enc)
            feats = torch.cat([states, x_enc], -1)[:, b - 1 :]
            tgt = xi_targets(x, y, z, config) / config.xi_scale  # xi_hat (S, T', dz)
            groups = y[:, b - 1 :].argmax(-1)
        if config.gated:
            for c in range(config.n_classes):
                mask = groups == c
                if bool(mask.any()):
                    readouts[c].accumulate(feats[mask], tgt[mask])
        else:
            readouts[0].accumulate(feats, tgt)
    for r in readouts:
        if r.count == 0:
            raise ValueError(
                "n_chunks: too little training data, a label never occurred; raise n_chunks "
                "or stream_length"
            )
        r.solve()
    return modulator
