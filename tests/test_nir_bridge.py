"""NIR export and import of plastix circuits: node types and parameters in NIR's conventions,
weight layout, graph structure, and graphs or settings the bridge refuses (fast: no Brian2
runs, only specs and NIR graphs)."""

from __future__ import annotations

import nir
import numpy as np
import pytest
from brian2 import Quantity, ms, mV

from plastix.bridges.nir_bridge import (
    SNNTORCH_NIR_DT,
    SnntorchConvention,
    from_nir,
    graph_dt,
    to_nir,
)
from plastix.bridges.snntorch_bridge import discretise
from plastix.circuits.feedforward import FeedForwardSpec, LayerSpec, NeuronParams

DT = 1 * ms


def _graph(*layers, n_in: int, type_check: bool = True, extra_edges=(), extra_nodes=None):
    """Input (n_in) -> (weight node -> neuron node)* -> Output as a NIR graph, nodes named
    ``w<k>`` and ``n<k>``."""
    nodes = {"input": nir.Input(input_type=np.array([n_in]))}
    edges, previous = [], "input"
    for k, (wnode, cell) in enumerate(layers):
        nodes[f"w{k}"], nodes[f"n{k}"] = wnode, cell
        edges += [(previous, f"w{k}"), (f"w{k}", f"n{k}")]
        previous = f"n{k}"
    n_out = layers[-1][0].weight.shape[0] if layers else n_in
    nodes["output"] = nir.Output(output_type=np.array([n_out]))
    edges.append((previous, "output"))
    nodes.update(extra_nodes or {})
    edges += list(extra_edges)
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=type_check)


def _lif(n: int, tau=0.01, r=0.01, v_leak=0.0, v_threshold=0.01, v_reset=0.0) -> nir.LIF:
    def full(x):
        return np.broadcast_to(np.asarray(x, dtype=float), (n,)).copy()

    return nir.LIF(
        tau=full(tau),
        r=full(r),
        v_leak=full(v_leak),
        v_threshold=full(v_threshold),
        v_reset=full(v_reset),
    )


def _hetero_spec() -> FeedForwardSpec:
    """input 3 -> LIF (2, resting, threshold and reset all different) -> IF (2) -> CubaLIF (2)
    -> LI (1), with a bias on the first layer."""
    lif = NeuronParams(
        "LIF",
        tau_mem=np.array([10.0, 20.0]) * ms,
        R=5 * mV * ms,
        v_leak=-70 * mV,
        v_th=-50 * mV,
        v_reset=-60 * mV,
    )
    if_ = NeuronParams("IF", R=2 * mV, v_th=15 * mV, v_reset=-5 * mV)
    cuba = NeuronParams(
        "CubaLIF", tau_mem=8 * ms, tau_syn=3 * ms, R=4 * mV * ms, v_leak=1 * mV, v_th=9 * mV
    )
    li = NeuronParams("LI", tau_mem=30 * ms, R=7 * mV * ms, v_leak=-2 * mV)
    return FeedForwardSpec(
        3,
        (
            LayerSpec(
                np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
                lif,
                bias=np.array([0.5, -0.5]),
                name="hid",
            ),
            LayerSpec(np.array([[1.0, -1.0], [2.0, 0.5]]), if_, name="mid"),
            LayerSpec(np.array([[0.25, 0.75], [-1.5, 3.0]]), cuba, name="syn"),
            LayerSpec(np.array([[2.0, -2.0]]), li, name="out"),
        ),
    )


