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

from plastix.plasticity.hsic import modulatory_signal

from .esn import ESNConfig, ESNWeights, esn_step, init_esn_weights, run_esn
from .readouts import RidgeReadout

Architecture = Literal["factorised", "global"]
ARCHITECTURES: tuple[str, ...] = ("factorised", "global")
LN_EPS = 1e-6

__all__ = [
    "ARCHITECTURES",
    "XiAgreement",
    "XiModulator",
    "XiModulatorConfig",
    "fit_xi_modulator",
    "layer_norm_projection",
    "synthetic_streams",
    "xi_agreement",
    "xi_targets",
]


def _int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return value


def _real(value, name: str, low: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
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
    ``class_strength`` bounds how class-driven the synthetic activity is."""

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
    seed: int = 0

    def __post_init__(self) -> None:
        _int(self.n_neurons, "n_neurons", 1)
        _int(self.n_classes, "n_classes", 2)
        _int(self.window, "window", 2)
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
                "architecture only; set window_products=False for 'global'"
            )
        _int(self.n_units, "n_units", 1)
        _int(self.x_projection, "x_projection", 1)
        _real(self.ridge, "ridge")
        _int(self.n_streams, "n_streams", 1)
        _int(self.n_chunks, "n_chunks", 1)
        _int(self.train_neurons, "train_neurons", 1)
        _real(self.class_strength, "class_strength")
        _int(self.seed, "seed", 0)
        if self.stream_length < self.window + 1 or isinstance(self.stream_length, bool):
            raise ValueError(
                f"stream_length: {self.stream_length!r} must be an int > window = {self.window}"
            )
        # the reservoir's own checks (radius, leak, connectivity, scaling, activation)
        self.esn_config()

    @property
    def n_inputs(self) -> int:
        """Reservoir inputs: ``2C + 1`` (factorised) or ``k + C + dz`` (global)."""
        if self.architecture == "factorised":
            return 2 * self.n_classes + 1
        return self.x_projection + self.n_classes + self.n_neurons

    def esn_config(self) -> ESNConfig:
        return ESNConfig(
            n_inputs=self.n_inputs,
            n_units=self.n_units,
            spectral_radius=self.spectral_radius,
            connectivity=self.connectivity,
            input_scaling=self.input_scaling,
            leak=self.leak,
            activation=self.activation,
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
        self._check_stream(x, y_onehot, z)
        labels = y_onehot.argmax(-1)
        out = self._readout(self.features(x, y_onehot, z), labels) * self.config.xi_scale
        out = out.to(z.dtype)
        return out.squeeze(0) if single else out

    # -- online -----------------------------------------------------------------------
    def reset(self, n_streams: int = 1) -> None:
        """Zero the reservoir state for ``n_streams`` parallel streams."""
        _int(n_streams, "n_streams", 1)
        cfg = self.config
        rows = n_streams * cfg.n_neurons if cfg.architecture == "factorised" else n_streams
        self._state = torch.zeros(rows, cfg.n_units, dtype=self.weights.dtype)

    def step(self, x: Tensor, y_onehot: Tensor, z: Tensor) -> Tensor:
        """Feed one sample per stream (``x (S, dx)``, ``y (S, C)``, ``z (S, dz)``) and return
        xi for it ``(S, dz)``."""
        if self._state is None:
            raise RuntimeError("reset: call reset(n_streams) before step()")
        self._check_stream(x.unsqueeze(1), y_onehot.unsqueeze(1), z.unsqueeze(1))
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

    def _check_stream(self, x: Tensor, y: Tensor, z: Tensor) -> None:
        cfg = self.config
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


def fit_xi_modulator(config: XiModulatorConfig) -> XiModulator:
    """Draw the reservoir (seed ``config.seed``) and fit its ridge readout(s) on
    ``n_chunks x n_streams`` synthetic streams (:func:`synthetic_streams`), targets the exact
    ``xi_hat`` of every full window. With ``window_products`` one more batch of streams first
    fits the statistics readout (targets: the exact window statistics)."""
    if not isinstance(config, XiModulatorConfig):
        raise TypeError(f"config: expected XiModulatorConfig, got {type(config).__name__}")
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
        x, y, z = synthetic_streams(
            config.n_streams,
            config.stream_length,
            config.n_classes,
            config.n_neurons,
            x_dim,
            config.sigmas[0],
            gen,
            class_strength=config.class_strength,
        )
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
