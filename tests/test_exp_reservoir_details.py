"""Details of the reservoir-wm experiment (plastix.sims.exp_reservoir): config checks, the
options its modulators, memory-capacity reservoirs and trainers receive, where each measured
value is stored, and resuming an interrupted run."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_KERNEL = {"architecture": "kernel-memory", "gated": False, "window_products": False}


# --- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["parts", "sources"])
def test_config_refuses_a_part_or_source_listed_twice(key):
    """A repeated name would run (and log) the same part twice: refused, naming the key."""
    from plastix.sims.exp_reservoir import ReservoirWMConfig

    names = {"parts": ("loop", "loop"), "sources": ("exact", "zero", "exact")}[key]
    with pytest.raises(ValueError, match=f"{key}: .* repeats a name"):
        ReservoirWMConfig(**{key: names}).validate()


def test_config_runs_the_modulator_checks_before_any_work():
    """``validate`` refuses what the xi-modulator would refuse later in the run (here after
    the capacity part), under the modulator's own keys."""
    from plastix.sims.exp_reservoir import ReservoirWMConfig

    with pytest.raises(ValueError, match="gated"):
        ReservoirWMConfig(**{**_KERNEL, "gated": True}).validate()
    with pytest.raises(ValueError, match="memory_ratio"):
        ReservoirWMConfig(**_KERNEL, memory_topology="delay-line", memory_ratio=2.0).validate()
    ReservoirWMConfig(**_KERNEL, memory_topology="orthogonal", memory_ratio=2.0).validate()


def test_global_modulator_keeps_the_exact_xi_whatever_xi_method_says():
    """``xi_method`` (default ``row-centred``) belongs to kernel-memory; the global readout is
    fitted to the exact xi, so a global config validates with the default ``xi_method``."""
    from plastix.sims.exp_reservoir import ReservoirWMConfig

    cfg = ReservoirWMConfig(architecture="global", window_products=False)
    cfg.validate()
    mcfg = cfg.modulator()
    assert mcfg.architecture == "global" and mcfg.xi_method == "exact"
    assert mcfg.memory_topology == "delay-line" and mcfg.memory_ratio == 1.0


def test_modulator_takes_every_reservoir_and_rule_option_of_the_config():
    """Every xi-modulator option of the experiment reaches the modulator config (the loop's
    modulators and every cell of the xi table are built from it)."""
    from plastix.sims.exp_reservoir import ReservoirWMConfig

    cfg = ReservoirWMConfig(
        gamma=1.5,
        sigmas=(0.3, 0.2, 0.7),
        gated=False,
        activation="tanh",
        spectral_radius=0.6,
        input_scaling=0.25,
        x_projection=5,
        modulator_chunks=3,
        n_units=50,
        window=6,
        architecture="global",
        window_products=False,
    )
    m = cfg.modulator()
    assert (m.gamma, m.sigmas, m.gated, m.activation) == (1.5, (0.3, 0.2, 0.7), False, "tanh")
    assert (m.spectral_radius, m.input_scaling, m.x_projection) == (0.6, 0.25, 5)
    assert (m.n_chunks, m.n_units, m.window, m.architecture) == (3, 50, 6, "global")
    assert m.window_products is False


# --- memory capacity ------------------------------------------------------------------------


def test_capacity_compares_a_weakly_driven_tanh_esn_with_a_linear_orthogonal_one(
    tmp_path, monkeypatch
):
    """Per size: a random (sparse normal) tanh ESN driven weakly (input scaling 0.1, near its
    linear regime, as in Jaeger 2002) and a linear orthogonal one, both at
    ``capacity_radius``. The delay-axis metric ``r2_<kind>_n<N>`` at delay ``d`` is the
    curve's ``MC_d``, so its sum is the stored capacity."""
    import plastix.sims.exp_reservoir as exp
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    built, curves = [], []
    init, capacity = exp.init_esn_weights, exp.memory_capacity

    def recording_init(esn, seed):
        built.append(esn)
        return init(esn, seed=seed)

    def recording_capacity(weights, **kwargs):
        curves.append(capacity(weights, **kwargs))
        return curves[-1]

    monkeypatch.setattr(exp, "init_esn_weights", recording_init)
    monkeypatch.setattr(exp, "memory_capacity", recording_capacity)
    overrides = {
        "parts": ("capacity",),
        "capacity_units": (6,),
        "capacity_steps": 300,
        "capacity_radius": 0.7,
    }
    res = read_result(run_experiment("reservoir-wm", overrides, out=tmp_path / "r.h5", seed=0))
    tanh, linear = built
    assert (tanh.activation, tanh.recurrent_init, tanh.input_scaling) == (
        "tanh",
        "sparse_normal",
        0.1,
    )
    assert (linear.activation, linear.recurrent_init) == ("identity", "orthogonal")
    assert tanh.spectral_radius == linear.spectral_radius == 0.7
    assert tanh.n_units == linear.n_units == 6
    delays = res.metrics["delay"]
    for kind, curve in zip(("tanh", "linear"), curves, strict=True):
        assert curve.delays.tolist() == delays.tolist()
        np.testing.assert_allclose(res.metrics[f"r2_{kind}_n6"], curve.r2)
        assert res.summary[f"memory_capacity_{kind}_n6"] == pytest.approx(curve.capacity)
    # a linear reservoir recalls the last input almost perfectly
    assert res.metrics["r2_linear_n6"][delays.tolist().index(1)] > 0.95


