"""Tests for the rule interface, the registry, the classic rules and the example plugin.

Brian2 runs with the numpy runtime target. Agreement between a rule's Brian2 form and its
torch rate form is tested on independent Poisson trains of constant rates through many
one-to-one synapses (independent samples): the mean drift must lie within 4 standard errors of
the rate form's prediction, and the standard error must be below 5% of the prediction so that
the comparison has power.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from brian2 import (
    Hz,
    Network,
    PoissonGroup,
    Quantity,
    SpikeGeneratorGroup,
    StateMonitor,
    Synapses,
    TimedArray,
    defaultclock,
    ms,
    mV,
    second,
)
from brian2 import seed as brian2_seed

from plastix.plasticity.classic import STDP, MultiplicativeSTDP, RewardModulatedSTDP
from plastix.plasticity.rules import (
    Brian2Form,
    Rule,
    RulePluginWarning,
    RuleSpec,
    format_rules,
    get_rule,
    list_rules,
    param,
)

DT = 0.1 * ms
REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "plastix-rule-example"
BUILTINS = {
    "hebbian",
    "oja",
    "bcm",
    "stdp",
    "stdp-multiplicative",
    "triplet-stdp",
    "reward-stdp",
    "ib",
}


@pytest.fixture(autouse=True)
def brian2_clock():
    """A 0.1 ms clock for each test, restored afterwards."""
    old_dt = defaultclock.dt
    defaultclock.dt = DT
    yield
    defaultclock.dt = old_dt


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def poisson_drift(
    rule,
    rate_pre,
    rate_post,
    w0,
    n=2000,
    warmup=0.2 * second,
    duration=0.6 * second,
    init=None,
    seed=1,
):
    """Per-synapse mean dw/dt (1/s) and midpoint weight over ``duration`` after ``warmup``."""
    brian2_seed(seed)
    form = rule.brian2_form()
    pre = PoissonGroup(n, rate_pre)
    post = PoissonGroup(n, rate_post)
    syn = Synapses(pre, post, **form.synapses_kwargs())
    syn.connect(j="i")
    syn.w = w0
    for name, value in (init or {}).items():
        setattr(syn, name, value)
    net = Network(pre, post, syn)
    net.run(warmup)
    w_start = np.array(syn.w[:])
    net.run(duration)
    w_end = np.array(syn.w[:])
    return (w_end - w_start) / float(duration), 0.5 * (w_start + w_end)


def predicted_drift(rule, rate_pre, rate_post, w_mid, modulator=None):
    """The rate form's dw/dt for each one-to-one synapse at its midpoint weight."""
    n = len(w_mid)
    pre = torch.full((n,), float(rate_pre), dtype=torch.float64)
    post = torch.full((n,), float(rate_post), dtype=torch.float64)
    weight = torch.diag(torch.as_tensor(w_mid, dtype=torch.float64))
    return torch.diagonal(rule.rate_update(pre, post, weight, modulator)).numpy()


def assert_agrees(drift, prediction):
    residual = drift - prediction
    standard_error = drift.std(ddof=1) / np.sqrt(len(drift))
    expected = np.mean(prediction)
    assert standard_error < 0.05 * abs(expected), (standard_error, expected)
    assert abs(residual.mean()) < 4 * standard_error, (drift.mean(), expected, standard_error)


def spike_pairs(pre_times, post_times, rule, w0=0.5, duration=None, extra=()):
    """Neuron k of a pre and a post SpikeGeneratorGroup fire at pre_times[k] / post_times[k]
    (lists of Quantity arrays); one-to-one synapses; returns (synapses, w_end)."""
    n = len(pre_times)
    pre = _generator(n, pre_times)
    post = _generator(n, post_times)
    syn = Synapses(pre, post, **rule.brian2_form().synapses_kwargs())
    syn.connect(j="i")
    syn.w = w0
    last = max(float(np.max(t)) for t in [*pre_times, *post_times] if len(t))
    net = Network(pre, post, syn, *extra(syn) if callable(extra) else extra)
    net.run(duration if duration is not None else (last + 0.05) * second)
    return syn, np.array(syn.w[:])


def _generator(n, times):
    indices = np.concatenate([np.full(len(t), k) for k, t in enumerate(times)]).astype(int)
    spikes = np.concatenate(
        [np.asarray(t / second if isinstance(t, Quantity) else t, float) for t in times]
    )
    return SpikeGeneratorGroup(n, indices, spikes * second)


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------


def test_builtin_rules_are_registered_with_typed_parameters():
    rules = list_rules()
    assert BUILTINS <= set(rules)
    stdp = rules["stdp"]
    assert isinstance(stdp, RuleSpec) and stdp.rule_class is STDP and stdp.source == "plastix"
    assert "Song, Miller & Abbott 2000" in stdp.description
    params = {p.name: p for p in stdp.parameters}
    name, annotation, default, unit, help_text = params["tau_plus"]
    assert (name, annotation, unit) == ("tau_plus", Quantity, "ms")
    assert default == 20 * ms and help_text
    assert params["A_plus"].type is float and params["A_plus"].unit is None
    assert all(spec.has_rate_form for spec in rules.values() if spec.name in BUILTINS)


def test_format_rules_lists_every_rule_and_its_parameters():
    text = format_rules()
    for name in BUILTINS:
        assert f"\n{name}  [" in f"\n{text}"
    assert "tau_plus: Quantity [ms] = 20 ms" in text
    assert "modulator_input: TimedArray | None = None" in text


def test_get_rule_builds_with_overrides():
    rule = get_rule("stdp", A_plus=0.02, tau_plus=10 * ms)
    assert isinstance(rule, STDP) and rule.A_plus == 0.02 and rule.tau_plus == 10 * ms
    assert get_rule("stdp").A_plus == 0.01


def test_unknown_rule_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"unknown rule 'nope'.*stdp"):
        get_rule("nope")


# --------------------------------------------------------------------------------------------
# parameter validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "error", "pattern"),
    [
        ("stdp", {"tau_plus": 20}, TypeError, r"'tau_plus'.*ms.*tau_plus=<value>\*ms"),
        ("stdp", {"tau_plus": 20 * mV}, TypeError, r"'tau_plus'.*quantity in ms.*dimension"),
        ("stdp", {"A_plus": "big"}, TypeError, r"'A_plus'.*plain number \(float\).*'big'"),
        ("stdp", {"A_plus": 0.01 * ms}, TypeError, r"'A_plus'.*plain number"),
        ("stdp", {"A_plus": True}, TypeError, r"'A_plus'"),
        ("stdp", {"tau_minus": -5 * ms}, ValueError, r"'tau_minus'.*> 0"),
        ("stdp", {"A_minus": -0.1}, ValueError, r"'A_minus'.*>= 0"),
        ("stdp", {"w_min": 1.0, "w_max": 0.5}, ValueError, r"'w_min'.*'w_max'"),
        ("stdp", {"tau_pluss": 5 * ms}, TypeError, r"unknown parameter\(s\) 'tau_pluss'.*tau_plus"),
        ("hebbian", {"w_max": "1"}, TypeError, r"'w_max'.*float \| None"),
        ("reward-stdp", {"modulator_input": [1.0]}, TypeError, r"'modulator_input'.*TimedArray"),
        (
            "reward-stdp",
            {"modulator_input": TimedArray([1.0] * mV, dt=1 * ms)},
            ValueError,
            r"'modulator_input'.*dimensionless",
        ),
        ("bcm", {"eta": 1e-5}, TypeError, r"'eta'.*quantity in second.*plain number"),
        ("stdp", {"A_plus": float("nan")}, ValueError, r"'A_plus': nan is not finite"),
        ("stdp", {"w_max": float("inf")}, ValueError, r"'w_max': inf is not finite"),
        ("hebbian", {"w_max": float("inf")}, ValueError, r"'w_max'.*None: no value, e.g. no bound"),
        ("hebbian", {"eta": float("nan") * second}, ValueError, r"'eta'.*not finite"),
        ("stdp", {"tau_plus": float("inf") * ms}, ValueError, r"'tau_plus'.*not finite"),
    ],
)
def test_bad_parameter_is_refused_naming_it(name, params, error, pattern):
    with pytest.raises(error, match=pattern):
        get_rule(name, **params)


