"""Brian2 <-> snntorch <-> NIR bridges (fast: Brian2 runtime with the numpy target)."""

from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import snntorch as snn
import snntorch.utils as snn_utils
import torch
from brian2 import ms, mV
from snntorch.export_nir import export_to_nir
from snntorch.import_nir import import_from_nir

from plastix.bridges.nir_bridge import SNNTORCH_NIR_DT, SnntorchConvention, from_nir, to_nir
from plastix.bridges.snntorch_bridge import (
    BPTTConfig,
    SnnTorchRecord,
    bernoulli_raster,
    continuous_layer,
    discretise,
    evaluate_snntorch,
    from_snntorch,
    readout_logits,
    to_snntorch,
    train_bptt,
)
from plastix.circuits.feedforward import (
    FeedForwardSpec,
    LayerSpec,
    NeuronParams,
    build_brian2,
    run_raster,
)

DT = 1 * ms


def _spec(hidden: str, reset: str = "value", seed: int = 0, scale: float = 1.0):
    """input 5 -> hidden (6, heterogeneous tau) -> CubaLIF (4) -> LI (3), with biases."""
    rng = np.random.default_rng(seed)
    leaky = hidden != "IF"
    first = NeuronParams(
        hidden,
        tau_mem=rng.uniform(5, 20, 6) * ms,
        tau_syn=4 * ms,
        v_leak=-65 * mV,
        v_reset=-65 * mV if leaky else -60 * mV,
        v_th=-50 * mV,
        R=10 * mV * ms if leaky else 1 * mV,
        reset=reset,
    )
    return FeedForwardSpec(
        5,
        (
            LayerSpec(scale * rng.normal(3, 3, (6, 5)), first, bias=rng.normal(20, 10, 6)),
            LayerSpec(
                scale * rng.normal(3, 3, (4, 6)),
                NeuronParams("CubaLIF", tau_syn=3 * ms, v_th=5 * mV, reset=reset),
                bias=rng.normal(0, 100, 4),
            ),
            LayerSpec(rng.normal(5, 2, (3, 4)), NeuronParams("LI")),
        ),
    )


def _raster(seed: int, steps: int, batch: int, n: int, p: float = 0.3) -> np.ndarray:
    return np.random.default_rng(seed).random((steps, batch, n)) < p


def _snntorch_run(net, raster):
    with torch.no_grad():
        return net(torch.as_tensor(raster, dtype=torch.float64))


def _counts_corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.sum(0).ravel(), b.sum(0).ravel())[0, 1])


# -- time-step conversion -----------------------------------------------------------------


def test_beta_and_alpha_are_exponential_decays_per_step():
    spec = _spec("CubaLIF")
    net = to_snntorch(spec, DT, dtype=torch.float64)
    tau = spec.layers[0].neuron.values(6)["tau_mem"]
    np.testing.assert_allclose(net.neurons[0].beta.numpy(), np.exp(-1e-3 / tau), rtol=1e-15)
    np.testing.assert_allclose(net.neurons[0].alpha.numpy(), np.exp(-1e-3 / 4e-3), rtol=1e-15)
    np.testing.assert_allclose(net.neurons[1].alpha.numpy(), np.exp(-1 / 3), rtol=1e-15)
    # the inverse map recovers tau = -dt / ln(beta)
    layer = continuous_layer(
        np.ones((6, 2)),
        None,
        beta=np.exp(-1e-3 / tau),
        alpha=None,
        threshold=1.0,
        reset="zero",
        dt=1e-3,
    )
    np.testing.assert_allclose(layer.neuron.values(6)["tau_mem"], tau, rtol=1e-12)


def test_snntorch_nir_export_assumes_dt_1e4_and_is_read_back_explicitly():
    spec = _spec("LIF")
    net = to_snntorch(spec, DT)
    sequential = torch.nn.Sequential(net.linears[0], net.neurons[0])
    graph = export_to_nir(sequential, torch.zeros(5))
    lif = next(n for n in graph.nodes.values() if isinstance(n, nir.LIF))
    beta = net.neurons[0].beta.double().numpy()
    # snntorch writes tau = 1e-4 s / (1 - beta), whatever step the network was made for
    np.testing.assert_allclose(lif.tau, SNNTORCH_NIR_DT / (1 - beta), rtol=1e-5)
    back = from_nir(graph, convention=SnntorchConvention(), dt=DT)
    tau = spec.layers[0].neuron.values(6)["tau_mem"]
    np.testing.assert_allclose(back.layers[0].neuron.values(6)["tau_mem"], tau, rtol=1e-5)
    # reading tau as a time constant at 1e-4 s (the naive reading) would be 10x too short
    assert np.all(lif.tau < 0.2 * tau)


# -- Brian2 vs snntorch ---------------------------------------------------------------------


@pytest.mark.parametrize("hidden", ["LIF", "CubaLIF", "IF"])
def test_brian2_and_snntorch_spike_trains_identical_with_value_reset(hidden):
    """Reset to value: the discretisation is identical, so spike trains are equal step by
    step (Brian2 layer k lags by k + 1 steps) and the LI readout agrees to rounding."""
    spec = _spec(hidden)
    steps, batch = 150, 3
    raster = _raster(1, steps, batch, 5)
    spikes, membranes = run_raster(spec, raster, DT, record_membrane=("layer2",))
    net = to_snntorch(spec, DT, dtype=torch.float64)
    rec = _snntorch_run(net, raster)
    for k in range(2):
        brian = spikes[f"layer{k}"][k + 1 : k + 1 + steps]
        torch_spikes = rec.spikes[k].numpy().astype(bool)
        assert brian.sum() > 50
        np.testing.assert_array_equal(brian, torch_spikes)
    readout = net.membrane_volts(2, rec.membranes[2]).numpy()
    np.testing.assert_allclose(membranes["layer2"][3 : 3 + steps], readout, atol=1e-12)


