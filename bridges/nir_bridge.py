"""NIR export and import for plastix feed-forward circuits (Brian2 has no NIR support).

The Neuromorphic Intermediate Representation (Pedersen et al., *Nature Communications*
15:8122, 2024; ``nir`` package) describes networks as continuous-time nodes: ``Affine`` /
``Linear`` weights and ``LIF``, ``CubaLIF``, ``LI``, ``IF`` neurons. Two readings of its
numbers are supported, chosen explicitly:

**Native (``convention=None``).** The NIR equations are exactly those of
:mod:`plastix.circuits.feedforward` with spikes as unit-area Dirac deltas, numbers in SI base
units (seconds, volts, 1/s). Export and import copy numbers without arithmetic, so a
description survives description -> NIR -> description (and ``nir.write`` / ``nir.read``)
with the same numbers (``same_as``); layer names may change, as :func:`from_nir` documents.
``CubaLIF.w_in`` is folded into the weights and bias on import.

**snntorch (``convention=SnntorchConvention()``).** snntorch's ``export_to_nir`` /
``import_from_nir`` (snntorch 0.9-1.0) treat a graph as discrete time with a fixed step
``dt_graph = 1e-4 s``: a spike is a pulse of height 1 lasting one step, and
``tau = dt_graph / (1 - beta)``, ``r = tau / dt_graph`` (forward Euler), ``CubaLIF.w_in =
tau_syn / dt_graph``. Reading such a graph, one graph step becomes one Brian2 step of ``dt``
(default ``dt_graph``) with per-step dynamics::

    u[n] = beta u[n-1] + c (W s[n] + b),   beta = 1 - dt_graph / tau,   c = r dt_graph / tau

(CubaLIF: ``syn[n] = alpha syn[n-1] + c_s (W s + b)``, ``u[n] = beta u[n-1] + c_m syn[n]``
with ``c_s = w_in dt_graph / tau_syn``, ``c_m = r dt_graph / tau_mem``; IF: ``beta = 1``,
``c = r dt_graph``), which :func:`plastix.bridges.snntorch_bridge.continuous_layer` turns
into the equivalent continuous layer. ``decay="exact"`` instead reads ``tau`` as a physical
time constant, ``beta = exp(-dt_graph / tau)``. Exporting with this convention writes the
per-step parameters of :func:`~plastix.bridges.snntorch_bridge.discretise` at ``dt`` in
snntorch's encoding, so ``snntorch.import_from_nir`` rebuilds the Brian2 dynamics for LIF and
CubaLIF layers (without biases; with them snntorch starts every layer from zero, see
:func:`~plastix.bridges.snntorch_bridge.from_snntorch`). snntorch 1.0 cannot import the
other two: it has no LI mapping, and maps IF to ``snn.Leaky(beta=0.9)`` and insists on
``r = 1``.

NIR has no refractory period and no subtractive reset; both are refused on export.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import nir
import numpy as np
from brian2 import Quantity, second, volt

from plastix.bridges.snntorch_bridge import _dt_seconds, continuous_layer, discretise
from plastix.circuits.feedforward import SPIKING, FeedForwardSpec, LayerSpec, NeuronParams
from plastix.scalars import is_finite_real

__all__ = [
    "SNNTORCH_NIR_DT",
    "SnntorchConvention",
    "from_nir",
    "graph_dt",
    "to_nir",
]

SNNTORCH_NIR_DT = 1e-4  # seconds: the step snntorch's NIR export and import assume
_NEURON_NODES = (nir.LIF, nir.CubaLIF, nir.LI, nir.IF)
_WEIGHT_NODES = (nir.Affine, nir.Linear)


@dataclass(frozen=True)
class SnntorchConvention:
    """snntorch's discrete-time reading of NIR (module docstring)."""

    dt_graph: float = SNNTORCH_NIR_DT
    decay: Literal["euler", "exact"] = "euler"

    def __post_init__(self) -> None:
        dt_graph = self.dt_graph
        if not (is_finite_real(dt_graph) and dt_graph > 0):
            raise ValueError(f"dt_graph: must be a positive time in seconds, got {dt_graph!r}")
        object.__setattr__(self, "dt_graph", float(dt_graph))
        if self.decay not in ("euler", "exact"):
            raise ValueError(f"decay: {self.decay!r} is not one of ('euler', 'exact')")

    def beta(self, tau: np.ndarray, what: str) -> np.ndarray:
        if self.decay == "exact":
            return np.exp(-self.dt_graph / tau)
        beta = 1.0 - self.dt_graph / tau
        if np.any(beta <= 0):
            raise ValueError(
                f"{what}: time constants {tau} s are not longer than dt_graph = "
                f"{self.dt_graph} s, so the Euler decay 1 - dt/tau is not in (0, 1)"
            )
        return beta

    def tau(self, beta: np.ndarray) -> np.ndarray:
        if self.decay == "exact":
            return -self.dt_graph / np.log(beta)
        return self.dt_graph / (1.0 - beta)


