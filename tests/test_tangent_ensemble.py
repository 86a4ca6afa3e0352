"""Tests of the neural tangent ensemble optimizer (plastix.bridges.tangent_ensemble)."""

from __future__ import annotations

import copy
import math

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from torch import nn

from plastix.bridges.tangent_ensemble import (
    NeuralTangentEnsemble,
    per_example_gradients,
    project_log_magnitudes_,
)


def _two_params(values=(0.3, -0.2), **kwargs):
    kwargs.setdefault("max_delta", None)  # the default 0.1 cannot hold z = 0.5 in 2 entries
    w = nn.Parameter(torch.tensor(values, dtype=torch.float64))
    return w, NeuralTangentEnsemble([w], **kwargs)


def _l1(opt: NeuralTangentEnsemble) -> float:
    return sum(
        float(opt.displacement(p).abs().sum()) for g in opt.param_groups for p in g["params"]
    )


# --- hand-computed two-parameter cases -------------------------------------------------------


def test_batch_step_matches_hand_computation():
    # z = 0.5; likelihoods 1 - 0.1*sign*g = [1 - 0.1*1*1, 1 - 0.1*(-1)*2] = [0.9, 1.2]
    # magnitudes [0.27, 0.24] (sum 0.51) renormalised to sum 0.5, signs kept.
    w, opt = _two_params(lr=0.1, max_delta=None)
    w.grad = torch.tensor([1.0, 2.0], dtype=torch.float64)
    opt.step()
    expected = torch.tensor([0.27 * 0.5 / 0.51, -0.24 * 0.5 / 0.51], dtype=torch.float64)
    torch.testing.assert_close(w.detach(), expected)
    assert opt.l1_norm == pytest.approx(0.5)


def test_batch_size_and_exponent_raise_the_likelihood_to_a_power():
    # batch of 3 with mean gradient [1, 2] and β = 2: factors [0.9, 1.2] ** 6
    w, opt = _two_params(lr=0.1, exponent=2.0, max_delta=None)
    w.grad = torch.tensor([1.0, 2.0], dtype=torch.float64)
    opt.step(batch_size=3)
    mags = np.array([0.3 * 0.9**6, 0.2 * 1.2**6])
    mags *= 0.5 / mags.sum()
    np.testing.assert_allclose(w.detach().numpy(), mags * [1, -1], rtol=1e-12)


def test_clip_follows_the_projection():
    # z = 0.45; likelihoods [0.9, 1.1] → [0.27, 0.165] (sum 0.435) → ×0.45/0.435
    # = [0.2793, 0.1707], then |Δw| <= 0.25 clips the first only
    w, opt = _two_params((0.3, -0.15), lr=0.1, max_delta=0.25)
    w.grad = torch.tensor([1.0, 1.0], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(
        w.detach(), torch.tensor([0.25, -0.165 * 0.45 / 0.435], dtype=torch.float64)
    )
    assert _l1(opt) < 0.45


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_per_example_step_is_the_product_of_example_likelihoods(method):
    # loss = w·x, so the gradient of example k is x_k: g1 = [1, 2], g2 = [-1, 0.5].
    # likelihoods: [0.9 * 1.1, 1.2 * 1.05] = [0.99, 1.26]; magnitudes [0.297, 0.252] → sum 0.5
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.3, -0.2]]))
    opt = NeuralTangentEnsemble(model.parameters(), lr=0.1, max_delta=None)
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=torch.float64)
    loss = opt.step_per_example(
        model, lambda out, y: out.sum(), x, torch.zeros(2), method=method, chunk_size=1
    )
    expected = torch.tensor([[0.297, -0.252]], dtype=torch.float64) * 0.5 / 0.549
    torch.testing.assert_close(model.weight.detach(), expected)
    assert float(loss) == pytest.approx((0.3 * 1 - 0.2 * 2 + 0.3 * -1 - 0.2 * 0.5) / 2)


