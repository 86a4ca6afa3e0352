"""Echo-state network (ESN) in torch: leaky-integrator reservoir with input, bias and output
feedback, batched, float32/float64, seeded through ``torch.Generator``.

State update (leaky ESN, Jaeger, Lukosevicius, Popovici & Siewert 2007, eq. 2-3)::

    x_t = (1 - a) x_{t-1} + a f(W x_{t-1} + W_in u_t + W_fb y_{t-1} + b) + nu eps_t

with leak ``a = dt / tau`` in (0, 1], ``f`` = tanh (or identity for a linear reservoir),
``eps_t ~ N(0, I)`` and noise amplitude ``nu``. It is the forward-Euler step of
``tau dx/dt = -x + f(W x + W_in u + W_fb y + b)``, which is how :mod:`brian2_esn` writes the
same reservoir. ``W`` is sparse (each entry kept with probability ``connectivity``, drawn
N(0, 1)) and rescaled to a given spectral radius (Jaeger 2001, GMD report 148), or a scaled
random orthogonal matrix. ``W_in``, ``W_fb`` and ``b`` are uniform in ``[-scale, scale]``.

Shapes: inputs ``(batch, T, n_inputs)`` or ``(T, n_inputs)``; states come back with the same
leading shape and ``n_units`` features. ``states[..., t, :]`` is ``x_{t+1}``, the state after
input ``t`` has entered.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from plastix.scalars import is_integer, is_real

Activation = Literal["tanh", "identity"]
RecurrentInit = Literal["sparse_normal", "orthogonal"]

__all__ = [
    "ESNConfig",
    "ESNWeights",
    "EchoStateNetwork",
    "esn_step",
    "init_esn_weights",
    "orthogonal_recurrent_weights",
    "run_esn",
    "sparse_recurrent_weights",
    "spectral_radius",
]

_DENSE_EIG_LIMIT = 600  # above this many units, use ARPACK for the spectral radius
_SPARSE_MIN_UNITS = 128  # sparse products pay off from about this size ...
_SPARSE_MAX_DENSITY = 0.25  # ... and at most this fraction of non-zero weights


def _check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    if not is_integer(value):
        raise TypeError(f"{name}: expected an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: {value} is below the minimum {minimum}")
    return int(value)


def _check_real(
    value: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    if not is_real(value):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: must be finite, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{name}: {value} must be {bound}")
    if high is not None and value > high:
        raise ValueError(f"{name}: {value} must be <= {high}")
    return value


@dataclass(frozen=True)
class ESNConfig:
    """Hyper-parameters of a random echo-state network.

    ``leak`` is ``a = dt / tau``; ``noise`` is the std of the Gaussian state noise per step;
    ``connectivity`` is the probability that an entry of ``W`` is non-zero;
    ``input_connectivity`` likewise for ``W_in``. ``n_feedback = 0`` means no feedback.
    """

    n_inputs: int
    n_units: int = 500
    spectral_radius: float = 0.9
    connectivity: float = 0.1
    input_scaling: float = 1.0
    input_connectivity: float = 1.0
    bias_scaling: float = 0.0
    n_feedback: int = 0
    feedback_scaling: float = 1.0
    leak: float = 1.0
    noise: float = 0.0
    activation: Activation = "tanh"
    recurrent_init: RecurrentInit = "sparse_normal"

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_inputs", _check_positive_int(self.n_inputs, "n_inputs"))
        object.__setattr__(self, "n_units", _check_positive_int(self.n_units, "n_units"))
        n_feedback = _check_positive_int(self.n_feedback, "n_feedback", minimum=0)
        object.__setattr__(self, "n_feedback", n_feedback)
        _check_real(self.spectral_radius, "spectral_radius", low=0.0)
        _check_real(self.connectivity, "connectivity", low=0.0, high=1.0, low_open=True)
        _check_real(self.input_connectivity, "input_connectivity", low=0.0, high=1.0, low_open=True)
        _check_real(self.input_scaling, "input_scaling", low=0.0)
        _check_real(self.bias_scaling, "bias_scaling", low=0.0)
        _check_real(self.feedback_scaling, "feedback_scaling", low=0.0)
        _check_real(self.leak, "leak", low=0.0, high=1.0, low_open=True)
        _check_real(self.noise, "noise", low=0.0)
        if self.activation not in ("tanh", "identity"):
            raise ValueError(f"activation: {self.activation!r} is not one of ('tanh', 'identity')")
        if self.recurrent_init not in ("sparse_normal", "orthogonal"):
            raise ValueError(
                f"recurrent_init: {self.recurrent_init!r} is not one of "
                "('sparse_normal', 'orthogonal')"
            )


@dataclass
class ESNWeights:
    """The fixed weights of a reservoir: ``recurrent (N, N)``, ``input (N, n_in)``,
    ``feedback (N, n_fb)`` (``n_fb`` may be 0), ``bias (N,)``, plus leak, noise, activation."""

    recurrent: Tensor
    input: Tensor
    feedback: Tensor
    bias: Tensor
    leak: float = 1.0
    noise: float = 0.0
    activation: Activation = "tanh"
    _csr: Tensor | bool | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("recurrent", "input", "feedback", "bias"):
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                value = torch.as_tensor(value)
                setattr(self, name, value)
            if not isinstance(value, Tensor) or not value.is_floating_point():
                raise TypeError(f"{name}: expected a floating-point tensor, got {value!r}")
        n = self.recurrent.shape[0]
        if self.recurrent.shape != (n, n):
            raise ValueError(f"recurrent: shape {tuple(self.recurrent.shape)} is not (N, N)")
        if self.input.ndim != 2 or self.input.shape[0] != n:
            raise ValueError(f"input: shape {tuple(self.input.shape)} is not (N={n}, n_inputs)")
        if self.feedback.ndim != 2 or self.feedback.shape[0] != n:
            raise ValueError(
                f"feedback: shape {tuple(self.feedback.shape)} is not (N={n}, n_feedback); "
                "use a (N, 0) tensor for no feedback"
            )
        if self.bias.shape != (n,):
            raise ValueError(f"bias: shape {tuple(self.bias.shape)} is not (N={n},)")
        dtypes = {t.dtype for t in (self.recurrent, self.input, self.feedback, self.bias)}
        if len(dtypes) != 1:
            raise TypeError(
                f"recurrent/input/feedback/bias: mixed dtypes {sorted(map(str, dtypes))}"
            )
        self.leak = _check_real(self.leak, "leak", low=0.0, high=1.0, low_open=True)
        self.noise = _check_real(self.noise, "noise", low=0.0)
        if self.activation not in ("tanh", "identity"):
            raise ValueError(f"activation: {self.activation!r} is not one of ('tanh', 'identity')")

    @property
    def n_units(self) -> int:
        return self.recurrent.shape[0]

    @property
    def n_inputs(self) -> int:
        return self.input.shape[1]

    @property
    def n_feedback(self) -> int:
        return self.feedback.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.recurrent.dtype

    def sparse_recurrent(self) -> Tensor | None:
        """A CSR copy of ``W`` when it is sparse (at most 25% non-zero, N >= 128), made once
        and cached, else None. The weights are fixed: do not modify ``recurrent`` in place
        after the first call."""
        if self._csr is None:
            n = self.n_units
            density = float((self.recurrent != 0).sum()) / (n * n)
            if n < _SPARSE_MIN_UNITS or density > _SPARSE_MAX_DENSITY:
                self._csr = False
            else:
                with warnings.catch_warnings():  # "sparse CSR support is in beta"
                    warnings.simplefilter("ignore", UserWarning)
                    self._csr = self.recurrent.to_sparse_csr()
        return self._csr if self._csr is not False else None

    def recurrent_product(self, state: Tensor) -> Tensor:
        """``state @ W^T`` for ``state (..., N)``, through :meth:`sparse_recurrent` when W is
        sparse."""
        csr = self.sparse_recurrent()
        if csr is None:
            return state @ self.recurrent.T
        flat = state.reshape(-1, self.n_units)
        return (csr @ flat.T).T.reshape(state.shape)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None):
        """A copy with every tensor moved to ``dtype`` / ``device``."""
        return ESNWeights(
            *(
                t.to(dtype=dtype, device=device)
                for t in (self.recurrent, self.input, self.feedback, self.bias)
            ),
            leak=self.leak,
            noise=self.noise,
            activation=self.activation,
        )


def spectral_radius(weights: Tensor | np.ndarray, seed: int = 0) -> float:
    """Largest absolute eigenvalue of a square matrix.

    Dense ``eigvals`` up to 600 units; above that ARPACK (implicitly restarted Arnoldi, via
    ``scipy.sparse.linalg.eigs``) on the sparse matrix, started from a seeded vector. A random
    matrix has several eigenvalues of nearly the largest modulus, where a one-eigenvalue run
    can settle on a smaller one; ARPACK therefore finds the 6 largest in a 64-vector Krylov
    space and the largest modulus among them is returned.
    """
    w = weights.detach().cpu().double().numpy() if isinstance(weights, Tensor) else weights
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"weights: shape {w.shape} is not square")
    n = w.shape[0]
    if n <= _DENSE_EIG_LIMIT:
        return float(np.max(np.abs(np.linalg.eigvals(w))))
    from scipy import sparse
    from scipy.sparse.linalg import eigs

    start = np.random.default_rng(seed).standard_normal(n)
    values = eigs(
        sparse.csr_matrix(w),
        k=6,
        ncv=64,
        which="LM",
        v0=start,
        return_eigenvectors=False,
        maxiter=20 * n,
        tol=1e-10,
    )
    return float(np.abs(values).max())


def sparse_recurrent_weights(
    n_units: int,
    connectivity: float,
    radius: float,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """``W_ij = m_ij g_ij`` with ``m_ij ~ Bernoulli(connectivity)``, ``g_ij ~ N(0, 1)``,
    rescaled so that its spectral radius is ``radius`` (Jaeger 2001)."""
    n_units = _check_positive_int(n_units, "n_units")
    connectivity = _check_real(connectivity, "connectivity", low=0.0, high=1.0, low_open=True)
    radius = _check_real(radius, "radius", low=0.0)
    gauss = torch.randn(n_units, n_units, generator=generator, dtype=torch.float64)
    mask = torch.rand(n_units, n_units, generator=generator, dtype=torch.float64) < connectivity
    w = gauss * mask
    current = spectral_radius(w) if bool(mask.any()) else 0.0
    if current == 0.0:
        if radius != 0.0:
            raise ValueError(
                f"connectivity: {connectivity} left W nilpotent (spectral radius 0) for "
                f"n_units={n_units}; it cannot be scaled to radius {radius}; raise connectivity"
            )
        return w.to(dtype)
    return (w * (radius / current)).to(dtype)


def orthogonal_recurrent_weights(
    n_units: int,
    radius: float,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """``W = radius * Q`` with ``Q`` Haar-random orthogonal (QR of a Gaussian matrix with the
    sign fix of Mezzadri 2007); every eigenvalue has modulus ``radius``."""
    n_units = _check_positive_int(n_units, "n_units")
    radius = _check_real(radius, "radius", low=0.0)
    gauss = torch.randn(n_units, n_units, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gauss)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    return (radius * q).to(dtype)


def _uniform(shape: tuple[int, ...], scale: float, generator: torch.Generator) -> Tensor:
    return (2.0 * torch.rand(*shape, generator=generator, dtype=torch.float64) - 1.0) * scale


def init_esn_weights(
    config: ESNConfig, seed: int = 0, dtype: torch.dtype = torch.float64
) -> ESNWeights:
    """Draw the reservoir of ``config`` from ``torch.Generator().manual_seed(seed)``."""
    if not isinstance(config, ESNConfig):
        raise TypeError(f"config: expected an ESNConfig, got {type(config).__name__}")
    seed = _check_positive_int(seed, "seed", minimum=0)
    gen = torch.Generator().manual_seed(seed)
    n = config.n_units
    if config.recurrent_init == "orthogonal":
        w = orthogonal_recurrent_weights(n, config.spectral_radius, gen)
    else:
        w = sparse_recurrent_weights(n, config.connectivity, config.spectral_radius, gen)
    w_in = _uniform((n, config.n_inputs), config.input_scaling, gen)
    if config.input_connectivity < 1.0:
        w_in = w_in * (
            torch.rand(n, config.n_inputs, generator=gen, dtype=torch.float64)
            < config.input_connectivity
        )
    w_fb = _uniform((n, config.n_feedback), config.feedback_scaling, gen)
    bias = _uniform((n,), config.bias_scaling, gen)
    return ESNWeights(
        recurrent=w.to(dtype),
        input=w_in.to(dtype),
        feedback=w_fb.to(dtype),
        bias=bias.to(dtype),
        leak=config.leak,
        noise=config.noise,
        activation=config.activation,
    )


def _activate(pre: Tensor, activation: Activation) -> Tensor:
    return torch.tanh(pre) if activation == "tanh" else pre


def esn_step(
    weights: ESNWeights,
    state: Tensor,
    drive: Tensor,
    feedback: Tensor | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """One leaky-ESN step ``x' = (1 - a) x + a f(W x + drive + W_fb y) + nu eps``.

    ``drive`` is ``W_in u_t + b`` (precomputed for a whole sequence by :func:`run_esn`);
    ``feedback`` is ``y_{t-1}`` ``(..., n_fb)``; ``noise`` is ``eps_t`` ``(..., N)``.
    """
    pre = weights.recurrent_product(state) + drive
    if feedback is not None:
        pre = pre + feedback @ weights.feedback.T
    new = (1.0 - weights.leak) * state + weights.leak * _activate(pre, weights.activation)
    if noise is not None and weights.noise > 0.0:
        new = new + weights.noise * noise
    return new


def run_esn(
    weights: ESNWeights,
    inputs: Tensor,
    initial_state: Tensor | None = None,
    feedback: Tensor | None = None,
    readout: Callable[[Tensor], Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Drive the reservoir with ``inputs`` and return ``(states, outputs)``.

    inputs ``(batch, T, n_in)`` or ``(T, n_in)``; ``initial_state`` ``(batch, N)`` / ``(N,)``
    (zeros if omitted). Feedback, when the reservoir has feedback weights, is either
    teacher-forced (``feedback[..., t, :]`` is ``y_{t-1}``, the value that enters at step
    ``t``) or closed-loop through ``readout`` (``y_t = readout(x_t)``, ``y_0 = readout(x_0)``).
    ``outputs`` holds ``readout(x_t)`` for every step when a readout is given, else ``None``.
    Noise (``weights.noise > 0``) needs a ``generator``.
    """
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs: expected a torch.Tensor, got {type(inputs).__name__}")
    if inputs.ndim not in (2, 3) or inputs.shape[-1] != weights.n_inputs:
        raise ValueError(
            f"inputs: shape {tuple(inputs.shape)} is not (batch, T, {weights.n_inputs}) or "
            f"(T, {weights.n_inputs})"
        )
    if inputs.dtype != weights.dtype:
        raise TypeError(
            f"inputs: dtype {inputs.dtype} differs from the reservoir's {weights.dtype}; "
            "convert one of them (weights.to(dtype) or inputs.to(dtype))"
        )
    unbatched = inputs.ndim == 2
    u = inputs.unsqueeze(0) if unbatched else inputs
    batch, steps, _ = u.shape
    n = weights.n_units
    if feedback is not None and readout is not None:
        raise ValueError("feedback, readout: give teacher-forced feedback or a readout, not both")
    if weights.n_feedback > 0 and feedback is None and readout is None:
        raise ValueError(
            f"feedback: the reservoir has {weights.n_feedback} feedback inputs; pass "
            "teacher-forced feedback (batch, T, n_fb) or a closed-loop readout"
        )
    if feedback is not None:
        fb = feedback.unsqueeze(0) if unbatched else feedback
        if fb.shape != (batch, steps, weights.n_feedback):
            raise ValueError(
                f"feedback: shape {tuple(feedback.shape)} does not match inputs "
                f"(expected {(batch, steps, weights.n_feedback)} with the batch dim)"
            )
        fb = fb.to(weights.dtype)
    if initial_state is None:
        state = torch.zeros(batch, n, dtype=weights.dtype, device=u.device)
    else:
        state = initial_state.unsqueeze(0) if initial_state.ndim == 1 else initial_state
        if state.shape != (batch, n):
            raise ValueError(
                f"initial_state: shape {tuple(initial_state.shape)} is not ({batch}, {n})"
            )
        state = state.to(weights.dtype)
    if weights.noise > 0.0 and generator is None:
        raise ValueError(
            f"generator: the reservoir has noise {weights.noise}; pass a torch.Generator"
        )
    drive = u @ weights.input.T + weights.bias  # (batch, T, N)
    if weights.n_feedback == 0 and readout is None and weights.noise == 0.0:
        states = _run_driven(weights, state, drive)
        return (states.squeeze(0), None) if unbatched else (states, None)
    states = torch.empty(batch, steps, n, dtype=weights.dtype, device=u.device)
    outputs: list[Tensor] = []
    y_prev = readout(state) if readout is not None and weights.n_feedback > 0 else None
    for t in range(steps):
        eps = (
            torch.randn(batch, n, generator=generator, dtype=weights.dtype)
            if weights.noise > 0.0
            else None
        )
        y_in = fb[:, t] if feedback is not None else y_prev
        state = esn_step(weights, state, drive[:, t], y_in if weights.n_feedback else None, eps)
        states[:, t] = state
        if readout is not None:
            y_prev = readout(state)
            outputs.append(y_prev)
    out = torch.stack(outputs, 1) if readout is not None else None
    if unbatched:
        states = states.squeeze(0)
        out = out.squeeze(0) if out is not None else None
    return states, out