# -- export -----------------------------------------------------------------------------------


def _check_exportable(spec: FeedForwardSpec) -> None:
    if not isinstance(spec, FeedForwardSpec):
        raise TypeError(f"spec: expected a FeedForwardSpec, got {type(spec).__name__}")
    for layer in spec.layers:
        p = layer.neuron
        if p.model not in SPIKING:
            continue
        if np.any(p.values()["refractory"] > 0):
            raise ValueError(
                f"refractory: layer {layer.name!r} has refractory = {p.refractory!r}; NIR has no "
                "refractory period — set refractory=0*ms to export"
            )
        if p.reset == "subtract":
            raise ValueError(
                f"reset: layer {layer.name!r} resets by subtraction; NIR neurons reset to "
                "v_reset — use reset='value' to export"
            )


def _native_neuron(layer: LayerSpec) -> tuple[nir.NIRNode, np.ndarray, np.ndarray]:
    p, n = layer.neuron, layer.n_out
    v = p.values(n)
    if p.model == "LIF":
        node = nir.LIF(
            tau=v["tau_mem"],
            r=v["R"],
            v_leak=v["v_leak"],
            v_threshold=v["v_th"],
            v_reset=v["v_reset"],
        )
    elif p.model == "CubaLIF":
        node = nir.CubaLIF(
            tau_syn=v["tau_syn"],
            tau_mem=v["tau_mem"],
            r=v["R"],
            v_leak=v["v_leak"],
            v_threshold=v["v_th"],
            v_reset=v["v_reset"],
            w_in=np.ones(n),
        )
    elif p.model == "LI":
        node = nir.LI(tau=v["tau_mem"], r=v["R"], v_leak=v["v_leak"])
    else:
        node = nir.IF(r=v["R"], v_threshold=v["v_th"], v_reset=v["v_reset"])
    return node, layer.weight, layer.bias_or_zero


def _snntorch_neuron(
    layer: LayerSpec, d, convention: SnntorchConvention
) -> tuple[nir.NIRNode, np.ndarray, np.ndarray]:
    n, step = layer.n_out, convention.dt_graph
    zeros, ones = np.zeros(n), np.ones(n)
    if d.model == "IF":
        node = nir.IF(r=ones / step, v_threshold=ones, v_reset=zeros)
    else:
        tau = convention.tau(d.beta)
        if d.model == "LIF":
            node = nir.LIF(tau=tau, r=tau / step, v_leak=zeros, v_threshold=ones, v_reset=zeros)
        elif d.model == "LI":
            node = nir.LI(tau=tau, r=tau / step, v_leak=zeros)
        else:
            tau_syn = convention.tau(d.alpha)
            node = nir.CubaLIF(
                tau_syn=tau_syn,
                tau_mem=tau,
                r=tau / step,
                v_leak=zeros,
                v_threshold=ones,
                v_reset=zeros,
                w_in=tau_syn / step,
            )
    return node, d.weight, d.bias