@dataclass
class _NeedsRate(Rule):
    """A rule with a required parameter (for the missing-parameter test)."""

    rate: Quantity = param(help="reference rate", unit=Hz)
    gain: float = param(1.0, "gain")
    mode: Literal["fast", "slow"] = param("fast", "a choice")


def test_missing_parameter_is_refused_naming_it_and_its_unit():
    spec = RuleSpec("needs-rate", _NeedsRate, "tests")
    assert spec.parameters[0].required and spec.parameters[0].unit == "Hz"
    with pytest.raises(TypeError, match=r"missing parameter 'rate' \(Quantity in Hz\)"):
        spec.create(gain=2.0)
    assert spec.create(rate=5 * Hz).rate == 5 * Hz
    with pytest.raises(TypeError, match=r"'rate'.*quantity in Hz"):
        spec.create(rate=5 * ms)


def test_choice_parameter_is_validated():
    spec = RuleSpec("needs-rate", _NeedsRate, "tests")
    assert spec.parameters[2].type_name == "'fast' | 'slow'"
    with pytest.raises(ValueError, match=r"'mode': 'medium' is not one of 'fast', 'slow'"):
        spec.create(rate=1 * Hz, mode="medium")


def test_rule_from_config_text_parses_units_numbers_and_none():
    stdp = list_rules()["stdp"].create_from_config({"tau_plus": "10*ms", "A_plus": "0.02"})
    assert stdp.tau_plus == 10 * ms and stdp.A_plus == 0.02
    hebbian = list_rules()["hebbian"].create_from_config(
        {"eta": "1e-3 second", "w_max": "none", "w_min": "-1"}
    )
    assert hebbian.eta == 1e-3 * second and hebbian.w_max is None and hebbian.w_min == -1.0
    spec = RuleSpec("needs-rate", _NeedsRate, "tests")
    assert spec.create_from_config({"rate": "5 kHz", "mode": "slow"}).rate == 5000 * Hz
    with pytest.raises(
        TypeError,
        match=r"'tau_plus'.*got 10.0 \(a plain number without a unit\); fix: tau_plus=<value>\*ms",
    ):
        list_rules()["stdp"].create_from_config({"tau_plus": "10"})
    with pytest.raises(
        TypeError, match=r"'tau_plus'.*in ms \(dimension s\), got 10. \* volt \(dimension"
    ):
        list_rules()["stdp"].create_from_config({"tau_plus": "10*volt"})


def test_rule_from_config_text_takes_unit_symbols_and_powers():
    """Brian2 prints ``2. * second`` as ``2. s``; the symbols it prints parse too."""
    stdp = list_rules()["stdp"].create_from_config({"tau_plus": "0.02 s", "tau_minus": "0.03*s"})
    assert stdp.tau_plus == 20 * ms and stdp.tau_minus == 30 * ms
    with pytest.raises(TypeError, match=r"'tau_plus'.*got 2. \* msecond2 \(dimension s\^2\)"):
        list_rules()["stdp"].create_from_config({"tau_plus": "2 ms**2"})  # parsed, wrong unit
    with pytest.raises(TypeError, match=r"'tau_plus'.*got '2 furlong'"):
        list_rules()["stdp"].create_from_config({"tau_plus": "2 furlong"})


def test_valid_values_are_normalised():
    rule = get_rule("stdp", A_plus=1, w_max=np.float32(2.0))
    assert type(rule.A_plus) is float and type(rule.w_max) is float


# --------------------------------------------------------------------------------------------
# rate-form conventions
# --------------------------------------------------------------------------------------------


def test_rate_form_shapes_batch_mean_and_modulator():
    rule = get_rule("hebbian")
    gen = torch.Generator().manual_seed(0)
    pre, post = 50 * torch.rand(4, 3, generator=gen), 50 * torch.rand(4, 2, generator=gen)
    weight = torch.zeros(2, 3)
    batch = rule.rate_update(pre, post, weight)
    singles = torch.stack([rule.rate_update(pre[b], post[b], weight) for b in range(4)])
    assert batch.shape == (2, 3)
    torch.testing.assert_close(batch, singles.mean(0))
    torch.testing.assert_close(batch, 1e-4 * post.T @ pre / 4)
    per_post = torch.tensor([0.0, 2.0])
    gated = rule.rate_update(pre, post, weight, modulator=per_post)
    torch.testing.assert_close(gated, batch * per_post[:, None])
    with pytest.raises(ValueError, match=r"weight has shape \(3, 2\).*\(2, 3\)"):
        rule.rate_update(pre, post, weight.T)


def test_three_factor_rate_form_needs_and_scales_with_the_modulator():
    rule = get_rule("reward-stdp", A_minus=0.005)
    pre, post, weight = torch.tensor([20.0]), torch.tensor([30.0]), torch.tensor([[0.5]])
    with pytest.raises(ValueError, match="'modulator'"):
        rule.rate_update(pre, post, weight)
    one = rule.rate_update(pre, post, weight, modulator=1.0)
    assert one.item() == pytest.approx(1.0 * 1.0 * 20 * 30 * (0.01 * 0.02 - 0.005 * 0.02))
    torch.testing.assert_close(rule.rate_update(pre, post, weight, modulator=-2.0), -2 * one)


def test_clip_applies_the_rule_bounds():
    rule = get_rule("stdp", w_min=-1.0, w_max=2.0)
    clipped = rule.clip(torch.tensor([-3.0, 0.5, 5.0]))
    assert clipped.tolist() == [-1.0, 0.5, 2.0]
    unbounded = get_rule("hebbian")
    assert unbounded.clip(torch.tensor([-3.0, 5.0])).tolist() == [-3.0, 5.0]


def test_brian2_form_kwargs_put_the_transmission_first():
    form = get_rule("stdp").brian2_form()
    kwargs = form.synapses_kwargs(on_pre_effect="v_post += w*mV")
    assert kwargs["on_pre"].startswith("v_post += w*mV\n")
    assert kwargs["model"] == form.model and "method" not in kwargs
    assert isinstance(get_rule("reward-stdp").brian2_form(), Brian2Form)


# --------------------------------------------------------------------------------------------
# Brian2 form == rate form on Poisson inputs
# --------------------------------------------------------------------------------------------