def _run_driven(weights: ESNWeights, state: Tensor, drive: Tensor) -> Tensor:
    """The update loop without feedback or noise, kept lean (same arithmetic as
    :func:`esn_step`): states in column layout ``(N, batch)``, or a vector for one sequence,
    so each step is one sparse or dense matrix product plus the drive, in place."""
    leak = weights.leak
    tanh = weights.activation == "tanh"
    matrix = weights.sparse_recurrent()
    sparse = matrix is not None
    if not sparse:
        matrix = weights.recurrent
    single = state.shape[0] == 1
    if single:
        x = state[0].clone()  # (N,)
        drive_t = drive[0]  # (T, N)
    else:
        x = state.T.clone(memory_format=torch.contiguous_format)  # (N, batch), not the caller's
        drive_t = drive.permute(1, 2, 0).contiguous()  # (T, N, batch)
    out = torch.empty_like(drive_t)
    for t in range(drive_t.shape[0]):
        if sparse:
            pre = torch.mv(matrix, x) if single else matrix @ x
            pre += drive_t[t]
        else:
            pre = (
                torch.addmv(drive_t[t], matrix, x) if single else torch.addmm(drive_t[t], matrix, x)
            )
        if tanh:
            pre = torch.tanh_(pre)
        x = pre if leak == 1.0 else x.lerp_(pre, leak)
        out[t] = x
    return out.unsqueeze(0) if single else out.permute(2, 0, 1)


