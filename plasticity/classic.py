"""Built-in classic plasticity rules, each with a Brian2 form and a torch rate form.

Spike forms of the rate rules (Hebbian, Oja, BCM) estimate rates with exponential traces that
jump by ``1/tau`` at each spike, so a trace's mean equals the neuron's rate. For independent
Poisson spike trains of constant rates the expected weight drift of every Brian2 form equals
its rate form (the rate limit of STDP: Kempter, Gerstner & van Hemmen 1999, Phys Rev E 59).
Rates are in Hz, ``dW/dt`` in weight units per second (conventions: :mod:`.rules`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from brian2 import Hz, Quantity, TimedArray, have_same_dimensions, ms, second

from .rules import Brian2Form, Rule, param, rate_tensors

__all__ = [
    "BCM",
    "STDP",
    "Hebbian",
    "MultiplicativeSTDP",
    "Oja",
    "RewardModulatedSTDP",
    "TripletSTDP",
]

_POSITIVE_TIME = {"min": 0 * ms, "min_exclusive": True}


def bound_weight_code(w_min: float | None, w_max: float | None) -> str:
    """Brian2 statements that keep ``w`` within ``[w_min, w_max]`` (None: no bound); the
    bounds must be in the namespace as ``w_min`` / ``w_max``."""
    if w_min is not None and w_max is not None:
        return "w = clip(w, w_min, w_max)"
    if w_min is not None:
        return "w = w + (w_min - w) * int(w < w_min)"
    if w_max is not None:
        return "w = w + (w_max - w) * int(w > w_max)"
    return ""


def _code(*lines: str) -> str:
    return "\n".join(line for line in lines if line)


def _bounds_namespace(rule: Rule) -> dict[str, float]:
    low, high = rule.weight_bounds()
    return {k: v for k, v in (("w_min", low), ("w_max", high)) if v is not None}


def _batch_mean(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1]).mean(0)


# --------------------------------------------------------------------------------------------
# Rate rules
# --------------------------------------------------------------------------------------------


@dataclass
class Hebbian(Rule):
    """Hebb's rule: dW/dt = eta * r_post * r_pre (Hebb 1949; rate form as in Gerstner & Kistler
    2002, ch. 10).

    Spike form: symmetric pairing of each spike with the other side's rate trace,
    ``w += eta/2 * a_post`` on a pre spike and ``w += eta/2 * a_pre`` on a post spike, with
    ``da/dt = -a/tau_rate`` and ``a += 1/tau_rate`` per spike.
    """

    eta: Quantity = param(
        1e-4 * second, "learning rate (weight change per s per Hz^2)", unit=second
    )
    tau_rate: Quantity = param(100 * ms, "time constant of the rate traces", **_POSITIVE_TIME)
    w_min: float | None = param(None, "lower weight bound (None: unbounded)")
    w_max: float | None = param(None, "upper weight bound (None: unbounded)")

    def brian2_form(self) -> Brian2Form:
        bound = bound_weight_code(*self.weight_bounds())
        return Brian2Form(
            model=_code(
                "w : 1",
                "dpre_trace/dt = -pre_trace / tau_rate : Hz (event-driven)",
                "dpost_trace/dt = -post_trace / tau_rate : Hz (event-driven)",
            ),
            on_pre=_code("w += 0.5 * eta * post_trace", bound, "pre_trace += 1 / tau_rate"),
            on_post=_code("w += 0.5 * eta * pre_trace", bound, "post_trace += 1 / tau_rate"),
            namespace={"eta": self.eta, "tau_rate": self.tau_rate, **_bounds_namespace(self)},
        )

    def rate_update(self, pre_rate, post_rate, weight, modulator=None) -> torch.Tensor:
        pre, post, _ = rate_tensors(pre_rate, post_rate, weight)
        return float(self.eta) * self.batch_outer(post, pre, modulator)


@dataclass
class Oja(Rule):
    """Oja's rule: dW/dt = eta * (r_post * r_pre - r_post^2 * W) (Oja 1982, J Math Biol 15).

    Spike form: on a post spike ``w += eta * (a_pre - a_post * w)``, with the post trace read
    before it counts that spike (rate traces as in :class:`Hebbian`).
    """

    eta: Quantity = param(
        1e-4 * second, "learning rate (weight change per s per Hz^2)", unit=second
    )
    tau_rate: Quantity = param(100 * ms, "time constant of the rate traces", **_POSITIVE_TIME)

    def brian2_form(self) -> Brian2Form:
        return Brian2Form(
            model=_code(
                "w : 1",
                "dpre_trace/dt = -pre_trace / tau_rate : Hz (event-driven)",
                "dpost_trace/dt = -post_trace / tau_rate : Hz (event-driven)",
            ),
            on_pre="pre_trace += 1 / tau_rate",
            on_post=_code("w += eta * (pre_trace - post_trace * w)", "post_trace += 1 / tau_rate"),
            namespace={"eta": self.eta, "tau_rate": self.tau_rate},
        )

    def rate_update(self, pre_rate, post_rate, weight, modulator=None) -> torch.Tensor:
        pre, post, weight = rate_tensors(pre_rate, post_rate, weight)
        hebb = self.batch_outer(post, pre, modulator)
        post_sq = post**2
        if modulator is not None:
            post_sq = post_sq * torch.as_tensor(modulator, dtype=post.dtype)
        decay = _batch_mean(post_sq)[:, None] * weight
        return float(self.eta) * (hebb - decay)


@dataclass
class BCM(Rule):
    """BCM rule: dW/dt = eta * r_pre * r_post * (r_post - theta) / r_target with the sliding
    threshold theta = rbar_post^2 / r_target (Bienenstock, Cooper & Munro 1982, J Neurosci 2).

    rbar_post is the post rate averaged over ``tau_theta``. Spike form: on a post spike
    ``w += eta * a_pre * (a_post - theta) / r_target`` with ``theta = abar_post^2 / r_target``
    and ``abar`` a rate trace of time constant ``tau_theta`` (its Poisson variance adds
    r_post / (2 tau_theta r_target) to the mean of theta: keep tau_theta * r_post >> 1).
    Rate form: rbar_post is the batch mean of ``post_rate`` (a single sample: the rate itself,
    the threshold's steady state under constant rates).
    """

    eta: Quantity = param(
        1e-5 * second, "learning rate (weight change per s per Hz^2)", unit=second
    )
    r_target: Quantity = param(10 * Hz, "target rate setting theta", min=0 * Hz, min_exclusive=True)
    tau_rate: Quantity = param(100 * ms, "time constant of the rate traces", **_POSITIVE_TIME)
    tau_theta: Quantity = param(5 * second, "averaging time of theta", **_POSITIVE_TIME)
    w_min: float | None = param(0.0, "lower weight bound (None: unbounded)")
    w_max: float | None = param(None, "upper weight bound (None: unbounded)")

    def brian2_form(self) -> Brian2Form:
        bound = bound_weight_code(*self.weight_bounds())
        return Brian2Form(
            model=_code(
                "w : 1",
                "dpre_trace/dt = -pre_trace / tau_rate : Hz (event-driven)",
                "dpost_trace/dt = -post_trace / tau_rate : Hz (event-driven)",
                "dpost_slow/dt = -post_slow / tau_theta : Hz (event-driven)",
            ),
            on_pre="pre_trace += 1 / tau_rate",
            on_post=_code(
                # theta = post_slow**2 / r_target inline: as a model subexpression Brian2
                # reads post_slow as last written, not decayed to the spike time
                "w += eta * pre_trace * (post_trace - post_slow**2 / r_target) / r_target",
                bound,
                "post_trace += 1 / tau_rate",
                "post_slow += 1 / tau_theta",
            ),
            namespace={
                "eta": self.eta,
                "r_target": self.r_target,
                "tau_rate": self.tau_rate,
                "tau_theta": self.tau_theta,
                **_bounds_namespace(self),
            },
        )

    def rate_update(self, pre_rate, post_rate, weight, modulator=None) -> torch.Tensor:
        pre, post, _ = rate_tensors(pre_rate, post_rate, weight)
        r_target = float(self.r_target)
        theta = _batch_mean(post) ** 2 / r_target
        return float(self.eta) / r_target * self.batch_outer(post * (post - theta), pre, modulator)


# --------------------------------------------------------------------------------------------
# Spike-timing rules
# --------------------------------------------------------------------------------------------


@dataclass
class STDP(Rule):
    """Pair-based additive STDP, all-to-all pairing, hard bounds (Song, Miller & Abbott 2000,
    Nat Neurosci 3).

    A pair with dt = t_post - t_pre changes w by A_plus*exp(-dt/tau_plus) if dt >= 0, else by
    -A_minus*exp(dt/tau_minus). Rate form for independent Poisson trains (Kempter et al. 1999):
    dW/dt = r_pre * r_post * (A_plus*tau_plus - A_minus*tau_minus).
    """

    A_plus: float = param(0.01, "potentiation amplitude per pair", min=0.0)
    A_minus: float = param(0.0105, "depression amplitude per pair", min=0.0)
    tau_plus: Quantity = param(20 * ms, "potentiation window time constant", **_POSITIVE_TIME)
    tau_minus: Quantity = param(20 * ms, "depression window time constant", **_POSITIVE_TIME)
    w_min: float = param(0.0, "lower weight bound")
    w_max: float = param(1.0, "upper weight bound")

    def _potentiation_factor(self) -> str:
        """Brian2 expression f_plus(w) scaling potentiation (1: additive)."""
        return "1"

    def _depression_factor(self) -> str:
        return "1"

    def _factors(self, weight: torch.Tensor | np.ndarray) -> tuple[float | np.ndarray, ...]:
        return 1.0, 1.0

    def _namespace(self) -> dict:
        return {
            "A_plus": self.A_plus,
            "A_minus": self.A_minus,
            "tau_plus": self.tau_plus,
            "tau_minus": self.tau_minus,
            "w_min": self.w_min,
            "w_max": self.w_max,
        }

    def brian2_form(self) -> Brian2Form:
        return Brian2Form(
            model=_code(
                "w : 1",
                "dpre_trace/dt = -pre_trace / tau_plus : 1 (event-driven)",
                "dpost_trace/dt = -post_trace / tau_minus : 1 (event-driven)",
            ),
            on_pre=_code(
                f"w = clip(w - A_minus * ({self._depression_factor()}) * post_trace, w_min, w_max)",
                "pre_trace += 1",
            ),
            on_post=_code(
                f"w = clip(w + A_plus * ({self._potentiation_factor()}) * pre_trace, w_min, w_max)",
                "post_trace += 1",
            ),
            namespace=self._namespace(),
        )

    def pair_window(self, delta_t, weight: float | np.ndarray = 0.5) -> np.ndarray:
        """Weight change caused by one pre/post pair, ``delta_t = t_post - t_pre`` (seconds or
        Quantity), at weight ``weight`` (used by weight-dependent variants only)."""
        delta_t = np.asarray(delta_t / second if isinstance(delta_t, Quantity) else delta_t)
        f_plus, f_minus = self._factors(np.asarray(weight, dtype=float))
        ltp = self.A_plus * f_plus * np.exp(-np.abs(delta_t) / float(self.tau_plus))
        ltd = -self.A_minus * f_minus * np.exp(-np.abs(delta_t) / float(self.tau_minus))
        return np.where(delta_t >= 0, ltp, ltd)

    def rate_update(self, pre_rate, post_rate, weight, modulator=None) -> torch.Tensor:
        pre, post, weight = rate_tensors(pre_rate, post_rate, weight)
        f_plus, f_minus = self._factors(weight)
        ltp = self.A_plus * float(self.tau_plus) * f_plus
        ltd = self.A_minus * float(self.tau_minus) * f_minus
        return self.batch_outer(post, pre, modulator) * (ltp - ltd)


@dataclass
class MultiplicativeSTDP(STDP):
    """Weight-dependent STDP: potentiation scaled by (1 - x)^mu and depression by x^mu, with
    x = (w - w_min) / (w_max - w_min) (Gutig et al. 2003, J Neurosci 23; mu = 1 is the
    multiplicative rule of Rubin, Lee & Sompolinsky 2001, PRL 86; mu = 0 the additive rule).

    Rate form: dW/dt = r_pre r_post (A_plus tau_plus (1-x)^mu - A_minus tau_minus x^mu).
    """

    mu: float = param(1.0, "weight-dependence exponent (0 additive, 1 multiplicative)", min=0.0)

    def _potentiation_factor(self) -> str:
        return "((w_max - w) / (w_max - w_min))**mu"

    def _depression_factor(self) -> str:
        return "((w - w_min) / (w_max - w_min))**mu"

    def _factors(self, weight):
        x = (weight - self.w_min) / (self.w_max - self.w_min)
        return (1 - x) ** self.mu, x**self.mu

    def _namespace(self) -> dict:
        return {**super()._namespace(), "mu": self.mu}


@dataclass
class TripletSTDP(Rule):
    """Triplet STDP, all-to-all (Pfister & Gerstner 2006, J Neurosci 26; defaults: visual
    cortex, full model, Table 4).

    Traces r1 (tau_plus), r2 (tau_x) of pre spikes and o1 (tau_minus), o2 (tau_y) of post
    spikes, each jumping by 1. Pre spike: w -= o1 * (A2_minus + A3_minus * r2);
    post spike: w += r1 * (A2_plus + A3_plus * o2), where r2 / o2 are read before they count
    the current spike. Rate form for independent Poisson trains:
    dW/dt = r_pre r_post (A2_plus tau_plus - A2_minus tau_minus)
            + A3_plus tau_plus tau_y r_pre r_post^2 - A3_minus tau_minus tau_x r_pre^2 r_post.
    """

    A2_plus: float = param(5e-10, "pair potentiation amplitude", min=0.0)
    A3_plus: float = param(6.2e-3, "triplet potentiation amplitude", min=0.0)
    A2_minus: float = param(7e-3, "pair depression amplitude", min=0.0)
    A3_minus: float = param(2.3e-4, "triplet depression amplitude", min=0.0)
    tau_plus: Quantity = param(16.8 * ms, "pre trace r1 time constant", **_POSITIVE_TIME)
    tau_minus: Quantity = param(33.7 * ms, "post trace o1 time constant", **_POSITIVE_TIME)
    tau_x: Quantity = param(101 * ms, "pre trace r2 time constant", **_POSITIVE_TIME)
    tau_y: Quantity = param(125 * ms, "post trace o2 time constant", **_POSITIVE_TIME)
    w_min: float = param(0.0, "lower weight bound")
    w_max: float = param(1.0, "upper weight bound")

    def brian2_form(self) -> Brian2Form:
        return Brian2Form(
            model=_code(
                "w : 1",
                "dr1/dt = -r1 / tau_plus : 1 (event-driven)",
                "dr2/dt = -r2 / tau_x : 1 (event-driven)",
                "do1/dt = -o1 / tau_minus : 1 (event-driven)",
                "do2/dt = -o2 / tau_y : 1 (event-driven)",
            ),
            on_pre=_code(
                "w = clip(w - o1 * (A2_minus + A3_minus * r2), w_min, w_max)",
                "r1 += 1",
                "r2 += 1",
            ),
            on_post=_code(
                "w = clip(w + r1 * (A2_plus + A3_plus * o2), w_min, w_max)",
                "o1 += 1",
                "o2 += 1",
            ),
            namespace={
                name: getattr(self, name)
                for name in (
                    "A2_plus",
                    "A3_plus",
                    "A2_minus",
                    "A3_minus",
                    "tau_plus",
                    "tau_minus",
                    "tau_x",
                    "tau_y",
                    "w_min",
                    "w_max",
                )
            },
        )

    def rate_update(self, pre_rate, post_rate, weight, modulator=None) -> torch.Tensor:
        pre, post, _ = rate_tensors(pre_rate, post_rate, weight)
        tau_plus, tau_minus = float(self.tau_plus), float(self.tau_minus)
        pair = self.A2_plus * tau_plus - self.A2_minus * tau_minus
        post_factor = post * (pair + self.A3_plus * tau_plus * float(self.tau_y) * post)
        ltd3 = self.A3_minus * tau_minus * float(self.tau_x)
        triplet_ltd = self.batch_outer(post, pre**2, modulator) * ltd3
        return self.batch_outer(post_factor, pre, modulator) - triplet_ltd


@dataclass
class RewardModulatedSTDP(Rule):
    """Reward-modulated STDP with an eligibility trace, a three-factor rule (Izhikevich 2007,
    Cereb Cortex 17; Florian 2007, Neural Comput 19).

    STDP pairs (as in :class:`STDP`) feed an eligibility trace c instead of the weight,
    dc/dt = -c / tau_eligibility; the weight follows dw/dt = eta * M(t) * c, with hard bounds
    (each Euler step is clipped to [w_min, w_max]). The modulator M is either the TimedArray
    ``modulator_input`` or, if that is None, the synaptic variable ``modulator``, decaying with
    ``tau_modulator``, that a modulatory Synapses targeting the plastic Synapses increments:
    ``Synapses(dopamine, plastic, on_pre="modulator_post += 1")``.
    Rate form (independent Poisson trains, stationary c):
    dW/dt = eta * M * tau_eligibility * r_pre r_post (A_plus tau_plus - A_minus tau_minus).
    """

    eta: Quantity = param(1.0 * Hz, "learning rate of dw/dt = eta*M*c", unit=Hz)
    A_plus: float = param(0.01, "potentiation amplitude per pair (into c)", min=0.0)
    A_minus: float = param(0.0105, "depression amplitude per pair (into c)", min=0.0)
    tau_plus: Quantity = param(20 * ms, "potentiation window time constant", **_POSITIVE_TIME)
    tau_minus: Quantity = param(20 * ms, "depression window time constant", **_POSITIVE_TIME)
    tau_eligibility: Quantity = param(1 * second, "eligibility trace time", **_POSITIVE_TIME)
    tau_modulator: Quantity = param(200 * ms, "decay of the synaptic modulator", **_POSITIVE_TIME)
    modulator_input: TimedArray | None = param(None, "M(t) as a 1-D TimedArray (None: synaptic)")
    w_min: float = param(0.0, "lower weight bound")
    w_max: float = param(1.0, "upper weight bound")

    def validate(self) -> None:
        super().validate()
        signal = self.modulator_input
        if signal is not None and (
            np.ndim(signal.values) != 1 or not have_same_dimensions(Quantity(1, dim=signal.dim), 1)
        ):
            raise ValueError(
                "parameter 'modulator_input': need a dimensionless 1-D TimedArray M(t); "
                "fix: TimedArray(values_1d, dt=...)"
            )

    def brian2_form(self) -> Brian2Form:
        if self.modulator_input is None:
            modulator = "dmodulator/dt = -modulator / tau_modulator : 1 (clock-driven)"
        else:
            modulator = "modulator = modulator_input(t) : 1"
        namespace = {
            name: getattr(self, name)
            for name in (
                "eta",
                "A_plus",
                "A_minus",
                "tau_plus",
                "tau_minus",
                "tau_eligibility",
                "w_min",
                "w_max",
            )
        }
        if self.modulator_input is None:
            namespace["tau_modulator"] = self.tau_modulator
        else:
            namespace["modulator_input"] = self.modulator_input
        return Brian2Form(
            model=_code(
                "dw/dt = (clip(w + dt * eta * modulator * c, w_min, w_max) - w) / dt"
                " : 1 (clock-driven)",
                "dc/dt = -c / tau_eligibility : 1 (clock-driven)",
                modulator,
                "dpre_trace/dt = -pre_trace / tau_plus : 1 (event-driven)",
                "dpost_trace/dt = -post_trace / tau_minus : 1 (event-driven)",
            ),
            on_pre=_code("c -= A_minus * post_trace", "pre_trace += 1"),
            on_post=_code("c += A_plus * pre_trace", "post_trace += 1"),
            namespace=namespace,
            method="euler",
            modulator="modulator" if self.modulator_input is None else None,
        )

    def rate_update(self, pre_rate, post_rate, weight, modulator=None) -> torch.Tensor:
        if modulator is None:
            raise ValueError(
                "parameter 'modulator': reward-modulated STDP is a three-factor rule and needs "
                "the modulator M; fix: rate_update(pre, post, weight, modulator=M)"
            )
        pre, post, _ = rate_tensors(pre_rate, post_rate, weight)
        window = self.A_plus * float(self.tau_plus) - self.A_minus * float(self.tau_minus)
        scale = float(self.eta) * float(self.tau_eligibility) * window
        return scale * self.batch_outer(post, pre, modulator)
