"""More entry points that refuse bad input up front with a message naming the problem and the
fix, and accept the inputs a user expects to work (numpy scalars, a single layer name)."""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
from brian2 import ms, mV

from plastix.bridges.continual import EWCLearner, LearnerConfig
from plastix.bridges.ib_training import AdamWSettings
from plastix.bridges.snntorch_bridge import (
    BPTTConfig,
    bernoulli_raster,
    continuous_layer,
    discretise,
    evaluate_snntorch,
    from_snntorch,
    to_snntorch,
    train_bptt,
)
from plastix.circuits.backend import activate_backend
from plastix.circuits.feedforward import FeedForwardSpec, LayerSpec, NeuronParams, build_brian2
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


def _snn_spec() -> FeedForwardSpec:
    """input 4 -> LIF (3) -> LI (2)."""
    return FeedForwardSpec(
        4,
        (
            LayerSpec(np.ones((3, 4)), NeuronParams("LIF")),
            LayerSpec(np.ones((2, 3)), NeuronParams("LI")),
        ),
    )


def test_snntorch_conversion_refuses_steps_that_are_not_positive_times():
    for bad in (0 * ms, 0.0, -1e-3, float("inf")):
        with pytest.raises(ValueError, match="dt: must be a positive time step"):
            to_snntorch(_snn_spec(), bad)
    with pytest.raises(TypeError, match="dt: expected a time such as 1\\*ms"):
        to_snntorch(_snn_spec(), 1 * mV)
    with pytest.raises(TypeError, match="spec: expected a FeedForwardSpec, got list"):
        discretise(list(_snn_spec().layers), 1 * ms)


def test_snntorch_network_refuses_a_raster_of_the_wrong_width():
    net = to_snntorch(_snn_spec(), 1 * ms)
    assert net(torch.zeros(3, 2, 4)).membranes[1].shape == (3, 2, 2)
    with pytest.raises(
        ValueError, match=r"x: expected a raster \(T, B, 4\), got shape \(3, 2, 5\)"
    ):
        net(torch.zeros(3, 2, 5))


def test_snntorch_conversion_checks_resets_per_model_and_refractory_only_where_it_spikes():
    """CubaLIF must reset to rest like LIF; an LI readout has no refractory period to drop."""
    shifted = NeuronParams("CubaLIF", v_reset=-5 * mV)
    with pytest.raises(ValueError, match="v_reset: layer 'layer0' resets to"):
        to_snntorch(FeedForwardSpec(4, (LayerSpec(np.ones((3, 4)), shifted),)), 1 * ms)
    readout = LayerSpec(np.ones((2, 3)), NeuronParams("LI", refractory=5 * ms))
    spec = FeedForwardSpec(4, (_snn_spec().layers[0], readout))
    assert to_snntorch(spec, 1 * ms).discrete[1].reset == "none"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta": 1.2}, r"beta: decay factors must lie in \(0, 1\]"),
        ({"beta": 0.0}, r"beta: decay factors must lie in \(0, 1\]"),
        ({"gain": 0.0}, "gain: must be > 0"),
        ({"alpha": 0.5, "reset": "none"}, "alpha: a non-spiking"),
        ({"beta": 1.0, "alpha": 0.5}, r"beta: 1 \(no leak, IF\)"),
        ({"beta": 1.0, "reset": "none"}, r"beta: 1 \(no leak, IF\)"),
        ({"beta": [1.0, 0.9]}, r"beta: 1 \(no leak, IF\)"),
        ({"alpha": 1.0}, r"alpha: synaptic decay factors must lie in \(0, 1\)"),
        ({"threshold": None}, "threshold: a spiking layer needs its threshold"),
        ({"bias": [0.0, float("nan")]}, "bias: must be finite"),
    ],
)
def test_continuous_layer_refuses_parameters_without_a_brian2_form(kwargs, message):
    args = {"beta": 0.9, "alpha": None, "threshold": 1.0, "reset": "zero", "bias": None}
    args.update(kwargs)
    bias = args.pop("bias")
    with pytest.raises(ValueError, match=message):
        continuous_layer(np.ones((2, 3)), bias, dt=1e-3, **args)