class EchoStateNetwork(torch.nn.Module):
    """Thin stateful wrapper around :func:`run_esn`: holds the weights as buffers (so
    ``.to(dtype)`` and ``state_dict`` work) and a private noise generator."""

    def __init__(self, weights: ESNWeights, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(weights, ESNWeights):
            raise TypeError(f"weights: expected ESNWeights, got {type(weights).__name__}")
        self.register_buffer("recurrent", weights.recurrent.clone())
        self.register_buffer("input_weights", weights.input.clone())
        self.register_buffer("feedback_weights", weights.feedback.clone())
        self.register_buffer("bias", weights.bias.clone())
        self.leak = weights.leak
        self.noise = weights.noise
        self.activation = weights.activation
        self.generator = torch.Generator().manual_seed(_check_positive_int(seed, "seed", 0))

    @classmethod
    def from_config(
        cls, config: ESNConfig, seed: int = 0, dtype: torch.dtype = torch.float64
    ) -> EchoStateNetwork:
        """Draw weights with :func:`init_esn_weights` (seed) and wrap them."""
        return cls(init_esn_weights(config, seed=seed, dtype=dtype), seed=seed)

    @property
    def weights(self) -> ESNWeights:
        return ESNWeights(
            recurrent=self.recurrent,
            input=self.input_weights,
            feedback=self.feedback_weights,
            bias=self.bias,
            leak=self.leak,
            noise=self.noise,
            activation=self.activation,
        )

    @property
    def n_units(self) -> int:
        return self.recurrent.shape[0]

    def forward(
        self,
        inputs: Tensor,
        initial_state: Tensor | None = None,
        feedback: Tensor | None = None,
        readout: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """See :func:`run_esn`; noise is drawn from this network's own generator."""
        return run_esn(self.weights, inputs, initial_state, feedback, readout, self.generator)

    def _check_step_operands(self, state: Tensor, inputs: Tensor, feedback: Tensor | None) -> None:
        """Tensors of shape ``(batch, width)`` with one batch size and the weights' dtype."""
        operands = [("state", state, self.n_units), ("inputs", inputs, self.input_weights.shape[1])]
        if feedback is not None:
            operands.append(("feedback", feedback, self.feedback_weights.shape[1]))
        for name, value, width in operands:
            if not isinstance(value, Tensor):
                raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
            if value.ndim != 2 or value.shape[1] != width:
                hint = (
                    f"; add the batch dim: {name}.unsqueeze(0)" if value.shape == (width,) else ""
                )
                raise ValueError(
                    f"{name}: shape {tuple(value.shape)} is not (batch, {width}){hint}"
                )
            if value.dtype != self.recurrent.dtype:
                raise TypeError(
                    f"{name}: dtype {value.dtype} differs from the reservoir's "
                    f"{self.recurrent.dtype}; convert one of them (esn.to(dtype) or "
                    f"{name}.to(dtype))"
                )
        batches = [value.shape[0] for _, value, _ in operands]
        if len(set(batches)) > 1:
            names = ", ".join(name for name, _, _ in operands)
            raise ValueError(f"{names}: batch sizes {batches} differ; give one row per sequence")

    def step(self, state: Tensor, inputs: Tensor, feedback: Tensor | None = None) -> Tensor:
        """One step from ``state (batch, N)`` with ``inputs (batch, n_in)`` and, when the
        reservoir has feedback weights, ``feedback (batch, n_fb)`` (``y_{t-1}``)."""
        n_fb = self.feedback_weights.shape[1]
        if (feedback is None) != (n_fb == 0):
            raise ValueError(
                f"feedback: the reservoir has {n_fb} feedback inputs; pass feedback exactly "
                "when it has some"
            )
        self._check_step_operands(state, inputs, feedback)
        eps = (
            torch.randn(state.shape, generator=self.generator, dtype=state.dtype)
            if self.noise > 0.0
            else None
        )
        drive = inputs @ self.input_weights.T + self.bias
        return esn_step(self.weights, state, drive, feedback, eps)
