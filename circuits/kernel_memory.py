"""ξ inside the simulation from a kernel-memory ξ-modulator: Brian2 form of
:class:`plastix.reservoirs.xi_modulator.KernelMemoryModulator`.

At each sample boundary, for the sample that just ended (input ``x``, label ``l``, the
layer's LayerNorm'd window rates ``n``), on a clock of period ``slot``:

1. code ``u = [P x / s_x, onehot(l) / s_y, n / s_z]`` (``s = sigma sqrt(dim)``, ``P`` the
   modulator's distance-preserving projection);
2. the working-memory reservoir's ridge readout decodes the last ``B - 1`` codes
   ``d_j = D r + c`` from its state ``r`` (which has not seen ``u`` yet);
3. kernel units, one per remembered sample ``j``: ``K_X = exp(-||u^x - d^x_j||^2 / 2)``, the
   same for ``K_Y`` and ``K_Z``; ``a_j = K_X - gamma K_Y`` and the row-centred weights
   ``w_j = a_j - (sum_k a_k + 1 - gamma) / B`` (the current row of ``K_X - gamma K_Y``
   centred once, Daruwalla's ``globalerror.jl``; the current sample's own entry is
   ``1 - gamma``);
4. per neuron, ``g_i = -(2 / s_z) / (B - 1)^2 sum_j w_j K_Z[j] (u^z_i - d^z_{j,i})``, the ξ of
   the normalised rates (:func:`plastix.reservoirs.xi_modulator.kernel_stage_xi`), mapped to
   the rates by the LayerNorm vector-Jacobian product ``(g - mean g - n mean(g n)) / std``
   (Ba et al. 2016) and copied into the layer's ``res_xi``;
5. the reservoir takes ``u``: ``r <- (1 - a) r + a f(W r + W_in u + b)``.

Every sum is a Brian2 summed variable and nothing runs in Python, so it builds for runtime,
cpp_standalone and cuda_standalone. Scheduling: ``groups`` slot of the slot clock, in the
order of :data:`KERNEL_MEMORY_ORDER`, all before the synapses' end-of-sample weight update.
"""

from __future__ import annotations

import math

import numpy as np
from brian2 import NeuronGroup, Synapses

#: Order (``groups`` slot, slot clock) of each step at a sample boundary.
KERNEL_MEMORY_ORDER = {
    "z_copy": -95,
    "z_stats": -90,
    "code_x": -85,
    "code_z": -85,
    "decode": -80,
    "current": -80,
    "kernel_x": -75,
    "kernel_y": -75,
    "kernel_z": -75,
    "a_stats": -70,
    "c_copy": -65,
    "c_stats": -65,
    "cz_stats": -60,
    "g_stats": -55,
    "xi_copy": -50,
    "recurrent": -40,
    "inputs": -40,
    "memory_step": -35,
}

#: Per-neuron LayerNorm of the window rates ``z_in`` (sums over the layer are summed
#: variables) and its vector-Jacobian product mapping ``g`` (ξ of the normalised rates, defined
#: by the modulator's own equations) back to the rates (Ba et al. 2016).
LAYER_NORM_EQUATIONS = """
z_in : 1
z_sum : 1
z_sq_sum : 1
z_mean = z_sum / n_layer : 1
z_std = sqrt(z_sq_sum / n_layer - z_mean**2 + ln_eps) : 1
z_norm = (z_in - z_mean) / z_std : 1
g_sum : 1
gn_sum : 1
res_xi = (g - g_sum / n_layer - z_norm * gn_sum / n_layer) / z_std : 1
"""

_UNIT_EQUATIONS = (
    LAYER_NORM_EQUATIONS
    + """
c_sum : 1
cz_sum : 1
g = kernel_factor * (z_norm / s_z * c_sum - cz_sum) : 1
"""
)

_CODE_EQUATIONS = """
proj : 1
zn : 1
block : integer (constant)
cls : integer (constant)
u = proj + int(block == 1) * int(abs(cls - prev_label(t - half_slot)) < 0.5) / s_y + zn : 1
"""

_DECODED_EQUATIONS = """
dsum : 1
dbias : 1 (constant)
cur : 1
cj : 1
d = dsum + dbias : 1
diff2 = (d - cur)**2 : 1
"""

_KERNEL_EQUATIONS = """
sqx : 1
sqy : 1
sqz : 1
a = exp(-sqx / 2) - gamma * exp(-sqy / 2) : 1
a_sum : 1
c = (a - (a_sum + 1 - gamma) / window) * exp(-sqz / 2) : 1
"""

_MEMORY_EQUATIONS = """
r : 1
rec : 1
inp : 1
b_r : 1 (constant)
"""

