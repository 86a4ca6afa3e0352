"""Details of the NIR bridge and the shared input checks that other tests leave open: graphs
that are not chains, scalar NIR parameters, which Brian2 step a snntorch-convention graph is
read at, metadata written by other tools or read back as bytes, biases of LI readouts, and
the exact edges of the argument checks (fast: specs and NIR graphs only, no Brian2 runs)."""

from __future__ import annotations

import signal

import nir
import numpy as np
import pytest
from brian2 import ms

from plastix.bridges.checks import check_adam_betas, check_positive, plain_seed
from plastix.bridges.nir_bridge import SNNTORCH_NIR_DT, SnntorchConvention, from_nir, to_nir
from plastix.bridges.snntorch_bridge import discretise
from plastix.circuits.feedforward import FeedForwardSpec, LayerSpec, NeuronParams

DT = 1 * ms


def _lif(n: int, tau: float = 0.01, r: float = 0.01) -> nir.LIF:
    return nir.LIF(
        tau=np.full(n, tau),
        r=np.full(n, r),
        v_leak=np.zeros(n),
        v_threshold=np.full(n, 0.01),
        v_reset=np.zeros(n),
    )


def _affine(n_out: int, n_in: int) -> nir.Affine:
    return nir.Affine(weight=np.ones((n_out, n_in)), bias=np.zeros(n_out))


def _one_layer_graph(cell, n_in: int = 2, n_out: int = 3, metadata=None) -> nir.NIRGraph:
    """input -> affine -> cell -> output, without NIR's type check."""
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([n_in])),
            "w0": _affine(n_out, n_in),
            "n0": cell,
            "output": nir.Output(output_type=np.array([n_out])),
        },
        edges=[("input", "w0"), ("w0", "n0"), ("n0", "output")],
        type_check=False,
        metadata=metadata or {},
    )


def _spec() -> FeedForwardSpec:
    """input 3 -> LIF (2) -> LI (2), the readout with a bias."""
    return FeedForwardSpec(
        3,
        (
            LayerSpec(
                np.array([[1.0, 2.0, -1.0], [0.5, 3.0, 2.0]]),
                NeuronParams("LIF", tau_mem=np.array([5.0, 12.0]) * ms),
            ),
            LayerSpec(
                np.array([[1.0, -2.0], [3.0, 0.5]]),
                NeuronParams("LI", tau_mem=20 * ms),
                bias=np.array([40.0, -25.0]),
            ),
        ),
    )


# -- graph structure ----------------------------------------------------------------------------


def test_to_nir_refuses_what_is_not_a_feed_forward_spec():
    """A list of layers is not a description: TypeError naming what was passed."""
    with pytest.raises(TypeError, match="spec: expected a FeedForwardSpec, got list"):
        to_nir(list(_spec().layers))


@pytest.mark.parametrize("model", ["IF", "CubaLIF"])
def test_to_nir_refuses_subtractive_reset_and_refractory_for_every_spiking_model(model):
    """NIR neurons reset to v_reset with no dead time, whatever the model: IF and CubaLIF
    layers with reset='subtract' or a refractory period are refused like LIF ones, in both
    conventions."""
    subtract = NeuronParams(model, reset="subtract")
    refractory = NeuronParams(model, refractory=2 * ms)
    for neuron, fragment in ((subtract, "reset: layer 'layer0'"), (refractory, "refractory")):
        spec = FeedForwardSpec(3, (LayerSpec(np.ones((2, 3)), neuron),))
        with pytest.raises(ValueError, match=fragment):
            to_nir(spec)
        with pytest.raises(ValueError, match=fragment):
            to_nir(spec, convention=SnntorchConvention(), dt=DT)


def test_import_refuses_a_graph_without_an_input_node():
    graph = nir.NIRGraph(
        nodes={"w0": _affine(3, 2), "n0": _lif(3), "output": nir.Output(np.array([3]))},
        edges=[("w0", "n0"), ("n0", "output")],
        type_check=False,
    )
    with pytest.raises(ValueError, match=r"exactly one Input node, found \[\]"):
        from_nir(graph)


def test_import_refuses_a_chain_that_stops_before_the_output():
    """A neuron node with no outgoing edge (the Output left unconnected) ends no chain."""
    graph = _one_layer_graph(_lif(3))
    graph.edges = [("input", "w0"), ("w0", "n0")]
    with pytest.raises(ValueError, match=r"'n0' has 0 successors \[\]"):
        from_nir(graph)


