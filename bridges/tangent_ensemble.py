"""The neural tangent ensemble (NTE) posterior update as a torch optimizer.

Source: A. Benjamin, C. Pehle, K. Daruwalla, "Continual learning with the neural tangent
ensemble", NeurIPS 2024 (arXiv:2408.17394), Algorithm 1; notes in reference/nte.md.

A network expanded to first order about a seed point ``w0`` is a mixture of N experts, one per
parameter, with ensemble weights ``|Δw_i| / z``, where ``Δw = w - w0`` and ``z = Σ_i |Δw_i|``
over *all* parameters. Bayes' rule for one example k multiplies each weight by the expert's
likelihood, which gives the update used here (gradients taken at the current parameters, the
paper's practical "rich regime" rule):

    log|Δw_i| += β · log1p(−η · sign(Δw_i) · ∂ℓ_k/∂w_i)        (likelihood of expert i)
    log|Δw_i| += log z − logsumexp_j(log|Δw_j|)               (projection onto Σ|Δw| = z)
    log|Δw_i| ← min(log|Δw_i|, log max_delta)                  (clipping, after the projection)
    w_i = w0_i + sign(Δw_i) · exp(log|Δw_i|)

η is ``lr`` (the repository's ``inv_temperature``), β is ``exponent`` (its ``eta``). The signs
of Δw are frozen at construction, so a parameter never crosses its seed value; magnitudes live
in log space. A mini-batch is a product of per-example likelihoods (sum of the log factors):
:meth:`NeuralTangentEnsemble.step_per_example` computes them from per-example gradients
(``torch.func.functional_call`` + ``vmap(grad)``); :meth:`NeuralTangentEnsemble.step` is the
cheaper batch form, which reads the ordinary mean gradient ``ḡ`` in ``p.grad`` and uses
``B · log1p(−η · sign · ḡ)`` for a batch of B examples. Both agree to first order in η (the
per-example sum equals ``−η·sign·Σ_k g_k + O(η²)``) and exactly when B = 1.

Because the clip acts after the projection, ``Σ|Δw|`` equals z after a step where nothing is
clipped and is below z otherwise (as in the authors' code). No momentum, no weight decay: both
break the posterior reading of the update.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

Expansion = Literal["origin", "init"]
ZeroPolicy = Literal["noise", "keep", "error"]
PerExampleMethod = Literal["vmap", "loop"]

_EXPANSIONS = ("origin", "init")
_ZERO_POLICIES = ("noise", "keep", "error")
_METHODS = ("vmap", "loop")


# --- pure maths ------------------------------------------------------------------------------


def likelihood_log_factor(sign: Tensor, grad: Tensor, lr: float) -> Tensor:
    """``log1p(−η · sign · g)``: the log-likelihood of each expert for one example's gradient.

    ``grad`` may carry leading example axes (``sign`` broadcasts). Raises ValueError when an
    argument of log1p is ≤ −1 (an expert likelihood ≤ 0), naming the hyper-parameter to lower.
    """
    arg = grad * sign
    arg.mul_(-lr)
    smallest = float(arg.min()) if arg.numel() else 0.0
    if not smallest > -1.0:  # also catches NaN
        raise ValueError(
            f"NeuralTangentEnsemble: expert likelihood 1 - lr*sign*grad = {1.0 + smallest:.4g} "
            f"is not positive (log1p argument {smallest:.4g} <= -1) with lr={lr!r}; lower lr "
            "(the likelihood scale / inverse temperature) so that lr*|grad| < 1, or lower the "
            "loss scale that multiplies the gradient"
        )
    return arg.log1p_()


def project_log_magnitudes(
    log_magnitudes: Sequence[Tensor], log_l1_norm: float, max_delta: float | None
) -> list[Tensor]:
    """Renormalise ``Σ exp(log|Δw|)`` over all tensors to ``exp(log_l1_norm)``, then clip.

    ``log|Δw| + log z − logsumexp(all log|Δw|)``, followed by ``min(·, log max_delta)``.
    Returns new tensors; entries at −inf (exactly-zero Δw that are kept) stay at −inf.
    """
    total = torch.logsumexp(torch.stack([torch.logsumexp(m.flatten(), 0) for m in log_magnitudes]), 0)
    shift = log_l1_norm - total
    out = [m + shift for m in log_magnitudes]
    if max_delta is not None:
        cap = math.log(max_delta)
        out = [m.clamp_(max=cap) for m in out]
    return out


def per_example_gradients(
    module: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    params: Mapping[str, Tensor],
    method: PerExampleMethod = "vmap",
) -> tuple[dict[str, Tensor], Tensor]:
    """Gradients of ``loss_fn(module(x_k[None]), y_k[None])`` for every example k.

    ``params`` maps parameter names of ``module`` to the tensors to differentiate (the others
    and all buffers are used as they are). Returns ``({name: (B, *shape)}, losses (B,))``.
    ``method="vmap"`` uses ``torch.func.functional_call`` + ``vmap(grad)``; ``"loop"`` runs
    ordinary autograd once per example, for modules whose custom ``autograd.Function`` s do not
    support torch.func (e.g. snntorch surrogate spikes).
    """
    if method not in _METHODS:
        raise ValueError(f"method={method!r} is not valid; choose one of {_METHODS}")
    names = list(params)
    if method == "vmap":
        from torch.func import functional_call, grad, vmap

        detached = {k: v.detach() for k, v in params.items()}

        def single_loss(p: dict[str, Tensor], x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
            loss = loss_fn(functional_call(module, p, (x.unsqueeze(0),)), y.unsqueeze(0))
            return loss, loss.detach()

        grads, losses = vmap(grad(single_loss, has_aux=True), in_dims=(None, 0, 0))(
            detached, inputs, targets
        )
        return {k: grads[k] for k in names}, losses
    tensors = [params[k] for k in names]
    per_name: dict[str, list[Tensor]] = {k: [] for k in names}
    losses = []
    for x, y in zip(inputs, targets, strict=True):
        loss = loss_fn(module(x.unsqueeze(0)), y.unsqueeze(0))
        grads = torch.autograd.grad(loss, tensors, allow_unused=True)
        for k, g, p in zip(names, grads, tensors, strict=True):
            per_name[k].append(torch.zeros_like(p) if g is None else g)
        losses.append(loss.detach())
    return {k: torch.stack(v) for k, v in per_name.items()}, torch.stack(losses)


# --- the optimizer ---------------------------------------------------------------------------


class NeuralTangentEnsemble(torch.optim.Optimizer):
    """NTE posterior update (Benjamin, Pehle & Daruwalla, NeurIPS 2024, Algorithm 1).

    Args:
        params: parameters or parameter groups (a group may set its own ``lr``, ``exponent``,
            ``max_delta``). The L1 norm z is taken over all groups together.
        lr: η, the likelihood scale (inverse temperature): expert likelihood ``1 − η·sign·g``.
            Must keep ``η·|g| < 1``; otherwise a step raises ValueError saying to lower it.
        exponent: β, the tempering exponent applied to each likelihood.
        max_delta: largest allowed ``|Δw|`` (clip after the projection); None: no clip.
        expansion: ``"origin"`` (w0 = 0, the parameters themselves are Δw; the authors'
            default) or ``"init"`` (w0 = the parameters at construction; Δw starts as
            ``init_noise · N(0, 1)`` noise, added to the parameters at construction, because an
            expert with Δw = 0 has weight zero and a multiplicative update cannot revive it).
        init_noise: standard deviation of the initial Δw for ``expansion="init"``.
        zeros: what to do with entries whose Δw is exactly zero at construction (origin
            expansion: exactly-zero parameters). ``"noise"``: replace Δw by
            ``zero_noise · N(0, 1)`` (as the authors do; the parameter changes); ``"keep"``: keep
            them — sign 0, log|Δw| = −inf, so the parameter stays exactly at its seed value for
            ever and takes no L1 mass; ``"error"``: refuse with a ValueError.
        zero_noise: standard deviation of the noise used by ``zeros="noise"``.
        seed: seed of the private generator used for the noise (no global RNG is touched).

    Constructing the optimizer may change the parameters (noise, see above). Afterwards the
    optimizer owns them: each step writes ``w = w0 + sign·exp(log|Δw|)``. Parameters whose
    ``grad`` is None in :meth:`step` get likelihood 1 (unchanged log|Δw|) but still take part in
    the projection.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.01,
        exponent: float = 1.0,
        max_delta: float | None = 0.1,
        *,
        expansion: Expansion = "origin",
        init_noise: float = 1e-3,
        zeros: ZeroPolicy = "noise",
        zero_noise: float = 1e-3,
        seed: int = 0,
    ):
        _check_positive("lr", lr, "e.g. lr=0.01")
        _check_positive("exponent", exponent, "e.g. exponent=1.0")
        if max_delta is not None:
            _check_positive("max_delta", max_delta, "or max_delta=None for no clipping")
        if expansion not in _EXPANSIONS:
            raise ValueError(f"expansion={expansion!r} is not valid; choose one of {_EXPANSIONS}")
        if zeros not in _ZERO_POLICIES:
            raise ValueError(f"zeros={zeros!r} is not valid; choose one of {_ZERO_POLICIES}")
        _check_positive("init_noise", init_noise, "e.g. init_noise=1e-3")
        _check_positive("zero_noise", zero_noise, "e.g. zero_noise=1e-3")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self._initialised = False
        defaults = {"lr": lr, "exponent": exponent, "max_delta": max_delta}
        super().__init__(params, defaults)
        for group in self.param_groups:
            _check_positive("lr", group["lr"], "in a parameter group")
            _check_positive("exponent", group["exponent"], "in a parameter group")
            if group["max_delta"] is not None:
                _check_positive("max_delta", group["max_delta"], "in a parameter group")
        self.expansion = expansion
        self._init_state(expansion, init_noise, zeros, zero_noise, seed)
        self._initialised = True

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if getattr(self, "_initialised", False):
            raise ValueError(
                "NeuralTangentEnsemble: parameter groups cannot be added after construction "
                "because the L1 norm z is global over all parameters; build a new optimizer "
                "with every group instead"
            )
        super().add_param_group(param_group)

    @torch.no_grad()
    def _init_state(
        self, expansion: str, init_noise: float, zeros: str, zero_noise: float, seed: int
    ) -> None:
        params = [p for g in self.param_groups for p in g["params"]]
        if not params:
            raise ValueError("NeuralTangentEnsemble: got no parameters to optimise")
        for p in params:
            if not p.is_floating_point():
                raise TypeError(f"NeuralTangentEnsemble: parameters must be floating point, got {p.dtype}")
        generator = torch.Generator(device=params[0].device).manual_seed(seed)
        deltas = []
        for p in params:
            if expansion == "origin":
                delta = p.detach().clone()
            else:
                delta = init_noise * torch.randn(
                    p.shape, generator=generator, device=p.device, dtype=p.dtype
                )
            is_zero = delta == 0
            if bool(is_zero.any()):
                if zeros == "error":
                    raise ValueError(
                        f"NeuralTangentEnsemble: {int(is_zero.sum())} parameter entries of a "
                        f"tensor of shape {tuple(p.shape)} are exactly zero, which gives sign 0 "
                        "and log|0| = -inf; initialise them away from zero, or pass "
                        "zeros='noise' (replace by small noise) or zeros='keep' (freeze them)"
                    )
                if zeros == "noise":
                    noise = zero_noise * torch.randn(
                        p.shape, generator=generator, device=p.device, dtype=p.dtype
                    )
                    delta = torch.where(is_zero, noise, delta)
            deltas.append(delta)
        l1 = sum(float(d.abs().sum()) for d in deltas)
        if not l1 > 0:
            raise ValueError(
                "NeuralTangentEnsemble: every Δw is zero, so the ensemble has no mass; "
                "use zeros='noise' or non-zero parameters"
            )
        for p, delta in zip(params, deltas, strict=True):
            state = self.state[p]
            state["sign"] = torch.sign(delta)
            state["log_magnitude"] = delta.abs().log()
            if expansion == "init":
                state["seed"] = p.detach().clone()
                p.add_(delta)
            else:
                p.copy_(delta)
        self.state["ensemble"] = {"log_l1_norm": math.log(l1)}

    @property
    def l1_norm(self) -> float:
        """z, the L1 norm of Δw over all parameters that the projection restores."""
        return math.exp(self.state["ensemble"]["log_l1_norm"])

    def displacement(self, param: Tensor) -> Tensor:
        """Δw of one parameter, ``sign · exp(log|Δw|)``."""
        state = self.state[param]
        return state["sign"] * state["log_magnitude"].exp()

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None, *, batch_size: int = 1):
        """Batch form: ``log|Δw| += β · B · log1p(−η · sign · ḡ)`` with ``ḡ = p.grad``.

        ``p.grad`` is read as the gradient of the *mean* loss over ``batch_size`` examples (the
        torch default); with ``batch_size=1`` the batch counts as one observation.
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        log_factors = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    log_factors.append(None)
                    continue
                if p.grad.is_sparse:
                    raise TypeError("NeuralTangentEnsemble does not support sparse gradients")
                sign = self.state[p]["sign"]
                factor = likelihood_log_factor(sign, p.grad, group["lr"])
                log_factors.append(factor.mul_(group["exponent"] * batch_size))
        self._apply(log_factors)
        return loss

    @torch.no_grad()
    def step_per_example(
        self,
        module: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        inputs: Tensor,
        targets: Tensor,
        *,
        method: PerExampleMethod = "vmap",
        chunk_size: int = 32,
    ) -> Tensor:
        """Exact product of per-example likelihoods: ``log|Δw| += β Σ_k log1p(−η·sign·g_k)``.

        ``loss_fn(outputs, targets)`` is called on one example at a time (batch axis of 1).
        Parameters of this optimizer must be parameters of ``module``; module parameters that
        are not in the optimizer are held fixed. Examples are processed ``chunk_size`` at a time
        to bound the memory of the (chunk, N) gradients. Returns the mean loss of the batch
        (before the update). Nothing changes if a likelihood is not positive.
        """
        if method not in _METHODS:
            raise ValueError(f"method={method!r} is not valid; choose one of {_METHODS}")
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if inputs.shape[0] != targets.shape[0] or inputs.shape[0] == 0:
            raise ValueError(
                f"inputs and targets must share a non-empty batch axis, got {inputs.shape[0]} "
                f"and {targets.shape[0]}"
            )
        ours = {id(p) for g in self.param_groups for p in g["params"]}
        names = {id(p): n for n, p in module.named_parameters() if id(p) in ours}
        if len(names) != len(ours):
            raise ValueError(
                f"step_per_example: {len(ours) - len(names)} optimised parameters are not "
                "parameters of `module`; pass the module whose parameters this optimizer holds"
            )
        params = {names[id(p)]: p for g in self.param_groups for p in g["params"]}
        sums: dict[str, Tensor] = {}
        losses = []
        with torch.enable_grad():
            for start in range(0, inputs.shape[0], chunk_size):
                x = inputs[start : start + chunk_size]
                y = targets[start : start + chunk_size]
                grads, loss = per_example_gradients(module, loss_fn, x, y, params, method)
                losses.append(loss)
                with torch.no_grad():
                    for group in self.param_groups:
                        for p in group["params"]:
                            name = names[id(p)]
                            factor = likelihood_log_factor(
                                self.state[p]["sign"], grads[name], group["lr"]
                            ).sum(0)
                            sums[name] = factor if name not in sums else sums[name].add_(factor)
        log_factors = [
            sums[names[id(p)]].mul_(g["exponent"]) for g in self.param_groups for p in g["params"]
        ]
        self._apply(log_factors)
        return torch.cat(losses).mean()

    def _apply(self, log_factors: Sequence[Tensor | None]) -> None:
        """Add the log-likelihoods, project onto the L1 sphere, clip, write the parameters."""
        params = [(g, p) for g in self.param_groups for p in g["params"]]
        log_mags = []
        for (_, p), factor in zip(params, log_factors, strict=True):
            log_mag = self.state[p]["log_magnitude"]
            log_mags.append(log_mag if factor is None else log_mag.add_(factor))
        log_l1 = self.state["ensemble"]["log_l1_norm"]
        total = torch.logsumexp(torch.stack([torch.logsumexp(m.flatten(), 0) for m in log_mags]), 0)
        shift = log_l1 - float(total)
        for (group, p), log_mag in zip(params, log_mags, strict=True):
            log_mag.add_(shift)
            if group["max_delta"] is not None:
                log_mag.clamp_(max=math.log(group["max_delta"]))
            state = self.state[p]
            value = torch.exp(log_mag).mul_(state["sign"])
            if "seed" in state:
                value.add_(state["seed"])
            p.copy_(value)


def _check_positive(name: str, value: Any, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}; {hint}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}; {hint}")