#: Decoder entries at most this fraction of its largest entry are left out (a delay line's
#: ridge readout is the identity up to ~1e-12; dropping the rest keeps the synapses sparse).
DECODER_CUTOFF = 1e-9


def check_fits_layer(modulator, n_neurons: int, n_classes: int) -> None:
    """A ξ-modulator in a circuit must be fitted for the layer's size and the label count,
    and have no output feedback (nothing feeds a Brian2 readout back)."""
    cfg = modulator.config
    if cfg.n_neurons != n_neurons or cfg.n_classes != n_classes:
        raise ValueError(
            f"xi_modulators: fitted for {cfg.n_neurons} neurons / {cfg.n_classes} classes, the "
            f"layer has {n_neurons} / {n_classes}; fit it with n_neurons={n_neurons}"
        )
    if modulator.weights.n_feedback:
        raise ValueError("xi_modulators: reservoirs with output feedback are not supported")


def check_kernel_memory_modulator(modulator, n_neurons: int, n_classes: int, n_input: int):
    """The modulator's config, after checking it fits a layer of ``n_neurons`` LIF neurons,
    ``n_classes`` labels and ``n_input`` input channels and has a Brian2 form here."""
    from plastix.reservoirs.xi_modulator import KernelMemoryModulator

    if not isinstance(modulator, KernelMemoryModulator):
        raise TypeError(
            f"modulator: expected KernelMemoryModulator, got {type(modulator).__name__}"
        )
    cfg = modulator.config
    if cfg.xi_method != "row-centred":
        raise ValueError(
            f"xi_method: {cfg.xi_method!r} needs the kernels between remembered samples, which "
            "have no Brian2 form here; fit the modulator with xi_method='row-centred'"
        )
    check_fits_layer(modulator, n_neurons, n_classes)
    if modulator.weights.activation not in ("identity", "tanh"):
        raise ValueError(
            f"modulator: activation {modulator.weights.activation!r} has no Brian2 form "
            "here; use 'identity' or 'tanh'"
        )
    modulator.projection(n_input)  # the projection exists for this input size
    return cfg


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().double().cpu().numpy()


