"""Edges of the classic rules and the rule interface (third mutation audit): parameter checks
the other tests leave open, documented defaults and special cases (the triplet rule's
Pfister & Gerstner table, mu = 0 in weight-dependent STDP), config text and rate-form
conventions (batch shapes, dtypes) that a rule or plugin author relies on.

No Brian2 network runs here: every check is on the rule objects, their rate forms and their
Brian2 forms as data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pytest
import torch
from brian2 import Quantity, ms, second

from plastix.plasticity.classic import STDP, MultiplicativeSTDP, TripletSTDP
from plastix.plasticity.rules import Rule, RuleSpec, format_rules, get_rule, list_rules, param

RATE_RULES = ["hebbian", "oja", "bcm", "stdp", "stdp-multiplicative", "triplet-stdp"]


# --------------------------------------------------------------------------------------------
# parameter ranges that no other test refuses
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "pattern"),
    [
        ("stdp", {"A_plus": -0.01}, r"'A_plus'.*fix: use a value >= 0.0"),
        ("stdp-multiplicative", {"mu": -1.0}, r"'mu'.*fix: use a value >= 0.0"),
        ("triplet-stdp", {"A3_plus": -1e-3}, r"'A3_plus'.*>= 0.0"),
        ("triplet-stdp", {"A3_minus": -1e-3}, r"'A3_minus'.*>= 0.0"),
        ("bcm", {"tau_theta": 0 * second}, r"'tau_theta'.*fix: use a value > 0"),
        ("reward-stdp", {"tau_eligibility": 0 * ms}, r"'tau_eligibility'.*> 0"),
        ("reward-stdp", {"tau_modulator": -1 * ms}, r"'tau_modulator'.*> 0"),
    ],
)
def test_negative_amplitudes_exponents_and_zero_time_constants_are_refused(name, params, pattern):
    """Amplitudes are magnitudes (the sign is in the rule: A_plus potentiates), the weight
    exponent mu is >= 0 and every time constant is > 0 (a zero one divides by zero in the
    traces): a wrong value is refused naming the parameter, not run."""
    with pytest.raises(ValueError, match=pattern):
        get_rule(name, **params)


# --------------------------------------------------------------------------------------------
# documented defaults and special cases
# --------------------------------------------------------------------------------------------


def test_triplet_stdp_defaults_are_pfister_gerstner_visual_cortex_all_to_all_full_model():
    """The docstring promises Table 4 of Pfister & Gerstner 2006 (visual cortex data,
    all-to-all, full model): A2+ = 5e-10, A3+ = 6.2e-3, A2- = 7e-3, A3- = 2.3e-4,
    tau_plus = 16.8, tau_minus = 33.7, tau_x = 101, tau_y = 125 ms (the minimal model would
    have A2+ = A3- = 0 and A3+ = 6.5e-3)."""
    rule = TripletSTDP()
    assert (rule.A2_plus, rule.A3_plus, rule.A2_minus, rule.A3_minus) == pytest.approx(
        (5e-10, 6.2e-3, 7e-3, 2.3e-4), rel=1e-12
    )
    taus = (rule.tau_plus, rule.tau_minus, rule.tau_x, rule.tau_y)
    assert [float(t / ms) for t in taus] == pytest.approx([16.8, 33.7, 101.0, 125.0])


def test_multiplicative_stdp_with_mu_zero_is_the_additive_rule():
    """mu = 0 is allowed and is the additive rule (Gutig et al. 2003): the pair window at
    any weight, bounds included, and the rate form equal those of STDP."""
    params = {"A_plus": 0.01, "A_minus": 0.012, "tau_plus": 17 * ms, "tau_minus": 34 * ms}
    additive, mu0 = STDP(**params), MultiplicativeSTDP(mu=0.0, **params)
    deltas = np.array([-0.02, -0.005, 0.0, 0.005, 0.02])
    for w in (0.0, 0.3, 1.0):
        np.testing.assert_allclose(mu0.pair_window(deltas, w), additive.pair_window(deltas, w))
    pre = torch.tensor([[20.0, 5.0]], dtype=torch.float64)
    post = torch.tensor([[30.0]], dtype=torch.float64)
    weight = torch.tensor([[0.0, 0.7]], dtype=torch.float64)
    torch.testing.assert_close(
        mu0.rate_update(pre, post, weight), additive.rate_update(pre, post, weight)
    )


# --------------------------------------------------------------------------------------------
# parameter types
# --------------------------------------------------------------------------------------------


def test_a_dimensionless_quantity_is_a_valid_plain_number():
    """Brian2 arithmetic such as ``5*ms / 250*ms`` gives a dimensionless Quantity; a float
    parameter takes it and stores a plain float (the Brian2 namespace needs no unit)."""
    rule = get_rule("stdp", A_plus=(5 * ms) / (250 * ms), A_minus=Quantity(0.03))
    assert type(rule.A_plus) is float and rule.A_plus == pytest.approx(0.02)
    assert type(rule.A_minus) is float and rule.A_minus == pytest.approx(0.03)


@pytest.mark.parametrize("value", [Quantity([0.1, 0.2]), Quantity([0.1])])
def test_a_dimensionless_quantity_array_is_not_a_plain_number(value):
    """An array (even of one entry) is no scalar amplitude: refused naming the parameter and
    the fix, not turned into a float by numpy."""
    with pytest.raises(TypeError, match=r"parameter 'A_plus': expected a plain number.*fix"):
        get_rule("stdp", A_plus=value)


@dataclass
class _Choices(Rule):
    """A rule whose parameter is a choice or a number (for the union checks)."""

    window: Literal["auto"] | float = param("auto", "'auto' or a width")
    gains: np.ndarray = param(np.array([1.0, 2.0]), "gains in [0, 4]", min=0.0, max=4.0)
    count: int | float = param(1, "a count or a fraction")


def test_a_union_with_a_choice_tries_the_next_member_when_the_choice_does_not_match():
    """``Literal[...] | float``: a number is not one of the choices, so the float member is
    tried (a Literal mismatch is a ValueError, still only a failed member); text that fits
    neither is refused naming both."""
    spec = RuleSpec("choices", _Choices, "tests")
    assert spec.create(window=2.5).window == 2.5
    assert spec.create(window="auto").window == "auto"
    with pytest.raises(TypeError, match=r"'window': expected 'auto' \| float, got 'big'"):
        spec.create(window="big")


@pytest.mark.parametrize("gains", [[-1.0, 2.0], [1.0, 5.0]])
def test_array_parameter_with_one_entry_out_of_range_is_refused(gains):
    """Every entry of an array parameter must lie in its range, not just all of them."""
    with pytest.raises(ValueError, match=r"'gains'.*out of range"):
        RuleSpec("choices", _Choices, "tests").create(gains=np.array(gains))


def test_unknown_parameter_of_a_rule_without_bounds_is_refused_with_the_valid_ones():
    """Oja's rule has no weight bounds: ``w_max`` is refused by name, listing its actual
    parameters, instead of being accepted or failing inside the dataclass."""
    with pytest.raises(TypeError, match=r"rule 'oja': unknown parameter\(s\) 'w_max'.*eta, tau"):
        get_rule("oja", w_max=1.0)


# --------------------------------------------------------------------------------------------
# config text and the listing
# --------------------------------------------------------------------------------------------


def test_config_text_parses_a_number_without_a_leading_zero():
    """``.5 ms`` and ``-.5e-3 second`` are numbers with a unit, as Python writes them."""
    spec = list_rules()["hebbian"]
    assert spec.create_from_config({"tau_rate": ".5 ms"}).tau_rate == 0.5 * ms
    assert spec.create_from_config({"eta": "-.5e-3 second"}).eta == -0.5e-3 * second


def test_config_text_for_int_or_float_gives_the_first_type_that_parses():
    """``int | float``: "3" is the int 3, "2.5" (not an int) falls through to the float 2.5."""
    spec = RuleSpec("choices", _Choices, "tests")
    count = spec.create_from_config({"count": "3"}).count
    assert type(count) is int and count == 3
    assert spec.create_from_config({"count": "2.5"}).count == 2.5


def test_config_text_power_without_a_unit_is_not_a_number():
    """``2**2`` has no unit to raise: it is left as text and refused naming the parameter,
    not read as the number 2."""
    with pytest.raises(TypeError, match=r"'tau_plus'.*got '2\*\*2' \(str\)"):
        list_rules()["stdp"].create_from_config({"tau_plus": "2**2"})


@dataclass
class _Required(Rule):
    """A rule with a required parameter (for the listing)."""

    rate: Quantity = param(help="reference rate", unit=ms)


def test_format_rules_shows_a_required_parameter_as_required():
    """A parameter without a default is listed as ``(required)`` with its unit."""
    text = format_rules({"needs": RuleSpec("needs", _Required, "tests")})
    assert "    rate: Quantity [ms] = (required)  reference rate" in text.splitlines()


# --------------------------------------------------------------------------------------------
# rate-form conventions: batch shapes, per-sample modulators, dtypes
# --------------------------------------------------------------------------------------------


def _rates(shape_pre, shape_post, seed=5):
    gen = torch.Generator().manual_seed(seed)
    pre = 40 * torch.rand(*shape_pre, generator=gen, dtype=torch.float64)
    post = 40 * torch.rand(*shape_post, generator=gen, dtype=torch.float64)
    weight = torch.rand(shape_post[-1], shape_pre[-1], generator=gen, dtype=torch.float64)
    return pre, post, weight


@pytest.mark.parametrize("name", RATE_RULES)
def test_rate_forms_treat_several_leading_batch_dimensions_as_one_batch(name):
    """Rates of shape (..., n): a (2, 3, n) batch gives the same dW/dt as the same six samples
    as a (6, n) batch (the mean over all leading dimensions, not over the first only)."""
    rule = get_rule(name)
    pre, post, weight = _rates((6, 3), (6, 2))
    flat = rule.rate_update(pre, post, weight)
    nested = rule.rate_update(pre.reshape(2, 3, 3), post.reshape(2, 3, 2), weight)
    assert nested.shape == (2, 3)
    torch.testing.assert_close(nested, flat, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", [*sorted(set(RATE_RULES) - {"bcm"}), "reward-stdp"])
def test_a_per_sample_modulator_weights_each_samples_update(name):
    """A modulator of shape (batch, 1) gates each sample: the batch dW/dt is the mean of the
    samples' single-sample updates, each with its own M (rules whose update is a mean over
    the samples; BCM's threshold couples the samples)."""
    rule = get_rule(name)
    pre, post, weight = _rates((3, 3), (3, 2))
    per_sample = torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)
    gated = rule.rate_update(pre, post, weight, modulator=per_sample)
    singles = [
        rule.rate_update(pre[b], post[b], weight, modulator=per_sample[b, 0].item())
        for b in range(3)
    ]
    torch.testing.assert_close(gated, sum(singles) / 3, rtol=1e-12, atol=1e-15)


