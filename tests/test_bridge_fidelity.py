"""Exactness of the Brian2 <-> snntorch <-> NIR bridges at their edges: neurons firing from
their bias before any input arrives, membranes of spiking layers, settings a bridge cannot
express (fast: tiny networks, Brian2 runtime with the numpy target)."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from brian2 import ms, mV
from snntorch.export_nir import export_to_nir
from snntorch.functional.quant import state_quant
from test_bridges import DT, _raster, _snntorch_net, _snntorch_run, _spec

from plastix.bridges.nir_bridge import SnntorchConvention, from_nir, to_nir
from plastix.bridges.snntorch_bridge import from_snntorch, to_snntorch
from plastix.circuits.feedforward import FeedForwardSpec, LayerSpec, NeuronParams, run_raster


def _tonic_spec(hidden: str) -> FeedForwardSpec:
    """input 3 -> hidden (4) -> LIF (3) -> LI (2). Two hidden neurons fire from their bias
    at step 0 and two LIF neurons (excited by them) at step 1, before any input arrives."""
    rng = np.random.default_rng(0)
    bias0 = {"LIF": 12000.0, "IF": 12000.0, "CubaLIF": 120000.0}[hidden]
    return FeedForwardSpec(
        3,
        (
            LayerSpec(
                rng.normal(1, 8, (4, 3)),
                NeuronParams(hidden),
                bias0 * np.array([1.0, 1.0, 0.5, 0.0]),
            ),
            LayerSpec(
                np.abs(rng.normal(0, 3, (3, 4))) * [1, 1, -1, -1],
                NeuronParams("LIF"),
                np.array([6500.0, 6500.0, 0.0]),
            ),
            LayerSpec(rng.normal(2, 1, (2, 3)), NeuronParams("LI"), np.full(2, 300.0)),
        ),
    )


@pytest.mark.parametrize("hidden", ["LIF", "CubaLIF", "IF"])
def test_neurons_firing_from_their_bias_before_any_input_match_brian2(hidden):
    """Brian2 layer k integrates k + 1 steps before its first input arrives; neurons that
    fire from their bias then are reset and pass their spikes on in snntorch too."""
    spec = _tonic_spec(hidden)
    steps = 60
    raster = _raster(0, steps, 2, 3)
    spikes, membranes = run_raster(spec, raster, DT, record_membrane="layer2")
    # before any input
    assert spikes["layer0"][0, :, :2].all() and spikes["layer1"][1, :, :2].all()
    net = to_snntorch(spec, DT, dtype=torch.float64)
    rec = _snntorch_run(net, raster)
    for k in range(2):
        np.testing.assert_array_equal(
            spikes[f"layer{k}"][k + 1 : k + 1 + steps], rec.spikes[k].numpy().astype(bool)
        )
    readout = net.membrane_volts(2, rec.membranes[2])
    np.testing.assert_allclose(membranes["layer2"][3 : 3 + steps], readout.numpy(), atol=1e-12)


def test_single_tonic_neuron_fires_as_in_brian2():
    """A silent input, a layer without bias, then a neuron whose bias alone fires it every
    second step, first at Brian2 step 1 (before snntorch's step 0 for that layer)."""
    spec = FeedForwardSpec(
        1,
        (
            LayerSpec(np.ones((1, 1)), NeuronParams("LIF")),
            LayerSpec(np.ones((1, 1)), NeuronParams("LIF"), bias=np.array([6500.0])),
        ),
    )
    raster = np.zeros((12, 1, 1), dtype=bool)
    spikes, _ = run_raster(spec, raster, DT)
    rec = _snntorch_run(to_snntorch(spec, DT, dtype=torch.float64), raster)
    assert spikes["layer1"][2:14].sum() == 6
    np.testing.assert_array_equal(spikes["layer1"][2:14], rec.spikes[1].numpy().astype(bool))


@pytest.mark.parametrize(
    "make",
    [
        lambda: _tonic_spec("LIF"),
        lambda: _tonic_spec("CubaLIF"),
        lambda: _tonic_spec("IF"),
        lambda: _spec("LIF", reset="subtract", seed=2, scale=0.4),
        lambda: _spec("CubaLIF", reset="subtract", seed=2, scale=0.4),
    ],
    ids=["LIF", "CubaLIF", "IF", "LIF-subtract", "CubaLIF-subtract"],
)
def test_spiking_membranes_are_recorded_at_threshold_time(make):
    """Brian2 records ``v`` before the reset; so does snntorch, on every step."""
    spec = make()
    steps = 40
    raster = _raster(1, steps, 2, spec.n_in, p=0.6)
    spikes, membranes = run_raster(spec, raster, DT, record_membrane=True)
    net = to_snntorch(spec, DT, dtype=torch.float64)
    rec = _snntorch_run(net, raster)
    for k in range(3):
        brian = membranes[f"layer{k}"][k + 1 : k + 1 + steps]
        if k < 2:
            np.testing.assert_array_equal(
                spikes[f"layer{k}"][k + 1 : k + 1 + steps], rec.spikes[k].numpy().astype(bool)
            )
            v_th = spec.layers[k].neuron.values(spec.layers[k].n_out)["v_th"]
            assert (brian > v_th).any()
        ours = net.membrane_volts(k, rec.membranes[k]).numpy()
        np.testing.assert_allclose(ours, brian, atol=1e-12, err_msg=f"layer{k}")


def test_strong_input_membrane_above_threshold_at_spike_steps():
    """One input spike lifts the membrane far above threshold: Brian2 records 27 mV."""
    spec = FeedForwardSpec(2, (LayerSpec(np.array([[30.0, 0.0]]), NeuronParams("LIF")),))
    raster = np.zeros((6, 1, 2), dtype=bool)
    raster[[0, 1, 3], 0, 0] = True
    spikes, membranes = run_raster(spec, raster, DT, record_membrane="layer0")
    net = to_snntorch(spec, DT, dtype=torch.float64)
    rec = _snntorch_run(net, raster)
    np.testing.assert_array_equal(spikes["layer0"][1:7], rec.spikes[0].numpy().astype(bool))
    brian = membranes["layer0"][1:7]
    assert brian[0, 0, 0] > 25e-3
    np.testing.assert_allclose(net.membrane_volts(0, rec.membranes[0]).numpy(), brian, atol=1e-12)


def test_layers_mixing_zero_and_positive_refractory_periods_are_refused():
    """Brian2's ``(unless refractory)`` applies to the whole group, and a neuron with
    refractory 0 then loses the input arriving in its spike's step."""
    with pytest.raises(ValueError, match="refractory.*every neuron"):
        NeuronParams("LIF", refractory=np.array([0.0, 5.0]) * ms)
    with pytest.raises(ValueError, match="refractory"):
        LayerSpec(np.ones((2, 2)), NeuronParams("IF", refractory=np.array([2.0, 0.0]) * ms))
    for ok in (np.array([0.0, 0.0]), np.array([1.0, 5.0])):
        LayerSpec(np.ones((2, 2)), NeuronParams("CubaLIF", refractory=ok * ms))
    NeuronParams("LI", refractory=np.array([0.0, 5.0]) * ms)  # LI has no refractory period


def test_one_input_spike_moves_each_model_by_its_documented_jump():
    """Neurons start at rest (v_leak; v_reset for IF) and an input spike at step 0 reaches the
    membrane after that step's threshold test: at step 1 a LIF neuron (default R) sits
    R w / tau_mem above rest decayed over one step, an IF neuron exactly R w above v_reset
    and a CubaLIF neuron, whose I_s jumped by w / tau_syn, at the exact two-exponential
    solution R w (e^(-dt/tau_syn) - e^(-dt/tau_mem)) / (tau_syn - tau_mem). Copy 1 receives
    no spike and stays at rest."""
    w, dt = 3.0, 1e-3
    raster = np.zeros((3, 2, 2), dtype=bool)
    raster[0, 0, 0] = True  # copy 0, channel 0, step 0
    weight = np.array([[w, 0.5]])
    cases = {
        "LIF": (-65e-3, -65e-3 + 1e-3 * w * np.exp(-dt / 10e-3)),
        "IF": (-70e-3, -70e-3 + 1e-3 * w),
        "CubaLIF": (
            -65e-3,
            -65e-3 + 10e-6 * w * (np.exp(-dt / 5e-3) - np.exp(-dt / 10e-3)) / (5e-3 - 10e-3),
        ),
    }
    for model, (rest, after) in cases.items():
        neuron = NeuronParams(model, v_leak=-65 * mV, v_reset=-70 * mV, v_th=-50 * mV)
        spec = FeedForwardSpec(2, (LayerSpec(weight, neuron),))
        spikes, membranes = run_raster(spec, raster, DT, record_membrane=True)
        v = membranes["layer0"]
        assert v.shape == (4, 2, 1) and not spikes["layer0"].any()
        np.testing.assert_allclose(v[0], rest, rtol=0, atol=1e-12, err_msg=model)
        np.testing.assert_allclose(v[1, 0, 0], after, rtol=0, atol=1e-12, err_msg=model)
        np.testing.assert_allclose(v[:, 1, 0], rest, rtol=0, atol=1e-12, err_msg=model)


def _sequential(**neuron_kwargs) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Linear(5, 4, bias=False),
        snn.Leaky(beta=0.9, reset_mechanism="zero", reset_delay=False),
        torch.nn.Linear(4, 3, bias=False),
        snn.Leaky(beta=0.9, reset_mechanism="zero", reset_delay=False, **neuron_kwargs),
    )


