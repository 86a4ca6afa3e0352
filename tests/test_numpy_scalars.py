"""Numpy integer scalars (``np.int64`` and friends, e.g. values swept with ``np.arange``) pass
every integer argument check of the library, and what is kept is a plain Python ``int`` (so
JSON configs, HDF5 attributes, torch sizes and Brian2 never see a numpy scalar); ``bool`` and
``np.bool_`` stay refused."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from brian2 import TimedArray, ms
from torch import nn

from plastix.bridges.continual import (
    EWCLearner,
    LearnerConfig,
    make_learner,
    mlp,
    permuted_tasks,
    run_continual,
    split_tasks,
)
from plastix.bridges.ib_training import AdamWSettings, IBRule, PHSICRule, make_trainer
from plastix.bridges.nir_bridge import SnntorchConvention
from plastix.bridges.pruning import (
    UCB,
    EpsilonGreedy,
    ForgettingCounter,
    PruningSampler,
    StaticPruning,
    StaticScores,
    UniformDynamic,
    grand_scores,
    plan_keep_counts,
)
from plastix.bridges.rate_networks import LeakyIntegration, RateCNN, RateMLP
from plastix.bridges.snntorch_bridge import BPTTConfig, bernoulli_raster, to_snntorch
from plastix.bridges.tangent_ensemble import NeuralTangentEnsemble
from plastix.circuits.backend import activate_backend
from plastix.circuits.encoders import PoissonEncoder, make_schedule
from plastix.circuits.feedforward import FeedForwardSpec, LayerSpec, NeuronParams, run_raster
from plastix.circuits.ib_network import IBCircuitSpec, XiSettings
from plastix.circuits.layers import LIFLayer, RateReadout, SampleTiming, learn_schedule
from plastix.circuits.neurons import LIFParams
from plastix.plasticity.hsic import centering_matrix, sliding_windows
from plastix.reservoirs.esn import ESNConfig, init_esn_weights, run_esn
from plastix.reservoirs.memory import memory_capacity, memory_curve
from plastix.reservoirs.readouts import LMSReadout, RidgeReadout, RLSReadout
from plastix.reservoirs.xi_modulator import (
    XiModulatorConfig,
    delay_line_weights,
    distance_preserving_projection,
)
from plastix.sims.datasets import load_dataset, make_linear, make_xor
from plastix.sims.experiments import RunContext, experiment, prepare_run, run_experiment
from plastix.sims.results import read_result
from plastix.sims.sweep import plan_sweep

NP_INTS = [np.int64, np.int32, np.uint16]


def _plain(*values) -> bool:
    return all(type(v) is int for v in values)


# -- plasticity / rate networks / rate training ---------------------------------------------


@pytest.mark.parametrize("np_int", NP_INTS)
def test_ib_rule_xi_settings_and_hsic_windows(np_int):
    rule = IBRule(window=np_int(8))
    assert rule.window == 8 and _plain(rule.window)
    xi = XiSettings(window=np_int(4))
    assert xi.window == 4 and _plain(xi.window)
    assert centering_matrix(np_int(4)).shape == (4, 4)
    assert sliding_windows(torch.arange(10.0), np_int(3)).shape == (8, 3)


@pytest.mark.parametrize("np_int", NP_INTS)
def test_rate_networks(np_int):
    net = RateMLP(np_int(6), tuple(np.array([5, 4], dtype=np_int)), np_int(3))
    assert net.input_shape == (6,) and _plain(*net.input_shape)
    assert _plain(*(b.linear.out_features for b in net.blocks), net.readout.out_features)
    assert net(torch.rand(2, 6)).shape == (2, 3)
    cnn = RateCNN(tuple(np.array([1, 4, 4], dtype=np_int)), [np_int(2)], np_int(3))
    assert cnn.input_shape == (1, 4, 4) and _plain(*cnn.input_shape)
    assert _plain(cnn.readout.out_features, cnn.blocks[0].pool)
    assert cnn(torch.rand(2, 16)).shape == (2, 3)
    leaky = LeakyIntegration(steps=np_int(4))
    assert leaky.steps == 4 and _plain(leaky.steps)


@pytest.mark.parametrize("np_float", [np.float32, np.float16])
def test_real_valued_settings_take_numpy_floats(np_float):
    """np.float64 subclasses float; np.float32 and np.float16 do not, and were refused."""
    rule = IBRule(gamma=np_float(2.0), sigmas=(np_float(0.5), np_float(0.25), 1))
    assert (rule.gamma, rule.sigmas) == (2.0, (0.5, 0.25, 1.0))
    assert all(type(v) is float for v in (rule.gamma, *rule.sigmas))
    phsic = PHSICRule(gamma=np_float(2.0), sigma_z=np_float(4.0))
    adamw = AdamWSettings(lr=np_float(0.5), weight_decay=np_float(0.0))
    leaky = LeakyIntegration(tau=np_float(0.5), dt=np_float(0.25))
    stored = (phsic.gamma, phsic.sigma_z, adamw.lr, adamw.weight_decay, leaky.tau, leaky.dt)
    assert stored == (2.0, 4.0, 0.5, 0.0, 0.5, 0.25)
    assert all(type(v) is float for v in stored)
    model = nn.Linear(3, 2)
    opt = NeuralTangentEnsemble(model.parameters(), lr=np_float(0.5), max_delta=np_float(0.5))
    assert opt.param_groups[0]["lr"] == 0.5
    sampler = PruningSampler(100, UCB(c=np_float(1.0)), rate=np_float(0.5), epochs=2)
    assert len(list(sampler)) == 50
    assert EpsilonGreedy(epsilon=np_float(0.5)).epsilon == 0.5
    assert type(SnntorchConvention(dt_graph=np_float(0.5)).dt_graph) is float
    with pytest.raises(ValueError, match="dt_graph"):
        SnntorchConvention(dt_graph=True)
    spec = FeedForwardSpec(2, (LayerSpec(np.ones((2, 2)), neuron=NeuronParams(model="LI")),))
    assert to_snntorch(spec, np_float(0.5)).dt == 0.5  # seconds


@pytest.mark.parametrize("method", ["ib", "backprop", "phsic"])
def test_make_trainer_window(method):
    net = RateMLP(4, [8], 2)
    trainer = make_trainer(method, net, window=np.int64(4))
    assert trainer.window == 4 and _plain(trainer.window)
    if method == "ib":
        assert _plain(trainer.rule.window)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 4, generator=g), torch.arange(12) % 2
    trainer.train_epoch(x, y, torch.Generator().manual_seed(1))


# -- snntorch / NTE / continual / pruning ----------------------------------------------------


@pytest.mark.parametrize("np_int", NP_INTS)
def test_bptt_config_and_bernoulli_raster(np_int):
    cfg = BPTTConfig(steps=np_int(20), settle=np_int(5), batch=np_int(8))
    assert (cfg.steps, cfg.settle, cfg.batch) == (20, 5, 8)
    assert _plain(cfg.steps, cfg.settle, cfg.batch)
    assert bernoulli_raster(torch.full((2, 3), 0.5), np_int(5), 0.5).shape == (5, 2, 3)


@pytest.mark.parametrize("np_int", NP_INTS)
def test_neural_tangent_ensemble_batch_and_chunk_sizes(np_int):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = NeuralTangentEnsemble(model.parameters(), lr=0.01, max_delta=None, seed=np_int(3))
    x, y = torch.randn(8, 3), torch.arange(8) % 2
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step(batch_size=np_int(8))
    loss = opt.step_per_example(model, nn.functional.cross_entropy, x, y, chunk_size=np_int(3))
    assert torch.isfinite(loss)


def _blobs(n=64, dim=8, n_classes=4):
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(n_classes, dim, generator=g) * 2
    y = torch.arange(2 * n) % n_classes
    x = centres[y] + 0.3 * torch.randn(2 * n, dim, generator=g)
    return x[:n], y[:n], x[n:], y[n:]


@pytest.mark.parametrize("np_int", NP_INTS)
def test_continual_tasks_and_run(np_int):
    data = _blobs()
    tasks = permuted_tasks(*data, np_int(2), seed=np_int(1))
    assert len(tasks) == 2
    assert len(split_tasks(*data, np_int(2))) == 2
    torch.manual_seed(0)
    learner = make_learner(mlp(8, [np_int(16)], 4), LearnerConfig(optimizer="sgd", lr=0.1))
    res = run_continual(
        learner,
        tasks,
        "domain",
        n_outputs=np_int(4),
        epochs=np_int(1),
        batch_size=np_int(32),
        seed=np_int(2),
        eval_batch_size=np_int(64),
    )
    assert res.accuracy_matrix.shape == (2, 2) and np.all(np.isfinite(res.accuracy_matrix))
    model = mlp(8, [4], 4)
    ewc = EWCLearner(model, torch.optim.SGD(model.parameters(), lr=0.1), fisher_samples=np_int(5))
    assert ewc.fisher_samples == 5 and _plain(ewc.fisher_samples)


@pytest.mark.parametrize("np_int", NP_INTS)
def test_pruning_counts_samplers_and_scores(np_int):
    counts = plan_keep_counts(
        np_int(100), np_int(4), 0.5, scoring_passes=np_int(10), anneal_epochs=np_int(1)
    )
    assert _plain(*counts) and sum(counts) + 10 == 200
    sampler = PruningSampler(
        np_int(50), EpsilonGreedy(anneal_epochs=np_int(1)), rate=0.5, epochs=np_int(3)
    )
    assert _plain(sampler.n_samples, sampler.epochs, *sampler.keep_counts)
    assert _plain(sampler.strategy.anneal_epochs(3))
    assert len(list(sampler)) == sampler.keep_counts[0]
    uniform = PruningSampler(
        np_int(20), UniformDynamic(), rate=0.5, epochs=np_int(2), seed=np_int(4)
    )
    assert len(list(uniform)) == uniform.keep_counts[0]
    static = StaticPruning(StaticScores("x", torch.rand(10), np_int(20), 0.0))
    assert static.scoring_passes == 20 and _plain(static.scoring_passes)
    assert ForgettingCounter(np_int(5)).events.shape == (5,)
    x, y = torch.rand(6, 3), torch.arange(6) % 2
    scores = grand_scores(lambda: nn.Linear(3, 2), x, y, n_models=np_int(2))
    assert scores.passes == 12 and _plain(scores.passes)


# -- reservoirs ------------------------------------------------------------------------------


@pytest.mark.parametrize("np_int", NP_INTS)
def test_esn_config_memory_and_readouts(np_int):
    cfg = ESNConfig(n_inputs=np_int(1), n_units=np_int(10), n_feedback=np_int(0))
    assert (cfg.n_inputs, cfg.n_units, cfg.n_feedback) == (1, 10, 0)
    assert _plain(cfg.n_inputs, cfg.n_units, cfg.n_feedback)
    weights = init_esn_weights(cfg, seed=np_int(2))
    curve = memory_capacity(
        weights, n_steps=np_int(400), max_delay=np_int(5), washout=np_int(20), seed=np_int(1)
    )
    assert len(curve.delays) == 5
    u = torch.rand(300, 1, dtype=torch.float64)
    states, _ = run_esn(weights, u)
    assert len(memory_curve(states, u[:, 0], max_delay=np_int(3), washout=np_int(10)).r2) == 3
    for cls in (RidgeReadout, LMSReadout, RLSReadout):
        readout = cls(np_int(3), np_int(2))
        assert (readout.n_features, readout.n_outputs) == (3, 2)
        assert _plain(readout.n_features, readout.n_outputs)


@pytest.mark.parametrize("np_int", NP_INTS)
def test_xi_modulator_config_and_helpers(np_int):
    names = (
        "n_neurons", "n_classes", "window", "n_units", "x_projection", "n_streams",
        "stream_length", "n_chunks", "train_neurons", "seed",
    )  # fmt: skip
    values = (8, 3, 4, 20, 4, 2, 64, 2, 4, 5)
    cfg = XiModulatorConfig(**{n: np_int(v) for n, v in zip(names, values, strict=True)})
    assert tuple(getattr(cfg, n) for n in names) == values
    assert _plain(*(getattr(cfg, n) for n in names))
    assert delay_line_weights(np_int(2), np_int(3)).n_units == 6
    gen = torch.Generator().manual_seed(0)
    assert distance_preserving_projection(np_int(3), np_int(2), gen).shape == (3, 2)


# -- circuits (Brian2 objects are created, not run, except one short numpy run) --------------


@pytest.mark.parametrize("np_int", NP_INTS)
def test_circuit_specs_layers_and_encoders(np_int):
    spec = IBCircuitSpec(
        n_input=np_int(4), hidden=tuple(np.array([5, 3], dtype=np_int)), n_classes=np_int(3)
    )
    assert spec.layer_sizes == (4, 5, 3, 3) and _plain(*spec.layer_sizes)
    timing = SampleTiming()
    learn = learn_schedule([1], timing, name="np_learn")
    layer = LIFLayer(np_int(3), LIFParams(), timing, learn, name="np_layer")
    assert layer.n == 3 and _plain(layer.n) and len(layer.group) == 3
    label = TimedArray(np.zeros((1, 3)), dt=timing.slot, name="np_label")
    readout = RateReadout(np_int(3), timing, learn, label, name="np_readout")
    assert readout.n == 3 and _plain(readout.n)
    encoder = PoissonEncoder(make_schedule(np.array([[0.5, 0.2]]), 5 * ms), np_int(2), name="np_in")
    assert len(encoder.group) == 2


def test_run_raster_extra_steps():
    spec = FeedForwardSpec(np.int64(2), (LayerSpec(np.full((2, 2), 2.0), NeuronParams("LI")),))
    assert _plain(spec.n_in)
    raster = np.zeros((3, 1, 2), dtype=bool)
    _, membranes = run_raster(
        spec, raster, 1 * ms, extra_steps=np.int64(2), record_membrane=True, backend="numpy"
    )
    assert membranes["layer0"].shape[0] == 5


@pytest.mark.parametrize("np_int", NP_INTS)
def test_activate_backend_threads_and_gpu_id(np_int):
    from brian2 import prefs

    with activate_backend("numpy", openmp_threads=np_int(2), gpu_id=np_int(0)) as session:
        assert session.backend == "numpy"
    with activate_backend("cpp_standalone", openmp_threads=np_int(2)):
        threads = prefs["devices.cpp_standalone.openmp_threads"]
        assert threads == 2 and _plain(threads)


# -- sims -------------------------------------------------------------------------------------


@dataclass
class _TinyConfig:
    epochs: int = 1
    scale: float = 1.0


SEEN_SEEDS: list = []


@experiment("test-numpy-scalars", _TinyConfig, description="numpy scalar test (test only)")
def _run_tiny(cfg: _TinyConfig, ctx: RunContext) -> None:
    SEEN_SEEDS.append(ctx.seed)
    ctx.summary(total=cfg.epochs * cfg.scale)


def test_run_experiment_seed_and_overrides(tmp_path):
    SEEN_SEEDS.clear()
    path = run_experiment(
        "test-numpy-scalars",
        {"epochs": np.int64(2), "scale": np.int32(3)},
        seed=np.int64(3),
        out=tmp_path / "r.h5",
    )
    assert SEEN_SEEDS == [3] and _plain(*SEEN_SEEDS)
    result = read_result(path)
    assert result.attrs["seed"] == 3 and result.config == {"epochs": 2, "scale": 3.0}
    prepared = prepare_run("test-numpy-scalars", seed=np.uint32(7), out=tmp_path / "p.h5")
    assert _plain(prepared.start[0].seed)


@pytest.mark.parametrize("seeds", [np.int64(2), np.arange(2), [np.int32(0), np.int64(1)]])
def test_plan_sweep_seeds_and_grid(tmp_path, seeds):
    runs = plan_sweep(
        "test-numpy-scalars", {"epochs": np.arange(1, 3)}, seeds=seeds, out_dir=tmp_path
    )
    assert sorted(r.seed for r in runs) == [0, 0, 1, 1]
    assert _plain(*(r.seed for r in runs))
    assert sorted(r.overrides["epochs"] for r in runs) == [1, 1, 2, 2]
    assert _plain(*(r.overrides["epochs"] for r in runs))  # they go into index.json


@pytest.mark.parametrize("np_int", NP_INTS)
def test_load_dataset_sizes_and_seed(np_int):
    ds = load_dataset("xor", n_train=np_int(20), n_test=np_int(10), seed=np_int(3))
    assert ds.x_train.shape[0] == 20 and ds.x_test.shape[0] == 10
    again = load_dataset("xor", n_train=20, n_test=10, seed=3)
    np.testing.assert_array_equal(ds.x_train, again.x_train)


# -- bool stays refused -----------------------------------------------------------------------


def _timing_learn():
    timing = SampleTiming()
    return timing, learn_schedule([1], timing, name="bool_learn")


REFUSED_BEFORE = {
    "IBRule.window": lambda b: IBRule(window=b),
    "XiSettings.window": lambda b: XiSettings(window=b),
    "centering_matrix": lambda b: centering_matrix(b),
    "RateMLP.n_in": lambda b: RateMLP(b, [4], 2),
    "RateMLP.hidden": lambda b: RateMLP(4, [b], 2),
    "LeakyIntegration.steps": lambda b: LeakyIntegration(steps=b),
    "make_trainer.window": lambda b: make_trainer("backprop", RateMLP(4, [8], 2), window=b),
    "BPTTConfig.steps": lambda b: BPTTConfig(steps=b),
    "bernoulli_raster.steps": lambda b: bernoulli_raster(torch.zeros(1, 2), b, 0.5),
    "NTE.seed": lambda b: NeuralTangentEnsemble(nn.Linear(2, 2).parameters(), seed=b),
    "plan_keep_counts": lambda b: plan_keep_counts(b, 2, 0.5),
    "PruningSampler.epochs": lambda b: PruningSampler(10, UniformDynamic(), rate=0.5, epochs=b),
    "EpsilonGreedy.anneal_epochs": lambda b: EpsilonGreedy(anneal_epochs=b),
    "ESNConfig.n_inputs": lambda b: ESNConfig(n_inputs=b),
    "XiModulatorConfig.window": lambda b: XiModulatorConfig(window=b),
    "RidgeReadout": lambda b: RidgeReadout(b, 1),
    "memory_curve.max_delay": lambda b: memory_curve(torch.zeros(5, 2), torch.zeros(5), b),
    "IBCircuitSpec.n_input": lambda b: IBCircuitSpec(n_input=b),
    "LIFLayer.n": lambda b: LIFLayer(b, LIFParams(), *_timing_learn(), name="bool_layer"),
    "activate_backend.openmp_threads": lambda b: activate_backend(
        "numpy", openmp_threads=b
    ).__enter__(),
    "load_dataset.seed": lambda b: load_dataset("xor", n_train=4, n_test=4, seed=b),
    "prepare_run.seed": lambda b: prepare_run("test-numpy-scalars", seed=b),
}

# bool passed these checks before (isinstance(True, int)); it is refused now
REFUSED_NOW = {
    "permuted_tasks.n_tasks": lambda b: permuted_tasks(*_blobs(), b),
    "split_tasks.n_tasks": lambda b: split_tasks(*_blobs(), b),
    "run_continual.epochs": lambda b: run_continual(
        make_learner(mlp(8, [4], 4), LearnerConfig(optimizer="sgd")),
        permuted_tasks(*_blobs(), 1),
        "domain",
        n_outputs=4,
        epochs=b,
    ),
    "EWCLearner.fisher_samples": lambda b: EWCLearner(
        nn.Linear(2, 2), torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), fisher_samples=b
    ),
    "plan_sweep.seeds": lambda b: plan_sweep("test-numpy-scalars", {}, seeds=b, out_dir="."),
    "plan_sweep.seeds[i]": lambda b: plan_sweep(
        "test-numpy-scalars", {}, seeds=[0, b], out_dir="."
    ),
    "LeakyIntegration.tau": lambda b: LeakyIntegration(tau=b, dt=1e-3),
    "LeakyIntegration.dt": lambda b: LeakyIntegration(tau=2.0, dt=b),
    "make_xor.noise": lambda b: make_xor(8, np.random.default_rng(0), noise=b),
    "make_linear.noise": lambda b: make_linear(8, np.random.default_rng(0), noise=b),
}


@pytest.mark.parametrize("flag", [True, np.bool_(True)], ids=["bool", "np.bool_"])
@pytest.mark.parametrize("site", [*REFUSED_BEFORE, *REFUSED_NOW])
def test_bool_is_refused(site, flag):
    call = REFUSED_BEFORE.get(site) or REFUSED_NOW[site]
    with pytest.raises((TypeError, ValueError)):
        call(flag)


def test_scalar_predicates_take_numpy_numbers_and_refuse_bools_and_non_finite_values():
    from plastix.scalars import is_finite_real, is_integer, is_real

    assert is_integer(np.int16(3)) and not is_integer(np.float64(3.0)) and not is_integer(True)
    assert is_real(np.float32(0.5)) and is_real(2) and not is_real(np.bool_(True))
    assert is_real(float("inf")) and not is_finite_real(float("inf"))
    assert is_finite_real(np.float32(0.5)) and is_finite_real(-3)
    for value in (float("nan"), np.float64("-inf"), True, "1.0", None):
        assert not is_finite_real(value)
