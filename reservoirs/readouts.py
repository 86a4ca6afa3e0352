"""Linear readouts for reservoirs: ridge regression (closed form, accumulated over many
sequences), LMS (Widrow & Hoff 1960) and RLS / FORCE (Haykin 2002; Sussillo & Abbott 2009).

A readout maps features ``r (..., n_features)`` to outputs ``y = W r + b (..., n_outputs)``.
All tensors are torch; the readouts keep the dtype they are created with.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from plastix.scalars import is_integer, is_real

__all__ = ["LMSReadout", "RLSReadout", "RidgeReadout", "ridge_regression"]


def _check_features(features: Tensor, n_features: int, name: str = "features") -> Tensor:
    if not isinstance(features, Tensor) or not features.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point torch.Tensor, got {features!r}")
    if features.ndim < 1 or features.shape[-1] != n_features:
        raise ValueError(
            f"{name}: shape {tuple(features.shape)} does not end in n_features={n_features}"
        )
    return features


def _check_pair(features: Tensor, targets: Tensor, n_features: int, n_outputs: int):
    _check_features(features, n_features)
    _check_features(targets, n_outputs, "targets")
    if features.shape[:-1] != targets.shape[:-1]:
        raise ValueError(
            f"features, targets: leading shapes {tuple(features.shape[:-1])} and "
            f"{tuple(targets.shape[:-1])} differ; they must hold the same samples"
        )
    for name, values in (("features", features), ("targets", targets)):
        if not bool(torch.isfinite(values).all()):
            raise ValueError(f"{name}: contain NaN or inf (e.g. a diverged reservoir); drop them")


def _check_nonneg(value: float, name: str, positive: bool = False) -> float:
    if not is_real(value):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name}: {value!r} must be finite and {'>' if positive else '>='} 0")
    return value


def _check_count(value: int, name: str) -> int:
    if not is_integer(value) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    return int(value)


def _solve_gram(gram: Tensor, rhs: Tensor, n_samples: int, ridge: float) -> Tensor:
    """Solve ``gram X = rhs`` for a symmetric positive semi-definite Gram matrix summed over
    ``n_samples`` (the ridge already added). With ``ridge > 0`` the matrix is positive
    definite: Cholesky. With ``ridge = 0`` it may be singular (linearly dependent features),
    and Cholesky can "succeed" with a pivot at rounding level whose noise then sets the
    weights; so the minimum-norm solution ``X = gram^+ rhs``, eigenvalues below
    ``eps * max(F, n_samples)`` times the largest taken as zero (the numerical rank). The
    same if Cholesky fails because the ridge is below the matrix's rounding level."""
    if ridge > 0:
        factor, info = torch.linalg.cholesky_ex(gram)
        if int(info) == 0:
            return torch.cholesky_solve(rhs, factor)
    rtol = torch.finfo(gram.dtype).eps * max(gram.shape[0], n_samples)
    return torch.linalg.pinv(gram, rtol=rtol, hermitian=True) @ rhs


def ridge_regression(
    features: Tensor, targets: Tensor, ridge: float = 1e-6, fit_bias: bool = True
) -> tuple[Tensor, Tensor]:
    """Closed-form ridge regression (Tikhonov; Hoerl & Kennard 1970).

    ``W = argmin sum_t ||y_t - W r_t - b||^2 + ridge ||W||_F^2`` (the bias is not penalised),
    solved as ``W = C_yr (C_rr + ridge I)^-1`` on centred sums (with ``ridge=0`` and linearly
    dependent features, the minimum-norm solution). features ``(..., F)``,
    targets ``(..., O)``. Returns ``(W (O, F), b (O,))``.
    """
    if not isinstance(features, Tensor):
        raise TypeError(f"features: expected a torch.Tensor, got {type(features).__name__}")
    readout = RidgeReadout(features.shape[-1], targets.shape[-1], ridge, fit_bias, features.dtype)
    readout.fit(features, targets)
    return readout.weight, readout.bias


