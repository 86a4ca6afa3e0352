"""More entry points that refuse bad input up front with a message naming the problem and the
fix, and accept the inputs a user expects to work (numpy scalars, a single layer name)."""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
from brian2 import ms

from plastix.bridges.continual import EWCLearner, LearnerConfig
from plastix.bridges.ib_training import AdamWSettings
from plastix.bridges.snntorch_bridge import BPTTConfig, bernoulli_raster, from_snntorch
from plastix.circuits.backend import activate_backend
from plastix.circuits.feedforward import FeedForwardSpec, LayerSpec, build_brian2
from plastix.circuits.ib_network import IBCircuitSpec, XiSettings
from plastix.circuits.neurons import LIFParams
from plastix.plasticity.hsic import check_gamma, check_sigmas, modulatory_signal
from plastix.reservoirs.esn import EchoStateNetwork, ESNConfig
from plastix.reservoirs.readouts import RidgeReadout
from plastix.reservoirs.xi_modulator import XiModulatorConfig, fit_xi_modulator


def _esn(n_feedback=0):
    config = ESNConfig(n_inputs=2, n_units=5, connectivity=1.0, n_feedback=n_feedback)
    return EchoStateNetwork.from_config(config)


def test_esn_step_refuses_wrong_widths_batches_and_dtypes():
    esn = _esn(n_feedback=1)
    state, inputs, feedback = (torch.zeros(3, w, dtype=torch.float64) for w in (5, 2, 1))
    assert esn.step(state, inputs, feedback).shape == (3, 5)
    with pytest.raises(ValueError, match=r"state: shape \(3, 4\) is not \(batch, 5\)"):
        esn.step(state[:, :4], inputs, feedback)
    with pytest.raises(ValueError, match=r"inputs: shape \(2,\) .*inputs.unsqueeze\(0\)"):
        esn.step(state, inputs[0], feedback)
    with pytest.raises(ValueError, match=r"feedback: shape \(3, 2\) is not \(batch, 1\)"):
        esn.step(state, inputs, torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"batch sizes \[3, 2, 3\] differ"):
        esn.step(state, inputs[:2], feedback)
    with pytest.raises(TypeError, match="inputs: dtype torch.float32 differs .* torch.float64"):
        esn.step(state, inputs.float(), feedback)


@pytest.mark.parametrize("architecture", ["factorised", "kernel-memory"])
def test_xi_modulator_step_on_one_unbatched_sample_says_to_add_the_stream_dim(architecture):
    kernel_memory = architecture == "kernel-memory"
    config = XiModulatorConfig(
        n_neurons=3,
        n_classes=2,
        window=2,
        n_units=4,
        connectivity=1.0,
        x_projection=2,
        n_streams=2,
        stream_length=20,
        n_chunks=1,
        train_neurons=2,
        architecture=architecture,
        gated=not kernel_memory,
        window_products=not kernel_memory,
    )
    modulator = fit_xi_modulator(config)
    modulator.reset(1)
    x, y, z = torch.rand(5).double(), torch.tensor([1.0, 0.0]).double(), torch.rand(3).double()
    with pytest.raises(ValueError, match=r"x: shape \(5,\); .*pass x.unsqueeze\(0\)"):
        modulator.step(x, y, z)
    assert modulator.step(x[None], y[None], z[None]).shape == (1, 3)


@pytest.mark.parametrize("field", ["lif", "timing"])
@pytest.mark.parametrize("value", [None, "default"])
def test_ib_circuit_spec_refuses_lif_and_timing_of_the_wrong_type(field, value):
    kind = {"lif": "LIFParams", "timing": "SampleTiming"}[field]
    with pytest.raises(TypeError, match=f"{field}: expected an instance of {kind}, got "):
        IBCircuitSpec(**{field: value})


@pytest.mark.parametrize(
    "field",
    [
        "input_rate",
        "w_unit",
        "readout_eta",
        "readout_tau_pre",
        "readout_rate_norm",
        "rate_mean_tau",
    ],
)
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_ib_circuit_spec_refuses_non_finite_quantities(field, value):
    default = getattr(IBCircuitSpec(), field)  # a quantity in the field's unit
    with pytest.raises(ValueError, match=f"{field}: must be finite"):
        IBCircuitSpec(**{field: value * default})


def test_build_brian2_takes_one_layer_name_as_a_string_and_lists_valid_names():
    rng = np.random.default_rng(0)
    spec = FeedForwardSpec(2, (LayerSpec(rng.random((3, 2))), LayerSpec(rng.random((2, 3)))))
    raster = np.zeros((4, 2))
    circuit = build_brian2(
        spec, raster, 1 * ms, record_spikes="layer1", record_membrane="layer0", name="one"
    )
    assert set(circuit.spike_monitors) == {"layer1"}
    assert set(circuit.state_monitors) == {"layer0"}
    match = r"record_spikes: unknown layer names \['hidden'\]; have \['layer0', 'layer1'\]"
    with pytest.raises(ValueError, match=match):
        build_brian2(spec, raster, 1 * ms, record_spikes="hidden", name="two")


