"""Details of the ``pruning`` experiment (plastix.sims.exp_pruning) no other test checks: the
ResNet-18 block and pooling, the spiking MLP's logits, config ranges and refusal messages, the
optimizer and cosine schedule each run trains with, the shared initial weights, the scoring
options handed on, and the metrics, arrays and summary a run stores."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"dataset": "digits", "n_train": 40, "n_test": 30, "batch_size": 20}


def _run(tmp_path, overrides, seed=0):
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    return read_result(run_experiment("pruning", overrides, out=tmp_path / "r.h5", seed=seed))


# --- networks ---------------------------------------------------------------------------------


def _centre_tap(conv: torch.nn.Conv2d, value: float) -> None:
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = value


def test_basic_block_applies_relu_after_conv1_and_after_the_residual_sum():
    """out = relu(bn2(conv2(relu(bn1(conv1 x)))) + x). With 1x1-like centre taps conv1 = -1,
    conv2 = 0.5 and identity batch norm (eval, fresh statistics): x = 2 gives relu(0 + 2) = 2,
    x = -2 gives relu(0.5 * 2 - 2) = 0. A block without the inner ReLU gives 1 for x = 2; one
    that adds the shortcut after the last ReLU gives -1 for x = -2."""
    from plastix.sims.exp_pruning import BasicBlock

    block = BasicBlock(1, 1, 1).eval()
    assert len(block.shortcut) == 0  # identity shortcut
    _centre_tap(block.conv1, -1.0)
    _centre_tap(block.conv2, 0.5)
    x = torch.tensor([2.0, -2.0]).view(2, 1, 1, 1)
    out = block(x).flatten()
    torch.testing.assert_close(out, torch.tensor([2.0, 0.0]), atol=1e-4, rtol=0)


def test_basic_block_projects_the_shortcut_when_the_channels_change_at_stride_one():
    """A block that changes channels needs the 1x1 conv-BN shortcut even at stride 1."""
    from plastix.sims.exp_pruning import BasicBlock

    block = BasicBlock(2, 4, 1)
    assert isinstance(block.shortcut[0], torch.nn.Conv2d)
    assert block(torch.randn(3, 2, 5, 5)).shape == (3, 4, 5, 5)


def test_resnet18_halves_the_map_in_stages_two_to_four():
    """CIFAR ResNet-18: 32x32 stays 32x32 in the stem and stage 1, then stages 2-4 stride 2,
    so the last map is 512 x 4 x 4 (the parameter count alone does not see the strides)."""
    from plastix.sims.exp_pruning import ResNet18

    model = ResNet18(3, 10).eval()
    with torch.no_grad():
        out = model.layers(model.stem(torch.randn(1, 3, 32, 32)))
    assert out.shape == (1, 512, 4, 4)


def test_resnet18_classifies_the_global_average_of_the_last_map():
    """The classifier sees the spatial mean of the last feature map (global average pool)."""
    from plastix.sims.exp_pruning import ResNet18

    model = ResNet18(3, 10).eval()
    seen = []
    model.fc.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        model(x)
        last = model.layers(model.stem(x))
    torch.testing.assert_close(seen[0], last.mean(dim=(2, 3)))


def test_resnet18_factory_takes_the_channels_of_the_data():
    """A ResNet-18 asked for on one-channel images (MNIST-like) takes one input channel."""
    from plastix.sims.exp_pruning import PruningConfig, make_model_factory

    net = make_model_factory(PruningConfig(dataset="mnist", model="resnet18"), (1, 8, 8), 10)()
    assert net.stem[0].in_channels == 1
    assert net.eval()(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_spiking_mlp_logits_are_spike_counts_plus_final_membrane_over_all_steps():
    """The output layer runs ``steps`` times; logits = sum of its spikes + its last membrane."""
    pytest.importorskip("snntorch")
    from plastix.sims.exp_pruning import SpikingMLP

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = SpikingMLP(6, 3, hidden=16, steps=5)
    with torch.no_grad():
        net.fc1.weight.mul_(4.0)  # strong input drive: the output layer spikes
        net.fc2.weight.mul_(4.0)
    outputs = []
    net.lif2.register_forward_hook(lambda m, inp, out: outputs.append(out))
    with torch.no_grad():
        logits = net(torch.rand(4, 6) * 3.0)
    assert len(outputs) == 5
    spikes = torch.stack([spk for spk, _ in outputs]).sum(0)
    assert spikes.sum() > 0
    torch.testing.assert_close(logits, spikes + outputs[-1][1])


# --- configuration ------------------------------------------------------------------------


def test_default_config_sweeps_every_strategy_and_is_valid():
    """The defaults run every strategy, each reachable at every default rate."""
    from typing import get_args

    from plastix.sims.config import build_config
    from plastix.sims.exp_pruning import STRATEGIES, PruningConfig, StrategyName

    cfg = build_config(PruningConfig, {})
    assert set(cfg.strategies) == set(get_args(StrategyName)) == set(STRATEGIES)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("lr", 0.0),
        ("momentum", 1.0),
        ("epsilon", 1.5),
        ("loss_decay", 1.0),
        ("infobatch_delta", 0.0),
        ("forgetting_epochs", 1),
        ("score_models", 0),
        ("score_epochs", 0),
    ],
)
def test_config_refuses_an_option_outside_its_range(key, value):
    """Each option's range is checked by the config, before any run starts (a forgetting event
    needs two epochs; zero lr or momentum 1 cannot train; decay 1 never forgets)."""
    from plastix.sims.config import ConfigError, build_config
    from plastix.sims.exp_pruning import PruningConfig

    with pytest.raises(ConfigError, match=key):
        build_config(PruningConfig, {key: value})


def test_unreachable_rate_names_the_highest_reachable_rate():
    """EL2N with 1 model and 1 pre-training epoch costs 2 of 10 epochs: rates must stay below
    1 - 2/10 = 0.80."""
    from plastix.sims.config import ConfigError, build_config
    from plastix.sims.exp_pruning import PruningConfig

    overrides = {"strategies": ("el2n",), "epochs": 10, "rates": (0.3, 0.85)}
    with pytest.raises(ConfigError, match=r"0\.85 .*use rates below 0\.80 or more epochs"):
        build_config(PruningConfig, overrides)
    assert build_config(PruningConfig, {**overrides, "rates": (0.79,)}).rates == (0.79,)


@pytest.mark.parametrize("epochs", [2, 1])
def test_scoring_that_takes_every_epoch_asks_for_more_epochs(epochs):
    """When scoring alone costs all the epochs (2 of 2) or more (2 of 1), no rate helps: the
    message asks for more than 2 epochs instead of naming a rate."""
    from plastix.sims.config import ConfigError, build_config
    from plastix.sims.exp_pruning import PruningConfig

    overrides = {"strategies": ("el2n",), "epochs": epochs, "rates": (0.1,)}
    with pytest.raises(ConfigError, match="use more than 2 epochs") as info:
        build_config(PruningConfig, overrides)
    assert "rates below" not in str(info.value)


# --- runs -------------------------------------------------------------------------------------


def _record_training(monkeypatch):
    """Wrap the experiment's epoch trainer: record the optimizer settings, the initial
    parameters of each new model and every EpochResult."""
    import plastix.sims.exp_pruning as exp

    original, calls, models, initial = exp.train_classifier_epoch, [], [], []

    def recording(model, optimizer, loader, **kwargs):
        if not any(model is seen for seen in models):  # models kept: no id reuse
            models.append(model)
            initial.append([p.detach().clone() for p in model.parameters()])
        group = optimizer.param_groups[0]
        settings = (group["lr"], group["momentum"], group["weight_decay"])
        result = original(model, optimizer, loader, **kwargs)
        calls.append((settings, result))
        return result

    monkeypatch.setattr(exp, "train_classifier_epoch", recording)
    return calls, initial


def test_runs_train_with_the_sgd_options_on_a_cosine_schedule(tmp_path, monkeypatch):
    """SGD with the configured momentum and weight decay; the learning rate of epoch e of E is
    lr * (1 + cos(pi e / E)) / 2 (cosine decay from the peak, stepped once per epoch)."""
    calls, _ = _record_training(monkeypatch)
    overrides = {
        **TINY,
        "strategies": ("uniform",),
        "rates": (0.5,),
        "epochs": 3,
        "lr": 0.1,
        "momentum": 0.8,
        "weight_decay": 1e-3,
    }
    _run(tmp_path, overrides)
    settings = [s for s, _ in calls]
    expected = [0.1 * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)]  # 0.1, .075, .025
    assert [lr for lr, _, _ in settings] == pytest.approx(expected)
    assert all((m, wd) == (0.8, 1e-3) for _, m, wd in settings)


def test_every_run_starts_a_fresh_network_from_the_same_weights(tmp_path, monkeypatch):
    """Strategies are compared from one initialisation: every run's first epoch starts from
    the same parameters, in a new model object."""
    calls, initial = _record_training(monkeypatch)
    overrides = {
        **TINY,
        "strategies": ("full", "uniform", "ucb"),
        "rates": (0.5,),
        "epochs": 1,
    }
    _run(tmp_path, overrides)
    assert len(initial) == 3
    first, *others = initial
    for params in others:
        for a, b in zip(first, params, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_epoch_rows_log_each_epochs_training_result(tmp_path, monkeypatch):
    """Each ``step`` row carries the epoch within its run and that epoch's loss, accuracy and
    passes as the trainer returned them."""
    calls, _ = _record_training(monkeypatch)
    overrides = {**TINY, "strategies": ("uniform", "ucb"), "rates": (0.5,), "epochs": 2}
    m = _run(tmp_path, overrides).metrics
    results = [r for _, r in calls]
    assert m["epoch"].tolist() == [0, 1, 0, 1]
    assert m["epoch_run"].tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(m["train_loss"], [r.loss for r in results])
    np.testing.assert_allclose(m["train_accuracy"], [r.accuracy for r in results])
    np.testing.assert_array_equal(m["epoch_passes"], [r.passes for r in results])


def test_diverged_training_stops_the_run_and_names_the_fix(tmp_path, monkeypatch):
    """A non-finite epoch loss stops the experiment with an error that says to lower lr."""
    import plastix.sims.exp_pruning as exp

    original = exp.train_classifier_epoch

    def diverging(*args, **kwargs):
        result = original(*args, **kwargs)
        return type(result)(
            loss=float("inf"), accuracy=result.accuracy, passes=result.passes, wall_s=0.0
        )

    monkeypatch.setattr(exp, "train_classifier_epoch", diverging)
    overrides = {**TINY, "strategies": ("uniform",), "rates": (0.5,), "epochs": 2}
    with pytest.raises(FloatingPointError, match="uniform at rate 0.5.*lower lr"):
        _run(tmp_path, overrides)


def test_test_accuracy_is_measured_on_the_test_split(tmp_path, monkeypatch):
    """``test_accuracy`` is the trained model's accuracy on the n_test held-out samples."""
    import plastix.sims.exp_pruning as exp

    original, evaluated = exp.evaluate_classifier, []

    def recording(model, x, y, **kwargs):
        accuracy = original(model, x, y, **kwargs)
        evaluated.append((x.shape[0], accuracy))
        return accuracy

    monkeypatch.setattr(exp, "evaluate_classifier", recording)
    overrides = {**TINY, "strategies": ("uniform",), "rates": (0.5,), "epochs": 1}
    res = _run(tmp_path, overrides)
    assert [n for n, _ in evaluated] == [30]
    assert res.metrics["test_accuracy"].tolist() == [evaluated[0][1]]