class RidgeReadout:
    """Ridge readout whose sufficient statistics (``n``, sums, ``R^T R``, ``R^T Y``) are
    accumulated over any number of sequences, then solved once; see :func:`ridge_regression`.
    Statistics are kept in float64 whatever the readout dtype."""

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        ridge: float = 1e-6,
        fit_bias: bool = True,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.n_features = _check_count(n_features, "n_features")
        self.n_outputs = _check_count(n_outputs, "n_outputs")
        self.ridge = _check_nonneg(ridge, "ridge")
        self.fit_bias = bool(fit_bias)
        self.dtype = dtype
        self.weight = torch.zeros(self.n_outputs, self.n_features, dtype=dtype)
        self.bias = torch.zeros(self.n_outputs, dtype=dtype)
        self.reset()

    def reset(self) -> None:
        """Forget the accumulated statistics (the current weights are kept)."""
        f, o = self.n_features, self.n_outputs
        self._count = 0
        self._sum_r = torch.zeros(f, dtype=torch.float64)
        self._sum_y = torch.zeros(o, dtype=torch.float64)
        self._rr = torch.zeros(f, f, dtype=torch.float64)
        self._ry = torch.zeros(f, o, dtype=torch.float64)

    @property
    def count(self) -> int:
        """Number of samples accumulated since the last reset."""
        return self._count

    def accumulate(self, features: Tensor, targets: Tensor) -> None:
        """Add samples ``features (..., F)`` / ``targets (..., O)`` to the statistics."""
        _check_pair(features, targets, self.n_features, self.n_outputs)
        r = features.reshape(-1, self.n_features).to(torch.float64)
        y = targets.reshape(-1, self.n_outputs).to(torch.float64)
        self._count += r.shape[0]
        self._sum_r += r.sum(0)
        self._sum_y += y.sum(0)
        self._rr += r.T @ r
        self._ry += r.T @ y

    def solve(self) -> RidgeReadout:
        """Solve for ``W`` and ``b`` from the accumulated statistics."""
        if self._count == 0:
            raise ValueError("accumulate: no samples accumulated; call accumulate() first")
        rr, ry = self._rr, self._ry
        if self.fit_bias:
            mean_r = self._sum_r / self._count
            mean_y = self._sum_y / self._count
            rr = rr - self._count * torch.outer(mean_r, mean_r)
            ry = ry - self._count * torch.outer(mean_r, mean_y)
        gram = rr + self.ridge * torch.eye(self.n_features, dtype=torch.float64)
        weight = _solve_gram(gram, ry, self._count, self.ridge).T
        bias = mean_y - weight @ mean_r if self.fit_bias else torch.zeros(self.n_outputs)
        self.weight = weight.to(self.dtype)
        self.bias = bias.to(self.dtype)
        return self

    def fit(self, features: Tensor, targets: Tensor) -> RidgeReadout:
        """Reset, accumulate ``features``/``targets`` and solve."""
        self.reset()
        self.accumulate(features, targets)
        return self.solve()

    def predict(self, features: Tensor) -> Tensor:
        """``y = W r + b`` for features ``(..., F)``."""
        _check_features(features, self.n_features)
        return features.to(self.dtype) @ self.weight.T + self.bias


