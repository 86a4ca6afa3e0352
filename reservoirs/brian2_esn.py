"""The echo-state network of :mod:`plastix.reservoirs.esn` as a Brian2 rate model.

One ``NeuronGroup`` holds the reservoir state ``x``; ``Synapses`` with summed variables carry
the recurrent, input and feedback currents, so the whole reservoir (and an optional linear
readout) runs inside any Brian2 device, standalone builds included: inputs come from a
``TimedArray`` and nothing needs a ``network_operation``. Equations (forward Euler with the
step ``dt`` equal to the clock's dt, which makes it exactly the leaky ESN update of Jaeger et al.
2007 used in :func:`plastix.reservoirs.esn.run_esn`)::

    dx/dt = (-x + f(I_rec + I_in + I_fb + b)) / tau  (+ nu / sqrt(dt) * xi)
    I_rec = sum_j W_ij x_j,  I_in = sum_k W_in,ik u_k(t),  I_fb = sum_m W_fb,im y_m
    tau = dt / leak

A readout ``y = W_out x + b_out`` (fixed weights) is a second group whose value is a summed
variable; with feedback weights it closes the loop. Scheduling: summed variables are computed
in the ``groups`` slot before the reservoir's state update, and the readout is updated before
the feedback current that reads it, so one Brian2 step is one ESN step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from brian2 import Network as Brian2Network
from brian2 import (
    NeuronGroup,
    Quantity,
    StateMonitor,
    Synapses,
    TimedArray,
    ms,
    second,
)

from .esn import ESNWeights

__all__ = ["Brian2ESN", "build_brian2_esn", "simulate_brian2_esn"]


@dataclass
class Brian2ESN:
    """The Brian2 objects of one reservoir; add ``objects`` to a ``Network``.

    ``reservoir.x`` is the state; ``readout.y`` (if any) the readout output computed from the
    state at the start of each step.
    """

    reservoir: NeuronGroup
    inputs: NeuronGroup
    input_synapses: Synapses
    recurrent_synapses: Synapses
    readout: NeuronGroup | None = None
    readout_synapses: Synapses | None = None
    feedback_source: NeuronGroup | None = None
    feedback_synapses: Synapses | None = None
    stimuli: list[TimedArray] = field(default_factory=list)

    @property
    def objects(self) -> list:
        groups = [
            self.reservoir,
            self.inputs,
            self.input_synapses,
            self.recurrent_synapses,
            self.readout,
            self.readout_synapses,
            self.feedback_source,
            self.feedback_synapses,
        ]
        seen: list = []
        for obj in groups:
            if obj is not None and all(obj is not s for s in seen):
                seen.append(obj)
        return seen


def _as_array(value, name: str, ndim: int) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or inf")
    return arr


def _connect_dense(
    source: NeuronGroup,
    target: NeuronGroup,
    matrix: np.ndarray,
    summed: str,
    name: str,
    dt: Quantity,
    namespace: dict | None = None,
) -> Synapses:
    """Synapses ``source -> target`` for the non-zero entries of ``matrix[post, pre]`` whose
    summed variable is ``summed`` (e.g. ``"I_rec_post = w * x_pre : 1 (summed)"``), on the
    groups' clock step ``dt``; ``namespace`` resolves external names used by the source's
    subexpressions."""
    post, pre = np.nonzero(matrix)
    syn = Synapses(
        source,
        target,
        model="w : 1 (constant)\n" + summed,
        dt=dt,
        name=name,
        namespace=namespace,
    )
    if len(pre):
        syn.connect(i=pre, j=post)
        syn.w[:] = matrix[post, pre]
    else:  # keep the summed variable well defined (zero) with an empty synapse set
        syn.connect(False)
    return syn


def build_brian2_esn(
    weights: ESNWeights,
    inputs,
    dt: Quantity = 1 * ms,
    readout: tuple | None = None,
    teacher_feedback=None,
    initial_state=None,
    name: str = "esn",
) -> Brian2ESN:
    """Brian2 objects for the reservoir ``weights`` driven by ``inputs (T, n_in)``.

    ``inputs[t]`` enters at step ``t`` (time ``t * dt``), like ``run_esn``. ``readout`` is
    ``(W_out (n_out, N), b_out (n_out,))``; with feedback weights and no ``teacher_feedback``
    the readout's ``y`` is fed back (closed loop). ``teacher_feedback (T, n_fb)`` holds the
    value entering at each step (``y_{t-1}``). Noise uses Brian2's ``xi`` (same statistics as
    the torch form, different random numbers).
    """
    if not isinstance(weights, ESNWeights):
        raise TypeError(f"weights: expected ESNWeights, got {type(weights).__name__}")
    if not isinstance(dt, Quantity) or dt.dim != second.dim or float(dt) <= 0:
        raise ValueError(f"dt: expected a positive time (e.g. 1*ms), got {dt!r}")
    u = _as_array(inputs, "inputs", 2)
    if u.shape[1] != weights.n_inputs or u.shape[0] < 1:
        raise ValueError(f"inputs: shape {u.shape} is not (T >= 1, n_inputs={weights.n_inputs})")
    n = weights.n_units
    w_rec = _as_array(weights.recurrent, "weights.recurrent", 2)
    w_in = _as_array(weights.input, "weights.input", 2)
    w_fb = _as_array(weights.feedback, "weights.feedback", 2)
    bias = _as_array(weights.bias, "weights.bias", 1)
    w_out = b_out = None
    if readout is not None:
        if not isinstance(readout, tuple | list) or len(readout) != 2:
            raise ValueError("readout: expected a pair (W_out (n_out, N), b_out (n_out,))")
        w_out = _as_array(readout[0], "readout[0]", 2)
        b_out = _as_array(readout[1], "readout[1]", 1)
        if w_out.shape[1] != n or b_out.shape != (w_out.shape[0],):
            raise ValueError(
                f"readout: W_out {w_out.shape} / b_out {b_out.shape} are not "
                f"(n_out, N={n}) / (n_out,)"
            )
    fb = None
    if weights.n_feedback:
        if teacher_feedback is not None:
            fb = _as_array(teacher_feedback, "teacher_feedback", 2)
            if fb.shape != (u.shape[0], weights.n_feedback):
                raise ValueError(
                    f"teacher_feedback: shape {fb.shape} is not (T={u.shape[0]}, "
                    f"n_feedback={weights.n_feedback})"
                )
        elif w_out is None or w_out.shape[0] != weights.n_feedback:
            raise ValueError(
                f"readout: the reservoir has {weights.n_feedback} feedback inputs; give "
                "teacher_feedback (T, n_fb) or a readout with that many outputs"
            )
    elif teacher_feedback is not None:
        raise ValueError("teacher_feedback: the reservoir has no feedback weights")
    x0 = None
    if initial_state is not None:
        x0 = _as_array(initial_state, "initial_state", 1)
        if x0.shape != (n,):
            raise ValueError(f"initial_state: shape {x0.shape} is not (N={n},)")

    stimulus = TimedArray(u, dt=dt, name=f"{name}_stimulus*")
    stimuli = [stimulus]
    activation = "tanh(I_rec + I_in + I_fb + b)"
    if weights.activation == "identity":
        activation = "(I_rec + I_in + I_fb + b)"
    noise_term = " + noise_sd * xi" if weights.noise > 0 else ""
    eqs = f"""
    dx/dt = (-x + {activation}) / tau{noise_term} : 1
    I_rec : 1
    I_in : 1
    I_fb : 1
    b : 1 (constant)
    """
    namespace = {"tau": dt / weights.leak}
    if weights.noise > 0:
        namespace["noise_sd"] = weights.noise / np.sqrt(float(dt)) / second**0.5
    reservoir = NeuronGroup(
        n, eqs, method="euler", dt=dt, namespace=namespace, name=f"{name}_reservoir*", order=0
    )
    reservoir.b = bias
    if x0 is not None:
        reservoir.x = x0
    input_group = NeuronGroup(
        weights.n_inputs,
        "u = stimulus(t, i) : 1",
        dt=dt,
        namespace={"stimulus": stimulus},
        name=f"{name}_inputs*",
    )
    input_syn = _connect_dense(
        input_group,
        reservoir,
        w_in,
        "I_in_post = w * u_pre : 1 (summed)",
        f"{name}_w_in*",
        dt,
        namespace={"stimulus": stimulus},
    )
    rec_syn = _connect_dense(
        reservoir, reservoir, w_rec, "I_rec_post = w * x_pre : 1 (summed)", f"{name}_w_rec*", dt
    )
    result = Brian2ESN(reservoir, input_group, input_syn, rec_syn, stimuli=stimuli)
    if w_out is not None:
        # order -1: its summed update (order -2) runs before the reservoir's (order -1)
        out_group = NeuronGroup(
            w_out.shape[0],
            "y = y_lin + b_out : 1\ny_lin : 1\nb_out : 1 (constant)",
            dt=dt,
            name=f"{name}_readout*",
            order=-1,
        )
        out_group.b_out = b_out
        result.readout = out_group
        result.readout_synapses = _connect_dense(
            reservoir, out_group, w_out, "y_lin_post = w * x_pre : 1 (summed)", f"{name}_w_out*", dt
        )
    if weights.n_feedback:
        if fb is not None:
            teacher = TimedArray(fb, dt=dt, name=f"{name}_teacher*")
            stimuli.append(teacher)
            source = NeuronGroup(
                weights.n_feedback,
                "y = teacher(t, i) : 1",
                dt=dt,
                namespace={"teacher": teacher},
                name=f"{name}_teacher_group*",
            )
        else:
            source = result.readout
        result.feedback_source = source
        result.feedback_synapses = _connect_dense(
            source,
            reservoir,
            w_fb,
            "I_fb_post = w * y_pre : 1 (summed)",
            f"{name}_w_fb*",
            dt,
            namespace={"teacher": teacher} if fb is not None else None,
        )
    return result


def simulate_brian2_esn(
    weights: ESNWeights,
    inputs,
    dt: Quantity = 1 * ms,
    readout: tuple | None = None,
    teacher_feedback=None,
    initial_state=None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run :func:`build_brian2_esn` for ``T`` steps in a fresh ``Network`` on the current
    device and return ``(states (T, N), outputs (T, n_out) or None)``.

    ``states[t]`` is the state after step ``t`` (as ``run_esn``); ``outputs[t]`` is the
    readout of the state before step ``t``, i.e. ``W_out x_t + b_out`` in ``run_esn``'s
    indexing ``x_t = states[t - 1]`` (``x_0`` the initial state).
    """
    esn = build_brian2_esn(weights, inputs, dt, readout, teacher_feedback, initial_state)
    steps = esn.stimuli[0].values.shape[0]
    state_mon = StateMonitor(esn.reservoir, "x", record=True, when="end", dt=dt)
    monitors = [state_mon]
    if esn.readout is not None:
        out_mon = StateMonitor(esn.readout, "y", record=True, when="end", dt=dt)
        monitors.append(out_mon)
    net = Brian2Network(*esn.objects, *monitors)
    net.run(steps * dt)
    states = np.asarray(state_mon.x).T.copy()
    outputs = np.asarray(out_mon.y).T.copy() if esn.readout is not None else None
    return states, outputs