def test_native_export_writes_each_neuron_in_nir_si_conventions():
    """nir.LIF: tau (s), r (V s: the membrane moves by r/tau per unit input), v_leak,
    v_threshold, v_reset (V); nir.IF: r (V), v_threshold, v_reset; nir.CubaLIF: both time
    constants, w_in = 1; nir.LI: tau, r, v_leak. Each copied from the spec, not from another
    field."""
    graph = to_nir(_hetero_spec())
    lif, if_, cuba, li = (graph.nodes[k] for k in ("hid_lif", "mid_if", "syn_cubalif", "out_li"))
    assert (type(lif), type(if_), type(cuba), type(li)) == (nir.LIF, nir.IF, nir.CubaLIF, nir.LI)
    np.testing.assert_array_equal(lif.tau, [0.01, 0.02])
    np.testing.assert_allclose(lif.r, [5e-6, 5e-6], rtol=1e-15)
    np.testing.assert_allclose(lif.v_leak, [-0.07, -0.07], rtol=1e-15)
    np.testing.assert_allclose(lif.v_threshold, [-0.05, -0.05], rtol=1e-15)
    np.testing.assert_allclose(lif.v_reset, [-0.06, -0.06], rtol=1e-15)
    np.testing.assert_allclose(if_.r, [2e-3, 2e-3], rtol=1e-15)
    np.testing.assert_allclose(if_.v_threshold, [0.015, 0.015], rtol=1e-15)
    np.testing.assert_allclose(if_.v_reset, [-0.005, -0.005], rtol=1e-15)
    np.testing.assert_allclose(cuba.tau_mem, [8e-3, 8e-3], rtol=1e-15)
    np.testing.assert_allclose(cuba.tau_syn, [3e-3, 3e-3], rtol=1e-15)
    np.testing.assert_allclose(cuba.r, [4e-6, 4e-6], rtol=1e-15)
    np.testing.assert_allclose(cuba.v_leak, [1e-3, 1e-3], rtol=1e-15)
    np.testing.assert_allclose(cuba.v_threshold, [9e-3, 9e-3], rtol=1e-15)
    np.testing.assert_array_equal(cuba.v_reset, [0.0, 0.0])
    np.testing.assert_array_equal(cuba.w_in, [1.0, 1.0])
    np.testing.assert_allclose(li.tau, [0.03], rtol=1e-15)
    np.testing.assert_allclose(li.r, [7e-6], rtol=1e-15)
    np.testing.assert_allclose(li.v_leak, [-2e-3], rtol=1e-15)
    assert graph.metadata["plastix_convention"] == "native"