def test_batch_step_uses_each_groups_own_learning_rate():
    """Each parameter group's lr sets its likelihood scale, not the optimizer default (0.01).

    z = 0.5; likelihoods 1 - lr*sign*g = [1 - 0.1*1*1, 1 - 0.2*(-1)*1] = [0.9, 1.2] give
    magnitudes [0.27, 0.24] (sum 0.51), renormalised to sum 0.5, signs kept.
    """
    a = nn.Parameter(torch.tensor([0.3], dtype=torch.float64))
    b = nn.Parameter(torch.tensor([-0.2], dtype=torch.float64))
    opt = NeuralTangentEnsemble(
        [{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.2}], lr=0.01, max_delta=None
    )
    a.grad = torch.tensor([1.0], dtype=torch.float64)
    b.grad = torch.tensor([1.0], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(a.detach(), torch.tensor([0.27 * 0.5 / 0.51], dtype=torch.float64))
    torch.testing.assert_close(b.detach(), torch.tensor([-0.24 * 0.5 / 0.51], dtype=torch.float64))


def test_clip_uses_each_groups_own_max_delta():
    """Each group's max_delta (a value or None) replaces the optimizer default (here 0.16).

    z = 0.45; likelihoods [0.9, 1.1] → [0.27, 0.165] (sum 0.435) → ×0.45/0.435
    = [0.2793, 0.1707]; group A clips at 0.25, group B (max_delta None) is not clipped,
    although the default 0.16 would clip both.
    """
    a = nn.Parameter(torch.tensor([0.3], dtype=torch.float64))
    b = nn.Parameter(torch.tensor([-0.15], dtype=torch.float64))
    opt = NeuralTangentEnsemble(
        [{"params": [a], "max_delta": 0.25}, {"params": [b], "max_delta": None}],
        lr=0.1,
        max_delta=0.16,
    )
    a.grad = torch.tensor([1.0], dtype=torch.float64)
    b.grad = torch.tensor([1.0], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(a.detach(), torch.tensor([0.25], dtype=torch.float64))
    torch.testing.assert_close(
        b.detach(), torch.tensor([-0.165 * 0.45 / 0.435], dtype=torch.float64)
    )
    assert _l1(opt) < 0.45


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_per_example_step_raises_the_likelihoods_to_the_exponent(method):
    """β = 2 squares each example's likelihood: log|Δw| += β Σ_k log1p(−η·sign·g_k).

    As in the β = 1 case, g1 = [1, 2], g2 = [-1, 0.5] give likelihood products [0.99, 1.26];
    squared [0.9801, 1.5876]; magnitudes [0.29403, 0.31752] (sum 0.61155) → sum 0.5.
    """
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.3, -0.2]]))
    opt = NeuralTangentEnsemble(model.parameters(), lr=0.1, exponent=2.0, max_delta=None)
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=torch.float64)
    opt.step_per_example(
        model, lambda out, y: out.sum(), x, torch.zeros(2), method=method, chunk_size=1
    )
    expected = torch.tensor([[0.29403, -0.31752]], dtype=torch.float64) * 0.5 / 0.61155
    torch.testing.assert_close(model.weight.detach(), expected)


@pytest.mark.parametrize("chunk_size", [1, 2, 32])
def test_per_example_step_does_not_depend_on_the_chunk_size(chunk_size):
    """The log factors are summed over every example (a product of likelihoods), so how the
    batch is cut into chunks changes nothing. Three examples: chunk 2 splits them 2 + 1.

    loss = w·x, gradients g1 = [1, 2], g2 = [-1, 0.5], g3 = [0.5, -1]; likelihoods
    w1 (sign +): 0.9 * 1.1 * 0.95 = 0.9405, w2 (sign −): 1.2 * 1.05 * 0.9 = 1.134;
    magnitudes [0.28215, 0.2268] (sum 0.50895) → sum 0.5.
    """
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.3, -0.2]]))
    opt = NeuralTangentEnsemble(model.parameters(), lr=0.1, max_delta=None)
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.5, -1.0]], dtype=torch.float64)
    loss = opt.step_per_example(
        model, lambda out, y: out.sum(), x, torch.zeros(3), chunk_size=chunk_size
    )
    expected = torch.tensor([[0.28215, -0.2268]], dtype=torch.float64) * 0.5 / 0.50895
    torch.testing.assert_close(model.weight.detach(), expected)
    assert float(loss) == pytest.approx((0.3 * 1 - 0.2 * 2 + 0.3 * -1 - 0.2 * 0.5 + 0.15 + 0.2) / 3)


def test_per_example_and_batch_forms_agree_for_one_example():
    torch.manual_seed(0)
    model_a = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    model_b = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    model_b.load_state_dict(model_a.state_dict())
    opt_a = NeuralTangentEnsemble(model_a.parameters(), lr=0.05, max_delta=None)
    opt_b = NeuralTangentEnsemble(model_b.parameters(), lr=0.05, max_delta=None)
    x, y = torch.randn(1, 4), torch.tensor([2])
    loss_fn = nn.functional.cross_entropy
    opt_a.step_per_example(model_a, loss_fn, x, y)
    loss_fn(model_b(x), y).backward()
    opt_b.step(batch_size=1)
    for pa, pb in zip(model_a.parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)