def test_recorded_membranes_are_copies_that_outlive_the_monitor():
    """From Brian2 2.10 on, a runtime monitor's arrays are views into memory that is freed
    with the monitor, so what a circuit hands out must own its data."""
    raster = _raster(1, 20, 2, 5)
    circuit = build_brian2(_spec("LIF"), raster, DT, copies=2, record_membrane=("layer2",))
    circuit.network.run(23 * DT, namespace={})
    v = circuit.membrane("layer2")
    assert v.shape == (23, 2, 3)
    assert not np.shares_memory(v, circuit.state_monitors["layer2"].v_[:])


@pytest.mark.parametrize("hidden", ["LIF", "CubaLIF", "IF"])
def test_subtractive_reset_identical_below_and_correlated_above_one_threshold_per_step(hidden):
    """Subtractive reset: identical while one step's input stays below threshold; with
    stronger input snntorch's reset_delay=False guard withholds a spike whenever the
    membrane is still above threshold after its reset, so only counts correlate."""
    weak = _spec(hidden, reset="subtract", seed=2, scale=0.4)
    d = discretise(weak, DT)[0]
    assert (np.clip(d.weight, 0, None).sum(1) + d.bias).max() < 1.0
    raster = _raster(3, 200, 2, 5, p=0.6)
    spikes, _ = run_raster(weak, raster, DT)
    rec = _snntorch_run(to_snntorch(weak, DT, dtype=torch.float64), raster)
    brian = spikes["layer0"][1:201]
    assert brian.sum() > 50
    np.testing.assert_array_equal(brian, rec.spikes[0].numpy().astype(bool))

    strong = _spec(hidden, reset="subtract", seed=2)
    spikes, _ = run_raster(strong, raster, DT)
    rec = _snntorch_run(to_snntorch(strong, DT, dtype=torch.float64), raster)
    for k in range(2):
        brian = spikes[f"layer{k}"][k + 1 : k + 201]
        assert _counts_corr(brian, rec.spikes[k].numpy()) >= 0.95


@pytest.mark.slow
def test_cpp_standalone_gives_the_runtime_spike_trains(tmp_path):
    spec = _spec("CubaLIF")
    raster = _raster(7, 80, 2, 5)
    runtime, membranes = run_raster(spec, raster, DT, record_membrane=("layer2",))
    standalone, sa_membranes = run_raster(
        spec,
        raster,
        DT,
        record_membrane=("layer2",),
        backend="cpp_standalone",
        directory=tmp_path / "build",
    )
    for name in ("layer0", "layer1"):
        assert runtime[name].sum() > 20
        np.testing.assert_array_equal(standalone[name], runtime[name])
    np.testing.assert_allclose(sa_membranes["layer2"], membranes["layer2"], atol=1e-12)


def test_snntorch_weights_map_back_to_the_description():
    spec = _spec("CubaLIF")
    net = to_snntorch(spec, DT, dtype=torch.float64)
    assert from_snntorch(net).same_as(spec, rtol=1e-12)
    with torch.no_grad():
        net.linears[0].weight.mul_(2.0)
    back = from_snntorch(net, DT)
    np.testing.assert_allclose(back.layers[0].weight, 2 * spec.layers[0].weight, rtol=1e-12)
    with pytest.raises(ValueError, match="dt"):
        from_snntorch(net, 2 * ms)


def _run_sequential(net, raster):
    x = torch.as_tensor(raster, dtype=torch.float64)
    batch = x.shape[1]
    mem1 = torch.zeros(batch, 6, dtype=torch.float64)
    syn2 = mem2 = torch.zeros(batch, 4, dtype=torch.float64)
    out1, out2 = [], []
    with torch.no_grad():
        for t in range(x.shape[0]):
            s1, mem1 = net[1](net[0](x[t]), mem1)
            s2, syn2, mem2 = net[3](net[2](s1.double()), syn2, mem2)
            out1.append(s1)
            out2.append(s2)
    return torch.stack(out1).numpy() > 0, torch.stack(out2).numpy() > 0


def test_plain_snntorch_sequential_runs_identically_in_brian2():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 6),
        snn.Leaky(beta=torch.linspace(0.8, 0.95, 6), threshold=1.0, reset_mechanism="zero"),
        torch.nn.Linear(6, 4, bias=False),
        snn.Synaptic(alpha=0.7, beta=0.9, threshold=0.8, reset_mechanism="zero", reset_delay=False),
    ).double()
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[0].bias.zero_()
        net[2].weight.mul_(3.0)
    spec = from_snntorch(net, DT)
    assert [layer.neuron.model for layer in spec.layers] == ["LIF", "CubaLIF"]
    raster = _raster(4, 150, 2, 5)
    spikes, _ = run_raster(spec, raster, DT)
    first, second = _run_sequential(net, raster)
    assert first.sum() > 50 and second.sum() > 20
    np.testing.assert_array_equal(spikes["layer0"][1:151], first)
    np.testing.assert_array_equal(spikes["layer1"][2:152], second)
    # with a bias, the Sequential starts at mem = 0 but Brian2 at rest: counts still agree
    with torch.no_grad():
        net[0].bias.fill_(0.05)
    spikes, _ = run_raster(from_snntorch(net, DT), raster, DT)
    first, _ = _run_sequential(net, raster)
    assert _counts_corr(spikes["layer0"][1:151], first) >= 0.95
    with pytest.raises(ValueError, match="reset_delay"):
        from_snntorch(torch.nn.Sequential(torch.nn.Linear(2, 2), snn.Leaky(beta=0.9)), DT)