def test_static_scoring_hands_on_the_number_of_models_and_epochs(tmp_path):
    """EL2N trains ``score_models`` models for ``score_epochs`` epochs and scores once with
    each: 2 * (2 + 1) * N passes; GraNd scores once per model: 2 * N passes."""
    overrides = {
        **TINY,
        "strategies": ("el2n", "grand"),
        "rates": (0.2,),
        "epochs": 8,
        "score_epochs": 2,
        "score_models": 2,
    }
    res = _run(tmp_path, overrides)
    assert res.metrics["scoring_passes"].tolist() == [2 * 3 * 40, 2 * 40]
    np.testing.assert_allclose(res.metrics["realized_rate"], 0.2, atol=1 / (8 * 40))


@pytest.mark.parametrize(("strategy", "scoring_batches"), [("forgetting", 4), ("el2n", 2)])
def test_augmentation_also_applies_to_the_scoring_pre_training(
    tmp_path, monkeypatch, strategy, scoring_batches
):
    """With augmentation on, the scoring model's training epochs see augmented batches as the
    pruned training does: forgetting trains 2 scoring epochs (2 batches of 20 each), EL2N one
    (its scoring forward pass is not augmented); then 3 pruned epochs of one batch each."""
    import plastix.sims.exp_pruning as exp

    original, sizes = exp.random_crop_flip, []

    def recording(x, generator, pad=4):
        sizes.append(x.shape[0])
        return original(x, generator, pad)

    monkeypatch.setattr(exp, "random_crop_flip", recording)
    overrides = {
        **TINY,
        "augment": "on",
        "strategies": (strategy,),
        "rates": (0.2,),
        "epochs": 3,
        "forgetting_epochs": 2,
        "score_epochs": 1,
    }
    res = _run(tmp_path, overrides)
    assert res.metrics["scoring_passes"].tolist() == [80]
    assert sizes[:scoring_batches] == [20] * scoring_batches
    assert len(sizes) == scoring_batches + 3
    assert sum(sizes[scoring_batches:]) == res.metrics["passes_done"][0] - 80