def test_continuous_layer_keeps_a_reset_value_apart_from_rest():
    """An IF layer (beta = 1) may reset below rest; v_reset defaults to v_leak."""
    if_layer = {"beta": 1.0, "alpha": None, "threshold": 0.005, "reset": "zero", "dt": 1e-3}
    layer = continuous_layer(np.ones((2, 3)), None, **if_layer, v_leak=-0.06, v_reset=-0.07)
    values = layer.neuron.values(2)
    assert layer.neuron.model == "IF"
    np.testing.assert_allclose(values["v_reset"], [-0.07, -0.07])
    np.testing.assert_allclose(values["v_th"], [-0.055, -0.055])
    default = continuous_layer(np.ones((2, 3)), None, **if_layer, v_leak=-0.06)
    np.testing.assert_allclose(default.neuron.values(2)["v_reset"], [-0.06, -0.06])


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"steps": 10, "settle": 10}, r"settle: must lie in \[0, steps=10\), got 10"),
        ({"steps": 10, "settle": -1}, r"settle: must lie in \[0, steps=10\), got -1"),
        ({"steps": 0, "settle": 0}, "steps: expected an int >= 1, got 0"),
        ({"batch": 0}, "batch: expected an int >= 1, got 0"),
    ],
)
def test_bptt_config_refuses_empty_runs_and_a_settle_time_that_leaves_no_step(cfg, message):
    with pytest.raises(ValueError, match=message):
        BPTTConfig(**cfg)
    assert BPTTConfig(steps=10, settle=9).settle == 9


def test_bernoulli_raster_refuses_no_steps_and_features_outside_the_unit_interval():
    assert bernoulli_raster(torch.ones(2, 3), 1, 1.0).shape == (1, 2, 3)
    with pytest.raises(ValueError, match="steps: expected an int >= 1, got 0"):
        bernoulli_raster(torch.full((2, 3), 0.5), 0, 0.5)
    with pytest.raises(ValueError, match=r"x: features must lie in \[0, 1\]"):
        bernoulli_raster(torch.full((2, 3), -0.1), 4, 0.5)
    with pytest.raises(ValueError, match=r"x: expected \(B, d\) features"):
        bernoulli_raster(torch.full((3,), 0.5), 4, 0.5)


def test_bptt_training_and_evaluation_refuse_mismatched_features_and_labels():
    net = to_snntorch(_snn_spec(), 1 * ms)
    cfg = BPTTConfig(steps=3, settle=0, batch=4)
    x, y = torch.full((5, 4), 0.5), torch.zeros(5, dtype=torch.int64)
    for run in (train_bptt, evaluate_snntorch):
        with pytest.raises(ValueError, match=r"x: expected \(n, 4\) features in \[0, 1\]"):
            run(net, x[:, :3], y, cfg)
        with pytest.raises(ValueError, match="y: expected 5 int64 labels"):
            run(net, x, y.float(), cfg)
        with pytest.raises(ValueError, match="y: expected 5 int64 labels"):
            run(net, x, y[:4], cfg)


def test_from_snntorch_refuses_what_is_not_a_linear_neuron_sequence():
    leaky = snn.Leaky(beta=0.9, reset_mechanism="zero", reset_delay=False)
    with pytest.raises(ValueError, match="net: expected alternating nn.Linear"):
        from_snntorch(torch.nn.Sequential(), 1 * ms)
    with pytest.raises(ValueError, match="net: expected alternating nn.Linear"):
        from_snntorch(torch.nn.Sequential(torch.nn.Linear(2, 2)), 1 * ms)
    with pytest.raises(ValueError, match=r"net\[0\], net\[1\]: expected nn.Linear then"):
        from_snntorch(torch.nn.Sequential(leaky, torch.nn.Linear(2, 2)), 1 * ms)
    with pytest.raises(ValueError, match="dt: a plain snntorch network has no time step"):
        from_snntorch(torch.nn.Sequential(torch.nn.Linear(2, 2), leaky))
    with pytest.raises(TypeError, match="net: expected a SnnTorchFeedForward"):
        from_snntorch(leaky, 1 * ms)
    synaptic_li = snn.Synaptic(alpha=0.5, beta=0.9, reset_mechanism="none")
    with pytest.raises(ValueError, match="alpha: a non-spiking"):
        from_snntorch(torch.nn.Sequential(torch.nn.Linear(2, 2), synaptic_li), 1 * ms)
    zero = snn.Leaky(beta=0.0, reset_delay=False)
    with pytest.raises(ValueError, match=r"net\[1\].beta: decay factors .* got \[0. 0.\]"):
        from_snntorch(torch.nn.Sequential(torch.nn.Linear(2, 2), zero), 1 * ms)