def test_run_uses_the_configured_torch_threads_and_restores_them(tmp_path, monkeypatch):
    import plastix.sims.exp_reservoir as exp
    from plastix.sims.experiments import run_experiment

    seen = []
    capacity = exp.memory_capacity

    def recording(weights, **kwargs):
        seen.append(torch.get_num_threads())
        return capacity(weights, **kwargs)

    monkeypatch.setattr(exp, "memory_capacity", recording)
    overrides = {"parts": ("capacity",), "capacity_units": (3,), "capacity_steps": 200}
    before = torch.get_num_threads()  # 1, from the fixture
    run_experiment("reservoir-wm", {**overrides, "threads": 2}, out=tmp_path / "r.h5", seed=0)
    assert seen == [2, 2]
    assert torch.get_num_threads() == before


# --- xi table -------------------------------------------------------------------------------


class _DigitsContext:
    """The part of RunContext that ``_xi_stream`` uses; records the dataset names asked for
    and serves digits whatever the name."""

    seed = 0

    def __init__(self):
        self.asked = []

    def dataset(self, name, **kwargs):
        from plastix.sims.datasets import load_dataset

        self.asked.append(name)
        return load_dataset("digits", seed=self.seed, **kwargs)


def test_xi_stream_probes_the_layer_norm_output_of_a_fresh_mlp_on_the_xi_dataset():
    """The table's stream comes from ``xi_dataset`` (not the loop's ``dataset``); ``z`` is
    the first hidden layer after its LayerNorm (the IB rule's default site ``norm``): each
    row has mean 0 and variance 1; labels are one-hot."""
    from plastix.sims.exp_reservoir import ReservoirWMConfig, _xi_stream

    cfg = ReservoirWMConfig(xi_dataset="digits", dataset="fashion-mnist", xi_samples=30)
    ctx = _DigitsContext()
    x, y, z = _xi_stream(cfg, ctx)
    assert ctx.asked == ["digits"]
    assert x.shape == (30, 64) and y.shape == (30, 10) and z.shape == (30, 64)
    assert (y.sum(1) == 1).all() and ((y == 0) | (y == 1)).all()
    torch.testing.assert_close(z.mean(1), torch.zeros(30, dtype=z.dtype), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        z.var(1, unbiased=False), torch.ones(30, dtype=z.dtype), atol=1e-3, rtol=0
    )
    assert (z < 0).any()  # not the ReLU output


def test_xi_table_stores_each_agreement_in_its_cell_and_aligns_the_window(tmp_path, monkeypatch):
    """Per window ``B``: the memoryless control, then each size. Cosine, effective cosine and
    NRMSE of a fit land in its (window, size) cell; the control's in the memoryless arrays.
    Prediction, target and ``z`` cover the same samples: the stream from sample ``B - 1``,
    the first with a full window. The summary reads the loop's (window, size) cell."""
    import plastix.sims.exp_reservoir as exp
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    calls, streams = [], []
    stream = exp._xi_stream

    def recording_stream(cfg, ctx):
        streams.append(stream(cfg, ctx))
        return streams[-1]

    def fake_agreement(pred, target, z):
        k = len(calls)
        calls.append((pred.shape, target.shape, z))
        return SimpleNamespace(cosine=10 * k + 1, effective_cosine=10 * k + 2, nrmse=10 * k + 3)

    monkeypatch.setattr(exp, "_xi_stream", recording_stream)
    monkeypatch.setattr(exp, "xi_agreement", fake_agreement)
    overrides = {
        "parts": ("xi",),
        "xi_windows": (3, 4),
        "xi_units": (20, 30),
        "xi_neurons": 4,
        "xi_samples": 30,
        "modulator_chunks": 1,
        "window": 4,
        "n_units": 30,
    }
    res = read_result(run_experiment("reservoir-wm", overrides, out=tmp_path / "r.h5", seed=0))
    a, s = res.arrays, res.summary
    # calls: k = 0 (B=3 control), 1 (B=3, 20), 2 (B=3, 30), 3 (B=4 control), 4, 5
    np.testing.assert_array_equal(a["xi_cosine"], [[11, 21], [41, 51]])
    np.testing.assert_array_equal(a["xi_effective_cosine"], [[12, 22], [42, 52]])
    np.testing.assert_array_equal(a["xi_nrmse"], [[13, 23], [43, 53]])
    np.testing.assert_array_equal(a["xi_memoryless_effective_cosine"], [2, 32])
    np.testing.assert_array_equal(a["xi_memoryless_nrmse"], [3, 33])
    assert (s["xi_cosine"], s["xi_effective_cosine"], s["xi_nrmse"]) == (51, 52, 53)
    (_, _, z_stream) = streams[0]
    for k, (pred_shape, target_shape, z) in enumerate(calls):
        b = 3 if k < 3 else 4
        assert pred_shape == target_shape == (30 - b + 1, 4)
        torch.testing.assert_close(z, z_stream[b - 1 :])