def test_train_time_includes_the_scoring_time(tmp_path, monkeypatch):
    """``train_wall_s`` counts scoring too (the whole cost of a static strategy): on a clock
    that only the scoring call moves on (by 1000 s), a run's train time is those 1000 s."""
    import plastix.sims.exp_pruning as exp

    clock = {"now": 0.0}
    original = exp.grand_scores

    def scoring_on_the_clock(*args, **kwargs):
        clock["now"] += 1000.0
        return original(*args, **kwargs)

    monkeypatch.setattr(exp, "time", SimpleNamespace(perf_counter=lambda: clock["now"]))
    monkeypatch.setattr(exp, "grand_scores", scoring_on_the_clock)
    overrides = {**TINY, "strategies": ("grand",), "rates": (0.3,), "epochs": 2}
    res = _run(tmp_path, overrides)
    assert res.metrics["train_wall_s"].tolist() == [1000.0]


def test_arrays_and_summary_follow_the_configured_order_and_name_every_run(tmp_path):
    """Rates are stored in config order (one grid column each, unsorted), the train-time grid
    and summary hold each run's train_wall_s (full data repeated over the rates), and the
    summary counts the runs."""
    overrides = {
        **TINY,
        "strategies": ("uniform", "full"),
        "rates": (0.6, 0.35),
        "epochs": 2,
    }
    res = _run(tmp_path, overrides)
    m, arrays, s = res.metrics, res.arrays, res.summary
    np.testing.assert_array_equal(arrays["rates"], [0.6, 0.35])
    assert arrays["strategies"].tolist() == [b"uniform", b"full"]
    # full data runs first (run 0), then uniform at each rate
    assert m["strategy_index"].tolist() == [1, 0, 0]
    assert m["rate"].tolist() == [0.0, 0.6, 0.35]
    wall = m["train_wall_s"]
    np.testing.assert_array_equal(arrays["train_wall_s"], [wall[1:], [wall[0]] * 2])
    np.testing.assert_allclose(arrays["saved_fraction"][0], [0.6, 0.35], atol=1 / 80)
    assert s["n_runs"] == 3 and s["n_train"] == 40
    assert s["train_wall_s[full]"] == wall[0]
    assert s["train_wall_s[uniform@0.6]"] == wall[1]
    assert s["train_wall_s[uniform@0.35]"] == wall[2]