def test_conversion_refuses_what_snntorch_cannot_express():
    spec = _spec("LIF")
    refractory = FeedForwardSpec(
        5, (LayerSpec(np.ones((2, 5)), NeuronParams("LIF", refractory=2 * ms)),)
    )
    with pytest.raises(ValueError, match="refractory"):
        to_snntorch(refractory, DT)
    assert to_snntorch(refractory, DT, drop_refractory=True) is not None
    offset = FeedForwardSpec(5, (LayerSpec(np.ones((2, 5)), NeuronParams("LIF", v_reset=-5 * mV)),))
    with pytest.raises(ValueError, match="v_reset"):
        to_snntorch(offset, DT)
    with pytest.raises(ValueError, match="x: expected a raster"):
        to_snntorch(spec, DT)(torch.zeros(10, 5))
    with pytest.raises(TypeError, match="dt"):
        to_snntorch(spec, "1 ms")


def test_description_checks_its_input():
    with pytest.raises(ValueError, match="layers\\[1\\].weight"):
        FeedForwardSpec(3, (LayerSpec(np.ones((2, 3))), LayerSpec(np.ones((2, 4)))))
    with pytest.raises(TypeError, match="tau_mem"):
        NeuronParams("LIF", tau_mem=10 * mV)
    with pytest.raises(ValueError, match="v_reset"):
        NeuronParams("LIF", v_reset=20 * mV)
    with pytest.raises(ValueError, match="LI layer"):
        FeedForwardSpec(
            3,
            (LayerSpec(np.ones((2, 3)), NeuronParams("LI")), LayerSpec(np.ones((2, 2)))),
        )
    with pytest.raises(ValueError, match="model"):
        NeuronParams("Izhikevich")


def test_neuron_params_refuse_values_that_break_the_equations():
    """R and the model's time constants must be > 0, refractory >= 0, v_reset < v_th."""
    with pytest.raises(ValueError, match="R: must be > 0"):
        NeuronParams("LIF", R=0 * mV * ms)
    with pytest.raises(ValueError, match="tau_mem: must be > 0"):
        NeuronParams("LIF", tau_mem=0 * ms)
    with pytest.raises(ValueError, match="tau_syn: must be > 0"):
        NeuronParams("CubaLIF", tau_syn=0 * ms)
    NeuronParams("LIF", tau_syn=0 * ms)  # LIF has no synaptic time constant
    with pytest.raises(ValueError, match="refractory: must be >= 0"):
        NeuronParams("LIF", refractory=-1 * ms)
    with pytest.raises(ValueError, match="v_reset"):
        NeuronParams("IF", v_th=10 * mV, v_reset=10 * mV)


def test_default_r_gives_a_1_mv_jump_per_unit_weight():
    """R=None: 10 mV*ms for the leaky models (1 mV per unit weight with tau_mem = 10 ms) and
    1 mV for IF."""
    for model in ("LIF", "CubaLIF", "LI"):
        assert NeuronParams(model).values()["R"] == pytest.approx(10e-6, rel=1e-12)
    assert NeuronParams("IF").values()["R"] == pytest.approx(1e-3, rel=1e-12)


def test_layers_and_specs_refuse_inconsistent_shapes_and_names():
    per_neuron = NeuronParams("LIF", tau_mem=np.array([10.0, 20.0]) * ms)
    with pytest.raises(ValueError, match="per-neuron parameters have 2 values"):
        LayerSpec(np.ones((3, 2)), per_neuron)
    assert LayerSpec(np.ones((2, 3)), per_neuron).n_out == 2
    mixed = NeuronParams("CubaLIF", tau_mem=np.array([5.0, 10.0]) * ms, tau_syn=5 * ms)
    with pytest.raises(ValueError, match="tau_syn: equals tau_mem for some neurons"):
        LayerSpec(np.ones((2, 2)), mixed)
    with pytest.raises(ValueError, match="layer names must be unique"):
        FeedForwardSpec(
            2, (LayerSpec(np.ones((2, 2)), name="a"), LayerSpec(np.ones((2, 2)), name="a"))
        )


def test_same_as_compares_biases_and_the_reset_of_spiking_layers():
    base = _spec("LIF")
    assert base.same_as(_spec("LIF"))
    assert not base.same_as(_spec("LIF", reset="subtract"))
    biases = [layer.bias for layer in base.layers]
    biases[2] = np.ones(3)
    weights = [layer.weight for layer in base.layers]
    assert not base.same_as(base.with_weights(weights, biases))
    # an LI layer has no reset: the field is ignored there
    readout = LayerSpec(np.ones((2, 3)), NeuronParams("LI"))
    other = LayerSpec(np.ones((2, 3)), NeuronParams("LI", reset="subtract"))
    assert readout.same_as(other)