AGREEMENT_CASES = {
    "hebbian": ({"tau_rate": 20 * ms}, {}, None),
    "oja": ({"tau_rate": 20 * ms}, {}, None),
    # theta's trace starts at its mean; tau_theta = 20 s makes its Poisson variance bias
    # (r_post / (2 tau_theta r_target), see BCM) 0.1% of theta, far below the tolerance.
    "bcm": (
        {"tau_rate": 20 * ms, "tau_theta": 20 * second, "r_target": 20 * Hz, "eta": 1e-4 * second},
        {"post_slow": 30 * Hz},
        None,
    ),
    "stdp": ({"A_minus": 0.005}, {}, None),
    "stdp-multiplicative": ({"A_plus": 0.004, "A_minus": 0.002}, {}, None),
    # the slow triplet traces (tau_x, tau_y ~ 0.1 s) start at their stationary means
    "triplet-stdp": (
        {"A2_plus": 1e-3},
        {"r1": 20 * 0.0168, "r2": 20 * 0.101, "o1": 30 * 0.0337, "o2": 30 * 0.125},
        None,
    ),
    "reward-stdp": (
        {
            "A_minus": 0.005,
            "tau_eligibility": 50 * ms,
            "modulator_input": TimedArray([2.0], dt=10 * second),
        },
        {},
        2.0,
    ),
}


@pytest.mark.parametrize("name", sorted(AGREEMENT_CASES))
def test_brian2_form_agrees_with_rate_form_on_poisson_inputs(name):
    params, init, modulator = AGREEMENT_CASES[name]
    rule = get_rule(name, **params)
    drift, w_mid = poisson_drift(rule, 20 * Hz, 30 * Hz, w0=0.3, init=init)
    assert_agrees(drift, predicted_drift(rule, 20 * Hz, 30 * Hz, w_mid, modulator))


# --------------------------------------------------------------------------------------------
# STDP windows
# --------------------------------------------------------------------------------------------

DELTAS_MS = np.array([-60, -40, -20, -10, -5, -1, 1, 5, 10, 20, 40, 60], dtype=float)


def _pair_times(deltas_ms, t0_ms=10.0):
    """Pre spike at t0 (+|dt| if dt < 0), post spike dt later: dt = t_post - t_pre."""
    pre = [np.array([t0_ms + max(0.0, -d)]) * ms for d in deltas_ms]
    post = [np.array([t0_ms + max(0.0, -d) + d]) * ms for d in deltas_ms]
    return pre, post