def test_config_refuses_a_rate_listed_twice():
    """Each rate is one grid column and one summary key: a repeated rate would leave its
    second column empty and drop a run from the summary, so it is refused, naming the key."""
    from plastix.sims.config import ConfigError, build_config
    from plastix.sims.exp_pruning import PruningConfig

    with pytest.raises(ConfigError, match=r"rates: \(0\.5, 0\.3, 0\.5\) repeats a rate"):
        build_config(PruningConfig, {"strategies": ("uniform",), "rates": (0.5, 0.3, 0.5)})


def test_a_rate_out_of_reach_for_the_training_set_is_refused_before_any_run(tmp_path):
    """EL2N (1 model, 1 pre-training epoch) on 40 samples over 10 epochs: 80 scoring passes
    leave round(0.21 * 400) - 80 = 4 passes for 8 pruned epochs at rate 0.79, fewer than one
    sample per epoch. The config alone allows rates below 0.80, so the check needs the
    training set: it runs before any work (no file written), naming the rate that fits."""
    from plastix.sims.config import ConfigError
    from plastix.sims.experiments import prepare_run, run_experiment

    overrides = {**TINY, "strategies": ("uniform", "el2n"), "epochs": 10, "rates": (0.5, 0.79)}
    with pytest.raises(ConfigError, match=r"rates: for 'el2n' on 40 training samples.*0\.775"):
        prepare_run("pruning", overrides=overrides, out=tmp_path / "r.h5")
    with pytest.raises(ConfigError):
        run_experiment("pruning", overrides, out=tmp_path / "r.h5")
    assert list(tmp_path.iterdir()) == []
    prepare_run("pruning", overrides={**overrides, "rates": (0.5, 0.77)}, out=tmp_path / "r.h5")