def test_native_export_graph_is_a_named_chain_with_weights_as_out_by_in():
    """Nodes ``<layer>_affine`` / ``<layer>_<model in lower case>``, the edges of the chain
    input -> affine -> neuron -> ... -> output, and NIR's Affine layout y = W x + b with W of
    shape (n_out, n_in)."""
    spec = _hetero_spec()
    graph = to_nir(spec)
    chain = [
        "input",
        "hid_affine",
        "hid_lif",
        "mid_affine",
        "mid_if",
        "syn_affine",
        "syn_cubalif",
        "out_affine",
        "out_li",
        "output",
    ]
    assert sorted(graph.nodes) == sorted(chain)
    assert sorted(graph.edges) == sorted(zip(chain[:-1], chain[1:], strict=True))
    np.testing.assert_array_equal(graph.nodes["input"].input_type["input"], [3])
    np.testing.assert_array_equal(graph.nodes["output"].output_type["output"], [1])
    np.testing.assert_array_equal(graph.nodes["hid_affine"].weight, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(graph.nodes["hid_affine"].bias, [0.5, -0.5])
    np.testing.assert_array_equal(graph.nodes["mid_affine"].bias, [0.0, 0.0])
    np.testing.assert_array_equal(graph.nodes["out_affine"].weight, [[2.0, -2.0]])


def test_native_import_reads_nodes_in_si_units_and_names_layers_after_neuron_nodes():
    spec = _hetero_spec()
    back = from_nir(to_nir(spec))
    assert [layer.name for layer in back.layers] == ["hid_lif", "mid_if", "syn_cubalif", "out_li"]
    assert back.same_as(spec)
    hid = back.layers[0].neuron.values(2)
    np.testing.assert_allclose(
        [hid["v_leak"][0], hid["v_th"][0], hid["v_reset"][0]], [-0.07, -0.05, -0.06], rtol=1e-15
    )


def test_native_import_refuses_export_settings_for_the_other_convention():
    spec = _hetero_spec()
    with pytest.raises(ValueError, match="dt: only used with a SnntorchConvention"):
        to_nir(spec, dt=DT)
    with pytest.raises(TypeError, match="convention: expected SnntorchConvention"):
        to_nir(spec, convention="snntorch", dt=DT)
    graph = to_nir(spec)
    with pytest.raises(ValueError, match="dt: only used with a SnntorchConvention"):
        from_nir(graph, dt=DT)
    with pytest.raises(TypeError, match="convention: expected SnntorchConvention"):
        from_nir(graph, convention="snntorch")


def test_native_import_folds_cubalif_w_in_into_weights_and_bias():
    """CubaLIF input current w_in * (W x + b): w_in scales row i of W and entry i of b."""
    weight = np.array([[1.0, 2.0], [3.0, -4.0]])
    cuba = nir.CubaLIF(
        tau_syn=np.full(2, 0.005),
        tau_mem=np.full(2, 0.01),
        r=np.full(2, 0.01),
        v_leak=np.zeros(2),
        v_threshold=np.full(2, 0.01),
        v_reset=np.zeros(2),
        w_in=np.array([2.0, 0.5]),
    )
    graph = _graph((nir.Affine(weight=weight, bias=np.array([1.0, 6.0])), cuba), n_in=2)
    (layer,) = from_nir(graph).layers
    np.testing.assert_array_equal(layer.weight, [[2.0, 4.0], [1.5, -2.0]])
    np.testing.assert_array_equal(layer.bias, [2.0, 3.0])


def test_native_import_keeps_unequal_per_neuron_values_and_collapses_equal_ones():
    """Per-neuron arrays whose values are all equal become scalars; an array whose first and
    last values agree but whose middle differs stays per neuron."""
    lif = _lif(3, tau=[0.01, 0.02, 0.01], v_threshold=0.02)
    graph = _graph((nir.Affine(weight=np.ones((3, 2)), bias=np.zeros(3)), lif), n_in=2)
    neuron = from_nir(graph).layers[0].neuron
    assert isinstance(neuron.tau_mem, Quantity)
    np.testing.assert_array_equal(np.asarray(neuron.tau_mem), [0.01, 0.02, 0.01])
    assert np.shape(neuron.v_th) == ()
    assert float(neuron.v_th) == 0.02


def test_native_import_keeps_a_bias_with_some_zero_entries_and_drops_an_all_zero_one():
    lif = _lif(3)
    weight = np.ones((3, 2))
    partial = from_nir(
        _graph((nir.Affine(weight=weight, bias=np.array([0.0, 2.0, 0.0])), lif), n_in=2)
    )
    np.testing.assert_array_equal(partial.layers[0].bias, [0.0, 2.0, 0.0])
    zero = from_nir(_graph((nir.Affine(weight=weight, bias=np.zeros(3)), lif), n_in=2))
    assert zero.layers[0].bias is None


def test_import_reads_a_linear_node_as_weights_without_bias():
    graph = _graph((nir.Linear(weight=np.array([[1.0, 2.0], [3.0, 4.0]])), _lif(2)), n_in=2)
    (native,) = from_nir(graph).layers
    assert native.bias is None
    np.testing.assert_array_equal(native.weight, [[1.0, 2.0], [3.0, 4.0]])
    (snntorch,) = from_nir(graph, convention=SnntorchConvention(), dt=DT).layers
    np.testing.assert_array_equal(snntorch.bias_or_zero, [0.0, 0.0])


def test_import_skips_a_flatten_after_the_input_and_takes_its_full_size():
    """Input of shape (2, 3) -> Flatten -> Affine (4 x 6): a plastix input of 6 neurons."""
    nodes = {
        "input": nir.Input(input_type=np.array([2, 3])),
        "flat": nir.Flatten(input_type={"input": np.array([2, 3])}, start_dim=0),
        "affine": nir.Affine(weight=np.ones((4, 6)), bias=np.zeros(4)),
        "lif": _lif(4),
        "output": nir.Output(output_type=np.array([4])),
    }
    edges = [("input", "flat"), ("flat", "affine"), ("affine", "lif"), ("lif", "output")]
    spec = from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    assert spec.n_in == 6
    assert spec.layers[0].weight.shape == (4, 6)


def test_native_import_refuses_per_neuron_arrays_of_the_wrong_length():
    lif = _lif(3)
    lif.tau = np.array([0.01, 0.02])
    graph = _graph(
        (nir.Affine(weight=np.ones((3, 2)), bias=np.zeros(3)), lif), n_in=2, type_check=False
    )
    with pytest.raises(ValueError, match=r"n0\.tau: 2 values for a layer of 3 neurons"):
        from_nir(graph)


def _affine(n_out: int, n_in: int) -> nir.Affine:
    return nir.Affine(weight=np.ones((n_out, n_in)), bias=np.zeros(n_out))


def test_import_refuses_graphs_that_are_not_a_single_chain():
    layer = (_affine(2, 3), _lif(2))
    two_inputs = _graph(
        layer,
        n_in=3,
        type_check=False,
        extra_nodes={"input2": nir.Input(input_type=np.array([3]))},
        extra_edges=[("input2", "w0")],
    )
    with pytest.raises(ValueError, match="exactly one Input node"):
        from_nir(two_inputs)
    branching = _graph(
        layer,
        n_in=3,
        type_check=False,
        extra_nodes={"side": _affine(2, 2), "side_lif": _lif(2)},
        extra_edges=[("n0", "side"), ("side", "side_lif")],
    )
    with pytest.raises(ValueError, match="'n0' has 2 successors"):
        from_nir(branching)
    recurrent = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([2])),
            "w0": _affine(2, 2),
            "n0": _lif(2),
            "output": nir.Output(output_type=np.array([2])),
        },
        edges=[("input", "w0"), ("w0", "n0"), ("n0", "w0")],
        type_check=False,
    )
    with pytest.raises(ValueError, match="'w0' is visited twice"):
        from_nir(recurrent)