def test_batch_outer_converts_a_plain_pre_factor_to_the_post_factors_dtype():
    """The helper plugins build their rate forms on takes lists or arrays for the pre factor
    and computes in the post factor's dtype: float64 post and a list of floats work."""
    post = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    out = Rule.batch_outer(post, [[2.0, 0.1], [4.0, 0.3]])
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, torch.tensor([[7.0, 0.5]], dtype=torch.float64))


def test_rate_form_with_an_integer_weight_uses_torchs_default_float_dtype():
    """An integer weight has no float dtype to follow: rates and dW/dt are in
    torch.get_default_dtype() (float32 unless the user changed it), not float64."""
    rule = get_rule("oja", eta=1.0 * second)
    dw = rule.rate_update([1.5, 2.5], [2.0], torch.ones(1, 2, dtype=torch.int64))
    assert dw.dtype == torch.get_default_dtype()
    torch.testing.assert_close(dw, torch.tensor([[3.0 - 4.0, 5.0 - 4.0]], dtype=dw.dtype))


# --------------------------------------------------------------------------------------------
# Brian2 forms as data
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "bounds", "expected"),
    [
        ("hebbian", {}, set()),
        ("hebbian", {"w_max": 0.8}, {"w_max"}),
        ("hebbian", {"w_min": -0.2}, {"w_min"}),
        ("bcm", {}, {"w_min"}),
        ("bcm", {"w_min": None, "w_max": 2.0}, {"w_max"}),
    ],
)
def test_brian2_namespace_holds_only_the_weight_bounds_that_are_set(name, bounds, expected):
    """The namespace holds the constants the equations use (rules module conventions): a
    bound that is None (no bound) is left out rather than given to Brian2 as None, and the
    bound code refers to exactly the bounds in the namespace."""
    form = get_rule(name, **bounds).brian2_form()
    assert {"w_min", "w_max"} & set(form.namespace) == expected
    assert all(value is not None for value in form.namespace.values())
    code = form.on_pre + form.on_post
    assert {b for b in ("w_min", "w_max") if b in code} == expected