def test_init_expansion_updates_the_displacement_from_the_initial_weights():
    w, opt = _two_params(lr=0.1, max_delta=None, expansion="init", init_noise=0.01, seed=3)
    w_init = torch.tensor([0.3, -0.2], dtype=torch.float64)
    delta0 = opt.displacement(w).clone()
    torch.testing.assert_close(w.detach(), w_init + delta0)  # Δw0 is added at construction
    assert 0 < float(delta0.abs().max()) < 0.1
    w.grad = torch.tensor([1.0, 2.0], dtype=torch.float64)
    opt.step()
    mags = delta0.abs() * (1 - 0.1 * torch.sign(delta0) * w.grad)
    mags *= float(delta0.abs().sum()) / float(mags.sum())
    torch.testing.assert_close(w.detach(), w_init + torch.sign(delta0) * mags)
    _, again = _two_params(lr=0.1, expansion="init", init_noise=0.01, seed=3)
    torch.testing.assert_close(again.displacement(again.param_groups[0]["params"][0]), delta0)


# --- zero parameters -------------------------------------------------------------------------


def test_zero_parameters_get_noise_by_default():
    w, opt = _two_params((0.3, 0.0, -0.2), zero_noise=1e-3)
    values = w.detach().tolist()
    assert values[0] == pytest.approx(0.3) and values[2] == pytest.approx(-0.2)
    assert 0 < abs(values[1]) < 0.01
    assert opt.l1_norm == pytest.approx(0.5 + abs(values[1]))


def test_kept_zero_parameters_stay_exactly_zero_and_hold_no_mass():
    w, opt = _two_params((0.3, 0.0, -0.2), zeros="keep", max_delta=None)
    for _ in range(3):
        w.grad = torch.tensor([0.5, -3.0, 1.0], dtype=torch.float64)
        opt.step()
        assert w.detach()[1].item() == 0.0
        assert _l1(opt) == pytest.approx(0.5)


def test_zero_parameters_refused_on_request():
    with pytest.raises(ValueError, match="exactly zero.*zeros="):
        _two_params((0.3, 0.0), zeros="error")


def test_all_zero_parameters_are_refused():
    with pytest.raises(ValueError, match="no mass"):
        _two_params((0.0, 0.0), zeros="keep")


# --- errors ----------------------------------------------------------------------------------


def test_non_positive_likelihood_names_the_learning_rate_and_changes_nothing():
    w, opt = _two_params(lr=0.5)
    w.grad = torch.tensor([3.0, 0.0], dtype=torch.float64)  # 1 - 0.5 * 3 = -0.5
    before = (w.detach().clone(), opt.state[w]["log_magnitude"].clone())
    with pytest.raises(ValueError, match=r"log1p argument .* <= -1.*lower lr"):
        opt.step()
    torch.testing.assert_close(w.detach(), before[0])
    torch.testing.assert_close(opt.state[w]["log_magnitude"], before[1])


def test_non_positive_likelihood_in_the_per_example_form():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.3, -0.2]]))
    opt = NeuralTangentEnsemble(model.parameters(), lr=0.5, max_delta=None)
    x = torch.tensor([[0.1, 0.1], [4.0, 0.0]])  # second example: 1 - 0.5 * 4 < 0
    with pytest.raises(ValueError, match="lower lr"):
        opt.step_per_example(model, lambda out, y: out.sum(), x, torch.zeros(2))
    torch.testing.assert_close(model.weight.detach(), torch.tensor([[0.3, -0.2]]))


def test_infinite_gradient_is_refused_and_changes_nothing():
    w, opt = _two_params(lr=0.1)
    w.grad = torch.tensor([float("-inf"), 0.0], dtype=torch.float64)  # likelihood +inf
    before = opt.state[w]["log_magnitude"].clone()
    with pytest.raises(ValueError, match="infinite.*lower lr"):
        opt.step()
    torch.testing.assert_close(opt.state[w]["log_magnitude"], before)


def test_likelihood_that_rounds_to_zero_in_float32_is_refused():
    # g = float32(1 / 0.3): lr * g = 0.99999998 < 1 in float64, but 1 - lr * g is 0 in float32,
    # so log1p(-lr * g) = -inf would silently zero the expert
    w = nn.Parameter(torch.tensor([0.3, -0.2]))
    opt = NeuralTangentEnsemble([w], lr=0.3, max_delta=None)
    w.grad = torch.tensor([1 / 0.3, 0.0])
    assert 0.3 * float(w.grad[0]) < 1
    with pytest.raises(ValueError, match="lower lr"):
        opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([0.3, -0.2]))