def test_import_refuses_chains_without_complete_weight_neuron_pairs():
    dangling = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([3])),
            "w0": _affine(2, 3),
            "n0": _lif(2),
            "w1": _affine(2, 2),
            "output": nir.Output(output_type=np.array([2])),
        },
        edges=[("input", "w0"), ("w0", "n0"), ("n0", "w1"), ("w1", "output")],
        type_check=False,
    )
    with pytest.raises(ValueError, match="'w1' is not followed by a neuron node"):
        from_nir(dangling)
    empty = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([3])),
            "output": nir.Output(output_type=np.array([3])),
        },
        edges=[("input", "output")],
        type_check=False,
    )
    with pytest.raises(ValueError, match="no Affine/Linear -> neuron layer"):
        from_nir(empty)
    mismatched = _graph(
        (_affine(2, 3), _lif(2)), (_affine(2, 3), _lif(2)), n_in=3, type_check=False
    )
    with pytest.raises(ValueError, match=r"'w1' weight has shape \(2, 3\); expected \(n, 2\)"):
        from_nir(mismatched)


# -- snntorch convention ----------------------------------------------------------------------


def _snntorch_spec(hidden: str) -> FeedForwardSpec:
    """input 3 -> hidden (2, heterogeneous) -> LI (2); v_reset = v_leak as snntorch needs."""
    leaky = hidden != "IF"
    first = NeuronParams(
        hidden,
        tau_mem=np.array([5.0, 12.0]) * ms,
        tau_syn=np.array([2.0, 4.0]) * ms,
        v_leak=-65 * mV if leaky else 0 * mV,
        v_reset=-65 * mV if leaky else -60 * mV,
        v_th=-50 * mV,
        R=10 * mV * ms if leaky else 1 * mV,
    )
    return FeedForwardSpec(
        3,
        (
            LayerSpec(
                np.array([[1.0, 2.0, -1.0], [0.5, 3.0, 2.0]]), first, bias=np.array([2.0, -1.0])
            ),
            LayerSpec(np.array([[1.0, -2.0], [3.0, 0.5]]), NeuronParams("LI", tau_mem=20 * ms)),
        ),
    )