@pytest.mark.filterwarnings("ignore:Inhibition is an unstable feature")
@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"graded_spikes_factor": 3.0}, "graded_spikes_factor"),
        ({"inhibition": True}, "inhibition"),
        ({"state_quant": state_quant(num_bits=8)}, "state_quant"),
    ],
)
def test_from_snntorch_refuses_settings_brian2_cannot_express(kwargs, setting):
    assert from_snntorch(_sequential(), DT).layers[1].n_out == 3
    with pytest.raises(ValueError, match=rf"net\[3\] \(layer1\): {setting}"):
        from_snntorch(_sequential(**kwargs), DT)
    flat = torch.nn.Sequential(torch.nn.Flatten(), *_sequential(**kwargs))
    with pytest.raises(ValueError, match=rf"net\[4\] \(layer1\): {setting}"):
        from_snntorch(flat, DT)


def test_from_snntorch_bias_offset_of_an_integrator_never_decays():
    """A biased ``Leaky(beta=1)`` with subtractive reset: Brian2 has integrated one bias
    step before the Sequential's step 0, and its spikes stay one step ahead for good.

    The bias is 0.2955 = 591/2000, not 0.3: with 0.3 the exact membrane lands on the threshold
    every tenth step (k * 0.3 - m = 1), and whether it spikes there was set by the last bit of
    each backend's sum. 591/2000 keeps every step at least 5e-4 from the threshold."""
    net = torch.nn.Sequential(
        torch.nn.Linear(1, 1),
        snn.Leaky(beta=1.0, reset_mechanism="subtract", reset_delay=False),
    ).double()
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.fill_(0.2955)
    raster = np.zeros((200, 1, 1), dtype=bool)
    spikes, _ = run_raster(from_snntorch(net, DT), raster, DT)
    mem, ours = torch.zeros(1, 1, dtype=torch.float64), []
    with torch.no_grad():
        for _ in range(201):
            spk, mem = net[1](net[0](torch.zeros(1, 1, dtype=torch.float64)), mem)
            ours.append(bool(spk))
    brian = spikes["layer0"][1:201, 0, 0]
    assert 50 < brian.sum() < 80
    assert not np.array_equal(brian, ours[:200])
    np.testing.assert_array_equal(brian, ours[1:201])