@pytest.mark.parametrize("topology", ["delay-line", "orthogonal"])
def test_kernel_memory_control_is_the_smallest_orthogonal_memory_at_radius_zero(
    topology, tmp_path, monkeypatch
):
    """A delay line keeps its memory whatever the spectral radius: the memoryless control of
    a kernel-memory table is an orthogonal (linear) memory at radius 0 instead, of the
    smallest size in ``xi_units`` (as the factorised and global controls), whatever order
    the sizes are listed in and whatever the memory topology of the table."""
    import plastix.sims.exp_reservoir as exp
    from plastix.sims.experiments import run_experiment

    fitted = []
    fit = exp.fit_xi_modulator

    def recording(mcfg):
        fitted.append(mcfg)
        return fit(mcfg)

    monkeypatch.setattr(exp, "fit_xi_modulator", recording)
    overrides = {
        **_KERNEL,
        "parts": ("xi",),
        "memory_topology": topology,
        "xi_windows": (3,),
        "xi_units": (40, 20),
        "xi_neurons": 4,
        "x_projection": 2,
        "xi_samples": 30,
        "modulator_chunks": 1,
    }
    run_experiment("reservoir-wm", overrides, out=tmp_path / "r.h5", seed=0)
    control, *sized = fitted
    assert (control.memory_topology, control.spectral_radius, control.activation) == (
        "orthogonal",
        0.0,
        "identity",
    )
    assert control.memory_units == 20
    assert all(m.memory_topology == topology and m.spectral_radius == 0.9 for m in sized)
    if topology == "orthogonal":
        assert [m.memory_units for m in sized] == [40, 20]


# --- loop -----------------------------------------------------------------------------------


def _logged(metrics, key):
    """The values of metric ``key`` on its rows (rows of other metrics hold NaN there)."""
    values = metrics[key]
    return values[~np.isnan(values)].tolist()


def _recording_trainers(monkeypatch, starts, fail_source=None):
    """Replace the loop's trainers by subclasses that record, at each epoch, the trainer's
    source, rule, agreement tracking, weights and sample-order generator state (and raise
    for ``fail_source``)."""
    import plastix.sims.exp_reservoir as exp

    def record(trainer, source, generator):
        starts.append(
            {
                "source": source,
                "rule": trainer.rule,
                "track": getattr(trainer, "track_agreement", None),
                "modulators": getattr(trainer, "modulators", None),
                "weights": [p.detach().clone() for p in trainer.net.parameters()],
                "order": generator.get_state().clone(),
            }
        )
        if source == fail_source:
            raise RuntimeError("interrupted")

    class IB(exp.IBTrainer):
        def train_epoch(self, x, y, generator=None):
            record(self, self.rule.xi_method, generator)
            return super().train_epoch(x, y, generator)

    class Reservoir(exp.ReservoirIBTrainer):
        def train_epoch(self, x, y, generator=None):
            record(self, self.xi_source, generator)
            return super().train_epoch(x, y, generator)

        def agreement(self):
            return [
                {"cosine": 0.1 + layer, "effective_cosine": 0.2 + layer, "update_cosine": 0.3}
                for layer in range(len(self.modulators))
            ]

    monkeypatch.setattr(exp, "IBTrainer", IB)
    monkeypatch.setattr(exp, "ReservoirIBTrainer", Reservoir)


