"""Library entry points refuse inputs that would otherwise give a silently wrong result, or
fail deep inside torch, numpy or Brian2, with a message that names the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from brian2 import Hz, ms

from plastix.bridges.continual import permuted_tasks
from plastix.bridges.ib_training import BackpropTrainer, IBRule, IBTrainer, evaluate
from plastix.bridges.pruning import plan_keep_counts
from plastix.bridges.rate_networks import LeakyIntegration, RateCNN, RateMLP
from plastix.bridges.snntorch_bridge import bernoulli_raster
from plastix.circuits.encoders import PoissonEncoder, make_schedule
from plastix.circuits.ib_network import IBCircuit, IBCircuitSpec, XiSettings, init_weights
from plastix.plasticity.hsic import xi_from_weights
from plastix.plasticity.ib_rule import IBThreeFactor, apply_eligibility_update


def _data(n=16, d=4, classes=2):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, d, generator=g), torch.arange(n) % classes


def test_rate_trainers_refuse_batches_that_would_train_nothing_and_nan_inputs():
    with pytest.raises(ValueError, match="window / batch: 1; give an integer >= 2"):
        BackpropTrainer(RateMLP(4, [8], 2), batch=1)
    x, y = _data()
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match="x: contains NaN or inf"):
        IBTrainer(RateMLP(4, [8], 2), IBRule(window=2)).train_epoch(x, y)


def test_rate_networks_refuse_scrambling_layouts_dtypes_and_empty_hidden_lists():
    cnn = RateCNN((3, 4, 4), [2], 2)
    assert cnn(torch.rand(2, 3, 4, 4)).shape == (2, 2)
    assert cnn(torch.rand(2, 48)).shape == (2, 2)  # flat samples are fine
    with pytest.raises(ValueError, match="channels-last images need x.permute"):
        cnn(torch.rand(2, 4, 4, 3))
    with pytest.raises(TypeError, match="dtype torch.float64"):
        RateMLP(4, [8], 2)(torch.rand(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="hidden: expected a non-empty list"):
        RateMLP(4, [], 2)
    with pytest.raises(ValueError, match="not implemented for convolutional blocks"):
        IBTrainer(cnn, IBRule())


def test_spike_encoders_refuse_values_outside_the_unit_interval_and_saturation():
    with pytest.raises(ValueError, match=r"values span \[0, 255\].*pixels / 255"):
        PoissonEncoder(make_schedule(np.array([[255.0, 0.0]]), 5 * ms), 2)
    with pytest.raises(ValueError, match="saturates at one spike per step"):
        PoissonEncoder(make_schedule(np.array([[1.0, 0.0]]), 5 * ms, dt=0.1 * ms), 2, 20000 * Hz)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        bernoulli_raster(torch.full((2, 3), 255.0), 5, 0.5)


def test_continual_tasks_refuse_mismatched_features_and_fractional_labels():
    x, y = np.random.default_rng(0).random((8, 4)), np.arange(8) % 4
    with pytest.raises(ValueError, match=r"x_test: sample shape \(5,\) but x_train has \(4,\)"):
        permuted_tasks(x, y, np.zeros((8, 5)), y, 2)
    with pytest.raises(ValueError, match="labels must be whole class indices"):
        permuted_tasks(x, y + 0.5, x, y, 2)


def test_spiking_circuit_refuses_fractional_class_counts_and_nan_weights():
    with pytest.raises(ValueError, match="n_classes: expected an int >= 1, got 2.5"):
        IBCircuitSpec(n_input=4, n_classes=2.5, hidden=(3,))
    spec = IBCircuitSpec(n_input=4, n_classes=2, hidden=(3,))
    weights = init_weights(spec, np.random.default_rng(0))
    weights.hidden[0][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"weights.hidden\[0\]: contains NaN or inf"):
        weights.check(spec)
    with pytest.raises(ValueError, match="give finite values"):
        init_weights(spec, np.random.default_rng(0), mean=float("nan"))
    weights.hidden[0][0, 0] = 0.0
    with pytest.raises(ValueError, match="labels: expected whole class indices"):
        IBCircuit(spec, np.zeros((2, 4)), np.array([0.5, 1.0]), np.ones(2), weights)


def test_xi_and_eligibility_updates_refuse_shapes_that_broadcast_and_nan():
    z = torch.rand(4, 5)
    assert xi_from_weights(torch.ones(4), z, 1.0).shape == (5,)
    assert xi_from_weights(np.ones(4, dtype=np.float32), z, 1.0).shape == (5,)  # numpy too
    with pytest.raises(ValueError, match="do not hold the same window"):
        xi_from_weights(torch.ones(4, 4), z, 1.0)
    rule = IBThreeFactor()
    with pytest.raises(ValueError, match="weight: shape"):
        apply_eligibility_update(np.zeros(3), np.ones(3), np.ones(3), rule)
    with pytest.raises(ValueError, match="contain NaN or inf"):
        apply_eligibility_update(np.zeros((2, 3)), np.ones((2, 3)), np.array([np.nan, 0]), rule)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"anneal_epochs": -1}, "anneal_epochs: -1"),
        ({"epochs": 0}, "epochs: 0"),
        ({"n_samples": 0}, "n_samples: 0"),
    ],
)
def test_pruning_plans_refuse_impossible_counts(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        plan_keep_counts(**{"n_samples": 100, "epochs": 4, "rate": 0.5, **kwargs})


def test_xi_settings_and_evaluation_refuse_bad_values_before_any_simulation():
    with pytest.raises(ValueError, match="method: 'foo' is not one of exact"):
        XiSettings(method="foo")
    with pytest.raises(ValueError, match="gamma: must be finite"):
        XiSettings(gamma=float("nan"))
    with pytest.raises(TypeError, match="gamma: expected a number"):
        XiSettings(gamma="2")
    x, y = _data()
    with pytest.raises(ValueError, match=r"y: labels must lie in \[0, 2\)"):
        evaluate(RateMLP(4, [8], 2), x, y + 5)


def test_tangent_ensemble_step_without_gradients_says_to_call_backward():
    from plastix.bridges.tangent_ensemble import NeuralTangentEnsemble

    frozen, trained = torch.nn.Linear(3, 2), torch.nn.Linear(2, 2)
    opt = NeuralTangentEnsemble(
        [{"params": frozen.parameters()}, {"params": trained.parameters()}], max_delta=None
    )
    with pytest.raises(ValueError, match=r"no parameter has a gradient; call loss.backward\(\)"):
        opt.step()
    before = [p.detach().clone() for p in trained.parameters()]
    trained(torch.rand(4, 2)).sum().backward()  # one group with gradients, one without
    opt.step()  # the group without gradients only takes part in the projection
    assert not all(torch.equal(b, p) for b, p in zip(before, trained.parameters(), strict=True))


def test_ridge_readout_refuses_nan_features_instead_of_a_solver_failure():
    from plastix.reservoirs.readouts import RidgeReadout

    readout = RidgeReadout(3, 1)
    features = torch.rand(10, 3, dtype=torch.float64)
    features[2, 0] = float("nan")
    with pytest.raises(ValueError, match="features: contain NaN or inf"):
        readout.accumulate(features, torch.rand(10, 1, dtype=torch.float64))


def test_lif_layers_and_timing_refuse_unitless_or_non_finite_times_before_building():
    from brian2 import TimedArray, second

    from plastix.circuits.layers import LIFLayer, SampleTiming
    from plastix.circuits.neurons import LIFParams

    with pytest.raises(ValueError, match="presentation: expected one finite time"):
        SampleTiming(presentation=float("nan") * ms)
    timing = SampleTiming()
    learn = TimedArray(np.ones(2), dt=timing.slot)
    with pytest.raises(TypeError, match="tau_trace: expected a Brian2 quantity such as 20"):
        LIFLayer(3, LIFParams(), timing, learn, "l", tau_trace=20)
    with pytest.raises(ValueError, match="tau_mean: expected one finite value > 0"):
        LIFLayer(3, LIFParams(), timing, learn, "l", tau_mean=0 * second)


def test_static_scores_and_partial_continual_results_must_fit_the_run():
    from plastix.bridges.continual import ContinualResult, run_continual
    from plastix.bridges.pruning import StaticPruning, StaticScores

    with pytest.raises(ValueError, match="scores.passes: -100"):
        StaticPruning(StaticScores("el2n", torch.rand(4), -100, 0.0))
    x, y = _data(8, 4, 2)
    tasks = permuted_tasks(x.numpy(), y.numpy(), x.numpy(), y.numpy(), 2)
    partial = ContinualResult(np.zeros((5, 5)), np.zeros(5))
    with pytest.raises(ValueError, match="do not belong to a run of 2 tasks"):
        run_continual(None, tasks, "domain", n_outputs=2, start_task=1, partial=partial)


def test_kernels_refuse_nan_features_and_empty_feature_vectors():
    from plastix.plasticity.hsic import cosine_kernel, gaussian_kernel

    with pytest.raises(ValueError, match="a: contains NaN or inf"):
        gaussian_kernel(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), 1.0)
    with pytest.raises(ValueError, match=r"expected \(B, d >= 1\)"):
        gaussian_kernel(torch.zeros(4, 0), 1.0)
    with pytest.raises(ValueError, match="eps: must be finite and > 0"):
        cosine_kernel(torch.zeros(3, 2), eps=0.0)


def test_rate_network_settings_refuse_zero_times_and_images_too_narrow_for_their_blocks():
    with pytest.raises(ValueError, match="dt: must be a positive time"):
        LeakyIntegration(dt=0.0)
    with pytest.raises(ValueError, match="tau: must be a positive time"):
        LeakyIntegration(tau=0.0)
    assert LeakyIntegration(tau=1e-3, dt=1e-3).rate == 1.0  # dt = tau is the largest step
    # the second pooling block would take the width from 1 pixel to 0
    with pytest.raises(ValueError, match="channels: 2 pooling blocks shrink"):
        RateCNN((1, 8, 2), (2, 2), 3)
    rule = IBThreeFactor()
    with pytest.raises(ValueError, match="elig_sum: shape"):
        apply_eligibility_update(np.zeros((2, 3)), np.ones((3, 2)), np.ones(2), rule)
    with pytest.raises(ValueError, match="contain NaN or inf"):
        apply_eligibility_update(np.zeros((2, 3)), np.full((2, 3), np.inf), np.ones(2), rule)