def test_from_nir_refuses_a_reading_that_contradicts_the_plastix_metadata(tmp_path):
    spec = FeedForwardSpec(3, (LayerSpec(np.ones((2, 3)), NeuronParams("LIF", v_th=5 * mV)),))
    native = to_nir(spec)
    with pytest.raises(ValueError, match="plastix_convention.*convention=None"):
        from_nir(native, convention=SnntorchConvention(), dt=DT)
    assert from_nir(native).same_as(spec)
    nir.write(tmp_path / "g.nir", to_nir(spec, convention=SnntorchConvention(dt_graph=1e-3), dt=DT))
    graph = nir.read(tmp_path / "g.nir")  # metadata read back as numpy scalars
    with pytest.raises(ValueError, match="plastix_convention.*SnntorchConvention"):
        from_nir(graph)
    with pytest.raises(ValueError, match=r"dt_graph.*0\.001.*SnntorchConvention\(dt_graph"):
        from_nir(graph, convention=SnntorchConvention())
    with pytest.raises(ValueError, match="decay.*'euler'"):
        from_nir(graph, convention=SnntorchConvention(dt_graph=1e-3, decay="exact"))
    back = from_nir(graph, convention=SnntorchConvention(dt_graph=1e-3))
    assert back.layers[0].neuron.model == "LIF"
    # graphs from other tools carry no plastix metadata and are read as asked
    foreign = to_nir(spec)
    foreign.metadata = {}
    assert from_nir(foreign, convention=SnntorchConvention(), dt=DT).layers[0].n_out == 2
    exported = export_to_nir(_snntorch_net(False), torch.zeros(8))
    from_nir(exported)
    from_nir(exported, convention=SnntorchConvention())