class LMSReadout:
    """Least-mean-squares online readout (Widrow & Hoff 1960):
    ``W <- W + lr * e r^T``, ``e = y - (W r + b)``; with ``normalized=True`` the step is
    ``lr / (eps + ||r||^2)`` (NLMS). A batch of samples applies the mean update."""

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        lr: float = 1e-3,
        normalized: bool = False,
        fit_bias: bool = True,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.n_features = _check_count(n_features, "n_features")
        self.n_outputs = _check_count(n_outputs, "n_outputs")
        self.lr = _check_nonneg(lr, "lr", positive=True)
        self.normalized = bool(normalized)
        self.fit_bias = bool(fit_bias)
        self.weight = torch.zeros(self.n_outputs, self.n_features, dtype=dtype)
        self.bias = torch.zeros(self.n_outputs, dtype=dtype)

    def predict(self, features: Tensor) -> Tensor:
        _check_features(features, self.n_features)
        return features.to(self.weight.dtype) @ self.weight.T + self.bias

    def step(self, features: Tensor, targets: Tensor) -> Tensor:
        """Update on ``features (..., F)``, ``targets (..., O)``; returns the a-priori error
        ``y - y_hat`` (before the update)."""
        _check_pair(features, targets, self.n_features, self.n_outputs)
        r = features.reshape(-1, self.n_features).to(self.weight.dtype)
        y = targets.reshape(-1, self.n_outputs).to(self.weight.dtype)
        error = y - (r @ self.weight.T + self.bias)
        scale = torch.full((r.shape[0], 1), self.lr, dtype=r.dtype)
        if self.normalized:
            scale = scale / (1e-8 + (r * r).sum(-1, keepdim=True) + float(self.fit_bias))
        scaled = error * scale
        self.weight += scaled.T @ r / r.shape[0]
        if self.fit_bias:
            self.bias += scaled.mean(0)
        return error.reshape(targets.shape)


class RLSReadout:
    """Recursive least squares readout, the FORCE rule of Sussillo & Abbott (2009) with an
    optional forgetting factor ``lam`` (Haykin 2002, ch. 9)::

        k = P r / (lam + r^T P r);  e = W r - y;  W <- W - e k^T;  P <- (P - k r^T P) / lam

    with ``P(0) = I / alpha``. ``lam = 1`` is FORCE. With ``fit_bias`` a constant 1 is
    appended to ``r``. Samples are processed one at a time in order.
    """

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        alpha: float = 1.0,
        forgetting: float = 1.0,
        fit_bias: bool = True,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.n_features = _check_count(n_features, "n_features")
        self.n_outputs = _check_count(n_outputs, "n_outputs")
        self.alpha = _check_nonneg(alpha, "alpha", positive=True)
        self.forgetting = _check_nonneg(forgetting, "forgetting", positive=True)
        if self.forgetting > 1.0:
            raise ValueError(f"forgetting: {forgetting} must be in (0, 1]")
        self.fit_bias = bool(fit_bias)
        size = self.n_features + int(self.fit_bias)
        self.P = torch.eye(size, dtype=dtype) / self.alpha
        self._weight = torch.zeros(self.n_outputs, size, dtype=dtype)

    @property
    def weight(self) -> Tensor:
        return self._weight[:, : self.n_features]

    @property
    def bias(self) -> Tensor:
        if self.fit_bias:
            return self._weight[:, -1]
        return torch.zeros(self.n_outputs, dtype=self._weight.dtype)

    def _augment(self, r: Tensor) -> Tensor:
        if not self.fit_bias:
            return r
        return torch.cat([r, torch.ones(*r.shape[:-1], 1, dtype=r.dtype)], -1)

    def predict(self, features: Tensor) -> Tensor:
        _check_features(features, self.n_features)
        return self._augment(features.to(self._weight.dtype)) @ self._weight.T

    def step(self, features: Tensor, targets: Tensor) -> Tensor:
        """Update on each sample of ``features (..., F)`` in order; returns the a-priori
        errors ``W r - y`` (before each update), shaped like ``targets``."""
        _check_pair(features, targets, self.n_features, self.n_outputs)
        rs = self._augment(features.reshape(-1, self.n_features).to(self._weight.dtype))
        ys = targets.reshape(-1, self.n_outputs).to(self._weight.dtype)
        errors = torch.empty_like(ys)
        for i in range(rs.shape[0]):
            r = rs[i]
            pr = self.P @ r
            gain = pr / (self.forgetting + r @ pr)
            error = self._weight @ r - ys[i]
            self._weight -= torch.outer(error, gain)
            self.P = (self.P - torch.outer(gain, pr)) / self.forgetting
            errors[i] = error
        return errors.reshape(targets.shape)