def test_real_number_checks_accept_numpy_scalars():
    assert check_gamma(np.float32(0.5)) == 0.5
    assert check_sigmas((np.float64(0.5), np.float32(0.25), np.int64(1))) == (0.5, 0.25, 1.0)
    with pytest.raises(TypeError, match="gamma: expected a number"):
        check_gamma(np.bool_(True))
    g = torch.Generator().manual_seed(0)
    x, y, z = (torch.rand(4, d, generator=g, dtype=torch.float64) for d in (3, 2, 5))
    torch.testing.assert_close(
        modulatory_signal(x, y, z, np.float32(2.0), (np.float64(0.5), 0.1, np.int64(1))),
        modulatory_signal(x, y, z, 2.0, (0.5, 0.1, 1.0)),
    )
    XiSettings(gamma=np.float32(2.0), sigmas=(np.float32(0.5), 0.1, 1.0))
    assert XiModulatorConfig(gamma=np.float32(2.0), ridge=np.float64(0.01)).gamma == 2.0
    assert RidgeReadout(3, 1, ridge=np.float32(0.5)).ridge == 0.5
    assert LIFParams(surrogate_beta=np.float32(5.0)).surrogate_beta == 5.0
    for bad in (float("inf"), float("nan"), np.bool_(True), 0.0):
        with pytest.raises(ValueError, match="surrogate_beta: must be a finite number > 0"):
            LIFParams(surrogate_beta=bad)
    with activate_backend("numpy", compute_capability=np.float32(9.0)):
        pass


def test_from_snntorch_reports_the_negative_beta_the_user_set():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), snn.Leaky(beta=-0.5, reset_delay=False))
    with pytest.raises(ValueError, match=r"net\[1\].beta: decay factors .* got \[-0.5 -0.5\]"):
        from_snntorch(net, 1 * ms)
    synaptic = snn.Synaptic(alpha=1.5, beta=0.9, reset_delay=False)
    with pytest.raises(ValueError, match=r"alpha: .* got \[1.5 1.5\]"):
        from_snntorch(torch.nn.Sequential(torch.nn.Linear(2, 2), synaptic), 1 * ms)
    clipped = torch.nn.Sequential(torch.nn.Linear(2, 2), snn.Leaky(beta=1.5, reset_delay=False))
    assert from_snntorch(clipped, 1 * ms).layers[0].neuron.model == "IF"  # beta 1.5 -> 1


NOT_FINITE_OR_NUMBER = [float("inf"), float("nan"), True, "0.1", None]


@pytest.mark.parametrize("value", NOT_FINITE_OR_NUMBER)
@pytest.mark.parametrize(
    "field, fragment",
    [
        ("lr", "lr must be"),
        ("momentum", "momentum must be in"),
        ("nte_exponent", "nte_exponent must be"),
        ("nte_max_delta", "nte_max_delta must be"),
        ("ewc_lambda", "ewc_lambda must be a finite number >= 0"),
    ],
)
def test_learner_config_refuses_infinite_and_non_numbers_up_front(field, fragment, value):
    if field == "nte_max_delta" and value is None:
        assert LearnerConfig(nte_max_delta=None).nte_max_delta is None  # None: no clipping
        return
    if field == "lr" and value is None:
        assert LearnerConfig(lr=None).learning_rate == 0.01  # None: the optimizer's default
        return
    with pytest.raises(ValueError, match=fragment):
        LearnerConfig(optimizer="sgd", **{field: value})


@pytest.mark.parametrize(
    "betas", [(0.9,), (1.0, 0.99), (float("nan"), 0.99), (0.9, float("inf")), (True, 0.9), None]
)
def test_learner_config_refuses_adam_betas_outside_the_unit_interval(betas):
    with pytest.raises(ValueError, match=r"adam_betas: expected two numbers in \[0, 1\)"):
        LearnerConfig(optimizer="adam", adam_betas=betas)
    with pytest.raises(ValueError, match=r"betas: expected two numbers in \[0, 1\)"):
        AdamWSettings(betas=betas)


@pytest.mark.parametrize("value", [1.5, True, "0", None])
def test_learner_config_refuses_a_seed_that_is_not_an_int(value):
    with pytest.raises(TypeError, match="seed must be an int"):
        LearnerConfig(seed=value)
    assert LearnerConfig(seed=np.int64(3)).seed == 3


@pytest.mark.parametrize("value", [0, 1.5, True, "8"])
def test_learner_config_refuses_fisher_sample_counts_that_are_not_positive_ints(value):
    with pytest.raises(ValueError, match="ewc_fisher_samples must be a positive integer"):
        LearnerConfig(optimizer="ewc", ewc_fisher_samples=value)


@pytest.mark.parametrize("value", [-1.0, *NOT_FINITE_OR_NUMBER])
def test_ewc_learner_refuses_a_penalty_weight_that_is_not_a_finite_number(value):
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="ewc_lambda must be a finite number >= 0"):
        EWCLearner(model, torch.optim.SGD(model.parameters(), lr=0.1), ewc_lambda=value)


@pytest.mark.parametrize("value", [0.0, 1.5, *NOT_FINITE_OR_NUMBER])
def test_spike_probability_must_lie_in_the_unit_interval(value):
    with pytest.raises(ValueError, match=r"p_max: spike probability per step must lie in \(0, 1\]"):
        bernoulli_raster(torch.full((2, 3), 0.5), 4, value)
    with pytest.raises(ValueError, match=r"p_max: spike probability per step must lie in \(0, 1\]"):
        BPTTConfig(p_max=value)


@pytest.mark.parametrize("value", [0.0, -1e-3, *NOT_FINITE_OR_NUMBER])
def test_bptt_learning_rate_must_be_a_finite_positive_number(value):
    with pytest.raises(ValueError, match="lr must be"):
        BPTTConfig(lr=value)


@pytest.mark.parametrize("betas", [(0.0, 0.0), [0, 0.999], (np.float32(0.5), np.float64(0.9))])
def test_adam_betas_in_the_unit_interval_are_accepted(betas):
    """Betas of 0 (no averaging) up to just below 1, as a tuple or list, are valid."""
    from plastix.bridges.checks import check_adam_betas

    check_adam_betas("betas", betas)
    assert LearnerConfig(optimizer="adam", adam_betas=betas).adam_betas == betas
