"""Rate-based networks for the IB Hebbian rule and its baselines (torch).

Blocks follow the released code of Daruwalla & Lipasti (2024, ``projectlib/models``): a hidden
block is ``affine map -> ReLU -> [pool] -> LayerNorm (no affine)``; the readout is a plain
``Linear``. Each block exposes the pieces a layer-local learning rule needs (its input ``p``,
pre-activation ``a``, ReLU output ``h`` and normalised output ``n``) and its three-factor
weight change for the current sample (:meth:`DenseBlock.three_factor_grads`).

The leaky-integrator variant (:class:`LeakyRateMLP`, the JAX ``LIFMLPCell``) steps
``u <- u + (dt / tau) (W p + b - u)`` for ``T`` steps per sample with ``r = u``; its output is
the readout averaged over the second half of the steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plastix.scalars import is_finite_real, is_integer

XiSite = Literal["relu", "norm"]
XI_SITES: tuple[str, ...] = ("relu", "norm")
LN_EPS = 1e-6

__all__ = [
    "XI_SITES",
    "BlockTrace",
    "ConvBlock",
    "DenseBlock",
    "LeakyIntegration",
    "LeakyRateMLP",
    "RateCNN",
    "RateMLP",
    "RateNetwork",
    "layer_norm_vjp",
]


def _check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    if not is_integer(value) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def _layer_norm(h: Tensor, dims: int) -> tuple[Tensor, Tensor]:
    """LayerNorm without affine over the last ``dims`` dimensions; returns ``(n, std)``."""
    axes = tuple(range(-dims, 0))
    mean = h.mean(axes, keepdim=True)
    centred = h - mean
    std = torch.sqrt((centred * centred).mean(axes, keepdim=True) + LN_EPS)
    return centred / std, std


def layer_norm_vjp(n: Tensor, std: Tensor, cotangent: Tensor, dims: int = 1) -> Tensor:
    """VJP of LayerNorm (no affine) ``n = (h - mean h) / std h``:
    ``dh = (g - mean g - n mean(g n)) / std`` over the last ``dims`` dimensions."""
    axes = tuple(range(-dims, 0))
    g = cotangent
    return (g - g.mean(axes, keepdim=True) - n * (g * n).mean(axes, keepdim=True)) / std


@dataclass
class BlockTrace:
    """What one hidden block computed for a window: input ``p``, pre-activation ``a``, ReLU
    output ``h``, normalised output ``n`` (the next block's input) and LayerNorm's ``std``."""

    p: Tensor
    a: Tensor
    h: Tensor
    n: Tensor
    std: Tensor | None

    def z(self, site: XiSite) -> Tensor:
        """The activity whose kernel enters xi, flattened to ``(B, dz)``."""
        return (self.h if site == "relu" else self.n).flatten(1)


class DenseBlock(nn.Module):
    """``a = W p + b``, ``h = ReLU(a)``, ``n = LayerNorm(h)`` (no affine)."""

    def __init__(self, n_in: int, n_out: int, layer_norm: bool = True):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.layer_norm = layer_norm

    @property
    def weight_gain(self) -> float:
        return 1.0

    def pre_activation(self, p: Tensor) -> Tensor:
        return self.linear(p)

    def finish(self, p: Tensor, a: Tensor) -> BlockTrace:
        h = torch.relu(a)
        if self.layer_norm:
            n, std = _layer_norm(h, 1)
            return BlockTrace(p, a, h, n, std)
        return BlockTrace(p, a, h, h, None)

    def forward(self, p: Tensor) -> Tensor:
        return self.finish(p, self.pre_activation(p)).n

    def local_cotangent(self, trace: BlockTrace, xi: Tensor, site: XiSite) -> Tensor:
        """``delta = dL/da_B``: xi pulled back through ReLU (and LayerNorm for site "norm")
        for the current (last) sample of the window."""
        g = xi.reshape(trace.a.shape[1:])
        if site == "norm" and trace.std is not None:
            g = layer_norm_vjp(trace.n[-1], trace.std[-1], g, dims=g.ndim)
        return g * (trace.a[-1] > 0)

    def three_factor_grads(self, trace: BlockTrace, xi: Tensor, site: XiSite) -> list[Tensor]:
        """Three-factor weight change (before the learning rate) for the current sample:
        ``dW = (xi * f'(a_B)) outer p_B``, ``db = xi * f'(a_B)`` (Daruwalla & Lipasti 2024,
        section 1.4 of the reference): equal to the layer-local VJP ``J_W(z_B)^T xi``."""
        delta = self.local_cotangent(trace, xi, site) * self.weight_gain
        return [torch.outer(delta, trace.p[-1]), delta]


class ConvBlock(nn.Module):
    """``a = conv3x3(p)`` (no bias, padding 1), ``h = ReLU(a)``, ``n = LayerNorm(avgpool2(h))``
    over (C, H, W); the CNN of Daruwalla & Lipasti (2024) with the brief's LayerNorm."""

    def __init__(self, c_in: int, c_out: int, layer_norm: bool = True, pool: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)
        self.layer_norm = layer_norm
        self.pool = _check_positive_int(pool, "pool")

    @property
    def weight_gain(self) -> float:
        return 1.0

    def pre_activation(self, p: Tensor) -> Tensor:
        return self.conv(p)

    def finish(self, p: Tensor, a: Tensor) -> BlockTrace:
        h = torch.relu(a)
        pooled = F.avg_pool2d(h, self.pool) if self.pool > 1 else h
        if self.layer_norm:
            n, std = _layer_norm(pooled, 3)
            return BlockTrace(p, a, h, n, std)
        return BlockTrace(p, a, h, pooled, None)

    def forward(self, p: Tensor) -> Tensor:
        return self.finish(p, self.pre_activation(p)).n

    def three_factor_grads(self, trace: BlockTrace, xi: Tensor, site: XiSite) -> list[Tensor]:
        """``dW = conv-weight-VJP(p_B, xi * ReLU'(a_B))``: the convolutional form of
        ``(xi * f'(a_B)) outer p_B`` (each kernel tap pairs a post- with a presynaptic rate)."""
        if site != "relu":
            raise ValueError(
                f"xi_site: {site!r} is not implemented for convolutional blocks; use 'relu'"
            )
        delta = xi.reshape(trace.a.shape[1:]) * (trace.a[-1] > 0)
        grad = torch.nn.grad.conv2d_weight(
            trace.p[-1:], self.conv.weight.shape, delta[None], padding=1
        )
        return [grad]


class RateNetwork(nn.Module):
    """Hidden blocks followed by a linear readout on the flattened last block output."""

    def __init__(self, blocks: Sequence[nn.Module], readout: nn.Linear, input_shape: tuple):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.readout = readout
        self.input_shape = tuple(input_shape)

    def _prepare(self, x: Tensor) -> Tensor:
        """``x`` as ``(batch, *input_shape)``: samples flat or already in that shape (a shape
        with the same size but another layout, e.g. channels last, is refused, not scrambled)."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        dtype = self.readout.weight.dtype
        if x.dtype != dtype:
            raise TypeError(f"x: dtype {x.dtype} but the network computes in {dtype}; convert x")
        flat = x.ndim == 2 and x.shape[1] == math.prod(self.input_shape)
        if not flat and tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"x: sample shape {tuple(x.shape[1:])} does not fit the network input "
                f"{self.input_shape} (give samples flat or in that shape; channels-last images "
                "need x.permute(0, 3, 1, 2))"
            )
        return x.reshape(x.shape[0], *self.input_shape)

    def trace(self, x: Tensor, detach_inputs: bool = False) -> tuple[list[BlockTrace], Tensor]:
        """Forward a window, keeping each block's pieces; with ``detach_inputs`` every block
        (and the readout) sees a detached input, so gradients stay inside each layer."""
        p = self._prepare(x)
        traces = []
        for block in self.blocks:
            if detach_inputs:
                p = p.detach()
            t = block.finish(p, block.pre_activation(p))
            traces.append(t)
            p = t.n
        p = p.flatten(1)
        return traces, self.readout(p.detach() if detach_inputs else p)

    def forward(self, x: Tensor) -> Tensor:
        p = self._prepare(x)
        for block in self.blocks:
            p = block(p)
        return self.readout(p.flatten(1))


class RateMLP(RateNetwork):
    """``x -> [Linear -> ReLU -> LayerNorm]* -> Linear`` (JAX ``MLP``, Daruwalla 2024)."""

    def __init__(
        self, n_in: int, hidden: Sequence[int], n_out: int, layer_norm: bool = True
    ) -> None:
        n_in = _check_positive_int(n_in, "n_in")
        n_out = _check_positive_int(n_out, "n_out")
        if not isinstance(hidden, Sequence) or not hidden:
            raise ValueError(
                f"hidden: expected a non-empty list of layer sizes, e.g. [128, 64]; got {hidden!r}"
            )
        hidden = tuple(_check_positive_int(h, "hidden") for h in hidden)
        sizes = (n_in, *hidden)
        blocks = [DenseBlock(a, b, layer_norm) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        super().__init__(blocks, nn.Linear(sizes[-1], n_out), (n_in,))


class RateCNN(RateNetwork):
    """``x -> [conv3x3 -> ReLU -> avgpool2 -> LayerNorm]* -> Linear`` (JAX ``CNN``)."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        channels: Sequence[int],
        n_out: int,
        layer_norm: bool = True,
    ) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"input_shape: expected (C, H, W), got {input_shape!r}")
        input_shape = tuple(_check_positive_int(v, "input_shape") for v in input_shape)
        c, height, width = input_shape
        channels = tuple(_check_positive_int(ch, "channels") for ch in channels)
        if not channels:
            raise ValueError("channels: need at least one convolutional block")
        blocks = []
        for ch in channels:
            if height < 2 or width < 2:
                raise ValueError(
                    f"channels: {len(channels)} pooling blocks shrink {input_shape} below 1 "
                    "pixel; use fewer blocks"
                )
            blocks.append(ConvBlock(c, ch, layer_norm))
            c, height, width = ch, height // 2, width // 2
        n_out = _check_positive_int(n_out, "n_out")
        super().__init__(blocks, nn.Linear(c * height * width, n_out), input_shape)