@pytest.mark.parametrize("decay", ["euler", "exact"])
@pytest.mark.parametrize("hidden", ["LIF", "CubaLIF", "IF"])
def test_snntorch_convention_round_trip_keeps_the_discrete_dynamics(hidden, decay):
    """to_nir then from_nir with the same convention: weights, biases and decays per Brian2
    step are those of the original spec, for every neuron model and both decay readings."""
    spec = _snntorch_spec(hidden)
    convention = SnntorchConvention(decay=decay)
    graph = to_nir(spec, convention=convention, dt=DT)
    assert graph.metadata["decay"] == decay
    back = from_nir(graph, convention=convention)
    for a, b in zip(discretise(back, DT), discretise(spec, DT), strict=True):
        assert a.model == b.model
        np.testing.assert_allclose(a.weight, b.weight, rtol=1e-10)
        np.testing.assert_allclose(a.bias, b.bias, rtol=1e-10)
        np.testing.assert_allclose(a.beta, b.beta, rtol=1e-12)
        if b.alpha is not None:
            np.testing.assert_allclose(a.alpha, b.alpha, rtol=1e-12)


def test_snntorch_convention_export_writes_per_step_parameters_in_snntorch_encoding():
    """One graph step of dt_graph per Brian2 step dt: euler tau = dt_graph / (1 - beta),
    exact tau = -dt_graph / ln(beta) = tau_mem dt_graph / dt; r = tau / dt_graph (input gain
    1 per step), CubaLIF w_in = tau_syn / dt_graph, IF r = 1 / dt_graph; threshold 1, rest and
    reset 0."""
    dt, step = 1e-3, SNNTORCH_NIR_DT
    tau_mem, tau_syn = np.array([5e-3, 12e-3]), np.array([2e-3, 4e-3])
    exact = to_nir(_snntorch_spec("CubaLIF"), convention=SnntorchConvention(decay="exact"), dt=DT)
    cuba = exact.nodes["layer0_cubalif"]
    np.testing.assert_allclose(cuba.tau_mem, tau_mem * step / dt, rtol=1e-12)
    np.testing.assert_allclose(cuba.tau_syn, tau_syn * step / dt, rtol=1e-12)
    np.testing.assert_allclose(cuba.r, tau_mem / dt, rtol=1e-12)
    np.testing.assert_allclose(cuba.w_in, tau_syn / dt, rtol=1e-12)
    np.testing.assert_array_equal(cuba.v_threshold, [1.0, 1.0])
    np.testing.assert_array_equal(cuba.v_leak, [0.0, 0.0])
    np.testing.assert_array_equal(cuba.v_reset, [0.0, 0.0])
    euler = to_nir(_snntorch_spec("LIF"), convention=SnntorchConvention(), dt=DT)
    lif = euler.nodes["layer0_lif"]
    beta = np.exp(-dt / tau_mem)
    np.testing.assert_allclose(lif.tau, step / (1 - beta), rtol=1e-12)
    np.testing.assert_allclose(lif.r, 1 / (1 - beta), rtol=1e-12)
    li = euler.nodes["layer1_li"]
    np.testing.assert_allclose(li.r, li.tau / step, rtol=1e-12)
    if_ = to_nir(_snntorch_spec("IF"), convention=SnntorchConvention(), dt=DT).nodes["layer0_if"]
    np.testing.assert_allclose(if_.r, [1 / step, 1 / step], rtol=1e-12)
    np.testing.assert_array_equal(if_.v_threshold, [1.0, 1.0])
    assert euler.metadata == {
        "plastix_convention": "snntorch",
        "dt_graph": step,
        "decay": "euler",
        "brian2_dt": dt,
    }