def test_cubalif_with_equal_synaptic_and_membrane_time_constants_matches_brian2():
    """tau_syn = tau_mem takes the degenerate branch of the exact propagator
    (kappa = R dt beta / tau_mem); Brian2 integrates its own equal-tau equations, so the
    spike trains agree step by step only if that branch is right."""
    base = _spec("CubaLIF")
    equal = NeuronParams(
        "CubaLIF",
        tau_mem=5 * ms,
        tau_syn=5 * ms,
        v_leak=-65 * mV,
        v_reset=-65 * mV,
        v_th=-50 * mV,
        R=10 * mV * ms,
    )
    first = base.layers[0]
    spec = FeedForwardSpec(5, (LayerSpec(first.weight, equal, bias=first.bias), *base.layers[1:]))
    steps, batch = 150, 3
    raster = _raster(1, steps, batch, 5)
    spikes, _ = run_raster(spec, raster, DT)
    rec = _snntorch_run(to_snntorch(spec, DT, dtype=torch.float64), raster)
    brian = spikes["layer0"][1 : 1 + steps]
    assert brian.sum() > 50
    np.testing.assert_array_equal(brian, rec.spikes[0].numpy().astype(bool))
    np.testing.assert_array_equal(
        spikes["layer1"][2 : 2 + steps], rec.spikes[1].numpy().astype(bool)
    )


def _driven_lif(refractory) -> FeedForwardSpec:
    """One LIF neuron whose bias lifts it 19 mV per 1 ms step from rest (threshold 10 mV)."""
    neuron = NeuronParams("LIF", refractory=refractory)
    return FeedForwardSpec(1, (LayerSpec(np.zeros((1, 1)), neuron, bias=np.array([20000.0])),))


def test_brian2_form_holds_a_lif_neuron_for_its_refractory_period():
    """A bias strong enough to fire on every step: with refractory 5 ms the neuron fires
    every fifth step (every inter-spike interval >= 5 steps), without it on every step."""
    raster = np.zeros((50, 1, 1), dtype=bool)
    free, _ = run_raster(_driven_lif(0 * ms), raster, DT)
    held, _ = run_raster(_driven_lif(5 * ms), raster, DT)
    assert free["layer0"][:, 0, 0].all()  # 51 steps (one transit step added), 51 spikes
    spike_steps = np.flatnonzero(held["layer0"][:, 0, 0])
    np.testing.assert_array_equal(spike_steps, np.arange(0, 51, 5))
    assert np.diff(spike_steps).min() >= 5