def test_loop_trains_every_source_from_the_same_start_with_its_own_xi(tmp_path, monkeypatch):
    """Each source starts from the same weights and sample order (the run seed) under the
    rule of the config (gamma, sigmas, window); ``exact-row-centred`` is the row-centred
    rule, the others get their ``xi_source``; the reservoir has one modulator per hidden
    layer (seeded by the run) and tracks its agreement, logged per layer. Test accuracy is
    measured on the test set and train accuracy on the training set, every epoch from 0 (as
    in the other experiments)."""
    import plastix.sims.exp_reservoir as exp
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    starts, bases = [], []
    _recording_trainers(monkeypatch, starts)
    fit_layers = exp.fit_layer_modulators

    def recording_fit(net, rule, base):
        bases.append(base)
        return fit_layers(net, rule, base)

    monkeypatch.setattr(exp, "fit_layer_modulators", recording_fit)
    monkeypatch.setattr(exp, "evaluate", lambda net, x, y: (x.shape[0] / 1000, 0.0))
    sources = ("exact", "exact-row-centred", "reservoir", "labels", "no-kz", "zero")
    overrides = {
        "parts": ("loop",),
        "sources": sources,
        "hidden": (5, 4),
        "window": 3,
        "gamma": 1.5,
        "sigmas": (0.4, 0.2, 0.8),
        "n_units": 20,
        "modulator_chunks": 1,
        "epochs": 2,
        "n_train": 24,
        "n_test": 12,
    }
    res = read_result(run_experiment("reservoir-wm", overrides, out=tmp_path / "r.h5", seed=3))
    firsts = starts[::2]  # the first epoch of each source
    assert [s["source"] for s in firsts] == [
        "exact",
        "row-centred",
        "reservoir",
        "labels",
        "no-kz",
        "zero",
    ]
    order = torch.Generator().manual_seed(3).get_state()
    for s in firsts:
        assert (s["rule"].gamma, s["rule"].sigmas, s["rule"].window) == (1.5, (0.4, 0.2, 0.8), 3)
        torch.testing.assert_close(s["weights"], firsts[0]["weights"])
        assert torch.equal(s["order"], order)
    assert firsts[2]["track"] is True  # the reservoir's agreement with the exact xi
    assert len(firsts[2]["modulators"]) == 2  # one per hidden layer
    assert [b.seed for b in bases] == [3]
    m, summary = res.metrics, res.summary
    for source in sources:
        assert _logged(m, f"test_accuracy_{source}") == [0.012, 0.012]
        assert _logged(m, f"train_accuracy_{source}") == [0.024, 0.024]
        assert summary[f"train_accuracy_{source}"] == 0.024
    assert m["epoch"].tolist() == [0, 1] * len(sources)
    for layer in (0, 1):
        assert _logged(m, f"xi_cosine_layer{layer}") == pytest.approx([0.1 + layer] * 2)
        assert _logged(m, f"xi_effective_cosine_layer{layer}") == pytest.approx([0.2 + layer] * 2)
        assert _logged(m, f"xi_update_cosine_layer{layer}") == pytest.approx([0.3, 0.3])


def test_resumed_run_redoes_only_the_unfinished_parts_and_sources(tmp_path, monkeypatch):
    """A run that failed in its second source resumes from its checkpoint: the capacity
    part, the xi table and the finished source are neither redone nor lost."""
    import plastix.sims.exp_reservoir as exp
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    overrides = {
        "capacity_units": (3,),
        "capacity_steps": 200,
        "xi_windows": (3,),
        "xi_units": (20,),
        "xi_neurons": 4,
        "xi_samples": 30,
        "modulator_chunks": 1,
        "hidden": (5,),
        "window": 3,
        "n_units": 20,
        "sources": ("zero", "labels"),
        "epochs": 1,
        "n_train": 24,
        "n_test": 12,
    }
    out = tmp_path / "r.h5"
    starts, work = [], []
    capacity, fit = exp.memory_capacity, exp.fit_xi_modulator

    def recording_capacity(weights, **kwargs):
        work.append("capacity")
        return capacity(weights, **kwargs)

    def recording_fit(mcfg):
        work.append("xi")
        return fit(mcfg)

    monkeypatch.setattr(exp, "memory_capacity", recording_capacity)
    monkeypatch.setattr(exp, "fit_xi_modulator", recording_fit)
    with monkeypatch.context() as failing:
        _recording_trainers(failing, starts, fail_source="labels")
        with pytest.raises(RuntimeError, match="interrupted"):
            run_experiment("reservoir-wm", overrides, out=out, seed=0)
    assert [s["source"] for s in starts] == ["zero", "labels"]
    starts.clear()
    work.clear()
    _recording_trainers(monkeypatch, starts)
    res = read_result(run_experiment("reservoir-wm", overrides, out=out, seed=0))
    assert [s["source"] for s in starts] == ["labels"]
    assert work == []
    assert res.status == "complete"
    assert {"memory_capacity_linear_n3", "test_accuracy_zero", "test_accuracy_labels"} <= set(
        res.summary
    )
    assert np.isfinite(res.arrays["xi_effective_cosine"]).all()
