"""Reservoir-in-the-loop IB training: the rate IB three-factor rule of
:class:`plastix.bridges.ib_training.IBTrainer` with the global signal xi of every hidden layer
produced by a xi-modulator reservoir (:mod:`plastix.reservoirs.xi_modulator`) instead of being
computed exactly from a buffer of the last ``B`` samples.

The modulators are trained a priori on synthetic streams (no dataset), one per hidden layer
(sized to its width), before the network learns. During training the stream is the same
shuffled sliding-window stream as the exact rule (``window_shift = 1``): at every step the
current sample ``(x_B, y_B)`` and each layer's current activity ``z_B`` enter the layer's
reservoir, whose readout gives ``xi`` for that layer; the update is
``dW = (xi * f'(a_B)) outer p_B`` (through the LayerNorm for ``xi_site = "norm"``). The
readout layer is trained by cross-entropy over the window, as in the exact rule. The published
code never ran the reservoir in the loop on MNIST-sized tasks (reference section 2).

Controls: ``xi_source = "zero"`` keeps the hidden layers at their initial weights (no
update at all, not even weight decay) so the readout alone learns: the accuracy the
hidden-layer rule must beat. ``xi_source = "labels"`` uses the exact xi computed from the
labels alone (:func:`label_only_xi`: ``K_X`` dropped, ``K_Z = 1``), the information a
factorised modulator has (it sees neither x nor the other neurons; it can learn only the
average effect of ``K_X`` and ``K_Z``): the reference point for that design.
``xi_source = "no-kz"`` keeps ``K_X`` and drops only ``K_Z``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from plastix.bridges.ib_training import (
    AdamWSettings,
    EpochStats,
    IBRule,
    IBTrainer,
    check_window_data,
    readout_gradients,
    stream_order,
)
from plastix.bridges.rate_networks import DenseBlock, LeakyRateMLP, RateNetwork
from plastix.plasticity.hsic import gaussian_kernel, modulatory_weights, xi_from_weights
from plastix.reservoirs.xi_modulator import (
    XiModulator,
    XiModulatorConfig,
    fit_xi_modulator,
    xi_agreement,
)

XiSource = Literal["reservoir", "zero", "labels", "no-kz"]
XI_SOURCES: tuple[str, ...] = ("reservoir", "zero", "labels", "no-kz")

__all__ = ["XI_SOURCES", "ReservoirIBTrainer", "fit_layer_modulators", "label_only_xi"]


def label_only_xi(
    y_onehot: Tensor, z: Tensor, gamma: float, sigmas, x: Tensor | None = None
) -> Tensor:
    """xi of the current (last) sample of a window with ``K_Z = 1`` and, unless ``x`` is
    given, the input kernel dropped: ``w = (H (K_X - gamma K_Y) H)[B, :]``,
    ``xi = -(2 / s_z^2) sum_j w_j (z_B - z_j) / (B - 1)^2`` (Daruwalla & Lipasti 2024,
    reference 1.2, without ``K_Z`` and optionally ``K_X``).
    y_onehot ``(B, C)``, z ``(B, dz)``, x ``(B, dx)``; returns ``(dz,)``."""
    window = z.shape[-2]
    ky = gaussian_kernel(y_onehot.to(z.dtype), sigmas[1])
    kx = torch.zeros_like(ky) if x is None else gaussian_kernel(x.to(z.dtype), sigmas[0])
    w = modulatory_weights(kx, ky, gamma, "exact")
    s_z2 = sigmas[2] ** 2 * z.shape[-1]
    weighted = z[-1] * w.sum() - w @ z
    return weighted * (-2.0 / (s_z2 * (window - 1) ** 2))


def _hidden_widths(net: RateNetwork) -> list[int]:
    widths = []
    for i, block in enumerate(net.blocks):
        if not isinstance(block, DenseBlock):
            raise TypeError(
                f"net.blocks[{i}]: {type(block).__name__} is not a dense block; the reservoir "
                "modulator supports RateMLP networks"
            )
        widths.append(block.linear.out_features)
    return widths


def fit_layer_modulators(
    net: RateNetwork, rule: IBRule, base: XiModulatorConfig | None = None
) -> list[XiModulator]:
    """One xi-modulator per hidden layer of ``net``, fitted on synthetic streams; window,
    gamma and sigmas come from ``rule``, the class count from the readout, the width from
    the layer. Layer ``l`` uses seed ``base.seed + l``."""
    if not isinstance(rule, IBRule):
        raise TypeError(f"rule: expected an IBRule, got {type(rule).__name__}")
    if rule.xi_method != "exact":
        raise ValueError(
            f"rule.xi_method: {rule.xi_method!r}; the modulator is trained on the exact xi"
        )
    base = base or XiModulatorConfig()
    if not isinstance(base, XiModulatorConfig):
        raise TypeError(f"base: expected XiModulatorConfig, got {type(base).__name__}")
    modulators = []
    for layer, width in enumerate(_hidden_widths(net)):
        cfg = replace(
            base,
            n_neurons=width,
            n_classes=net.readout.out_features,
            window=rule.window,
            gamma=rule.gamma,
            sigmas=tuple(rule.sigmas),
            seed=base.seed + layer,
        )
        modulators.append(fit_xi_modulator(cfg))
    return modulators


class ReservoirIBTrainer(IBTrainer):
    """IB rule with xi from per-layer reservoirs (see module doc). ``modulators`` must match
    the hidden layers (width, classes, window and kernels of ``rule``)."""

    method = "ib-reservoir"

    def __init__(
        self,
        net: RateNetwork,
        modulators: list[XiModulator] | None,
        rule: IBRule | None = None,
        optim: AdamWSettings | None = None,
        xi_source: XiSource = "reservoir",
    ) -> None:
        if isinstance(net, LeakyRateMLP):
            raise TypeError("net: the reservoir loop supports RateMLP (not LeakyRateMLP) networks")
        if xi_source not in XI_SOURCES:
            raise ValueError(f"xi_source: {xi_source!r} is not one of {XI_SOURCES}")
        rule = rule or IBRule()
        super().__init__(net, rule, optim)
        widths = _hidden_widths(net)
        self.xi_source = xi_source
        if xi_source == "reservoir":
            if modulators is None or len(modulators) != len(widths):
                raise ValueError(
                    f"modulators: need one per hidden layer ({len(widths)}); build them with "
                    "fit_layer_modulators(net, rule)"
                )
            for layer, (mod, width) in enumerate(zip(modulators, widths, strict=True)):
                cfg = mod.config
                expected = (width, self.n_classes, rule.window, rule.gamma, tuple(rule.sigmas))
                got = (cfg.n_neurons, cfg.n_classes, cfg.window, cfg.gamma, tuple(cfg.sigmas))
                if got != expected:
                    raise ValueError(
                        f"modulators[{layer}]: (n_neurons, n_classes, window, gamma, sigmas) = "
                        f"{got} but the network and rule need {expected}"
                    )
        elif modulators is not None:
            raise ValueError(
                f"modulators: xi_source={xi_source!r} does not use reservoirs; pass None"
            )
        self.modulators = modulators or []
        self.track_agreement = False
        self._agreement: list[list[tuple[float, float]]] = []

    def agreement(self) -> list[dict[str, float]]:
        """Per hidden layer, over the steps of the last epoch run with ``track_agreement =
        True``: mean cosine between the reservoir's xi and the exact one, the same after the
        LayerNorm projection (``effective_cosine``), and between the two weight updates
        (``update_cosine``: xi pulled back through LayerNorm and the ReLU mask, the factor
        that multiplies the presynaptic rates)."""
        out = []
        for rows in self._agreement:
            t = torch.tensor(rows, dtype=torch.float64).nanmean(0)
            out.append(
                {
                    "cosine": float(t[0]),
                    "effective_cosine": float(t[1]),
                    "update_cosine": float(t[2]),
                }
            )
        return out

    def _record_agreement(self, traces, xis, xw: Tensor, yw: Tensor) -> None:
        sx, sy, sz = self.rule.sigmas
        weights = modulatory_weights(
            gaussian_kernel(xw.flatten(1), sx), gaussian_kernel(yw, sy), self.rule.gamma, "exact"
        )
        for layer, (trace, xi) in enumerate(zip(traces, xis, strict=True)):
            z = trace.z(self.rule.xi_site)
            exact = xi_from_weights(weights, z, sz)
            a = xi_agreement(xi[None], exact[None], z[-1:])
            block = self.net.blocks[layer]
            site = self.rule.xi_site
            delta = block.local_cotangent(trace, xi, site).flatten()
            delta_exact = block.local_cotangent(trace, exact, site).flatten()
            norms = delta.norm() * delta_exact.norm()
            update = float(delta @ delta_exact / norms) if norms > 0 else float("nan")
            self._agreement[layer].append((a.cosine, a.effective_cosine, update))

    def _layer_xis(self, traces, x_current: Tensor, y_current: Tensor) -> list[Tensor]:
        """Feed the current sample to every layer's reservoir; returns xi per layer."""
        site = self.rule.xi_site
        xis = []
        for mod, trace in zip(self.modulators, traces, strict=True):
            z = trace.z(site)[-1:].double()
            xis.append(mod.step(x_current, y_current, z)[0].to(trace.a.dtype))
        return xis

    def train_epoch(
        self, x: Tensor, y: Tensor, generator: torch.Generator | None = None
    ) -> EpochStats:
        """One pass over a shuffled stream; the reservoirs are reset and fed the ``B - 1``
        samples that precede the first window before any update."""
        check_window_data(x, y, self.n_classes, self.window)
        n, window = x.shape[0], self.window
        order = stream_order(n, window, generator)
        site = self.rule.xi_site
        start = time.perf_counter()
        for mod in self.modulators:
            mod.reset(1)
        self._agreement = [[] for _ in self.modulators]
        x_flat = x.flatten(1).double()
        y_onehot = self._onehot(y)
        with torch.no_grad():
            for t in range(window - 1 if self.modulators else 0):  # fill the working memory
                traces, _ = self.net.trace(x[order[t : t + 1]])
                idx = order[t : t + 1]
                self._layer_xis(traces, x_flat[idx], y_onehot[idx].double())
            loss_sum = 0.0
            for t in range(n):
                idx = order[t : t + window]
                xw, yw = x[idx], y_onehot[idx]
                traces, logits = self.net.trace(xw)
                loss_sum += float(F.cross_entropy(logits, y[idx]))
                grads: list[Tensor | None] = []
                if self.xi_source in ("labels", "no-kz"):
                    xk = xw.flatten(1) if self.xi_source == "no-kz" else None
                    for block, trace in zip(self.net.blocks, traces, strict=True):
                        z = trace.z(site)
                        xi = label_only_xi(yw, z, self.rule.gamma, self.rule.sigmas, xk)
                        grads.extend(block.three_factor_grads(trace, xi, site))
                elif self.xi_source == "reservoir":
                    cur = idx[-1:]
                    xis = self._layer_xis(traces, x_flat[cur], y_onehot[cur].double())
                    if self.track_agreement:
                        self._record_agreement(traces, xis, xw, yw)
                    for block, trace, xi in zip(self.net.blocks, traces, xis, strict=True):
                        grads.extend(block.three_factor_grads(trace, xi, site))
                else:
                    for block in self.net.blocks:  # grad None: AdamW leaves them untouched
                        grads.extend(None for _ in block.parameters())
                grads.extend(readout_gradients(logits, yw, traces[-1].n.flatten(1), 1.0))
                self._apply(grads)
        return EpochStats(n, time.perf_counter() - start, n, loss_sum / n)