@pytest.mark.parametrize("mu", [None, 1.0, 0.5])
def test_pair_stdp_window_matches_analytic_curve(mu):
    params = {"A_plus": 0.01, "A_minus": 0.012, "tau_plus": 17 * ms, "tau_minus": 34 * ms}
    rule = STDP(**params) if mu is None else MultiplicativeSTDP(mu=mu, **params)
    w0 = 0.3
    x = w0  # (w - w_min) / (w_max - w_min) with the default bounds [0, 1]
    f_plus, f_minus = (1.0, 1.0) if mu is None else ((1 - x) ** mu, x**mu)
    analytic = np.where(
        DELTAS_MS > 0,
        0.01 * f_plus * np.exp(-DELTAS_MS / 17),
        -0.012 * f_minus * np.exp(DELTAS_MS / 34),
    )
    _, w_end = spike_pairs(*_pair_times(DELTAS_MS), rule, w0=w0)
    np.testing.assert_allclose(w_end - w0, analytic, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(rule.pair_window(DELTAS_MS * ms, w0), analytic, rtol=1e-12)


def test_bcm_threshold_uses_the_slow_trace_at_the_spike_time():
    """Post spikes at 10 and 110 ms, a pre spike at 100 ms: the second post spike changes w by
    eta a_pre (a_post - abar^2 / r_target) / r_target with every trace decayed to 110 ms (the
    threshold read the slow trace as last written, 5 Hz instead of 3.03 Hz)."""
    eta, tau_rate, tau_theta, r_target = 1e-4, 0.02, 0.2, 10.0
    rule = get_rule(
        "bcm",
        eta=eta * second,
        tau_rate=tau_rate * second,
        tau_theta=tau_theta * second,
        r_target=r_target * Hz,
    )
    _, w_end = spike_pairs([np.array([0.1]) * second], [np.array([0.01, 0.11]) * second], rule)
    a_pre = np.exp(-0.01 / tau_rate) / tau_rate
    a_post = np.exp(-0.1 / tau_rate) / tau_rate
    theta = (np.exp(-0.1 / tau_theta) / tau_theta) ** 2 / r_target
    np.testing.assert_allclose(w_end - 0.5, eta * a_pre * (a_post - theta) / r_target, rtol=1e-6)


def test_triplet_stdp_pairs_and_triplets_match_analytic_values():
    p = {"A2_plus": 5e-3, "A3_plus": 6.2e-3, "A2_minus": 7e-3, "A3_minus": 2.3e-3}
    rule = get_rule("triplet-stdp", **p)
    tau_p, tau_m, tau_x, tau_y = 16.8, 33.7, 101.0, 125.0
    pre, post = _pair_times(DELTAS_MS)
    _, w_end = spike_pairs(pre, post, rule, w0=0.5)
    pair = np.where(
        DELTAS_MS > 0,
        p["A2_plus"] * np.exp(-DELTAS_MS / tau_p),
        -p["A2_minus"] * np.exp(DELTAS_MS / tau_m),
    )
    np.testing.assert_allclose(w_end - 0.5, pair, rtol=1e-9)

    # pre-post-post (d1 = 10 ms, d2 = 15 ms) and post-pre-pre (d1 = 8 ms, d2 = 20 ms)
    d1, d2, e1, e2 = 10.0, 15.0, 8.0, 20.0
    pre = [np.array([5.0]) * ms, np.array([5.0 + e1, 5.0 + e1 + e2]) * ms]
    post = [np.array([5.0 + d1, 5.0 + d1 + d2]) * ms, np.array([5.0]) * ms]
    _, w_end = spike_pairs(pre, post, rule, w0=0.5)
    ltp = p["A2_plus"] * np.exp(-d1 / tau_p) + np.exp(-(d1 + d2) / tau_p) * (
        p["A2_plus"] + p["A3_plus"] * np.exp(-d2 / tau_y)
    )
    ltd = p["A2_minus"] * np.exp(-e1 / tau_m) + np.exp(-(e1 + e2) / tau_m) * (
        p["A2_minus"] + p["A3_minus"] * np.exp(-e2 / tau_x)
    )
    np.testing.assert_allclose(w_end - 0.5, [ltp, -ltd], rtol=1e-9)


# --------------------------------------------------------------------------------------------
# reward-modulated STDP: the modulator from a TimedArray and from a group
# --------------------------------------------------------------------------------------------

R_STDP = {
    "A_plus": 0.01,
    "A_minus": 0.012,
    "tau_plus": 20 * ms,
    "tau_minus": 20 * ms,
    "tau_eligibility": 100 * ms,
    "eta": 2 * Hz,
}


def _eligibility_after_pair(delta_ms):
    """(c just after the pair, time of the later spike in ms) for the pairs of _pair_times."""
    later = 10.0 + max(0.0, -delta_ms) + max(0.0, delta_ms)
    if delta_ms > 0:
        return 0.01 * np.exp(-delta_ms / 20), later
    return -0.012 * np.exp(delta_ms / 20), later


def test_reward_stdp_with_timed_array_modulator_matches_analytic_weight_change():
    t_reward, t_end = 150.0, 400.0  # ms; M = 0 before t_reward, 1 after
    reward = TimedArray(np.r_[np.zeros(int(t_reward)), np.ones(500)], dt=1 * ms)
    rule = RewardModulatedSTDP(modulator_input=reward, **R_STDP)
    deltas = np.array([-30.0, -10.0, 5.0, 25.0])
    syn, w_end = spike_pairs(*_pair_times(deltas), rule, w0=0.5, duration=t_end * ms)
    tau_e = 100.0
    expected = []
    for d in deltas:
        c0, t_c = _eligibility_after_pair(d)
        integral = tau_e * (np.exp(-(t_reward - t_c) / tau_e) - np.exp(-(t_end - t_c) / tau_e))
        expected.append(2.0 * c0 * integral / 1000.0)  # eta = 2 Hz, time in ms -> s
    # Euler steps of 0.1 ms on tau = 100 ms: relative error below 1e-3
    np.testing.assert_allclose(w_end - 0.5, expected, rtol=5e-3)
    assert np.all(np.sign(w_end - 0.5) == np.sign(deltas))


def test_reward_stdp_with_modulator_from_a_group_matches_analytic_weight_change():
    t_dopamine, t_end, tau_m, tau_e = 100.0, 1000.0, 200.0, 100.0
    rule = RewardModulatedSTDP(tau_modulator=tau_m * ms, **R_STDP)
    form = rule.brian2_form()
    assert form.modulator == "modulator" and form.method == "euler"
    dopamine = SpikeGeneratorGroup(1, [0], [t_dopamine] * ms)

    def modulatory(plastic):
        release = Synapses(dopamine, plastic, on_pre=f"{form.modulator}_post += 1")
        release.connect()
        return [dopamine, release]

    deltas = np.array([-10.0, 5.0, 25.0])
    _, w_end = spike_pairs(*_pair_times(deltas), rule, 0.5, t_end * ms, extra=modulatory)
    tau_c = tau_m * tau_e / (tau_m + tau_e)  # decay of M(t) * c(t) after the dopamine spike
    expected = []
    for d in deltas:
        c0, t_c = _eligibility_after_pair(d)
        c_at_dopamine = c0 * np.exp(-(t_dopamine - t_c) / tau_e)
        integral = c_at_dopamine * tau_c * (1 - np.exp(-(t_end - t_dopamine) / tau_c))
        expected.append(2.0 * integral / 1000.0)
    np.testing.assert_allclose(w_end - 0.5, expected, rtol=5e-3)


# --------------------------------------------------------------------------------------------
# weight bounds
# --------------------------------------------------------------------------------------------

BOUND_CASES = {
    "stdp-ltp": ("stdp", {"A_plus": 0.2, "A_minus": 0.0}, "max"),
    "stdp-ltd": ("stdp", {"A_plus": 0.0, "A_minus": 0.2}, "min"),
    "multiplicative-ltp": ("stdp-multiplicative", {"A_plus": 0.9, "A_minus": 0.0}, "max"),
    "multiplicative-ltd": ("stdp-multiplicative", {"A_plus": 0.0, "A_minus": 0.9}, "min"),
    "triplet-ltp": (
        "triplet-stdp",
        {"A2_plus": 0.1, "A3_plus": 0.1, "A2_minus": 0.0, "A3_minus": 0.0},
        "max",
    ),
    "triplet-ltd": ("triplet-stdp", {"A2_plus": 0.0, "A3_plus": 0.0, "A2_minus": 0.2}, "min"),
    "hebbian": ("hebbian", {"eta": 1e-2 * second, "w_min": -0.2, "w_max": 0.8}, "max"),
    "bcm": ("bcm", {"eta": 1e-2 * second, "w_max": 0.9, "tau_theta": 50 * ms}, "min"),
    "reward-ltp": (
        "reward-stdp",
        {
            "A_minus": 0.0,
            "A_plus": 0.5,
            "eta": 50 * Hz,
            "modulator_input": TimedArray([1.0], dt=1 * second),
        },
        "max",
    ),
    "reward-ltd": (
        "reward-stdp",
        {
            "A_minus": 0.0,
            "A_plus": 0.5,
            "eta": 50 * Hz,
            "modulator_input": TimedArray([-1.0], dt=1 * second),
        },
        "min",
    ),
}


@pytest.mark.parametrize("case", sorted(BOUND_CASES))
def test_weights_stay_within_bounds_and_reach_them(case):
    name, params, reached = BOUND_CASES[case]
    rule = get_rule(name, **params)
    low, high = rule.weight_bounds()
    brian2_seed(2)
    pre, post = PoissonGroup(20, 60 * Hz), PoissonGroup(20, 60 * Hz)
    syn = Synapses(pre, post, **rule.brian2_form().synapses_kwargs())
    syn.connect(j="i")
    syn.w = 0.5
    monitor = StateMonitor(syn, "w", record=True)
    Network(pre, post, syn, monitor).run(300 * ms)
    w = monitor.w
    assert (low is None or w.min() >= low) and (high is None or w.max() <= high)
    if reached == "max":
        assert np.isclose(w[:, -1], high, atol=1e-3).mean() > 0.5
    else:
        assert np.isclose(w[:, -1], low, atol=1e-3).mean() > 0.5


# --------------------------------------------------------------------------------------------
# plugins
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_plugin_path(tmp_path_factory):
    """Where the example plugin package is installed: the environment itself when it is
    installed there (CI: ``pip install ./examples/plastix-rule-example``), otherwise a
    temporary target that pip installs it into (offline; needs setuptools)."""
    try:
        distribution("plastix-rule-example")
        return None
    except PackageNotFoundError:
        pass
    work = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(EXAMPLE, work / "source")  # keep build files out of the repo
    target = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
    )
    return target


@pytest.fixture
def example_plugin(example_plugin_path, monkeypatch):
    if example_plugin_path is not None:
        monkeypatch.syspath_prepend(str(example_plugin_path))
        yield
        sys.modules.pop("plastix_rule_example", None)
    else:
        yield


def test_example_plugin_is_listed_and_used_by_name(example_plugin):
    spec = list_rules()["decaying-hebbian"]
    assert spec.source == "plastix-rule-example" and spec.has_rate_form
    assert "decaying-hebbian  [brian2 + torch; from plastix-rule-example]" in format_rules()
    rule = get_rule("decaying-hebbian", tau_decay=2 * second, tau_rate=20 * ms)
    assert type(rule).__module__ == "plastix_rule_example"
    drift, w_mid = poisson_drift(rule, 20 * Hz, 30 * Hz, w0=0.3)
    assert_agrees(drift, predicted_drift(rule, 20 * Hz, 30 * Hz, w_mid))
    with pytest.raises(TypeError, match="'tau_decay'"):
        get_rule("decaying-hebbian", tau_decay=2.0)


def _fake_distribution(root: Path, name: str, entry_points: str) -> None:
    dist_info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[plastix.rules]\n{entry_points}\n")