def to_nir(
    spec: FeedForwardSpec,
    *,
    convention: SnntorchConvention | None = None,
    dt: Quantity | float | None = None,
) -> nir.NIRGraph:
    """``spec`` as a NIR graph ``input -> (affine -> neuron)* -> output``.

    ``convention=None``: native numbers (module docstring). With a
    :class:`SnntorchConvention`, the graph carries the discrete dynamics of the Brian2 form at
    step ``dt`` (required) in snntorch's encoding. Node names: ``<layer>_affine`` and
    ``<layer>_<model>`` (lower case).
    """
    _check_exportable(spec)
    if convention is None:
        if dt is not None:
            raise ValueError("dt: only used with a SnntorchConvention; the native graph is dt-free")
        parts = [_native_neuron(layer) for layer in spec.layers]
        meta = {"plastix_convention": "native", "units": "SI (s, V, 1/s); spikes: unit Dirac"}
    else:
        if not isinstance(convention, SnntorchConvention):
            raise TypeError(f"convention: expected SnntorchConvention or None, got {convention!r}")
        if dt is None:
            raise ValueError("dt: the snntorch convention needs the Brian2 time step, e.g. 1*ms")
        discrete = discretise(spec, dt)
        parts = [
            _snntorch_neuron(layer, d, convention)
            for layer, d in zip(spec.layers, discrete, strict=True)
        ]
        meta = {
            "plastix_convention": "snntorch",
            "dt_graph": convention.dt_graph,
            "decay": convention.decay,
            "brian2_dt": _dt_seconds(dt),
        }
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array([spec.n_in]))}
    edges = []
    previous = "input"
    for layer, (neuron, weight, bias) in zip(spec.layers, parts, strict=True):
        affine = f"{layer.name}_affine"
        cell = f"{layer.name}_{layer.neuron.model.lower()}"
        nodes[affine] = nir.Affine(weight=np.array(weight, dtype=float), bias=np.array(bias))
        nodes[cell] = neuron
        edges += [(previous, affine), (affine, cell)]
        previous = cell
    nodes["output"] = nir.Output(output_type=np.array([spec.layers[-1].n_out]))
    edges.append((previous, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


# -- import -----------------------------------------------------------------------------------


def _chain(graph: nir.NIRGraph) -> list[tuple[str, nir.NIRNode]]:
    """The graph's nodes from its single input to its single output, checking it is a chain."""
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"graph: expected a nir.NIRGraph, got {type(graph).__name__}")
    inputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise ValueError(f"graph: expected exactly one Input node, found {inputs}")
    successors: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        successors.setdefault(src, []).append(dst)
    chain, name, seen = [], inputs[0], set()
    while True:
        if name in seen:
            raise ValueError(
                f"graph: node {name!r} is visited twice; recurrent graphs are not "
                "feed-forward plastix circuits"
            )
        seen.add(name)
        chain.append((name, graph.nodes[name]))
        nxt = successors.get(name, [])
        if isinstance(graph.nodes[name], nir.Output):
            break
        if len(nxt) != 1:
            raise ValueError(
                f"graph: node {name!r} has {len(nxt)} successors {nxt}; only chains "
                "(input -> affine -> neuron -> ... -> output) are supported"
            )
        name = nxt[0]
    return chain


def _per_neuron(value, n: int, what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.size not in (1, n):
        raise ValueError(f"{what}: {arr.size} values for a layer of {n} neurons")
    return np.broadcast_to(arr.reshape(-1) if arr.size == n else arr.reshape(()), (n,)).copy()


def _quantity(arr: np.ndarray, unit) -> Quantity:
    """Scalar quantity when every neuron has the same value, else one value per neuron."""
    if np.all(arr == arr[0]):
        return float(arr[0]) * unit
    return arr * unit


def _native_layer(weight, bias, node, n: int, name: str) -> LayerSpec:
    get = {k: _per_neuron(getattr(node, k), n, f"{name}.{k}") for k in _node_fields(node)}
    if isinstance(node, nir.LIF):
        neuron = NeuronParams(
            "LIF",
            tau_mem=_quantity(get["tau"], second),
            R=_quantity(get["r"], volt * second),
            v_leak=_quantity(get["v_leak"], volt),
            v_th=_quantity(get["v_threshold"], volt),
            v_reset=_quantity(get["v_reset"], volt),
        )
    elif isinstance(node, nir.CubaLIF):
        w_in = get["w_in"]
        if not np.all(w_in == 1.0):
            weight, bias = w_in[:, None] * weight, w_in * bias
        neuron = NeuronParams(
            "CubaLIF",
            tau_mem=_quantity(get["tau_mem"], second),
            tau_syn=_quantity(get["tau_syn"], second),
            R=_quantity(get["r"], volt * second),
            v_leak=_quantity(get["v_leak"], volt),
            v_th=_quantity(get["v_threshold"], volt),
            v_reset=_quantity(get["v_reset"], volt),
        )
    elif isinstance(node, nir.LI):
        neuron = NeuronParams(
            "LI",
            tau_mem=_quantity(get["tau"], second),
            R=_quantity(get["r"], volt * second),
            v_leak=_quantity(get["v_leak"], volt),
        )
    else:
        neuron = NeuronParams(
            "IF",
            R=_quantity(get["r"], volt),
            v_th=_quantity(get["v_threshold"], volt),
            v_reset=_quantity(get["v_reset"], volt),
        )
    return LayerSpec(weight, neuron, None if not np.any(bias) else bias, name=name)


def _snntorch_layer(
    weight, bias, node, n: int, name: str, convention: SnntorchConvention, dt: float
) -> LayerSpec:
    get = {k: _per_neuron(getattr(node, k), n, f"{name}.{k}") for k in _node_fields(node)}
    step = convention.dt_graph
    kwargs = {"dt": dt, "name": name, "alpha": None}
    if isinstance(node, nir.IF):
        beta, gain = np.ones(n), get["r"] * step
    elif isinstance(node, nir.CubaLIF):
        beta = convention.beta(get["tau_mem"], f"{name}.tau_mem")
        kwargs["alpha"] = convention.beta(get["tau_syn"], f"{name}.tau_syn")
        gain = (get["w_in"] * step / get["tau_syn"]) * (get["r"] * step / get["tau_mem"])
    else:
        beta = convention.beta(get["tau"], f"{name}.tau")
        gain = get["r"] * step / get["tau"]
    if isinstance(node, nir.LI):
        return continuous_layer(
            weight,
            bias,
            beta=beta,
            threshold=None,
            reset="none",
            gain=gain,
            v_leak=get["v_leak"],
            **kwargs,
        )
    rest = np.zeros(n) if isinstance(node, nir.IF) else get["v_leak"]
    return continuous_layer(
        weight,
        bias if np.any(bias) else None,
        beta=beta,
        threshold=get["v_threshold"] - rest,
        reset="zero",
        gain=gain,
        v_leak=rest,
        v_reset=get["v_reset"],
        **kwargs,
    )


def _node_fields(node: nir.NIRNode) -> tuple[str, ...]:
    if isinstance(node, nir.LIF):
        return ("tau", "r", "v_leak", "v_threshold", "v_reset")
    if isinstance(node, nir.CubaLIF):
        return ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")
    if isinstance(node, nir.LI):
        return ("tau", "r", "v_leak")
    return ("r", "v_threshold", "v_reset")


def from_nir(
    graph: nir.NIRGraph,
    *,
    convention: SnntorchConvention | None = None,
    dt: Quantity | float | None = None,
) -> FeedForwardSpec:
    """A :class:`FeedForwardSpec` from a chain ``Input -> [Flatten] -> (Affine|Linear ->
    LIF|CubaLIF|LI|IF)* -> Output`` (module docstring for the two conventions; with the
    snntorch one, ``dt`` is the Brian2 step one graph step becomes, default: the step a
    plastix export recorded in the graph's metadata, else ``dt_graph``).

    A graph exported by :func:`to_nir` records its convention in its metadata; a reading that
    contradicts it is refused. Graphs without plastix metadata are read as asked.

    Per-neuron arrays whose values are all equal become scalar parameters. Layers are named
    after their neuron nodes.
    """
    if convention is not None and not isinstance(convention, SnntorchConvention):
        raise TypeError(f"convention: expected SnntorchConvention or None, got {convention!r}")
    _check_reading(graph, convention)
    if convention is None and dt is not None:
        raise ValueError("dt: only used with a SnntorchConvention; the native graph is dt-free")
    step = None
    if convention is not None:
        step = _dt_seconds(dt if dt is not None else graph_dt(graph) or convention.dt_graph)
    chain = _chain(graph)
    body = chain[1:-1]
    if body and isinstance(body[0][1], nir.Flatten):
        body = body[1:]  # flattening the input is implicit: plastix inputs are flat
    layers = []
    n_in = int(np.prod(next(iter(chain[0][1].input_type.values()))))
    width = n_in
    for pos in range(0, len(body), 2):
        if pos + 1 >= len(body):
            raise ValueError(f"graph: node {body[pos][0]!r} is not followed by a neuron node")
        (wname, wnode), (cname, cell) = body[pos], body[pos + 1]
        if not isinstance(wnode, _WEIGHT_NODES) or not isinstance(cell, _NEURON_NODES):
            raise ValueError(
                f"graph: expected Affine/Linear then LIF/CubaLIF/LI/IF, got {wname!r} "
                f"({type(wnode).__name__}) then {cname!r} ({type(cell).__name__}); other NIR "
                "nodes (Conv, pooling, Delay, CubaLI, recurrent subgraphs) are not supported"
            )
        weight = np.asarray(wnode.weight, dtype=float)
        if weight.ndim != 2 or weight.shape[1] != width:
            raise ValueError(
                f"graph: {wname!r} weight has shape {weight.shape}; expected (n, {width})"
            )
        n = weight.shape[0]
        bias = (
            np.asarray(wnode.bias, dtype=float).reshape(n)
            if isinstance(wnode, nir.Affine)
            else np.zeros(n)
        )
        if convention is None:
            layers.append(_native_layer(weight, bias, cell, n, cname))
        else:
            layers.append(_snntorch_layer(weight, bias, cell, n, cname, convention, step))
        width = n
    if not layers:
        raise ValueError("graph: no Affine/Linear -> neuron layer found")
    return FeedForwardSpec(n_in, tuple(layers))


def _check_reading(graph: nir.NIRGraph, convention: SnntorchConvention | None) -> None:
    """Refuse ``convention`` where the ``plastix_convention``, ``dt_graph`` and ``decay`` that
    :func:`to_nir` wrote into the graph's metadata say otherwise (a key the metadata lacks
    contradicts nothing)."""
    meta = getattr(graph, "metadata", None)
    if not isinstance(meta, dict) or "plastix_convention" not in meta:
        return

    def text(value) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    written = text(meta["plastix_convention"])
    if written == "native":
        if convention is not None:
            raise ValueError(
                "convention: the graph's metadata plastix_convention='native' says it holds SI "
                "quantities, not snntorch's per-step encoding; read it with convention=None"
            )
        return
    if written != "snntorch":
        return
    given = convention or SnntorchConvention()
    expected = SnntorchConvention(
        dt_graph=float(meta.get("dt_graph", given.dt_graph)),
        decay=text(meta.get("decay", given.decay)),
    )
    if convention is None:
        raise ValueError(
            "convention: the graph's metadata plastix_convention='snntorch' says it holds "
            f"snntorch's per-step encoding; read it with convention={expected!r}"
        )
    if not math.isclose(convention.dt_graph, expected.dt_graph, rel_tol=1e-12):
        raise ValueError(
            f"convention: the graph's metadata records dt_graph = {expected.dt_graph} s, not "
            f"{convention.dt_graph} s; read it with convention={expected!r}"
        )
    if convention.decay != expected.decay:
        raise ValueError(
            f"convention: the graph's metadata records decay={expected.decay!r}, not "
            f"{convention.decay!r}; read it with convention={expected!r}"
        )


def graph_dt(graph: nir.NIRGraph) -> float | None:
    """The Brian2 step (s) a plastix snntorch-convention export was made for, else None."""
    meta = getattr(graph, "metadata", None) or {}
    value = meta.get("brian2_dt") if isinstance(meta, dict) else None
    return float(value) if value is not None and math.isfinite(float(value)) else None