def test_import_of_a_self_loop_stops_with_an_error():
    """A neuron feeding itself is recurrent: refused at the second visit, never looped over
    (guarded by a timer so a regression fails instead of hanging)."""
    graph = _one_layer_graph(_lif(3))
    graph.edges = [("input", "w0"), ("w0", "n0"), ("n0", "n0")]

    def timeout(signum, frame):
        raise TimeoutError("from_nir did not return on a recurrent graph")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.setitimer(signal.ITIMER_REAL, 2.0)
    try:
        with pytest.raises(ValueError, match="'n0' is visited twice"):
            from_nir(graph)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_import_names_a_weight_node_that_is_not_a_matrix():
    """A 3-d weight tensor (constructible in NIR) is refused naming the node and its shape."""
    graph = _one_layer_graph(_lif(2), n_in=3, n_out=2)
    graph.nodes["w0"] = nir.Affine(weight=np.ones((2, 3, 1)), bias=np.zeros(2))
    with pytest.raises(ValueError, match=r"'w0' weight has shape \(2, 3, 1\); expected \(n, 3\)"):
        from_nir(graph)


def test_native_import_broadcasts_scalar_node_parameters_to_the_layer():
    """NIR allows 0-d parameters shared by all neurons; the layer width then comes from the
    weight node (here 3) and each parameter becomes a scalar of the same value."""
    cell = nir.LIF(
        tau=np.array(0.02),
        r=np.array(0.005),
        v_leak=np.array(-0.07),
        v_threshold=np.array(-0.05),
        v_reset=np.array(-0.06),
    )
    (layer,) = from_nir(_one_layer_graph(cell)).layers
    assert layer.n_out == 3
    values = layer.neuron.values(3)
    np.testing.assert_array_equal(values["tau_mem"], [0.02] * 3)
    np.testing.assert_array_equal(values["R"], [0.005] * 3)
    np.testing.assert_array_equal(values["v_leak"], [-0.07] * 3)
    np.testing.assert_array_equal(values["v_th"], [-0.05] * 3)
    np.testing.assert_array_equal(values["v_reset"], [-0.06] * 3)


# -- snntorch convention: which Brian2 step -----------------------------------------------------


def test_snntorch_import_with_an_explicit_dt_overrides_the_recorded_step():
    """Exported at 0.5 ms, read at dt = 1 ms: each graph step (decay beta) now lasts 1 ms,
    so every membrane time constant doubles (tau = -dt / ln beta)."""
    spec = _spec()
    graph = to_nir(spec, convention=SnntorchConvention(), dt=0.5 * ms)
    back = from_nir(graph, convention=SnntorchConvention(), dt=DT)
    np.testing.assert_allclose(
        back.layers[0].neuron.values(2)["tau_mem"], [10e-3, 24e-3], rtol=1e-10
    )
    recorded = from_nir(graph, convention=SnntorchConvention())
    np.testing.assert_allclose(
        recorded.layers[0].neuron.values(2)["tau_mem"], [5e-3, 12e-3], rtol=1e-10
    )


def test_snntorch_import_of_a_foreign_graph_defaults_to_one_step_of_dt_graph():
    """No dt and no recorded step: one graph step becomes one Brian2 step of the
    convention's own dt_graph (here 1 ms, not snntorch's 0.1 ms). Euler: tau = 10 graph
    steps gives beta = 0.9 per step, i.e. tau_mem = -1 ms / ln 0.9."""
    dt_graph = 1e-3
    cell = _lif(3, tau=10 * dt_graph, r=10.0)  # r = tau / dt_graph: input gain 1 per step
    spec = from_nir(_one_layer_graph(cell), convention=SnntorchConvention(dt_graph=dt_graph))
    tau_mem = spec.layers[0].neuron.values(3)["tau_mem"]
    np.testing.assert_allclose(tau_mem, np.full(3, -1e-3 / np.log(0.9)), rtol=1e-12)


def test_snntorch_metadata_without_step_or_decay_contradicts_no_reading():
    """A graph marked plastix_convention='snntorch' with no dt_graph or decay recorded says
    nothing about them: snntorch's default reading (dt_graph = 1e-4 s, Euler) and any other
    are accepted, and reading it without a convention suggests the default one."""
    tau = 10 * SNNTORCH_NIR_DT
    graph = _one_layer_graph(_lif(3, tau=tau, r=10.0), metadata={"plastix_convention": "snntorch"})
    spec = from_nir(graph, convention=SnntorchConvention(), dt=DT)
    np.testing.assert_allclose(discretise(spec, DT)[0].beta, np.full(3, 0.9), rtol=1e-12)
    other = SnntorchConvention(dt_graph=1e-3, decay="exact")
    spec = from_nir(graph, convention=other, dt=DT)
    np.testing.assert_allclose(discretise(spec, DT)[0].beta, np.full(3, np.exp(-1)), rtol=1e-12)
    with pytest.raises(ValueError, match=r"dt_graph=0\.0001, decay='euler'"):
        from_nir(graph)


