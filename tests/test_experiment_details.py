"""Details of the nte-continual, pruning, compare and reservoir-wm experiments: run planning,
the options each hands on to its learners, models and samplers, and the metrics it stores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from compare_parts import TINY_COMPARE, CompareContext, compare_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- nte-continual --------------------------------------------------------------------------


def test_plan_runs_sweeps_momenta_for_sgd_and_ewc_and_labels_each_run():
    """SGD and EWC run at every momentum, NTE and Adam once per width; widths outermost, then
    the optimizers in config order. Labels carry the momentum (``%g``) for SGD/EWC only."""
    from plastix.sims.exp_nte import NTEContinualConfig, plan_runs

    cfg = NTEContinualConfig(
        optimizers=("ewc", "nte", "adam", "sgd"), widths=(10, 20), momenta=(0.0, 0.5)
    )
    runs = plan_runs(cfg)
    assert [(r.optimizer, r.width, r.momentum) for r in runs] == [
        (name, width, m)
        for width in (10, 20)
        for name, momenta in (("ewc", (0.0, 0.5)), ("nte", (0.0,)), ("adam", (0.0,)))
        + (("sgd", (0.0, 0.5)),)
        for m in momenta
    ]
    assert [r.label for r in runs[:6]] == [
        "ewc_w10_m0",
        "ewc_w10_m0.5",
        "nte_w10",
        "adam_w10",
        "sgd_w10_m0",
        "sgd_w10_m0.5",
    ]


def test_run_learning_rate_of_each_optimizer_with_and_without_a_fixed_effective_rate():
    """NTE takes ``nte_lr`` and Adam ``adam_lr``; SGD/EWC take ``sgd_lr · (1 − β)`` with
    ``fixed_effective_lr`` and ``sgd_lr`` at every momentum without it."""
    from plastix.sims.exp_nte import NTEContinualConfig, _Run, run_learning_rate

    cfg = NTEContinualConfig(sgd_lr=0.2, adam_lr=0.003, nte_lr=0.04)
    assert run_learning_rate(cfg, _Run("nte", 8, 0.0)) == 0.04
    assert run_learning_rate(cfg, _Run("adam", 8, 0.0)) == 0.003
    for name in ("sgd", "ewc"):
        assert run_learning_rate(cfg, _Run(name, 8, 0.75)) == pytest.approx(0.05)
        assert run_learning_rate(cfg, _Run(name, 8, 0.0)) == pytest.approx(0.2)
    fixed_rate = NTEContinualConfig(sgd_lr=0.2, fixed_effective_lr=False)
    for name in ("sgd", "ewc"):
        assert run_learning_rate(fixed_rate, _Run(name, 8, 0.75)) == 0.2


def test_learner_config_hands_on_every_option_of_the_experiment():
    from plastix.bridges.continual import LearnerConfig
    from plastix.sims.exp_nte import NTEContinualConfig, _learner_config, _Run

    options = {
        "reset_between_tasks": True,
        "nte_exponent": 0.5,
        "nte_max_delta": None,
        "nte_expansion": "init",
        "nte_per_example": True,
        "ewc_lambda": 12.0,
        "ewc_fisher_samples": 7,
    }
    cfg = NTEContinualConfig(sgd_lr=0.1, **options)
    assert _learner_config(cfg, _Run("ewc", 16, 0.5), seed=3) == LearnerConfig(
        optimizer="ewc", lr=0.05, momentum=0.5, seed=3, **options
    )


def test_initial_model_has_depth_hidden_layers_from_the_seed_alone():
    """``depth`` hidden layers of ``width``; the same seed gives the same weights, and the
    global torch generator is left where it was."""
    from plastix.sims.exp_nte import _initial_model

    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    model = _initial_model(5, 7, 3, 4, "torch", seed=9)
    assert torch.equal(torch.rand(3), expected_next)
    shapes = [tuple(m.weight.shape) for m in model if isinstance(m, torch.nn.Linear)]
    assert shapes == [(7, 5), (7, 7), (7, 7), (4, 7)]
    again = _initial_model(5, 7, 3, 4, "torch", seed=9)
    for a, b in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)


def test_nte_continual_logs_task_metrics_from_the_accuracy_matrix(tmp_path, monkeypatch):
    """Per run and task: ``task1_accuracy`` is ``R[i, 0]``, ``forgetting`` the Chaudhry
    forgetting after task i, ``average_accuracy`` the mean of ``R[i, :i+1]``; the stored
    ``final_average_accuracy`` is that of the last task. The permutations follow the run's
    seed."""
    from plastix.sims import exp_nte
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    seeds = []
    original = exp_nte.permuted_tasks

    def recording_permuted_tasks(*args, seed):
        seeds.append(seed)
        return original(*args, seed=seed)

    monkeypatch.setattr(exp_nte, "permuted_tasks", recording_permuted_tasks)
    overrides = {
        "dataset": "digits",
        "n_tasks": 3,
        "optimizers": "sgd",
        "widths": "32",
        "epochs": 2,
        "batch_size": 16,
        "n_train": 120,
        "n_test": 60,
        "sgd_lr": 0.5,
    }
    res = read_result(run_experiment("nte-continual", overrides, out=tmp_path / "r.h5", seed=5))
    assert seeds == [5]
    [r] = res.arrays["accuracy_matrices"]
    assert r[1, 0] != r[1, 1] and r[2, 0] != r[2, 2]  # the tasks were told apart
    m = res.metrics
    np.testing.assert_allclose(m["task1_accuracy"], r[:, 0])
    np.testing.assert_allclose(m["average_accuracy"], [r[0, 0], r[1, :2].mean(), r[2, :3].mean()])
    expected_forgetting = [
        0.0,
        r[0, 0] - r[1, 0],
        np.mean([max(r[0, 0], r[1, 0]) - r[2, 0], r[1, 1] - r[2, 1]]),
    ]
    np.testing.assert_allclose(m["forgetting"], expected_forgetting)
    np.testing.assert_allclose(res.arrays["final_average_accuracy"], [r[2, :3].mean()])
    assert res.summary["average_accuracy_sgd_w32_m0"] == pytest.approx(r[2, :3].mean())


# --- pruning ------------------------------------------------------------------------------------


def _crop_flip_of(original, augmented, pad):
    """The (dy, dx, flipped) whose crop of the zero-padded ``original`` is ``augmented``."""
    _, h, w = original.shape
    padded = torch.nn.functional.pad(original, (pad, pad, pad, pad))
    found = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            found += [(dy, dx, False)] * torch.equal(augmented, crop)
            found += [(dy, dx, True)] * torch.equal(augmented, crop.flip(2))
    return found


def test_random_crop_flip_draws_every_offset_and_both_flips_of_non_square_images():
    """Offsets 0..2·pad in each direction and mirrored or not; height and width are not
    swapped for an image that is not square."""
    from plastix.sims.exp_pruning import random_crop_flip

    n, pad = 600, 1
    x = torch.arange(1.0, 1.0 + 2 * 5 * 7).reshape(1, 2, 5, 7).repeat(n, 1, 1, 1)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=pad)
    assert out.shape == x.shape
    seen = set()
    for original, augmented in zip(x, out, strict=True):
        [draw] = _crop_flip_of(original, augmented, pad)
        seen.add(draw)
    assert seen == {(dy, dx, f) for dy in range(3) for dx in range(3) for f in (False, True)}


@pytest.mark.parametrize(
    ("augment", "dataset", "expected"),
    [
        ("auto", "cifar10", True),
        ("auto", "cifar100", True),
        ("auto", "digits", False),
        ("on", "digits", True),
        ("off", "cifar10", False),
    ],
)
def test_pruning_augmentation_follows_the_augment_option(augment, dataset, expected):
    from plastix.sims.exp_pruning import PruningConfig

    assert PruningConfig(dataset=dataset, augment=augment).use_augmentation is expected


def test_pruning_model_kind_and_factory_follow_the_dataset_or_the_model_option():
    from plastix.sims.exp_pruning import (
        PruningConfig,
        ResNet18,
        SmallCNN,
        make_model_factory,
        model_kind,
    )

    assert model_kind(PruningConfig(dataset="cifar10")) == "resnet18"
    assert model_kind(PruningConfig(dataset="cifar100")) == "resnet18"
    assert model_kind(PruningConfig(dataset="fashion-mnist")) == "small-cnn"
    assert model_kind(PruningConfig(dataset="cifar10", model="small-cnn")) == "small-cnn"
    resnet = make_model_factory(PruningConfig(dataset="cifar10"), (3, 32, 32), 100)()
    assert isinstance(resnet, ResNet18) and resnet.fc.out_features == 100
    cnn = make_model_factory(PruningConfig(dataset="digits"), (1, 8, 8), 10)()
    assert isinstance(cnn, SmallCNN) and cnn(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_pruning_spiking_model_is_a_spiking_mlp_over_the_flattened_sample():
    pytest.importorskip("snntorch")
    from plastix.sims.exp_pruning import PruningConfig, SpikingMLP, make_model_factory

    net = make_model_factory(PruningConfig(model="spiking-mlp"), (1, 8, 8), 10)()
    assert isinstance(net, SpikingMLP) and net.fc1.in_features == 64
    assert net(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_make_strategy_builds_each_strategy_with_its_options():
    from plastix.bridges.pruning import InfoBatch, StaticPruning, StaticScores, UniformDynamic
    from plastix.sims.exp_pruning import PruningConfig, make_strategy

    cfg = PruningConfig(infobatch_delta=0.5)
    assert type(make_strategy(cfg, "full", None)) is UniformDynamic
    assert type(make_strategy(cfg, "uniform", None)) is UniformDynamic
    infobatch = make_strategy(cfg, "infobatch", None)
    assert isinstance(infobatch, InfoBatch) and infobatch.delta == 0.5
    scores = StaticScores("el2n", torch.arange(4.0), passes=4, wall_s=0.0)
    for name in ("el2n", "grand", "forgetting"):
        assert isinstance(make_strategy(cfg, name, scores), StaticPruning)


def test_pruning_config_counts_scoring_and_annealing_epochs_per_strategy():
    from plastix.sims.exp_pruning import PruningConfig

    cfg = PruningConfig(
        epochs=10, score_epochs=3, score_models=2, forgetting_epochs=4, infobatch_delta=0.75
    )
    assert cfg.scoring_epochs("el2n") == 2 * (3 + 1)
    assert cfg.scoring_epochs("grand") == 2
    assert cfg.scoring_epochs("forgetting") == 4
    assert cfg.scoring_epochs("ucb") == 0 and cfg.scoring_epochs("infobatch") == 0
    assert cfg.anneal_epochs("infobatch") == 10 - math.ceil(7.5)
    assert cfg.anneal_epochs("el2n") == 0


def test_pruning_grid_repeats_full_data_over_every_rate_and_stores_realized_rates(tmp_path):
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    overrides = {
        "dataset": "digits",
        "strategies": ("full", "uniform"),
        "rates": (0.35, 0.6),
        "epochs": 2,
        "n_train": 45,
        "n_test": 30,
        "batch_size": 15,
    }
    res = read_result(run_experiment("pruning", overrides, out=tmp_path / "r.h5", seed=0))
    m, grid = res.metrics, res.arrays
    full_accuracy, uniform = m["test_accuracy"][0], m["test_accuracy"][1:]
    np.testing.assert_array_equal(grid["accuracy"], [[full_accuracy] * 2, uniform])
    realized = m["passes_saved"] / (2 * 45)
    np.testing.assert_allclose(m["realized_rate"], realized)
    np.testing.assert_allclose(grid["saved_fraction"], [[0.0, 0.0], realized[1:]])
    assert not np.allclose(realized[1:], [0.35, 0.6])  # 45 samples: rates only approached
    assert res.summary["test_accuracy"] == full_accuracy
    assert res.summary["test_accuracy[uniform@0.35]"] == uniform[0]
    assert res.summary["test_accuracy[uniform@0.6]"] == uniform[1]


def test_pruning_forgetting_scores_watch_forgetting_epochs(tmp_path):
    """The forgetting strategy scores over ``forgetting_epochs`` full-data epochs (not the
    EL2N ``score_epochs``)."""
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    overrides = {
        "dataset": "digits",
        "strategies": ("forgetting",),
        "rates": (0.2,),
        "epochs": 5,
        "forgetting_epochs": 3,
        "score_epochs": 1,
        "n_train": 40,
        "n_test": 20,
        "batch_size": 20,
    }
    res = read_result(run_experiment("pruning", overrides, out=tmp_path / "r.h5", seed=0))
    assert res.metrics["scoring_passes"].tolist() == [3 * 40]


@pytest.mark.parametrize(("augment", "augmented"), [("on", True), ("off", False)])
def test_pruning_training_batches_are_augmented_when_asked(
    tmp_path, monkeypatch, augment, augmented
):
    import plastix.sims.exp_pruning as exp
    from plastix.sims.experiments import run_experiment

    calls = []
    original = exp.random_crop_flip

    def recording(x, generator, pad=4):
        calls.append(tuple(x.shape))
        return original(x, generator, pad)

    monkeypatch.setattr(exp, "random_crop_flip", recording)
    overrides = {
        "dataset": "digits",
        "augment": augment,
        "strategies": ("uniform",),
        "rates": (0.5,),
        "epochs": 1,
        "n_train": 40,
        "n_test": 20,
        "batch_size": 10,
    }
    run_experiment("pruning", overrides, out=tmp_path / "r.h5", seed=0)
    assert calls == ([(10, 1, 8, 8)] * 2 if augmented else [])


# --- compare ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"settle_ms": 50.0}, "settle_ms: 50.0 >= presentation_ms"),
        ({"presentation_ms": 50.25}, "presentation_ms: 50.25 is not a multiple of dt_ms"),
        ({"settle_ms": 10.2}, "settle_ms: 10.2 is not a multiple"),
        ({"t_ref_ms": 0.3}, "t_ref_ms: 0.3 is not a multiple"),
        ({"input_rate_hz": 2001.0}, "fires more than once per step"),
    ],
)
def test_compare_config_refuses_timings_the_circuit_cannot_run(overrides, match):
    from plastix.sims.exp_compare import CompareConfig

    with pytest.raises(ValueError, match=match):
        CompareConfig(**overrides).validate()


def test_compare_config_accepts_the_limits_of_its_timing_checks():
    """One input spike per step at most is allowed; so are timings on the dt grid."""
    from plastix.sims.exp_compare import CompareConfig

    CompareConfig(input_rate_hz=2000.0, dt_ms=0.5).validate()
    CompareConfig(presentation_ms=20.0, settle_ms=19.5, t_ref_ms=1.5, dt_ms=0.5).validate()


def test_compare_circuit_spec_takes_every_circuit_option():
    from brian2 import Hz, ms

    from plastix.sims.exp_compare import CompareConfig, circuit_spec

    cfg = CompareConfig(
        hidden=(7, 5),
        presentation_ms=30.0,
        settle_ms=6.0,
        dt_ms=0.25,
        input_rate_hz=80.0,
        t_ref_ms=1.5,
        spiking_eta=120.0,
        spiking_readout_eta=3.0,
    )
    spec = circuit_spec(cfg, 12, 4)
    assert (spec.n_input, spec.hidden, spec.n_classes) == (12, (7, 5), 4)
    assert spec.timing.presentation == 30 * ms and spec.timing.settle == 6 * ms
    assert spec.timing.dt == 0.25 * ms and spec.timing.gap == 0 * ms
    assert spec.lif.t_ref == 1.5 * ms
    assert spec.input_rate == 80 * Hz
    assert spec.rule.eta == 120 * Hz
    assert spec.readout_eta == 3 * Hz


def test_compare_sampler_prunes_over_the_configured_epochs_and_rate():
    from plastix.bridges.pruning import UCB, EpsilonGreedy, InfoBatch, UniformDynamic
    from plastix.sims.exp_compare import CompareConfig, _sampler

    assert _sampler(CompareConfig(), 20, 0) is None
    for name, kind in (
        ("uniform", UniformDynamic),
        ("epsilon-greedy", EpsilonGreedy),
        ("ucb", UCB),
        ("infobatch", InfoBatch),
    ):
        sampler = _sampler(CompareConfig(pruning=name, pruning_rate=0.25, epochs=4), 20, 0)
        assert isinstance(sampler.strategy, kind)
        assert (sampler.n_samples, sampler.rate, sampler.epochs) == (20, 0.25, 4)
        assert sampler.stats().passes_done + sampler.stats().passes_saved == 0
        assert sum(sampler.keep_counts) == 60  # (1 - 0.25) of 4 epochs of 20


def test_compare_nte_optimizer_takes_the_trainable_parameters_and_its_options():
    from plastix.sims.exp_compare import CompareConfig, _nte

    trained = torch.nn.Parameter(torch.full((3,), 0.1))
    frozen = torch.nn.Parameter(torch.ones(2))
    frozen.requires_grad_(False)
    nte = _nte(CompareConfig(nte_lr=0.03, nte_max_delta=0.5), [trained, frozen], seed=1)
    [group] = nte.param_groups
    assert group["params"] == [trained]
    assert (group["lr"], group["max_delta"]) == (0.03, 0.5)


def test_compare_backprop_nte_steps_count_each_batch(monkeypatch):
    """With the NTE optimizer a batch of k samples is k observations (``step(batch_size=k)``),
    the last batch of an epoch included."""
    from plastix.bridges.tangent_ensemble import NeuralTangentEnsemble
    from plastix.sims.exp_compare import CompareConfig, _Logger, _run_backprop

    sizes = []
    original = NeuralTangentEnsemble.step

    def recording(self, closure=None, *, batch_size=1):
        sizes.append(batch_size)
        return original(self, closure, batch_size=batch_size)

    monkeypatch.setattr(NeuralTangentEnsemble, "step", recording)
    cfg = CompareConfig(hidden=(4,), epochs=2, optimizer="nte", backprop_batch=3)
    ctx = CompareContext()
    log = _Logger(ctx)
    _run_backprop(cfg, ctx, log, compare_data(8), torch.Generator().manual_seed(0))
    assert sizes == [3, 3, 2] * 2
    assert [p[:2] for p in log.arms["backprop"].points] == [(0, 0), (1, 8), (2, 16)]


@pytest.mark.parametrize(("window", "refused"), [(4, False), (5, True)])
def test_compare_rate_ib_needs_a_window_of_kept_samples(window, refused):
    """Pruning that keeps exactly ``window`` samples in an epoch still trains; fewer refuse."""
    from plastix.sims.exp_compare import CompareConfig, _Logger, _run_rate_ib

    cfg = CompareConfig(hidden=(4,), epochs=1, window=window, pruning="uniform", pruning_rate=0.5)
    ctx = CompareContext()
    log = _Logger(ctx)
    data = compare_data(8)
    if refused:
        with pytest.raises(ValueError, match="keeps 4 samples in an epoch, fewer than the IB"):
            _run_rate_ib(cfg, ctx, log, data, torch.Generator())
    else:
        _run_rate_ib(cfg, ctx, log, data, torch.Generator())
        assert log.arms["rate-ib"].final[:2] == (1, 4)


def test_snntorch_weights_of_an_unchanged_network_are_the_circuit_weights():
    """Circuit weights -> snntorch -> circuit weights is the identity, the readout bias
    coming from the separate logit offset."""
    from plastix.bridges.snntorch_bridge import to_snntorch
    from plastix.circuits.feedforward import from_ib_circuit
    from plastix.circuits.ib_network import init_weights
    from plastix.sims.exp_compare import CompareConfig, _snntorch_weights, circuit_spec

    spec = circuit_spec(CompareConfig(hidden=(6, 4)), 5, 3)
    w0 = init_weights(spec, np.random.default_rng(0))
    ff, bias = from_ib_circuit(spec, w0)
    net = to_snntorch(ff, spec.timing.dt)
    offset = torch.nn.Parameter(torch.tensor([0.5, -0.25, 1.0]))
    weights = _snntorch_weights(net, offset)
    assert len(weights.hidden) == 2
    for got, expected in zip(weights.hidden, w0.hidden, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(weights.readout, w0.readout, rtol=1e-6)
    np.testing.assert_allclose(weights.bias, [0.5, -0.25, 1.0])
    np.testing.assert_array_equal(bias, w0.bias)


def test_compare_summary_reports_throughput_and_the_snntorch_transfer(tmp_path, monkeypatch):
    """``samples_per_s`` is samples seen over training seconds; the transfer difference is the
    Brian2 accuracy of the snntorch weights minus their snntorch accuracy (the Brian2 runs
    replaced by fixed figures here)."""
    import plastix.sims.exp_compare as exp
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    monkeypatch.setattr(exp, "_snntorch_in_brian2", lambda *args: 0.75)
    monkeypatch.setattr(exp, "_same_raster_agreement", lambda *args: (0.5, 1.0))
    overrides = {**TINY_COMPARE, "arms": ("snntorch-bptt", "backprop")}
    out = run_experiment("compare", overrides, device="numpy", out=tmp_path / "c.h5", seed=0)
    s = read_result(out).summary
    for arm in ("snntorch_bptt", "backprop"):
        assert s[f"{arm}_samples_seen"] == 24
        assert s[f"{arm}_samples_per_s"] == pytest.approx(24 / s[f"{arm}_train_wall_s"])
    assert s["snntorch_bptt_in_brian2_accuracy"] == 0.75
    assert s["snntorch_bptt_transfer_difference"] == pytest.approx(
        0.75 - s["snntorch_bptt_test_accuracy"]
    )
    assert s["snntorch_bptt_same_raster_brian2_accuracy"] == 0.5
    assert s["snntorch_bptt_same_raster_agreement"] == 1.0
    assert "spiking_ib_test_accuracy" not in s and "rate_ib_test_accuracy" not in s


# --- reservoir-wm ---------------------------------------------------------------------------


def test_reservoir_wm_config_checks_stream_and_training_lengths_at_their_limits():
    from plastix.sims.exp_reservoir import ReservoirWMConfig

    with pytest.raises(ValueError, match="xi_samples: 16 must exceed the largest window 16"):
        ReservoirWMConfig(xi_samples=16).validate()
    ReservoirWMConfig(xi_samples=17).validate()
    ReservoirWMConfig(parts=("loop",), xi_samples=16).validate()  # no xi table: no stream
    with pytest.raises(ValueError, match="n_train: 7 is smaller than window = 8"):
        ReservoirWMConfig(n_train=7).validate()
    ReservoirWMConfig(n_train=8).validate()  # a window's worth of samples is enough


def test_reservoir_wm_modulator_keeps_about_twenty_connections_per_unit():
    """The connectivity follows the reservoir size actually built (after ``changes``)."""
    from plastix.sims.exp_reservoir import ReservoirWMConfig

    cfg = ReservoirWMConfig(n_units=400)
    assert cfg.modulator().connectivity == pytest.approx(0.05)
    assert cfg.modulator(n_units=40).connectivity == pytest.approx(0.5)
    assert cfg.modulator(n_units=10).connectivity == 1.0


def test_reservoir_wm_modulator_hands_on_the_kernel_memory_options_only_to_kernel_memory():
    from plastix.sims.exp_reservoir import ReservoirWMConfig

    options = {"memory_topology": "orthogonal", "memory_ratio": 2.5, "xi_method": "diagonal"}
    kernel = ReservoirWMConfig(
        architecture="kernel-memory", gated=False, window_products=False, **options
    ).modulator(seed=4)
    assert (kernel.memory_topology, kernel.memory_ratio, kernel.xi_method) == (
        "orthogonal",
        2.5,
        "diagonal",
    )
    assert kernel.seed == 4 and kernel.architecture == "kernel-memory"
    factorised = ReservoirWMConfig(**options).modulator()
    assert (factorised.memory_topology, factorised.memory_ratio, factorised.xi_method) == (
        "delay-line",
        1.0,
        "exact",
    )


def test_reservoir_wm_orthogonal_memory_of_a_size_sets_its_ratio():
    """An orthogonal memory of N units has ratio N / ((B − 1) dim u) and so N units; a delay
    line keeps its own size."""
    from plastix.sims.exp_reservoir import ReservoirWMConfig, _memory_of_size

    common = {"architecture": "kernel-memory", "gated": False, "window_products": False}
    cfg = ReservoirWMConfig(memory_topology="orthogonal", **common)
    mcfg = cfg.modulator(n_neurons=4, n_classes=3, window=5, x_projection=2)
    sized = _memory_of_size(mcfg, 90)
    assert mcfg.n_inputs == 2 + 3 + 4
    assert sized.memory_ratio == pytest.approx(90 / (4 * 9))
    assert sized.memory_units == 90
    line = ReservoirWMConfig(memory_topology="delay-line", **common).modulator(window=5)
    assert _memory_of_size(line, 90) == line


def test_reservoir_wm_threads_are_set_for_the_run_and_restored():
    from plastix.sims.exp_reservoir import _threads

    before = torch.get_num_threads()  # 1, from the fixture
    with _threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    with _threads(None):
        assert torch.get_num_threads() == before


def test_reservoir_wm_capacity_probes_delays_to_twice_the_largest_reservoir(tmp_path, monkeypatch):
    """Delays 1..2·max(N) are logged; each reservoir runs for at least 20·N steps."""
    import plastix.sims.exp_reservoir as exp
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    calls = []
    original = exp.memory_capacity

    def recording(weights, *, n_steps, max_delay, seed):
        calls.append((weights.recurrent.shape[0], n_steps, max_delay))
        return original(weights, n_steps=n_steps, max_delay=max_delay, seed=seed)

    monkeypatch.setattr(exp, "memory_capacity", recording)
    overrides = {"parts": ("capacity",), "capacity_units": (5, 15), "capacity_steps": 200}
    res = read_result(run_experiment("reservoir-wm", overrides, out=tmp_path / "r.h5", seed=0))
    assert calls == [(5, 200, 30), (5, 200, 30), (15, 300, 30), (15, 300, 30)]
    assert res.metrics["delay"].tolist() == list(range(1, 31))
    np.testing.assert_allclose(
        res.arrays["memory_capacity_linear"],
        [res.summary["memory_capacity_linear_n5"], res.summary["memory_capacity_linear_n15"]],
    )


def test_reservoir_wm_xi_table_fits_a_memoryless_control_per_window(tmp_path, monkeypatch):
    """Per window: first the memoryless control (spectral radius 0, the smallest size), then
    one modulator per size; the summary reads the cell of the loop's window and size."""
    import plastix.sims.exp_reservoir as exp
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    fitted = []
    original = exp.fit_xi_modulator

    def recording(mcfg):
        fitted.append((mcfg.window, mcfg.n_units, mcfg.spectral_radius))
        return original(mcfg)

    monkeypatch.setattr(exp, "fit_xi_modulator", recording)
    overrides = {
        "parts": ("xi",),
        "xi_windows": (3,),
        "xi_units": (30, 20),
        "xi_neurons": 4,
        "xi_samples": 40,
        "modulator_chunks": 1,
        "window": 3,
        "n_units": 20,
        "spectral_radius": 0.8,
    }
    res = read_result(run_experiment("reservoir-wm", overrides, out=tmp_path / "r.h5", seed=0))
    assert fitted == [(3, 20, 0.0), (3, 30, 0.8), (3, 20, 0.8)]
    assert res.summary["xi_effective_cosine"] == res.arrays["xi_effective_cosine"][0, 1]
    assert res.summary["xi_nrmse"] == res.arrays["xi_nrmse"][0, 1]


def test_reservoir_wm_loop_summary_names_the_reservoir_accuracy_and_the_gap(tmp_path):
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    overrides = {
        "parts": ("loop",),
        "sources": ("exact", "reservoir"),
        "hidden": (6,),
        "window": 3,
        "n_units": 20,
        "modulator_chunks": 1,
        "epochs": 2,
        "n_train": 30,
        "n_test": 20,
        "lr": 1e-2,
    }
    res = read_result(run_experiment("reservoir-wm", overrides, out=tmp_path / "r.h5", seed=0))
    s, m = res.summary, res.metrics
    assert (
        s["test_accuracy"]
        == m["test_accuracy_reservoir"][~np.isnan(m["test_accuracy_reservoir"])][-1]
    )
    assert "test_accuracy_reservoir" not in s
    assert {"test_accuracy_exact", "train_accuracy_exact", "train_accuracy_reservoir"} <= set(s)
    assert s["test_accuracy_exact"] != s["test_accuracy"]  # the two sources trained apart
    assert s["accuracy_gap_points"] == pytest.approx(
        100.0 * (s["test_accuracy_exact"] - s["test_accuracy"])
    )