class KernelMemoryXi:
    """ξ for one LIF layer from a :class:`~plastix.reservoirs.xi_modulator.
    KernelMemoryModulator`, inside the simulation (module doc).

    ``layer``: the :class:`~plastix.circuits.layers.LIFLayer` (reads ``z_last``, writes
    ``res_xi``) in a circuit of ``n_classes`` labels and ``n_input`` inputs; ``stimulus``:
    the input schedule's TimedArray ``(t, channel)``; ``prev_label``: a TimedArray of label
    indices on the slot clock; ``timing``: the :class:`~plastix.circuits.layers.SampleTiming`.
    """

    def __init__(
        self, modulator, layer, n_classes: int, stimulus, n_input: int, prev_label, timing, name
    ):
        cfg = check_kernel_memory_modulator(modulator, layer.n, n_classes, n_input)
        window, n = cfg.window, layer.n
        k, c = cfg.x_projection, cfg.n_classes
        du = k + c + n
        s_y = cfg.sigmas[1] * math.sqrt(c)
        s_z = cfg.sigmas[2] * math.sqrt(n)
        slot = timing.slot
        weights = modulator.weights
        namespace = {
            "n_layer": n,
            "ln_eps": 1e-5,
            "s_y": s_y,
            "s_z": s_z,
            "gamma": float(cfg.gamma),
            "window": window,
            "kernel_factor": -2.0 / s_z / (window - 1) ** 2,
            "prev_label": prev_label,
            "stim_tab": stimulus,
            "half_slot": slot / 2,
            "onset_offset": slot - timing.presentation / 2,
            "leak": float(weights.leak),
        }

        def group(size, equations, key):
            return NeuronGroup(size, equations, namespace=namespace, dt=slot, name=f"{name}_{key}")

        self.units = group(n, _UNIT_EQUATIONS, "units")
        self.units.z_sq_sum = 1.0  # a finite std before the first sample
        self.pixels = group(n_input, "x_val = stim_tab(t - onset_offset, i) : 1", "pixels")
        self.code = group(du, _CODE_EQUATIONS, "code")
        self.code.block = np.repeat([0, 1, 2], [k, c, n])
        self.code.cls = np.concatenate([np.zeros(k), np.arange(c), np.zeros(n)]).astype(int)
        self.memory = group(weights.n_units, _MEMORY_EQUATIONS, "memory")
        self.memory.b_r = _numpy(weights.bias)
        activation = "tanh(rec + inp + b_r)" if weights.activation == "tanh" else "rec + inp + b_r"
        self.memory.run_regularly(
            f"r = (1 - leak) * r + leak * {activation}",
            dt=slot,
            when="groups",
            order=KERNEL_MEMORY_ORDER["memory_step"],
            name=f"{name}_memory_step",
        )
        self.decoded = group((window - 1) * du, _DECODED_EQUATIONS, "decoded")
        self.decoded.dbias = _numpy(modulator.memory.bias)
        self.kernels = group(window - 1, _KERNEL_EQUATIONS, "kernels")

        slots = np.repeat(np.arange(window - 1), du)  # decoded unit -> remembered sample
        dims = np.tile(np.arange(du), window - 1)  # decoded unit -> code dimension
        blocks = self.code.block[:][dims]
        z_decoded = np.flatnonzero(blocks == 2)
        one_to_one = (np.arange(n), np.arange(n))
        projection = _numpy(modulator.projection(n_input))  # (k, n_input), P / s_x
        p_post, p_pre = np.nonzero(projection)
        w_in = _numpy(weights.input)
        in_post, in_pre = np.nonzero(w_in)
        w_rec = _numpy(weights.recurrent)
        rec_post, rec_pre = np.nonzero(w_rec)
        decoder = _numpy(modulator.memory.weight)
        keep = np.abs(decoder) > DECODER_CUTOFF * max(np.abs(decoder).max(), 1e-300)
        dec_post, dec_pre = np.nonzero(keep)
        all_pairs = (None, None)

        def block_pairs(block):
            sel = np.flatnonzero(blocks == block)
            return sel, slots[sel]

        spec = {
            # key: (source, target, model, (i, j) or all-to-all, weights or None)
            "z_copy": (layer.group, self.units, "z_in_post = z_last_pre", one_to_one, None),
            "z_stats": (
                self.units,
                self.units,
                "z_sum_post = z_in_pre : 1 (summed)\nz_sq_sum_post = z_in_pre**2",
                all_pairs,
                None,
            ),
            "code_x": (self.pixels, self.code, "proj_post = w * x_val_pre", (p_pre, p_post),
                       projection[p_post, p_pre]),
            "code_z": (self.units, self.code, "zn_post = z_norm_pre / s_z",
                       (np.arange(n), k + c + np.arange(n)), None),
            "decode": (self.memory, self.decoded, "dsum_post = w * r_pre", (dec_pre, dec_post),
                       decoder[dec_post, dec_pre]),
            "current": (self.code, self.decoded, "cur_post = u_pre",
                        (dims, np.arange(len(dims))), None),
            "kernel_x": (self.decoded, self.kernels, "sqx_post = diff2_pre", block_pairs(0),
                         None),
            "kernel_y": (self.decoded, self.kernels, "sqy_post = diff2_pre", block_pairs(1),
                         None),
            "kernel_z": (self.decoded, self.kernels, "sqz_post = diff2_pre", block_pairs(2),
                         None),
            "a_stats": (self.kernels, self.kernels, "a_sum_post = a_pre", all_pairs, None),
            "c_copy": (self.kernels, self.decoded, "cj_post = c_pre",
                       (slots[z_decoded], z_decoded), None),
            "c_stats": (self.kernels, self.units, "c_sum_post = c_pre", all_pairs, None),
            "cz_stats": (self.decoded, self.units, "cz_sum_post = cj_pre * d_pre",
                         (z_decoded, dims[z_decoded] - k - c), None),
            "g_stats": (
                self.units,
                self.units,
                "g_sum_post = g_pre : 1 (summed)\ngn_sum_post = g_pre * z_norm_pre",
                all_pairs,
                None,
            ),
            "xi_copy": (self.units, layer.group, "res_xi_post = res_xi_pre", one_to_one, None),
            "recurrent": (self.memory, self.memory, "rec_post = w * r_pre", (rec_pre, rec_post),
                          w_rec[rec_post, rec_pre]),
            "inputs": (self.code, self.memory, "inp_post = w * u_pre", (in_pre, in_post),
                       w_in[in_post, in_pre]),
        }  # fmt: skip
        self.synapses = {}
        for key, (source, target, model, (i, j), values) in spec.items():
            model = model + " : 1 (summed)"
            if values is not None:
                model = "w : 1 (constant)\n" + model
            syn = Synapses(
                source, target, model, namespace=namespace, dt=slot, name=f"{name}_{key}"
            )
            if i is None:
                syn.connect()
            else:
                syn.connect(i=np.asarray(i, dtype=int), j=np.asarray(j, dtype=int))
            if values is not None:
                syn.w = values
            for updater in syn.summed_updaters.values():
                updater.order = KERNEL_MEMORY_ORDER[key]
            self.synapses[key] = syn

    @property
    def objects(self) -> list:
        groups = [self.units, self.pixels, self.code, self.memory, self.decoded, self.kernels]
        return [*groups, *self.synapses.values()]