def test_with_weights_keeps_the_biases_unless_new_ones_are_given():
    spec = _spec("LIF")
    weights = [2 * layer.weight for layer in spec.layers]
    kept = spec.with_weights(weights)
    for old, new in zip(spec.layers, kept.layers, strict=True):
        np.testing.assert_array_equal(new.bias_or_zero, old.bias_or_zero)
        np.testing.assert_array_equal(new.weight, 2 * old.weight)
    assert np.abs(kept.layers[0].bias).min() > 0
    cleared = spec.with_weights(weights, [None, None, None])
    assert all(layer.bias is None for layer in cleared.layers)


def test_builders_refuse_bad_steps_extra_steps_and_input_groups():
    from brian2 import SpikeGeneratorGroup

    spec = _spec("LIF")
    raster = np.zeros((4, 1, 5), dtype=bool)
    with pytest.raises(ValueError, match="dt: expected one positive time step"):
        build_brian2(spec, raster, 0 * ms)
    with pytest.raises(ValueError, match="extra_steps"):
        run_raster(spec, raster, DT, extra_steps=-1)
    wrong = SpikeGeneratorGroup(4, [], [] * ms, name="ff_wrong_input")
    with pytest.raises(ValueError, match="copies \\* n_in = 5"):
        build_brian2(spec, wrong, DT)


def test_ib_circuit_maps_to_cuba_lif_hidden_layers_and_an_li_trace_readout():
    """Hidden: CubaLIF whose R I_s jumps by w * w_unit per spike (R = w_unit tau_syn).
    Readout: an LI layer that decays by 1 - dt / tau_pre per step and jumps by
    w / (tau_pre rate_norm) per spike, i.e. the circuit's presynaptic trace logit."""
    from brian2 import Hz

    from plastix.circuits.feedforward import from_ib_circuit
    from plastix.circuits.ib_network import CircuitWeights, IBCircuitSpec

    spec = IBCircuitSpec(
        n_input=3, hidden=(4,), n_classes=2, readout_tau_pre=20 * ms, readout_rate_norm=50 * Hz
    )
    rng = np.random.default_rng(0)
    weights = CircuitWeights([rng.random((4, 3))], rng.random((2, 4)), np.array([0.5, -0.5]))
    ff, bias = from_ib_circuit(spec, weights)
    np.testing.assert_array_equal(bias, [0.5, -0.5])
    hidden, readout = ff.layers
    np.testing.assert_array_equal(hidden.weight, weights.hidden[0])
    np.testing.assert_array_equal(readout.weight, weights.readout)
    h = hidden.neuron.values()
    assert hidden.neuron.model == "CubaLIF" and hidden.neuron.reset == "value"
    assert h["R"] / h["tau_syn"] == pytest.approx(1e-3, rel=1e-12)  # w_unit = 1 mV
    assert (h["tau_mem"], h["tau_syn"]) == pytest.approx((10e-3, 5e-3), rel=1e-12)
    assert (h["v_leak"], h["v_th"], h["refractory"]) == pytest.approx((-65e-3, -50e-3, 2e-3))
    r = readout.neuron.values()
    assert readout.neuron.model == "LI" and r["v_leak"] == 0.0
    dt = float(spec.timing.dt)
    assert np.exp(-dt / r["tau_mem"]) == pytest.approx(1 - dt / 20e-3, rel=1e-12)
    assert r["R"] / r["tau_mem"] == pytest.approx(1 / (20e-3 * 50), rel=1e-12)


# -- NIR ------------------------------------------------------------------------------------


def test_nir_round_trip_is_identical_in_memory_and_through_a_file(tmp_path):
    for hidden in ("LIF", "CubaLIF", "IF"):
        spec = _spec(hidden)
        graph = to_nir(spec)
        assert {type(n).__name__ for n in graph.nodes.values()} >= {"Affine", "LI", "Input"}
        assert from_nir(graph).same_as(spec)  # identical floats
        path = tmp_path / f"{hidden}.nir"
        nir.write(path, graph)
        assert from_nir(nir.read(path)).same_as(spec)
    changed = _spec("LIF").with_weights([np.zeros((6, 5)), np.ones((4, 6)), np.ones((3, 4))])
    assert not from_nir(to_nir(changed)).same_as(_spec("LIF"))


def test_nir_export_keeps_the_resting_potential_of_an_li_readout():
    """The LI node carries v_leak in volts (native SI numbers): a readout resting at -65 mV
    must not come back resting at 0 V."""
    base = _spec("LIF")
    readout = LayerSpec(base.layers[2].weight, NeuronParams("LI", v_leak=-65 * mV))
    spec = FeedForwardSpec(5, (*base.layers[:2], readout))
    graph = to_nir(spec)
    li = next(node for node in graph.nodes.values() if isinstance(node, nir.LI))
    np.testing.assert_array_equal(li.v_leak, np.full(3, -0.065))
    back = from_nir(graph)
    assert back.same_as(spec)  # identical floats
    np.testing.assert_array_equal(back.layers[2].neuron.values(3)["v_leak"], np.full(3, -0.065))