def test_nan_gradient_is_reported():
    w, opt = _two_params()
    w.grad = torch.tensor([float("nan"), 0.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="NaN"):
        opt.step()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": 0.0}, "lr must be a positive"),
        ({"lr": -1.0}, "lr must be a positive"),
        ({"exponent": 0.0}, "exponent must be a positive"),
        ({"max_delta": 0.0}, "max_delta must be a positive"),
        ({"lr": float("inf")}, "lr must be finite"),
        ({"expansion": "seed"}, "expansion='seed' is not valid"),
        ({"zeros": "drop"}, "zeros='drop' is not valid"),
        ({"init_noise": -1.0}, "init_noise must be a positive"),
    ],
)
def test_bad_hyper_parameters_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _two_params(**kwargs)


def test_bad_group_learning_rate_is_refused():
    w = nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="lr must be a positive"):
        NeuralTangentEnsemble([{"params": [w], "lr": -0.1}])


def test_bad_step_arguments_are_refused():
    w, opt = _two_params()
    w.grad = torch.ones(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        opt.step(batch_size=0)
    with pytest.raises(ValueError, match="cannot be added after construction"):
        opt.add_param_group({"params": [nn.Parameter(torch.ones(1))]})
    other = nn.Linear(2, 1)
    with pytest.raises(ValueError, match="not parameters of `module`"):
        opt.step_per_example(other, lambda o, y: o.sum(), torch.ones(1, 2), torch.zeros(1))
    with pytest.raises(ValueError, match="method='jit' is not valid"):
        opt.step_per_example(
            other, lambda o, y: o.sum(), torch.ones(1, 2), torch.zeros(1), method="jit"
        )
    with pytest.raises(ValueError, match="non-empty batch axis"):
        opt.step_per_example(other, lambda o, y: o.sum(), torch.ones(2, 2), torch.zeros(1))


def test_integer_parameters_are_refused():
    with pytest.raises(TypeError, match="floating point"):
        NeuralTangentEnsemble([torch.ones(2, dtype=torch.long)])


# --- invariants ------------------------------------------------------------------------------


def test_norm_is_global_over_groups_and_layers():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    groups = [
        {"params": model[0].parameters(), "lr": 0.02},
        {"params": model[2].parameters(), "lr": 0.2},
    ]
    opt = NeuralTangentEnsemble(groups, max_delta=None)
    z = opt.l1_norm
    per_layer_before = [float(p.detach().abs().sum()) for p in model.parameters()]
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.randn(8, 3)), torch.randint(0, 2, (8,))).backward()
        opt.step(batch_size=8)
    assert _l1(opt) == pytest.approx(z, rel=1e-5)
    per_layer_after = [float(p.detach().abs().sum()) for p in model.parameters()]
    assert not np.allclose(per_layer_before, per_layer_after, rtol=1e-3)  # mass moved


def test_parameters_without_gradient_keep_their_log_magnitude_up_to_the_projection():
    a = nn.Parameter(torch.tensor([0.2, 0.3], dtype=torch.float64))
    b = nn.Parameter(torch.tensor([-0.5], dtype=torch.float64))
    opt = NeuralTangentEnsemble([a, b], lr=0.1, max_delta=None)
    a.grad = torch.tensor([1.0, -1.0], dtype=torch.float64)
    opt.step()
    mags = np.array([0.2 * 0.9, 0.3 * 1.1, 0.5])
    mags *= 1.0 / mags.sum()
    np.testing.assert_allclose(a.detach().numpy(), mags[:2], rtol=1e-12)
    np.testing.assert_allclose(b.detach().numpy(), -mags[2:], rtol=1e-12)


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    opt = NeuralTangentEnsemble(model.parameters(), lr=0.05, max_delta=1.0)
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))

    def train(m, o, steps):
        for _ in range(steps):
            o.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            o.step(batch_size=16)

    train(model, opt, 2)
    # deep copies: like torch's own optimizers, state_dict() returns the live state tensors
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    clone = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    clone_opt = NeuralTangentEnsemble(clone.parameters(), lr=0.05, max_delta=1.0)
    clone.load_state_dict(saved_model)
    clone_opt.load_state_dict(saved_opt)
    train(model, opt, 3)
    train(clone, clone_opt, 3)
    for p, q in zip(model.parameters(), clone.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_projection_survives_an_overflowing_l1_sum():
    w = nn.Parameter(torch.tensor([0.3, -0.2]))
    opt = NeuralTangentEnsemble([w], max_delta=None)
    opt.state[w]["log_magnitude"] += 100.0  # exp(100) overflows float32: log-space fallback
    w.grad = torch.zeros(2)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([0.3, -0.2]))