def test_broken_plugins_warn_naming_them_and_the_rest_still_loads(tmp_path, monkeypatch):
    _fake_distribution(
        tmp_path,
        "broken-rules",
        "ghost = no_such_module_for_plastix:Rule\n"
        "not-a-rule = math:pi\nstdp = plastix.plasticity.classic:Oja",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rules = list_rules()
    messages = [str(w.message) for w in caught if issubclass(w.category, RulePluginWarning)]
    assert any(
        "'ghost'" in m and "broken-rules" in m and "ModuleNotFoundError" in m for m in messages
    ), messages
    assert any("'not-a-rule'" in m and "not a dataclass subclass" in m for m in messages)
    assert any("'stdp'" in m and "already taken" in m for m in messages)
    assert BUILTINS <= set(rules) and "ghost" not in rules and "not-a-rule" not in rules
    assert rules["stdp"].rule_class is STDP  # a plugin cannot replace a taken name


def test_a_broken_plugin_warns_once_per_process_not_once_per_caller(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "broken-rules", "ghost = no_such_module_for_plastix:Rule")
    monkeypatch.syspath_prepend(str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        list_rules()
        get_rule("stdp")  # another caller of list_rules
    messages = [str(w.message) for w in caught if issubclass(w.category, RulePluginWarning)]
    assert len(messages) == 1 and "'ghost'" in messages[0], messages


def test_the_documented_rule_is_the_example_plugin_rule(example_plugin):
    """docs/write-your-own-rule.md shows the example plugin's code (up to docstrings)."""
    doc = (REPO / "docs" / "write-your-own-rule.md").read_text()
    rule_block = doc.split("```python\n")[1].split("```")[0]
    assert len(rule_block.splitlines()) < 40
    namespace: dict = {}
    exec(compile(rule_block, "write-your-own-rule.md", "exec", dont_inherit=True), namespace)
    documented = namespace["DecayingHebbian"](tau_decay=3 * second)
    installed = get_rule("decaying-hebbian", tau_decay=3 * second)
    assert documented.brian2_form() == installed.brian2_form()
    pre, post, weight = torch.tensor([10.0, 20.0]), torch.tensor([30.0]), torch.ones(1, 2)
    torch.testing.assert_close(
        documented.rate_update(pre, post, weight), installed.rate_update(pre, post, weight)
    )


def test_postsynaptic_variables_are_the_post_names_that_are_not_constants():
    form = Brian2Form(
        model="w : 1\nge_post = w : 1 (summed)",
        on_pre="w += eta * gate_post * x_post",
        on_post="w -= lastspike_post * 0",
        namespace={"eta": 1.0, "x_post": 2.0},
    )
    assert form.postsynaptic_variables() == {"ge", "gate", "lastspike"}
    assert get_rule("ib").brian2_form().postsynaptic_variables() == {"gate", "psi"}
    assert get_rule("stdp").brian2_form().postsynaptic_variables() == set()


# --------------------------------------------------------------------------------------------
# exact values of the rate forms, one-sided bounds, parameter checks and the registry
# --------------------------------------------------------------------------------------------

GATED_RULES = {
    "hebbian": {},
    "oja": {},
    "bcm": {},
    "stdp": {"A_minus": 0.005},
    "stdp-multiplicative": {"w_min": -0.5, "w_max": 1.5},
    "triplet-stdp": {"A2_plus": 1e-3},
}


@pytest.mark.parametrize("name", sorted(GATED_RULES))
def test_rate_forms_without_a_third_factor_scale_by_the_modulator(name):
    """A rule without a third factor uses the modulator as a multiplicative gate of its whole
    dW/dt: a scalar M gives M * dW/dt, one value per post neuron scales that neuron's row."""
    rule = get_rule(name, **GATED_RULES[name])
    gen = torch.Generator().manual_seed(3)
    pre = 40 * torch.rand(4, 3, generator=gen, dtype=torch.float64)
    post = 40 * torch.rand(4, 2, generator=gen, dtype=torch.float64)
    weight = torch.rand(2, 3, generator=gen, dtype=torch.float64)
    ungated = rule.rate_update(pre, post, weight)
    assert ungated.abs().min() > 0  # every entry is affected by the gate
    per_post = torch.tensor([0.5, -2.0], dtype=torch.float64)
    torch.testing.assert_close(
        rule.rate_update(pre, post, weight, modulator=per_post),
        per_post[:, None] * ungated,
        rtol=1e-12,
        atol=0,
    )
    torch.testing.assert_close(  # 0.1 is not a float32: gated in the rates' dtype, float64
        rule.rate_update(pre, post, weight, modulator=0.1), 0.1 * ungated, rtol=1e-12, atol=0
    )


def test_bcm_rate_form_threshold_is_the_square_of_the_batch_mean_rate():
    """theta = (mean_b r_post)^2 / r_target, not mean_b(r_post^2) / r_target. Two samples,
    post rates 20 and 40 Hz: theta = 30^2 / 10 = 90 Hz; dW = eta / r_target * mean_b
    r_post (r_post - theta) r_pre = 1e-6 * ((20 * -70 * [10, 20]) + (40 * -50 * [30, 0])) / 2."""
    rule = get_rule("bcm", eta=1e-5 * second, r_target=10 * Hz)
    pre = torch.tensor([[10.0, 20.0], [30.0, 0.0]], dtype=torch.float64)
    post = torch.tensor([[20.0], [40.0]], dtype=torch.float64)
    dw = rule.rate_update(pre, post, torch.zeros(1, 2, dtype=torch.float64))
    torch.testing.assert_close(dw, torch.tensor([[-0.037, -0.014]], dtype=torch.float64))


def test_stdp_rate_forms_use_each_window_time_constant_and_the_bounds():
    """Rate form r_pre r_post (A_plus tau_plus f_plus - A_minus tau_minus f_minus) with
    tau_plus != tau_minus, and for the weight-dependent rule x = (w - w_min) / (w_max - w_min)
    with w_min != 0 and w_max - w_min != 1 (w = 0.7 in [0.2, 2.2]: x = 0.25)."""
    params = {"A_plus": 0.01, "A_minus": 0.012, "tau_plus": 17 * ms, "tau_minus": 34 * ms}
    pre, post = torch.tensor([20.0], dtype=torch.float64), torch.tensor([30.0], dtype=torch.float64)
    weight = torch.tensor([[0.7]], dtype=torch.float64)
    additive = STDP(**params).rate_update(pre, post, weight)
    assert additive.item() == pytest.approx(600 * (0.01 * 0.017 - 0.012 * 0.034), rel=1e-12)
    rule = MultiplicativeSTDP(mu=1.0, w_min=0.2, w_max=2.2, **params)
    weighted = rule.rate_update(pre, post, weight)
    expected = 600 * (0.01 * 0.017 * 0.75 - 0.012 * 0.034 * 0.25)
    assert weighted.item() == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(
        rule.pair_window(np.array([5e-3, -5e-3]), 0.7),
        [0.01 * 0.75 * np.exp(-5 / 17), -0.012 * 0.25 * np.exp(-5 / 34)],
        rtol=1e-12,
    )


def test_multiplicative_stdp_spike_form_scales_by_the_position_between_the_bounds():
    """Brian2 form with bounds [0.2, 2.2] and w0 = 0.7 (x = 0.25): potentiation is scaled by
    ((w_max - w) / (w_max - w_min))^mu = 0.75^mu, depression by ((w - w_min) / ...)^mu."""
    deltas = np.array([-10.0, 5.0])
    rule = MultiplicativeSTDP(
        A_plus=0.01,
        A_minus=0.012,
        tau_plus=17 * ms,
        tau_minus=34 * ms,
        mu=2.0,
        w_min=0.2,
        w_max=2.2,
    )
    _, w_end = spike_pairs(*_pair_times(deltas), rule, w0=0.7)
    expected = [-0.012 * 0.25**2 * np.exp(-10 / 34), 0.01 * 0.75**2 * np.exp(-5 / 17)]
    np.testing.assert_allclose(w_end - 0.7, expected, rtol=1e-9)


def test_stdp_pair_window_at_zero_delay_is_potentiation():
    """dt = t_post - t_pre >= 0 potentiates: a simultaneous pair gives +A_plus."""
    rule = STDP(A_plus=0.01, A_minus=0.012)
    assert rule.pair_window(0.0) == pytest.approx(0.01)
    assert rule.pair_window(0 * ms) == pytest.approx(0.01)


def test_hebbian_one_sided_bounds_clip_only_their_side():
    """A Hebbian rule with only w_max (eta > 0) or only w_min (eta < 0): a pre spike at 10 ms
    and a post spike at 15 ms change w by 0.5 eta a_pre with a_pre = exp(-5/20) / 20 ms, and
    the bound clips only a weight that would cross it."""
    step = 0.5 * 1e-3 * np.exp(-5 / 20) / 0.02  # 0.0195
    pre, post = [np.array([10.0]) * ms] * 2, [np.array([15.0]) * ms] * 2
    upper = get_rule("hebbian", eta=1e-3 * second, tau_rate=20 * ms, w_max=0.8)
    _, w_end = spike_pairs(pre, post, upper, w0=np.array([0.5, 0.79]))
    np.testing.assert_allclose(w_end, [0.5 + step, 0.8], rtol=1e-9)
    lower = get_rule("hebbian", eta=-1e-3 * second, tau_rate=20 * ms, w_min=0.2)
    _, w_end = spike_pairs(pre, post, lower, w0=np.array([0.5, 0.21]))
    np.testing.assert_allclose(w_end, [0.5 - step, 0.2], rtol=1e-9)


def test_clip_with_one_bound_clips_only_that_side():
    """BCM's defaults are w_min = 0 and no w_max: clip raises negative weights only."""
    assert get_rule("bcm").clip(torch.tensor([-3.0, 0.5, 5.0])).tolist() == [0.0, 0.5, 5.0]
    upper = get_rule("hebbian", w_max=1.0)
    assert upper.clip(torch.tensor([-3.0, 0.5, 5.0])).tolist() == [-3.0, 0.5, 1.0]


def test_reward_stdp_rate_form_counts_the_eligibility_time():
    """dW/dt = eta M tau_eligibility r_pre r_post (A_plus tau_plus - A_minus tau_minus)."""
    rule = get_rule("reward-stdp", eta=2 * Hz, tau_eligibility=0.25 * second, A_minus=0.005)
    pre, post, weight = torch.tensor([20.0]), torch.tensor([30.0]), torch.tensor([[0.5]])
    dw = rule.rate_update(pre, post, weight, modulator=3.0)
    assert dw.item() == pytest.approx(2 * 3 * 0.25 * 600 * (0.01 * 0.02 - 0.005 * 0.02), rel=1e-6)


def test_reward_stdp_with_a_timed_array_names_no_synaptic_modulator():
    """With a TimedArray M(t) nothing writes a synaptic modulator: Brian2Form.modulator is
    None; without one the modulator is the synaptic variable 'modulator'."""
    timed = get_rule("reward-stdp", modulator_input=TimedArray([1.0], dt=1 * ms))
    form = timed.brian2_form()
    assert form.modulator is None and "modulator_input" in form.namespace
    assert "tau_modulator" not in form.namespace
    assert get_rule("reward-stdp").brian2_form().modulator == "modulator"


@dataclass
class _Options(Rule):
    """A rule with int, bool, bounded float, union and choice parameters (for the checks)."""

    count: int = param(3, "an integer", min=1)
    flag: bool = param(False, "a switch")
    gain: float = param(1.0, "a bounded gain", max=2.0)
    scale: int | float = param(1, "a number, never None")
    mode: Literal["fast", "slow"] = param("fast", "a choice")
    limit: float | None = param(None, "an optional bounded value", min=0.0)


def test_int_bool_bounded_and_union_parameters_are_checked_and_normalised():
    spec = RuleSpec("options", _Options, "tests")
    rule = spec.create(count=np.int64(4), gain=2.0)  # the upper bound itself is allowed
    assert type(rule.count) is int and rule.count == 4 and rule.gain == 2.0
    assert rule.limit is None  # None skips the range check of an optional parameter
    with pytest.raises(ValueError, match=r"'limit'.*fix: use a value >= 0.0"):
        spec.create(limit=-1.0)
    with pytest.raises(TypeError, match=r"'count': expected an integer, got True"):
        spec.create(count=True)
    with pytest.raises(ValueError, match=r"'gain'.*out of range; fix: use a value <= 2.0"):
        spec.create(gain=2.5)
    with pytest.raises(TypeError, match=r"'scale': expected int \| float, got None"):
        spec.create(scale=None)


def test_config_text_parses_booleans_and_choices_exactly():
    spec = RuleSpec("options", _Options, "tests")
    assert spec.create_from_config({"flag": "true"}).flag is True
    assert spec.create_from_config({"flag": "False"}).flag is False
    assert spec.create_from_config({"mode": "slow"}).mode == "slow"
    with pytest.raises(ValueError, match=r"'mode': 'SLOW' is not one of"):
        spec.create_from_config({"mode": "SLOW"})
    with pytest.raises(TypeError, match=r"'gain'.*got 'none' \(str\)"):
        spec.create_from_config({"gain": "none"})  # not optional: "none" is not None


@pytest.mark.parametrize(
    ("name", "params", "pattern"),
    [
        ("stdp", {"tau_plus": 0 * ms}, r"'tau_plus'.*fix: use a value > 0"),
        ("triplet-stdp", {"tau_y": 0 * ms}, r"'tau_y'.*> 0"),
        ("hebbian", {"tau_rate": 0 * ms}, r"'tau_rate'.*> 0"),
        ("bcm", {"r_target": 0 * Hz}, r"'r_target'.*> 0"),
        ("stdp", {"w_min": 0.5, "w_max": 0.5}, r"'w_min'=0.5 and 'w_max'=0.5: need w_min < w_max"),
        (
            "reward-stdp",
            {"modulator_input": TimedArray(np.ones((3, 2)), dt=1 * ms)},
            r"'modulator_input': need a dimensionless 1-D TimedArray",
        ),
    ],
)
def test_zero_time_constants_equal_bounds_and_2d_modulators_are_refused(name, params, pattern):
    with pytest.raises(ValueError, match=pattern):
        get_rule(name, **params)


def test_error_messages_shorten_long_values_and_name_dimensionless_quantities():
    with pytest.raises(TypeError) as error:
        get_rule("reward-stdp", modulator_input=[1.0] * 100)
    shown = str(error.value).split("got ")[1].split(" (list)")[0]
    assert len(shown) == 60 and shown.endswith("...")
    pattern = r"'tau_plus'.*\(dimension s\), got Quantity\(2\.\) \(dimensionless\)"
    with pytest.raises(TypeError, match=pattern):
        get_rule("stdp", tau_plus=Quantity(2.0))


def test_batch_outer_refuses_different_pre_and_post_batch_shapes():
    with pytest.raises(ValueError, match=r"pre and post batch shapes differ: \(3,\) vs \(2,\)"):
        get_rule("hebbian").rate_update(torch.ones(3, 4), torch.ones(2, 5), torch.zeros(5, 4))


def test_rate_form_computes_in_the_weight_dtype():
    """Rates and the modulator are converted to the weight's float dtype: a float64 weight
    gives a float64 dW/dt (no float32 rounding of 1 + 1e-9)."""
    rule = get_rule("hebbian", eta=1.0 * second)
    weight = torch.zeros(1, 1, dtype=torch.float64)
    dw = rule.rate_update([1.0 + 1e-9], [1.0], weight)
    assert dw.dtype == torch.float64 and dw.item() == 1.0 + 1e-9
    gated = rule.rate_update([1.0], [1.0], weight, modulator=1.0 + 1e-9)
    assert gated.dtype == torch.float64 and gated.item() == 1.0 + 1e-9


def test_rule_description_is_the_first_docstring_paragraph_on_one_line():
    assert list_rules()["stdp"].description == (
        "Pair-based additive STDP, all-to-all pairing, hard bounds (Song, Miller & Abbott 2000, "
        "Nat Neurosci 3)."
    )


def test_a_plugin_naming_a_builtin_rule_class_under_its_own_name_does_not_warn(
    tmp_path, monkeypatch
):
    """An entry point that gives a taken name the very class it already has is no conflict."""
    _fake_distribution(tmp_path, "repeat-rules", "stdp = plastix.plasticity.classic:STDP")
    monkeypatch.syspath_prepend(str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rules = list_rules()
    assert not [w for w in caught if issubclass(w.category, RulePluginWarning)]
    assert rules["stdp"].rule_class is STDP and rules["stdp"].source == "plastix"


def test_synapses_kwargs_give_a_copy_of_the_namespace():
    form = get_rule("stdp").brian2_form()
    kwargs = form.synapses_kwargs()
    kwargs["namespace"]["A_plus"] = 99.0
    assert form.namespace["A_plus"] == 0.01


def test_triplet_stdp_rate_form_matches_its_formula():
    """dW/dt = r_pre r_post (A2_plus tau_plus - A2_minus tau_minus)
    + A3_plus tau_plus tau_y r_pre r_post^2 - A3_minus tau_minus tau_x r_pre^2 r_post,
    with the default time constants (16.8, 33.7, 101, 125 ms), r_pre = 20, r_post = 30 Hz."""
    p = {"A2_plus": 5e-3, "A3_plus": 6.2e-3, "A2_minus": 7e-3, "A3_minus": 2.3e-3}
    rule = get_rule("triplet-stdp", **p)
    pre, post = torch.tensor([20.0], dtype=torch.float64), torch.tensor([30.0], dtype=torch.float64)
    dw = rule.rate_update(pre, post, torch.tensor([[0.5]], dtype=torch.float64))
    expected = (
        20 * 30 * (5e-3 * 0.0168 - 7e-3 * 0.0337)
        + 6.2e-3 * 0.0168 * 0.125 * 20 * 30**2
        - 2.3e-3 * 0.0337 * 0.101 * 20**2 * 30
    )
    assert dw.item() == pytest.approx(expected, rel=1e-12)


def test_a_rule_without_rate_update_has_only_a_brian2_form():
    spec = RuleSpec("needs-rate", _NeedsRate, "tests")
    assert not spec.has_rate_form and not _NeedsRate.has_rate_form()
    assert "needs-rate  [brian2; from tests]" in format_rules({"needs-rate": spec})
    with pytest.raises(NotImplementedError, match="_NeedsRate has no torch rate form"):
        spec.create(rate=1 * Hz).rate_update(torch.ones(1), torch.ones(1), torch.ones(1, 1))


# --------------------------------------------------------------------------------------------
# details (second mutation audit): reward STDP with unequal windows, Oja on a batch, config
# values that are not text, parameter types, contested plugin names
# --------------------------------------------------------------------------------------------


def _trains(times_ms):
    """A SpikeGeneratorGroup whose neuron k fires at times_ms[k] (a list of ms values)."""
    indices = np.concatenate([np.full(len(t), k) for k, t in enumerate(times_ms)]).astype(int)
    spikes = np.concatenate([np.asarray(t, float) for t in times_ms])
    return SpikeGeneratorGroup(len(times_ms), indices, spikes * ms)


def _run_pairs(rule, pre_ms, post_ms, w0, duration):
    """One-to-one synapses from pre neuron k (spikes pre_ms[k]) to post neuron k; returns the
    Synapses after running ``duration``."""
    pre, post = _trains(pre_ms), _trains(post_ms)
    syn = Synapses(pre, post, **rule.brian2_form().synapses_kwargs())
    syn.connect(j="i")
    syn.w = w0
    Network(pre, post, syn).run(duration)
    return syn


# --------------------------------------------------------------------------------------------
# reward-modulated STDP with tau_plus != tau_minus
# --------------------------------------------------------------------------------------------


def test_reward_stdp_eligibility_uses_each_window_time_constant():
    """With M = 0 the weight stays put and c holds the pair's STDP value, decaying with
    tau_eligibility: a pre-post pair 5 ms apart adds A_plus exp(-5/tau_plus) with
    tau_plus = 10 ms, a post-pre pair 5 ms apart A_minus exp(-5/tau_minus) with 40 ms."""
    rule = RewardModulatedSTDP(
        A_plus=0.01,
        A_minus=0.012,
        tau_plus=10 * ms,
        tau_minus=40 * ms,
        tau_eligibility=1 * second,
        modulator_input=TimedArray([0.0], dt=1 * second),
    )
    syn = _run_pairs(rule, [[10.0], [15.0]], [[15.0], [10.0]], w0=0.5, duration=20 * ms)
    decay = np.exp(-5e-3)  # 5 ms of tau_eligibility = 1 s after the later spike
    expected = [0.01 * np.exp(-5 / 10) * decay, -0.012 * np.exp(-5 / 40) * decay]
    np.testing.assert_allclose(np.array(syn.c[:]), expected, rtol=1e-3)
    np.testing.assert_allclose(np.array(syn.w[:]), [0.5, 0.5], rtol=0, atol=1e-15)


def test_reward_stdp_rate_form_pairs_each_amplitude_with_its_time_constant():
    """dW/dt = eta M tau_e r_pre r_post (A_plus tau_plus - A_minus tau_minus) with
    tau_plus = 10 ms and tau_minus = 40 ms: 2 * 3 * 0.5 * 600 * (1e-4 - 4.8e-4) < 0."""
    rule = get_rule(
        "reward-stdp",
        eta=2 * Hz,
        tau_eligibility=0.5 * second,
        A_plus=0.01,
        A_minus=0.012,
        tau_plus=10 * ms,
        tau_minus=40 * ms,
    )
    pre, post = torch.tensor([20.0], dtype=torch.float64), torch.tensor([30.0], dtype=torch.float64)
    dw = rule.rate_update(pre, post, torch.tensor([[0.5]], dtype=torch.float64), modulator=3.0)
    assert dw.item() == pytest.approx(2 * 3 * 0.5 * 600 * (0.01 * 0.01 - 0.012 * 0.04), rel=1e-12)


def test_reward_stdp_refuses_inverted_bounds():
    """The w_min < w_max check of the base class also applies to reward-modulated STDP,
    which adds its own check of the modulator input."""
    with pytest.raises(ValueError, match=r"'w_min'=1.0 and 'w_max'=0.5: need w_min < w_max"):
        get_rule("reward-stdp", w_min=1.0, w_max=0.5)


# --------------------------------------------------------------------------------------------
# Oja's rule on a batch
# --------------------------------------------------------------------------------------------


def test_oja_rate_form_on_a_batch_averages_the_squared_post_rate():
    """dW/dt = eta (mean_b r_post r_pre - mean_b(r_post^2) W), the mean of the per-sample
    updates: post rates 1 and 3 Hz, pre rates [2, 0] and [0, 4] Hz, W = [[1, 2]]:
    mean r_post r_pre = [1, 6], mean r_post^2 = 5 (not 2^2 = 4): eta * [1 - 5, 6 - 10]."""
    rule = get_rule("oja", eta=1e-4 * second)
    pre = torch.tensor([[2.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    post = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    weight = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    dw = rule.rate_update(pre, post, weight)
    torch.testing.assert_close(dw, torch.tensor([[-4e-4, -4e-4]], dtype=torch.float64))
    singles = [rule.rate_update(pre[b], post[b], weight) for b in range(2)]
    torch.testing.assert_close(dw, (singles[0] + singles[1]) / 2)


# --------------------------------------------------------------------------------------------
# rate forms with an integer weight
# --------------------------------------------------------------------------------------------


def test_rate_form_with_an_integer_weight_computes_in_floating_point():
    """An integer weight tensor (e.g. torch.zeros(..., dtype=torch.long)) does not truncate
    the rates: the computation runs in torch's default float dtype."""
    rule = get_rule("hebbian", eta=1.0 * second)
    dw = rule.rate_update([1.5, 2.5], [2.0], torch.zeros(1, 2, dtype=torch.int64))
    assert dw.is_floating_point()
    torch.testing.assert_close(dw, torch.tensor([[3.0, 5.0]], dtype=dw.dtype))


# --------------------------------------------------------------------------------------------
# config values and parameter types
# --------------------------------------------------------------------------------------------


def test_config_values_that_are_not_text_pass_through_unchanged():
    """TOML gives numbers, and Python callers Quantities: only strings are parsed."""
    rule = list_rules()["stdp"].create_from_config({"A_plus": 0.02, "tau_plus": 10 * ms})
    assert rule.A_plus == 0.02 and rule.tau_plus == 10 * ms


def test_config_with_an_unknown_key_is_refused_naming_it():
    """A misspelt config key is refused like an unknown keyword, listing the valid ones."""
    with pytest.raises(TypeError, match=r"unknown parameter\(s\) 'tau_pluss'.*tau_plus"):
        list_rules()["stdp"].create_from_config({"tau_pluss": "10 ms"})


def test_config_text_parses_signed_quantities():
    """An anti-Hebbian rule from config text: a negative learning rate with a unit."""
    spec = list_rules()["hebbian"]
    assert spec.create_from_config({"eta": "-1e-3 second"}).eta == -1e-3 * second
    assert spec.create_from_config({"eta": "+2e-3*second"}).eta == 2e-3 * second


def test_config_text_for_no_value_gives_none_for_an_optional_parameter():
    """'none', 'null' (JSON / YAML spelling) and an empty value (``--set w_max=``) all mean
    no bound for an optional parameter."""
    spec = list_rules()["hebbian"]
    for text in ("none", "null", "", " None "):
        assert spec.create_from_config({"w_max": text}).w_max is None, text


@dataclass
class _Typed(Rule):
    """A rule with a bool and an array parameter (for the type checks)."""

    flag: bool = param(False, "a switch")
    gains: np.ndarray = param(np.array([1.0, 2.0]), "one gain per input")


def test_numpy_booleans_are_accepted_and_normalised():
    """A numpy bool (e.g. the result of a comparison) is a valid bool parameter and is stored
    as a Python bool."""
    rule = RuleSpec("typed", _Typed, "tests").create(flag=np.bool_(True))
    assert rule.flag is True


def test_array_parameter_with_one_non_finite_entry_is_refused():
    """Every entry of an array parameter must be finite, not just one of them."""
    spec = RuleSpec("typed", _Typed, "tests")
    with pytest.raises(ValueError, match=r"'gains'.*not finite"):
        spec.create(gains=np.array([1.0, np.nan]))


def test_changing_one_rules_array_in_place_leaves_the_default_alone():
    """Each rule gets its own copy of an array default: scaling one rule's array in place
    changes neither the default of rules built afterwards nor the listed default."""
    spec = RuleSpec("typed", _Typed, "tests")
    first = spec.create()
    first.gains *= 2
    np.testing.assert_array_equal(first.gains, [2.0, 4.0])
    np.testing.assert_array_equal(spec.create().gains, [1.0, 2.0])
    np.testing.assert_array_equal(spec.parameters[1].default, [1.0, 2.0])


# --------------------------------------------------------------------------------------------
# plugins
# --------------------------------------------------------------------------------------------


def _plugin_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, RulePluginWarning)]


def test_a_plugin_pointing_at_a_dataclass_that_is_not_a_rule_is_left_out(tmp_path, monkeypatch):
    """An entry point naming some other dataclass (here plastix's own RuleSpec) is no rule."""
    _fake_distribution(tmp_path, "odd-rules", "spec = plastix.plasticity.rules:RuleSpec")
    monkeypatch.syspath_prepend(str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rules = list_rules()
    assert "spec" not in rules
    assert any("'spec'" in m and "not a dataclass subclass" in m for m in _plugin_warnings(caught))


def test_a_contested_plugin_name_goes_to_the_first_distribution_by_name(tmp_path, monkeypatch):
    """Two plugins claim 'clash': the registry is sorted by distribution name, so
    'aaa-rules' wins and 'zzz-rules' is ignored with a warning, even though 'zzz-rules' comes
    first on sys.path."""
    first, second_dir = tmp_path / "a", tmp_path / "z"
    _fake_distribution(first, "aaa-rules", "clash = plastix.plasticity.classic:Oja")
    _fake_distribution(second_dir, "zzz-rules", "clash = plastix.plasticity.classic:Hebbian")
    monkeypatch.syspath_prepend(str(first))
    monkeypatch.syspath_prepend(str(second_dir))  # now ahead of the 'aaa-rules' folder
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rules = list_rules()
    assert rules["clash"].source == "aaa-rules" and rules["clash"].rule_class.__name__ == "Oja"
    assert any(
        "'clash'" in m and "zzz-rules" in m and "already taken by aaa-rules" in m
        for m in _plugin_warnings(caught)
    )