def _lif_graph(v_leak: float, v_threshold: float, v_reset: float) -> nir.NIRGraph:
    """Input (3) -> Affine -> LIF (4) -> Output in snntorch's encoding: tau = 1 ms and
    r = tau / dt_graph, so one graph step decays by beta = 0.9 with input gain 1."""
    weight = np.random.default_rng(8).uniform(0.2, 0.9, (4, 3))
    n = np.ones(4)
    nodes = {
        "input": nir.Input(input_type=np.array([3])),
        "affine": nir.Affine(weight=weight, bias=np.zeros(4)),
        "lif": nir.LIF(
            tau=1e-3 * n,
            r=1e-3 / SNNTORCH_NIR_DT * n,
            v_leak=v_leak * n,
            v_threshold=v_threshold * n,
            v_reset=v_reset * n,
        ),
        "output": nir.Output(output_type=np.array([4])),
    }
    edges = [("input", "affine"), ("affine", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def test_snntorch_convention_import_measures_the_threshold_from_the_leak():
    """snntorch's membrane is relative to rest: a LIF node resting at 0.2 with threshold 1.2
    and reset 0.2 is the node resting at 0 with threshold 1 and reset 0, shifted by 0.2 —
    same threshold above rest, same per-step dynamics, same spike trains."""
    convention = SnntorchConvention()
    shifted = from_nir(_lif_graph(0.2, 1.2, 0.2), convention=convention, dt=DT)
    plain = from_nir(_lif_graph(0.0, 1.0, 0.0), convention=convention, dt=DT)
    a, b = shifted.layers[0].neuron.values(4), plain.layers[0].neuron.values(4)
    np.testing.assert_allclose(a["v_th"] - a["v_leak"], np.ones(4), rtol=1e-12)
    np.testing.assert_allclose(b["v_th"] - b["v_leak"], np.ones(4), rtol=1e-12)
    np.testing.assert_array_equal(a["v_leak"], np.full(4, 0.2))
    np.testing.assert_array_equal(a["v_reset"], a["v_leak"])
    (ds,), (dp,) = discretise(shifted, DT), discretise(plain, DT)
    np.testing.assert_allclose(ds.beta, np.full(4, 0.9), rtol=1e-12)
    np.testing.assert_allclose(ds.beta, dp.beta, rtol=1e-12)
    np.testing.assert_allclose(ds.weight, dp.weight, rtol=1e-12)
    raster = _raster(9, 100, 2, 3, p=0.5)
    spikes_shifted, _ = run_raster(shifted, raster, DT)
    spikes_plain, _ = run_raster(plain, raster, DT)
    assert spikes_plain["lif"].sum() > 50
    np.testing.assert_array_equal(spikes_shifted["lif"], spikes_plain["lif"])


def test_nir_export_refuses_what_nir_cannot_express():
    layer = LayerSpec(np.ones((2, 5)), NeuronParams("LIF", reset="subtract"))
    with pytest.raises(ValueError, match="reset"):
        to_nir(FeedForwardSpec(5, (layer,)))
    layer = LayerSpec(np.ones((2, 5)), NeuronParams("LIF", refractory=1 * ms))
    with pytest.raises(ValueError, match="refractory"):
        to_nir(FeedForwardSpec(5, (layer,)))
    with pytest.raises(ValueError, match="dt"):
        to_nir(_spec("LIF"), convention=SnntorchConvention())


def test_snntorch_convention_export_keeps_the_discrete_dynamics_and_snntorch_imports_it():
    spec = _spec("LIF").with_weights(
        [layer.weight for layer in _spec("LIF").layers], [None, None, None]
    )
    graph = to_nir(spec, convention=SnntorchConvention(), dt=DT)
    back = from_nir(graph, convention=SnntorchConvention())  # dt read from the metadata
    for a, b in zip(discretise(back, DT), discretise(spec, DT), strict=True):
        np.testing.assert_allclose(a.weight, b.weight, rtol=1e-10)
        np.testing.assert_allclose(a.beta, b.beta, rtol=1e-12)
    # snntorch's own importer builds a network with the same spikes (LI is not importable by
    # snntorch, so drop the readout)
    hidden = FeedForwardSpec(5, spec.layers[:2])
    imported = import_from_nir(to_nir(hidden, convention=SnntorchConvention(), dt=DT))
    raster = _raster(5, 120, 3, 5)
    ours = to_snntorch(hidden, DT)(torch.as_tensor(raster, dtype=torch.float32))
    snn_utils.reset(imported)
    out = []
    with torch.no_grad():
        for t in range(120):
            step = imported(torch.as_tensor(raster[t], dtype=torch.float32))
            out.append(step[0] if isinstance(step, tuple) else step)
    theirs = torch.stack(out)
    assert theirs.sum() > 50
    assert torch.equal(theirs, ours.spikes[1].detach())


def _snntorch_net(reset_delay: bool):
    torch.manual_seed(3)
    n_in, n_h, n_out = 8, 10, 4
    kwargs = dict(init_hidden=True, reset_mechanism="zero", reset_delay=reset_delay)
    net = torch.nn.Sequential(
        torch.nn.Linear(n_in, n_h),
        snn.Leaky(beta=torch.full((n_h,), 0.9), threshold=torch.ones(n_h), **kwargs),
        torch.nn.Linear(n_h, n_out),
        snn.Synaptic(
            alpha=torch.full((n_out,), 0.8),
            beta=torch.full((n_out,), 0.9),
            threshold=torch.ones(n_out),
            **kwargs,
        ),
    )
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[0].bias.zero_()
        net[2].weight.mul_(2.0)
        net[2].bias.zero_()
    return net


@pytest.mark.parametrize("reset_delay", [False, True])
def test_graph_exported_by_snntorch_runs_in_brian2_with_matching_spike_counts(reset_delay):
    """snntorch -> export_to_nir -> plastix -> Brian2 on a fixed input raster.

    Per-neuron output spike counts correlate >= 0.95 under both readings of snntorch's
    graph. With reset_delay=False (the dynamics snntorch's own importer rebuilds) and the
    Euler reading, the trains are identical; snntorch's default reset_delay=True zeroes a
    Synaptic membrane one step late, which no NIR node expresses.
    """
    net = _snntorch_net(reset_delay)
    graph = export_to_nir(net, torch.zeros(8))
    steps, batch = 300, 4
    raster = _raster(6, steps, batch, 8)
    snn_utils.reset(net)
    with torch.no_grad():
        reference = torch.stack(
            [net(torch.as_tensor(raster[t], dtype=torch.float32)) for t in range(steps)]
        ).numpy()
    assert reference.sum() > 100
    for decay in ("euler", "exact"):
        spec = from_nir(graph, convention=SnntorchConvention(decay=decay))
        spikes, _ = run_raster(spec, raster, SNNTORCH_NIR_DT * 1e3 * ms)
        brian = spikes[spec.layers[-1].name][2 : 2 + steps]
        assert _counts_corr(brian, reference) >= 0.95
        if decay == "euler" and not reset_delay:
            np.testing.assert_array_equal(brian, reference > 0)


def test_nir_import_rejects_unsupported_graphs():
    graph = nir.NIRGraph.from_list(nir.Affine(np.ones((2, 3)), np.zeros(2)), nir.I(np.ones(2)))
    with pytest.raises(ValueError, match="Affine/Linear then"):
        from_nir(graph)
    with pytest.raises(TypeError, match="graph"):
        from_nir("model.nir")
    assert math.isclose(SNNTORCH_NIR_DT, 1e-4)


# -- the compare experiment ----------------------------------------------------------------


def test_compare_experiment_writes_every_arm_and_the_transfer_figures(tmp_path):
    from plastix.sims.experiments import run_experiment
    from plastix.sims.plots import plot_result
    from plastix.sims.results import read_result

    out = run_experiment(
        "compare",
        overrides={
            "n_train": 40,
            "n_test": 20,
            "hidden": (8,),
            "epochs": 1,
            "presentation_ms": 10.0,
            "settle_ms": 2.0,
            "dt_ms": 1.0,
            "window": 4,
            "bptt_batch": 16,
            "pruning": "uniform",
            "pruning_rate": 0.25,
        },
        device="numpy",
        out=tmp_path / "compare.h5",
        seed=0,
    )
    res = read_result(out)
    assert res.status == "complete"
    arms = ("spiking_ib", "rate_ib", "snntorch_bptt", "backprop")
    for arm in arms:
        acc = res.metrics[f"{arm}_test_accuracy"]
        seen = res.metrics[f"{arm}_samples_seen"]
        kept = ~np.isnan(acc)
        assert kept.sum() == 2  # before training and after the epoch
        assert np.all((acc[kept] >= 0) & (acc[kept] <= 1))
        assert seen[kept][0] == 0
        assert res.summary[f"{arm}_train_wall_s"] > 0
    # pruning applies to the torch arms only: the spiking arm sees every sample
    assert res.summary["spiking_ib_samples_seen"] == 40
    assert res.summary["backprop_samples_seen"] == 30
    for key in (
        "spiking_ib_in_snntorch_accuracy",
        "snntorch_bptt_in_brian2_accuracy",
        "snntorch_bptt_same_raster_agreement",
    ):
        assert 0.0 <= res.summary[key] <= 1.0
    # the same weights on the same raster: Brian2 and snntorch classify every sample alike
    # (float32 in snntorch against float64 in Brian2 could only split exact ties)
    assert res.summary["snntorch_bptt_same_raster_agreement"] >= 0.95
    assert math.isclose(
        res.summary["spiking_ib_transfer_difference"],
        res.summary["spiking_ib_in_snntorch_accuracy"] - res.summary["spiking_ib_test_accuracy"],
    )
    # every arm's hidden layer (8 x 64) and readout (10 x 8) under one naming scheme
    expected = {f"{arm}_{part}" for arm in arms for part in ("w0", "readout")}
    assert set(res.weights) == expected
    for arm in arms:
        assert res.weights[f"{arm}_w0"].shape == (8, 64)
        assert res.weights[f"{arm}_readout"].shape == (10, 8)
    written = plot_result(res, tmp_path / "plots")
    assert any(p.name.endswith("_compare.png") for p in written)


def test_compare_config_is_checked_before_any_work(tmp_path):
    from plastix.sims.config import ConfigError
    from plastix.sims.experiments import run_experiment

    with pytest.raises((ConfigError, ValueError), match="settle_ms"):
        run_experiment(
            "compare",
            overrides={"settle_ms": 60.0},
            device="numpy",
            out=tmp_path / "bad.h5",
        )
    assert not (tmp_path / "bad.h5").exists()


def test_compare_figure_draws_each_arm_against_time_and_samples_without_missing_points():
    """One line per arm present (labels with '-'), test accuracy against wall-clock seconds
    (left) and samples seen (right); the NaN rows of an arm not evaluated at a step are left
    out. Only a compare result is accepted."""
    from pathlib import Path

    from plastix.sims.plots import pyplot
    from plastix.sims.plots_compare import compare_curves, compare_figure
    from plastix.sims.results import Result

    nan = np.nan
    metrics = {
        "step": np.array([0.0, 1.0, 2.0]),
        "spiking_ib_test_accuracy": np.array([0.1, nan, 0.5]),
        "spiking_ib_wall_s": np.array([0.0, nan, 3.0]),
        "spiking_ib_samples_seen": np.array([0.0, nan, 40.0]),
        "backprop_test_accuracy": np.array([0.2, 0.6, 0.9]),
        "backprop_wall_s": np.array([0.0, 1.0, 2.0]),
        "backprop_samples_seen": np.array([0.0, 20.0, 30.0]),
    }

    def result(experiment):
        return Result(Path("/x/c.h5"), {"experiment": experiment}, {}, {}, metrics, {}, {}, {}, {})

    curves = compare_curves(result("compare"))
    assert list(curves) == ["spiking_ib", "backprop"]
    np.testing.assert_array_equal(curves["spiking_ib"]["wall_s"], [0.0, 3.0])
    [(name, fig)] = compare_figure(result("compare"))
    assert name == "compare"
    ax_time, ax_samples = fig.axes
    time_lines = {ln.get_label(): ln for ln in ax_time.lines}
    sample_lines = {ln.get_label(): ln for ln in ax_samples.lines}
    assert list(time_lines) == ["spiking-ib", "backprop"] == list(sample_lines)
    np.testing.assert_array_equal(time_lines["spiking-ib"].get_xdata(), [0.0, 3.0])
    np.testing.assert_array_equal(time_lines["spiking-ib"].get_ydata(), [0.1, 0.5])
    np.testing.assert_array_equal(time_lines["backprop"].get_xdata(), [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(sample_lines["spiking-ib"].get_xdata(), [0.0, 40.0])
    np.testing.assert_array_equal(sample_lines["backprop"].get_xdata(), [0.0, 20.0, 30.0])
    assert ax_time.get_xlabel() == "training wall-clock (s)"
    assert ax_samples.get_xlabel() == "training samples seen"
    pyplot().close(fig)
    with pytest.raises(ValueError, match="a 'pruning' result; compare_curves needs a compare"):
        compare_curves(result("pruning"))


# -- rate coding, readout, training --------------------------------------------------------


def test_bernoulli_raster_spikes_with_probability_p_max_times_the_feature():
    """P(spike) per step is p_max * x: a feature of 0 never spikes, one of 1 with p_max = 1
    spikes on every step, and the rates over many steps are p_max * x."""
    sure = bernoulli_raster(torch.tensor([[0.0, 1.0]]), 7, 1.0)
    np.testing.assert_array_equal(sure.numpy(), np.tile([[[0.0, 1.0]]], (7, 1, 1)))
    x = torch.tensor([[0.0, 1.0, 0.5], [0.25, 0.0, 1.0]])
    raster = bernoulli_raster(x, 20000, 0.4, torch.Generator().manual_seed(0))
    assert raster.shape == (20000, 2, 3)
    assert set(raster.unique().tolist()) <= {0.0, 1.0}
    np.testing.assert_allclose(raster.mean(0).numpy(), 0.4 * x.numpy(), atol=0.015)
    assert raster[:, 0, 0].sum() == 0 and raster[:, 1, 1].sum() == 0


def _readout_spec(last: str, readout_weight: float = 1.0) -> FeedForwardSpec:
    """input 4 -> LIF (3) -> ``last`` (2), an LI readout or a spiking LIF output layer."""
    return FeedForwardSpec(
        4,
        (
            LayerSpec(np.full((3, 4), 8.0), NeuronParams("LIF")),
            LayerSpec(np.full((2, 3), readout_weight), NeuronParams(last)),
        ),
    )


def test_readout_logits_average_the_li_membrane_or_count_spikes_from_start_on():
    """LI readout: the membrane (volts above rest) averaged over steps start..T-1; spiking
    output layer: spike counts over those steps; ``offset`` is added to either."""
    mem = torch.tensor([[9.0, -9.0], [1.0, 2.0], [3.0, 6.0], [5.0, 1.0]]).reshape(4, 1, 2)
    spikes = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]]).reshape(4, 1, 2)
    offset = torch.tensor([0.5, -0.5])
    li = to_snntorch(_readout_spec("LI"), DT)
    record = SnnTorchRecord(spikes=[spikes, None], membranes=[mem, mem])
    np.testing.assert_allclose(readout_logits(li, record, start=1).numpy(), [[3.0, 3.0]])
    np.testing.assert_allclose(
        readout_logits(li, record, start=2, offset=offset).numpy(), [[4.5, 3.0]]
    )
    lif = to_snntorch(_readout_spec("LIF"), DT)
    record = SnnTorchRecord(spikes=[spikes, spikes], membranes=[mem, mem])
    np.testing.assert_array_equal(readout_logits(lif, record).numpy(), [[3.0, 3.0]])
    np.testing.assert_array_equal(readout_logits(lif, record, start=1).numpy(), [[2.0, 2.0]])
    np.testing.assert_array_equal(
        readout_logits(lif, record, start=1, offset=offset).numpy(), [[2.5, 1.5]]
    )


def test_evaluate_snntorch_on_a_given_raster_matches_one_full_run_in_any_batch_size():
    """With a raster given, each batch of samples sees its own columns of it: the logits equal
    one run over all samples, and accuracy is the share whose largest logit is the label."""
    net = to_snntorch(_readout_spec("LI"), DT, dtype=torch.float64)
    cfg = BPTTConfig(steps=30, settle=5, batch=2)
    raster = torch.as_tensor(_raster(11, 30, 5, 4, p=0.5), dtype=torch.float64)
    with torch.no_grad():
        expected = readout_logits(net, net(raster), 5)
    winner = expected.argmax(-1)
    assert len(set(expected[:, 0].tolist())) == 5  # distinct samples
    y = torch.cat([winner[:3], 1 - winner[3:]])
    x = torch.full((5, 4), 0.5)
    acc, logits = evaluate_snntorch(net, x, y, cfg, raster=raster, batch=2)
    np.testing.assert_allclose(logits.numpy(), expected.numpy(), rtol=1e-12)
    assert acc == pytest.approx(0.6)
    offset = torch.tensor([100.0, -100.0], dtype=torch.float64)
    acc, logits = evaluate_snntorch(net, x, y, cfg, raster=raster, batch=4, offset=offset)
    np.testing.assert_allclose(logits.numpy(), (expected + offset).numpy(), rtol=1e-12)
    assert acc == pytest.approx(float((y == 0).double().mean()))


def test_train_bptt_follows_the_given_order_and_weights_the_per_sample_loss():
    """A readout with zero weights gives logits 0 whatever the input, so each sample's cross-
    entropy is ln 2; with lr = 0 nothing changes. ``order`` picks the samples and batches,
    ``loss_weights`` sees each batch's indices and scales its per-sample losses, and the
    reported loss is the mean over batches."""
    net = to_snntorch(_readout_spec("LI", readout_weight=0.0), DT)
    x, y = torch.full((5, 4), 0.5), torch.tensor([0, 1, 0, 1, 1])
    cfg = BPTTConfig(steps=6, settle=2, batch=2)
    seen = []

    def loss_weights(indices, per_sample):
        seen.append(indices.tolist())
        np.testing.assert_allclose(per_sample.numpy(), math.log(2), rtol=1e-6)
        return torch.where(indices == 4, 0.0, 2.0)

    sgd = torch.optim.SGD(net.parameters(), lr=0.0)
    plain = train_bptt(net, x, y, cfg, optimizer=sgd, generator=torch.Generator().manual_seed(0))
    assert plain["samples"] == 5.0
    assert plain["loss"] == pytest.approx(math.log(2), rel=1e-6)
    stats = train_bptt(net, x, y, cfg, optimizer=sgd, order=[4, 0, 4], loss_weights=loss_weights)
    assert seen == [[4, 0], [4]]
    assert stats["samples"] == 3.0
    # batch [4, 0]: (0 + 2) ln 2 / 2; batch [4]: 0
    assert stats["loss"] == pytest.approx(math.log(2) / 2, rel=1e-6)


def test_train_bptt_trains_the_logit_offset_with_its_default_optimizer():
    """Without an optimizer, Adam covers the trainable parameters and the ``offset``: with the
    network frozen and every label 0, only the offset moves, towards class 0, and evaluation
    adds it to the (zero) logits."""
    net = to_snntorch(_readout_spec("LI", readout_weight=0.0), DT)
    net.requires_grad_(False)
    x, y = torch.full((6, 4), 0.5), torch.zeros(6, dtype=torch.int64)
    offset = torch.zeros(2, requires_grad=True)
    cfg = BPTTConfig(steps=6, settle=2, batch=3, lr=0.01)
    train_bptt(net, x, y, cfg, offset=offset, generator=torch.Generator().manual_seed(0))
    assert offset[0] > 0.01 and offset[1] < -0.01
    _, logits = evaluate_snntorch(net, x, y, cfg, offset=offset.detach())
    np.testing.assert_allclose(logits.numpy(), np.tile(offset.detach().numpy(), (6, 1)))


def test_from_snntorch_skips_flatten_and_identity_modules():
    """Flatten and Identity between the layers change nothing: the same description comes
    back, with the layers named by their position among Linear/neuron pairs."""
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 4),
        snn.Leaky(beta=0.8, threshold=0.5, reset_mechanism="zero", reset_delay=False),
        torch.nn.Linear(4, 2),
        snn.Leaky(beta=0.9, reset_mechanism="none"),
    )
    padded = torch.nn.Sequential(
        torch.nn.Flatten(), net[0], torch.nn.Identity(), net[1], torch.nn.Identity(), *net[2:]
    )
    spec = from_snntorch(net, DT)
    assert [layer.neuron.model for layer in spec.layers] == ["LIF", "LI"]
    assert from_snntorch(padded, DT).same_as(spec)
    assert [layer.name for layer in from_snntorch(padded, DT).layers] == ["layer0", "layer1"]


def test_snntorch_network_maps_back_only_at_its_own_step():
    spec = _spec("LIF")
    net = to_snntorch(spec, DT)
    assert from_snntorch(net, 1e-3).same_as(from_snntorch(net))
    with pytest.raises(ValueError, match="dt: .* differs from the network's dt = 0.001 s"):
        from_snntorch(net, 1.001 * ms)