def test_snntorch_convention_import_keeps_reset_and_readout_rest_potentials():
    """A LIF node resetting below rest keeps its v_reset, and an LI readout keeps its
    v_leak (snntorch graph voltages are read as volts)."""
    tau, step = 1e-3, SNNTORCH_NIR_DT
    lif = _lif(2, tau=tau, r=tau / step, v_leak=0.0, v_threshold=1.0, v_reset=-0.5)
    li = nir.LI(tau=np.full(2, tau), r=np.full(2, tau / step), v_leak=np.full(2, 0.3))
    graph = _graph((_affine(2, 3), lif), (_affine(2, 2), li), n_in=3)
    spec = from_nir(graph, convention=SnntorchConvention(), dt=DT)
    hidden, readout = spec.layers[0].neuron.values(2), spec.layers[1].neuron.values(2)
    np.testing.assert_array_equal(hidden["v_reset"], [-0.5, -0.5])
    np.testing.assert_array_equal(hidden["v_leak"], [0.0, 0.0])
    np.testing.assert_allclose(hidden["v_th"], [1.0, 1.0], rtol=1e-12)
    np.testing.assert_array_equal(readout["v_leak"], [0.3, 0.3])


def test_snntorch_convention_euler_refuses_a_time_constant_of_one_graph_step():
    """Euler decay 1 - dt_graph / tau is 0 at tau = dt_graph: refused, naming the cause."""
    step = SNNTORCH_NIR_DT
    for tau in (step, 0.5 * step):
        lif = _lif(2, tau=tau, r=1.0, v_threshold=1.0)
        graph = _graph((_affine(2, 3), lif), n_in=3)
        with pytest.raises(ValueError, match="not longer than dt_graph"):
            from_nir(graph, convention=SnntorchConvention(), dt=DT)
    lif = _lif(2, tau=step, r=1.0, v_threshold=1.0)
    graph = _graph((_affine(2, 3), lif), n_in=3)
    exact = from_nir(graph, convention=SnntorchConvention(decay="exact"), dt=DT)
    np.testing.assert_allclose(discretise(exact, DT)[0].beta, np.exp(-1.0), rtol=1e-12)


def test_snntorch_convention_settings_are_checked():
    with pytest.raises(ValueError, match="dt_graph: must be a positive time"):
        SnntorchConvention(dt_graph=0.0)
    with pytest.raises(ValueError, match="dt_graph: must be a positive time"):
        SnntorchConvention(dt_graph=float("nan"))
    with pytest.raises(ValueError, match="decay: 'midpoint' is not one of"):
        SnntorchConvention(decay="midpoint")


def test_graph_dt_reads_a_finite_recorded_step_and_ignores_the_rest():
    spec = _snntorch_spec("LIF")
    graph = to_nir(spec, convention=SnntorchConvention(), dt=0.5 * ms)
    assert graph_dt(graph) == 5e-4
    assert graph_dt(to_nir(spec)) is None
    graph.metadata["brian2_dt"] = float("nan")
    assert graph_dt(graph) is None
    # without a usable recorded step, one graph step becomes one Brian2 step of dt_graph:
    # the per-step decay exp(-0.5 ms / tau_mem) now happens every 0.1 ms
    back = from_nir(graph, convention=SnntorchConvention())
    tau_mem = spec.layers[0].neuron.values(2)["tau_mem"]
    np.testing.assert_allclose(
        back.layers[0].neuron.values(2)["tau_mem"], tau_mem * SNNTORCH_NIR_DT / 5e-4, rtol=1e-12
    )


def test_metadata_of_an_unknown_convention_does_not_restrict_the_reading():
    graph = to_nir(_hetero_spec())
    graph.metadata = {"plastix_convention": "someone-else"}
    assert from_nir(graph).same_as(_hetero_spec())