def test_project_log_magnitudes_renormalises_then_clips():
    mags = [torch.log(torch.tensor([0.1, 0.3])), torch.log(torch.tensor([0.6]))]
    project_log_magnitudes_(mags, math.log(2.0), [None, 0.5])
    torch.testing.assert_close(mags[0].exp(), torch.tensor([0.2, 0.6]))
    torch.testing.assert_close(mags[1].exp(), torch.tensor([0.5]))


def test_per_example_gradients_match_autograd_one_at_a_time():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x, y = torch.randn(5, 3), torch.randint(0, 2, (5,))
    params = dict(model.named_parameters())
    loss_fn = nn.functional.cross_entropy
    grads, losses = per_example_gradients(model, loss_fn, x, y, params, "vmap")
    for k in range(5):
        model.zero_grad()
        loss = loss_fn(model(x[k : k + 1]), y[k : k + 1])
        loss.backward()
        assert float(losses[k]) == pytest.approx(float(loss.detach()))
        for name, p in model.named_parameters():
            torch.testing.assert_close(grads[name][k], p.grad)


_shapes = st.lists(st.integers(1, 6), min_size=1, max_size=3)


@settings(max_examples=40, deadline=None)
@given(
    shapes=_shapes,
    seed=st.integers(0, 2**31 - 1),
    lr=st.floats(1e-3, 0.5),
    steps=st.integers(1, 4),
    batch=st.integers(1, 16),
    clip=st.booleans(),
    expansion=st.sampled_from(["origin", "init"]),
)
def test_signs_never_flip_and_l1_norm_is_kept(shapes, seed, lr, steps, batch, clip, expansion):
    gen = torch.Generator().manual_seed(seed)
    params = [
        nn.Parameter(torch.randn(s, generator=gen, dtype=torch.float64) * 0.1) for s in shapes
    ]
    max_delta = None
    if clip:  # 1.5 × the mean |Δw|: the clip binds for some entries yet can hold z
        probe = NeuralTangentEnsemble(params, max_delta=None, expansion=expansion, seed=seed)
        max_delta = 1.5 * probe.l1_norm / sum(p.numel() for p in params)
        with torch.no_grad():  # undo the probe's changes to the parameters (init expansion)
            for p in params:
                p.copy_(probe.state[p].get("seed", probe.displacement(p)))
    opt = NeuralTangentEnsemble(params, lr=lr, max_delta=max_delta, expansion=expansion, seed=seed)
    signs = [torch.sign(opt.displacement(p)) for p in params]
    z = opt.l1_norm
    for _ in range(steps):
        for p in params:
            # |lr * g| < 1 so every likelihood is positive (|g| < 0.9 / lr)
            p.grad = (torch.rand(p.shape, generator=gen, dtype=torch.float64) * 2 - 1) * 0.9 / lr
        opt.step(batch_size=batch)
        for p, s in zip(params, signs, strict=True):
            delta = opt.displacement(p)
            assert torch.equal(torch.sign(delta), s)
            assert torch.all(torch.isfinite(p))
            if max_delta is not None:
                assert float(delta.abs().max()) <= max_delta * (1 + 1e-9)
        if max_delta is None:
            assert _l1(opt) == pytest.approx(z, rel=1e-9)
        else:
            assert _l1(opt) <= z * (1 + 1e-9)


@settings(max_examples=25, deadline=None)
@given(values=st.lists(st.floats(-1.0, 1.0), min_size=2, max_size=8), lr=st.floats(1e-3, 0.9))
def test_likelihood_error_exactly_when_some_factor_is_not_positive(values, lr):
    assume(all(abs(1 - 2 * v) > 1e-9 for v in values))  # away from float rounding at 0
    w = nn.Parameter(torch.tensor([0.1] * len(values), dtype=torch.float64))
    opt = NeuralTangentEnsemble([w], lr=lr, max_delta=None)
    w.grad = torch.tensor(values, dtype=torch.float64) * 2 / lr  # factors 1 - 2 * v
    if min(1 - 2 * v for v in values) <= 0:
        with pytest.raises(ValueError, match="lower lr"):
            opt.step()
    else:
        opt.step()
        assert torch.all(w > 0)


def test_clip_that_cannot_hold_the_l1_norm_is_refused():
    with pytest.raises(ValueError, match="max_delta is too small.*raise max_delta"):
        _two_params((0.3, -0.2), max_delta=0.2)  # z = 0.5 > 2 * 0.2