@dataclass(frozen=True)
class LeakyIntegration:
    """Leaky-integrator rate units ``u <- u + (dt / tau) (W p + b - u)``, ``steps`` Euler steps
    per sample (Daruwalla & Lipasti 2024, ``LIFDenseCell``: tau 5 ms, dt 1 ms, 20 steps)."""

    tau: float = 5e-3
    dt: float = 1e-3
    steps: int = 20

    def __post_init__(self) -> None:
        for name in ("tau", "dt"):
            value = getattr(self, name)
            if not is_finite_real(value) or value <= 0:
                raise ValueError(f"{name}: must be a positive time in seconds, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.dt > self.tau:
            raise ValueError(
                f"dt: {self.dt} s exceeds tau = {self.tau} s; Euler steps overshoot. Use dt <= tau"
            )
        object.__setattr__(self, "steps", _check_positive_int(self.steps, "steps", 2))

    @property
    def rate(self) -> float:
        return self.dt / self.tau


class _LeakyDense(DenseBlock):
    """Dense block whose pre-activation is the leaky state ``u`` (set by the simulation)."""

    def __init__(self, n_in: int, n_out: int, layer_norm: bool, rate: float):
        super().__init__(n_in, n_out, layer_norm)
        self.rate = rate

    @property
    def weight_gain(self) -> float:
        # one Euler step: du/dW = (dt / tau) p
        return self.rate


class LeakyRateMLP(RateMLP):
    """:class:`RateMLP` with leaky-integrator units (JAX ``LIFMLPCell``): every hidden unit and
    the readout integrate their drive; ``h = ReLU(u)``, ``n = LayerNorm(h)``. The prediction
    for a sample is the readout state averaged over the second half of ``steps``."""

    def __init__(
        self,
        n_in: int,
        hidden: Sequence[int],
        n_out: int,
        layer_norm: bool = True,
        integration: LeakyIntegration | None = None,
    ) -> None:
        super().__init__(n_in, hidden, n_out, layer_norm)
        self.integration = integration or LeakyIntegration()
        rate = self.integration.rate
        leaky = []
        for block in self.blocks:
            new = _LeakyDense(block.linear.in_features, block.linear.out_features, layer_norm, rate)
            new.load_state_dict(block.state_dict())
            leaky.append(new)
        self.blocks = nn.ModuleList(leaky)

    def initial_state(self, batch: int, like: Tensor) -> list[Tensor]:
        sizes = [b.linear.out_features for b in self.blocks] + [self.readout.out_features]
        return [like.new_zeros(batch, n) for n in sizes]

    def time_step(
        self, x: Tensor, state: list[Tensor]
    ) -> tuple[list[Tensor], list[BlockTrace], Tensor]:
        """One Euler step of every layer; returns ``(new_state, traces, readout_state)``."""
        rate = self.integration.rate
        p = self._prepare(x)
        new_state, traces = [], []
        for block, u in zip(self.blocks, state[:-1], strict=True):
            u = u + rate * (block.linear(p) - u)
            t = block.finish(p, u)
            traces.append(t)
            new_state.append(u)
            p = t.n
        out = state[-1] + rate * (self.readout(p) - state[-1])
        new_state.append(out)
        return new_state, traces, out

    def forward(self, x: Tensor) -> Tensor:
        state = self.initial_state(x.shape[0], x)
        steps = self.integration.steps
        total = torch.zeros_like(state[-1])
        for step in range(steps):
            state, _, out = self.time_step(x, state)
            if step >= steps // 2:
                total = total + out
        return total / (steps - steps // 2)