def test_metadata_strings_stored_as_bytes_are_still_honoured():
    """HDF5 readers may hand back strings as bytes; b'native' and b'snntorch' mean the same
    as their str forms, so contradicting readings are still refused."""
    native = _one_layer_graph(_lif(3), metadata={"plastix_convention": b"native"})
    with pytest.raises(ValueError, match="plastix_convention='native'"):
        from_nir(native, convention=SnntorchConvention(), dt=DT)
    assert from_nir(native).layers[0].n_out == 3
    meta = {"plastix_convention": b"snntorch", "dt_graph": SNNTORCH_NIR_DT, "decay": b"exact"}
    snn_graph = _one_layer_graph(_lif(3, tau=1e-3, r=10.0), metadata=meta)
    with pytest.raises(ValueError, match="plastix_convention='snntorch'"):
        from_nir(snn_graph)
    with pytest.raises(ValueError, match="decay='exact', not 'euler'"):
        from_nir(snn_graph, convention=SnntorchConvention(), dt=DT)
    from_nir(snn_graph, convention=SnntorchConvention(decay="exact"), dt=DT)


def test_snntorch_round_trip_keeps_the_bias_of_an_li_readout():
    """The LI readout's bias (40 and -25 per second) survives export and import in the
    snntorch convention: same per-step bias as the original at the same dt."""
    spec = _spec()
    for decay in ("euler", "exact"):
        convention = SnntorchConvention(decay=decay)
        back = from_nir(to_nir(spec, convention=convention, dt=DT), convention=convention)
        ours, theirs = discretise(back, DT)[1], discretise(spec, DT)[1]
        assert np.all(theirs.bias != 0)
        np.testing.assert_allclose(ours.bias, theirs.bias, rtol=1e-10)
        np.testing.assert_allclose(ours.weight, theirs.weight, rtol=1e-10)


def test_a_dt_graph_ten_percent_off_the_recorded_one_is_refused():
    """The per-step decays were written for the recorded dt_graph; reading them at a step
    10% longer would change every time constant by 10%, so it is refused like any other
    contradiction, however close."""
    graph = to_nir(_spec(), convention=SnntorchConvention(), dt=DT)
    with pytest.raises(ValueError, match="metadata records dt_graph = 0.0001 s"):
        from_nir(graph, convention=SnntorchConvention(dt_graph=1.1e-4))
    from_nir(graph, convention=SnntorchConvention(dt_graph=1e-4))


# -- shared argument checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "betas", [(False, 0.9), (0.9, np.bool_(False)), (0.9, "0.5"), {0.5, 0.9}, (0.5, 0.9, 0.99)]
)
def test_adam_betas_refuse_bools_strings_and_unordered_or_long_collections(betas):
    """Bools are not numbers here (False would pass 0 <= b < 1), strings are not numbers,
    and a set has no first and second decay rate: each a ValueError naming the argument."""
    with pytest.raises(ValueError, match=r"^betas: expected two numbers in \[0, 1\), got "):
        check_adam_betas("betas", betas)


@pytest.mark.parametrize(
    ("value", "problem"),
    [(0, "must be a positive number, got 0"), (float("inf"), "must be finite, got inf")],
)
def test_check_positive_names_the_argument_the_value_and_the_hint(value, problem):
    """Both refusals (not > 0, not finite) carry the caller's hint on how to fix it."""
    with pytest.raises(ValueError, match=rf"^lr {problem}; e\.g\. lr=0\.01$"):
        check_positive("lr", value, "e.g. lr=0.01")
    check_positive("lr", np.float32(1e-3), "e.g. lr=0.01")


def test_plain_seed_turns_numpy_integers_into_python_ints_only():
    """torch generators refuse numpy integers, so they become ints; anything else (a float,
    a bool, None) is passed on unchanged for the caller to refuse."""
    seed = plain_seed(np.int64(7))
    assert type(seed) is int and seed == 7
    assert type(plain_seed(np.uint32(3))) is int
    for other in (1.5, True, None, "3"):
        assert plain_seed(other) is other
