"""The IB experiments end to end: what the rate experiments (ib-rate, baselines, ib-bsweep),
ib-spiking and rule-demo take from their configs and write to their result files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from brian2 import Hz, ms

from plastix.sims.config import ConfigError
from plastix.sims.experiments import RunContext, run_experiment
from plastix.sims.results import read_result

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_XOR = {"dataset": "xor", "n_train": 48, "n_test": 40, "hidden": [6, 4], "window": 4}


def _run(name, overrides, tmp_path, file="r.h5", seed=0, **kwargs):
    out = run_experiment(name, overrides=overrides, out=tmp_path / file, seed=seed, **kwargs)
    return read_result(out)


def _whole_and_resumed(name, cfg, tmp_path, monkeypatch):
    """The results of an uninterrupted run and of one stopped right after its first
    checkpoint and resumed by the same call."""
    whole = _run(name, cfg, tmp_path, "whole.h5")
    checkpoint = RunContext.checkpoint

    def checkpoint_then_stop(self, state):
        checkpoint(self, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(RunContext, "checkpoint", checkpoint_then_stop)
    with pytest.raises(KeyboardInterrupt):
        _run(name, cfg, tmp_path, "resumed.h5")
    monkeypatch.setattr(RunContext, "checkpoint", checkpoint)
    return whole, _run(name, cfg, tmp_path, "resumed.h5")


def _spy_trainers(monkeypatch):
    """Record every trainer the rate experiments build (and the network it trains)."""
    from plastix.sims import exp_ib

    built = []
    make_trainer = exp_ib.make_trainer

    def recording(method, net, **kwargs):
        trainer = make_trainer(method, net, **kwargs)
        built.append(trainer)
        return trainer

    monkeypatch.setattr(exp_ib, "make_trainer", recording)
    return built


# ------------------------------------------------------------------------------ rate experiments


def test_rate_metrics_and_summary_are_those_of_the_final_network(tmp_path):
    """The last epoch's logged accuracy, loss and HSIC probes are the stored final network's
    on the run's training and test sets (the probe: the first 256 test samples), and the
    summary's accuracies are the last epoch's."""
    from plastix.bridges.ib_training import IBRule, evaluate, layer_hsic
    from plastix.bridges.rate_networks import RateMLP
    from plastix.sims.datasets import load_dataset

    cfg = {**_XOR, "epochs": 2, "lr": 0.003, "gamma": 10.0, "sigmas": [0.3, 0.25, 2.0]}
    r = _run("ib-rate", cfg, tmp_path)
    net = RateMLP(2, (6, 4), 2)
    net.load_state_dict({k: torch.as_tensor(v) for k, v in r.weights.items()})
    ds = load_dataset("xor", n_train=48, n_test=40, seed=0)
    x, y = torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train)
    xt, yt = torch.as_tensor(ds.x_test), torch.as_tensor(ds.y_test)
    train_acc, train_loss = evaluate(net, x, y)
    test_acc, test_loss = evaluate(net, xt, yt)
    assert train_acc != test_acc and train_loss != pytest.approx(test_loss, rel=1e-3)
    assert r.metrics["train_accuracy"][-1] == pytest.approx(train_acc)
    assert r.metrics["train_loss"][-1] == pytest.approx(train_loss, rel=1e-6)
    assert r.metrics["test_accuracy"][-1] == pytest.approx(test_acc)
    assert r.metrics["test_loss"][-1] == pytest.approx(test_loss, rel=1e-6)
    assert r.summary["train_accuracy"] == pytest.approx(train_acc)
    assert r.summary["test_accuracy"] == pytest.approx(test_acc)
    rule = IBRule(gamma=10.0, sigmas=(0.3, 0.25, 2.0), window=4)
    for layer, (hx, hy) in enumerate(layer_hsic(net, xt, yt, rule)):
        assert r.metrics[f"hsic_x_layer{layer}"][-1] == pytest.approx(hx, rel=1e-5)
        assert r.metrics[f"hsic_y_layer{layer}"][-1] == pytest.approx(hy, rel=1e-5)


def test_rate_summary_accuracy_is_the_last_epochs_not_the_first(tmp_path):
    """With accuracies that change from epoch to epoch, the summary reports the last one."""
    r = _run("backprop", {**_XOR, "epochs": 3, "lr": 0.05}, tmp_path)
    test_acc, train_acc = r.metrics["test_accuracy"], r.metrics["train_accuracy"]
    assert test_acc[0] != test_acc[-1] and train_acc[0] != train_acc[-1]
    assert r.summary["test_accuracy"] == test_acc[-1]
    assert r.summary["train_accuracy"] == train_acc[-1]


@pytest.mark.parametrize(("name", "steps_per_epoch"), [("ib-rate", 48), ("backprop", 12)])
def test_rate_step_times_and_throughput_agree_with_the_step_count(name, steps_per_epoch, tmp_path):
    """ib-rate takes one step per training sample, backprop one per minibatch of ``window``:
    ``step_ms`` is the epoch's time per step in milliseconds, and ``samples_per_s`` counts
    samples, not steps."""
    r = _run(name, {**_XOR, "epochs": 2}, tmp_path)
    assert r.summary["steps"] == 2 * steps_per_epoch
    np.testing.assert_allclose(
        r.metrics["step_ms"], 1e3 * r.metrics["epoch_s"] / steps_per_epoch, rtol=1e-9
    )
    per_step_samples = r.summary["samples_per_s"] * r.summary["step_ms"] / 1e3
    assert per_step_samples == pytest.approx(48 / steps_per_epoch)


@pytest.mark.parametrize(
    ("name", "probed"),
    [("hsic-layerwise", True), ("backprop", False), ("phsic", False), ("readout-only", False)],
)
def test_hsic_probes_are_logged_for_the_hsic_methods_only(name, probed, tmp_path):
    r = _run(name, {**_XOR, "epochs": 1}, tmp_path)
    keys = {"hsic_x_layer0", "hsic_y_layer0", "hsic_x_layer1", "hsic_y_layer1"}
    assert (keys <= set(r.metrics)) is probed
    assert probed or not keys & set(r.metrics)


def test_rate_config_options_reach_the_trainer(tmp_path, monkeypatch):
    """lr, weight_decay and the rule's keys are those of the config: gamma, sigmas, xi_method,
    xi_site for the IB rule; gamma and sigma_z for pHSIC."""
    built = _spy_trainers(monkeypatch)
    ib = {"lr": 3e-3, "weight_decay": 0.02, "gamma": 5.0, "sigmas": [0.4, 0.2, 1.5]}
    _run(
        "ib-rate", {**_XOR, **ib, "epochs": 1, "xi_method": "diagonal", "xi_site": "relu"}, tmp_path
    )
    _run("phsic", {**_XOR, "epochs": 1, "lr": 2e-3, "gamma": 3.0, "sigma_z": 2.5}, tmp_path, "p.h5")
    ib_trainer, phsic_trainer = built
    group = ib_trainer.optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (3e-3, 0.02)
    rule = ib_trainer.rule
    assert (rule.gamma, tuple(rule.sigmas), rule.window) == (5.0, (0.4, 0.2, 1.5), 4)
    assert (rule.xi_method, rule.xi_site) == ("diagonal", "relu")
    group = phsic_trainer.optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (2e-3, 1e-4)
    assert (phsic_trainer.rule.gamma, phsic_trainer.rule.sigma_z) == (3.0, 2.5)


def test_leaky_mlp_takes_its_integration_from_the_config(tmp_path, monkeypatch):
    """tau_ms and dt_ms (milliseconds) and steps build the leaky units; dt equal to tau is
    allowed."""
    from plastix.bridges.rate_networks import LeakyIntegration

    built = _spy_trainers(monkeypatch)
    leaky = {"model": "leaky-mlp", "tau_ms": 4.0, "dt_ms": 4.0, "steps": 3, "epochs": 1}
    r = _run("ib-rate", {**_XOR, **leaky}, tmp_path)
    assert r.status == "complete"
    assert built[0].net.integration == LeakyIntegration(4e-3, 4e-3, 3)


def test_leaky_mlp_with_dt_above_tau_is_refused_before_running(tmp_path):
    with pytest.raises(ConfigError, match="dt_ms: 5.0 exceeds tau_ms = 4.0"):
        run_experiment(
            "ib-rate", {"model": "leaky-mlp", "tau_ms": 4.0, "dt_ms": 5.0}, out=tmp_path / "r.h5"
        )
    assert not (tmp_path / "r.h5").exists()


def test_cnn_model_trains_a_convolutional_network_on_digits(tmp_path):
    """model=cnn builds conv3x3 blocks over the (1, 8, 8) digits images, one per hidden
    entry (channels), and stores their kernels."""
    cnn = {"model": "cnn", "xi_site": "relu", "hidden": [2], "window": 4, "epochs": 1}
    r = _run("ib-rate", {**cnn, "dataset": "digits", "n_train": 12, "n_test": 6}, tmp_path)
    assert r.status == "complete"
    assert r.weights["blocks.0.conv.weight"].shape == (2, 1, 3, 3)


def test_cnn_config_accepts_both_image_datasets_and_only_the_relu_site():
    from plastix.sims.exp_ib import IBConfig

    IBConfig(model="cnn", dataset="fashion-mnist", xi_site="relu").validate()
    IBConfig(model="cnn", dataset="digits", xi_site="relu").validate()
    with pytest.raises(ValueError, match="xi_site: the cnn supports only 'relu'"):
        IBConfig(model="cnn", dataset="digits", xi_site="norm").validate()


def test_a_window_as_long_as_the_training_set_is_accepted():
    from plastix.sims.exp_ib import check_window

    check_window("window", 8, 8, "xor")
    with pytest.raises(ValueError, match="window of 9 samples is longer than the 8"):
        check_window("window", 9, 8, "xor")


def test_rate_run_is_the_seeded_training_loop_and_keeps_the_global_torch_rng(tmp_path):
    """The network starts from ``torch.manual_seed(seed)`` and the shuffles come from a
    generator seeded with ``seed``, whatever the caller's global torch RNG; that RNG is left
    as it was."""
    from plastix.bridges.ib_training import make_trainer
    from plastix.bridges.rate_networks import RateMLP
    from plastix.sims.datasets import load_dataset

    torch.manual_seed(123)
    before = torch.get_rng_state()
    r = _run("backprop", {**_XOR, "epochs": 2}, tmp_path, seed=3)
    assert torch.equal(torch.get_rng_state(), before)

    ds = load_dataset("xor", n_train=48, n_test=40, seed=3)
    torch.manual_seed(3)
    net = RateMLP(2, (6, 4), 2)
    trainer = make_trainer("backprop", net, window=4, lr=1e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(3)
    for _ in range(2):
        trainer.train_epoch(torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train), generator)
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(r.weights[name], value.numpy())


def test_rate_run_uses_the_configured_torch_threads_and_restores_them(tmp_path, monkeypatch):
    """``threads`` holds during training (None: the caller's setting) and the caller's
    setting is back afterwards."""
    from plastix.bridges.ib_training import IBTrainer

    seen = []
    train_epoch = IBTrainer.train_epoch

    def recording(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return train_epoch(self, *args, **kwargs)

    monkeypatch.setattr(IBTrainer, "train_epoch", recording)
    assert torch.get_num_threads() == 1
    _run("ib-rate", {**_XOR, "epochs": 1, "threads": 2}, tmp_path)
    assert seen == [2] and torch.get_num_threads() == 1
    _run("ib-bsweep", {**_XOR, "epochs": 1, "windows": [2], "threads": 2}, tmp_path, "b.h5")
    assert seen == [2, 2] and torch.get_num_threads() == 1
    _run("ib-rate", {**_XOR, "epochs": 1, "threads": None}, tmp_path, "n.h5")
    assert seen == [2, 2, 1] and torch.get_num_threads() == 1


def test_rate_run_resumes_after_an_interruption_to_the_same_result(tmp_path, monkeypatch):
    """Stopped after epoch 0's checkpoint, the same call goes on with epoch 1 and ends where
    an uninterrupted run ends."""
    cfg = {**_XOR, "epochs": 3, "lr": 0.01}
    whole, resumed = _whole_and_resumed("ib-rate", cfg, tmp_path, monkeypatch)
    np.testing.assert_array_equal(resumed.metrics["epoch"], [0, 1, 2])
    np.testing.assert_array_equal(resumed.metrics["test_loss"], whole.metrics["test_loss"])
    for name, value in whole.weights.items():
        np.testing.assert_array_equal(resumed.weights[name], value)
    assert resumed.summary["steps"] == whole.summary["steps"] == 3 * 48


def test_bsweep_resumes_with_the_windows_not_yet_done(tmp_path, monkeypatch):
    cfg = {**_XOR, "epochs": 1, "windows": [2, 4]}
    whole, resumed = _whole_and_resumed("ib-bsweep", cfg, tmp_path, monkeypatch)
    np.testing.assert_array_equal(resumed.metrics["window"], [2, 4])
    np.testing.assert_array_equal(resumed.arrays["windows"], [2, 4])
    np.testing.assert_array_equal(
        resumed.arrays["test_accuracy_curves"], whole.arrays["test_accuracy_curves"]
    )


def test_bsweep_rows_are_ib_rate_runs_and_the_summary_is_the_best_window(tmp_path):
    """Each window's curves are those of an ib-rate run with that window; the arrays, the
    logged rows and the summary (the window with the best final test accuracy) agree."""
    cfg = {"dataset": "digits", "n_train": 40, "n_test": 30, "hidden": [16], "lr": 0.003}
    sweep = _run("ib-bsweep", {**cfg, "epochs": 1, "windows": [2, 4, 8]}, tmp_path)
    for k, window in enumerate([2, 4, 8]):
        single = _run("ib-rate", {**cfg, "epochs": 1, "window": window}, tmp_path, f"w{window}.h5")
        np.testing.assert_array_equal(
            sweep.arrays["test_accuracy_curves"][k], single.metrics["test_accuracy"]
        )
        np.testing.assert_array_equal(
            sweep.arrays["train_accuracy_curves"][k], single.metrics["train_accuracy"]
        )
    final_test = sweep.arrays["test_accuracy_curves"][:, -1]
    final_train = sweep.arrays["train_accuracy_curves"][:, -1]
    np.testing.assert_array_equal(sweep.metrics["final_test_accuracy"], final_test)
    np.testing.assert_array_equal(sweep.metrics["final_train_accuracy"], final_train)
    best = int(np.argmax(final_test))
    assert best != int(np.argmax(final_train))  # the best test window is not the best train one
    assert sweep.summary["best_window"] == [2, 4, 8][best]
    assert sweep.summary["test_accuracy"] == final_test[best]
    assert sweep.summary["train_accuracy"] == final_train[best]


# ------------------------------------------------------------------------------ ib-spiking

_SPIKING = {"n_train": 6, "n_test": 4, "hidden": [5], "presentation_ms": 20.0, "dt_ms": 1.0}


def test_circuit_spec_takes_timing_input_rate_and_learning_rate_from_the_config():
    from plastix.sims.exp_ib_spiking import IBSpikingConfig, circuit_spec

    cfg = IBSpikingConfig(
        presentation_ms=30.0, gap_ms=2.0, settle_ms=6.0, dt_ms=0.5, eta=12.0, input_rate_hz=150.0
    )
    spec = circuit_spec(cfg, 64, 10)
    assert spec.timing.presentation == 30 * ms and spec.timing.gap == 2 * ms
    assert spec.timing.settle == 6 * ms and spec.timing.dt == 0.5 * ms
    assert spec.rule.eta == 12 * Hz and spec.input_rate == 150 * Hz


def test_spiking_config_refuses_a_settle_period_filling_the_presentation_and_odd_steps():
    from plastix.sims.exp_ib_spiking import IBSpikingConfig

    with pytest.raises(ValueError, match="settle_ms: 20.0 leaves no learning window"):
        IBSpikingConfig(presentation_ms=20.0, settle_ms=20.0).validate()
    with pytest.raises(ValueError, match="gap_ms: 0.75 is not a multiple of dt_ms 0.5"):
        IBSpikingConfig(gap_ms=0.75).validate()
    IBSpikingConfig(presentation_ms=20.0, settle_ms=19.5, gap_ms=1.5).validate()


@pytest.mark.parametrize("modulator", ["factorised", "kernel-memory"])
def test_fit_modulator_takes_the_working_memory_and_objective_from_the_config(
    modulator, monkeypatch
):
    from plastix.sims import exp_ib_spiking
    from plastix.sims.exp_ib_spiking import IBSpikingConfig, fit_modulator

    monkeypatch.setattr(exp_ib_spiking, "fit_xi_modulator", lambda config: config)
    monkeypatch.setattr(exp_ib_spiking, "fit_kernel_memory_modulator", lambda config: config)
    cfg = IBSpikingConfig(
        window=3,
        gamma=4.0,
        sigmas=(0.6, 0.2, 1.1),
        modulator=modulator,
        modulator_units=7,
        modulator_chunks=2,
    )
    config = fit_modulator(cfg, 5, 3, 64, seed=9)
    assert (config.n_neurons, config.n_classes, config.seed) == (5, 3, 9)
    assert (config.window, config.gamma, tuple(config.sigmas)) == (3, 4.0, (0.6, 0.2, 1.1))
    assert config.n_chunks == 2
    if modulator == "factorised":
        assert config.n_units == 7


def test_spiking_experiment_hands_its_settings_to_the_exact_trainer(
    tmp_path, fake_circuit_trainers
):
    from plastix.circuits.ib_network import XiSettings

    cfg = {
        **_SPIKING,
        "epochs": 1,
        "window": 3,
        "gamma": 4.0,
        "sigmas": [0.6, 0.2, 1.1],
        "xi_site": "rate",
        "raster_samples": 1,
        "warmup_samples": 2,
        "w_init_mean": 0.5,
        "w_init_spread": 0.0,
    }
    r = _run("ib-spiking", cfg, tmp_path, seed=5, device="runtime")
    [trainer] = fake_circuit_trainers
    assert trainer.kind == "exact"
    assert trainer.args == (XiSettings(4.0, (0.6, 0.2, 1.1), 3, "exact", "rate"),)
    options = trainer.options
    assert (options["raster_samples"], options["warmup"], options["seed"]) == (1, 2, 5)
    assert options["backend"] == "runtime"
    assert (trainer.spec.n_input, trainer.spec.hidden, trainer.spec.n_classes) == (64, (5,), 10)
    np.testing.assert_array_equal(r.weights["w0_init"], np.full((5, 64), 0.5))


@pytest.mark.parametrize(("xi_source", "samples_per_s"), [("exact", 6 / 2), ("none", 10 / 2)])
def test_spiking_experiment_logs_the_training_pass_and_saves_each_epochs_weights(
    xi_source, samples_per_s, tmp_path, fake_circuit_trainers
):
    """Per epoch: online training accuracy, test accuracy, the training pass's samples/s and
    mean hidden rate, and the weights. The summary's samples/s counts training samples per
    training second (exact ξ) or train + test samples per second of the epoch runs."""
    r = _run("ib-spiking", {**_SPIKING, "epochs": 2, "xi_source": xi_source}, tmp_path)
    [trainer] = fake_circuit_trainers
    assert trainer.kind == ("exact" if xi_source == "exact" else "compiled")
    if xi_source == "none":
        assert trainer.args == (6, 4)
        assert trainer.options["xi_source"] == "none"
        assert trainer.options["xi_modulators"] is None
    np.testing.assert_array_equal(r.metrics["epoch"], [0, 1])
    np.testing.assert_array_equal(r.metrics["train_accuracy"], [1.0, 1.0])
    np.testing.assert_array_equal(r.metrics["test_accuracy"], [0.0, 0.0])
    np.testing.assert_array_equal(r.metrics["samples_per_s"], [3.0, 3.0])
    np.testing.assert_array_equal(r.metrics["mean_rate_hz"], [10.0, 10.0])
    assert r.summary["samples_per_s"] == pytest.approx(samples_per_s)
    assert (r.summary["train_accuracy"], r.summary["test_accuracy"]) == (1.0, 0.0)
    for epoch in (0, 1):
        np.testing.assert_array_equal(
            r.weights[f"w0_epoch{epoch}"], r.weights["w0_init"] + epoch + 1
        )
        np.testing.assert_array_equal(
            r.weights[f"readout_epoch{epoch}"], r.weights["readout_init"] + epoch + 1
        )
        np.testing.assert_array_equal(r.weights[f"bias_epoch{epoch}"], np.full(10, 2 * epoch + 2))
    np.testing.assert_array_equal(r.spikes["input"][0], [0, 3])


def test_each_spiking_epoch_trains_on_a_fresh_shuffle_of_the_training_set(
    tmp_path, fake_circuit_trainers
):
    from plastix.sims.datasets import load_dataset

    _run("ib-spiking", {**_SPIKING, "epochs": 2}, tmp_path)
    ds = load_dataset("digits", n_train=6, n_test=4, seed=0).flat()
    x, y = np.asarray(ds.x_train, float), np.asarray(ds.y_train)
    (x0, y0), (x1, y1) = fake_circuit_trainers[0].train_inputs
    for xe, ye in ((x0, y0), (x1, y1)):
        rows = [int(np.flatnonzero((x == row).all(1))[0]) for row in xe]
        assert sorted(rows) == list(range(6))  # every sample once, with its own label
        np.testing.assert_array_equal(ye, y[rows])
    assert not np.array_equal(x0, x1)


def test_spiking_reservoir_fits_one_modulator_per_hidden_layer_with_its_own_seed(
    tmp_path, monkeypatch, fake_circuit_trainers
):
    from plastix.sims import exp_ib_spiking

    calls = []

    def fake_fit(cfg, n_neurons, n_classes, n_input, seed):
        calls.append((n_neurons, n_classes, n_input, seed))
        return f"modulator{len(calls)}"

    monkeypatch.setattr(exp_ib_spiking, "fit_modulator", fake_fit)
    cfg = {**_SPIKING, "epochs": 1, "hidden": [5, 3], "xi_source": "reservoir"}
    r = _run("ib-spiking", cfg, tmp_path, seed=4)
    assert calls == [(5, 10, 64, 4), (3, 10, 64, 5)]
    [trainer] = fake_circuit_trainers
    assert trainer.kind == "compiled"
    assert trainer.options["xi_source"] == "reservoir"
    assert trainer.options["xi_modulators"] == ["modulator1", "modulator2"]
    assert r.summary["modulator_fit_s"] >= 0


def test_spiking_run_resumes_from_its_last_checkpoint(tmp_path, monkeypatch, fake_circuit_trainers):
    """Stopped after epoch 0's checkpoint, the same call restores the weights, the rate means
    and the shuffling RNG, learns from the first sample on (no second warm-up) and goes on
    with epoch 1; it ends where an uninterrupted run ends."""
    cfg = {**_SPIKING, "epochs": 3}
    whole, resumed = _whole_and_resumed("ib-spiking", cfg, tmp_path, monkeypatch)
    first, _, again = fake_circuit_trainers
    assert not first.warmup_skipped and again.warmup_skipped
    assert len(again.train_inputs) == 2
    for (xa, ya), (xb, yb) in zip(again.train_inputs, first.train_inputs[1:], strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    for a, b in zip(again.rate_means, first.rate_means, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(resumed.metrics["epoch"], [0, 1, 2])
    for name in ("w0_epoch2", "readout_epoch2", "bias_epoch2"):
        np.testing.assert_array_equal(resumed.weights[name], whole.weights[name])
    # training samples per training second: the resumed call's two epochs over their 4 s
    assert resumed.summary["samples_per_s"] == whole.summary["samples_per_s"] == 3.0


def test_spiking_run_stopped_after_its_last_epoch_reruns_that_epoch(
    tmp_path, monkeypatch, fake_circuit_trainers
):
    """No checkpoint follows the last epoch: a run stopped before its result file is written
    resumes from the epoch before and runs the last epoch again."""
    original, calls = RunContext.save_spikes, []

    def stop_once(self, *args):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        original(self, *args)

    monkeypatch.setattr(RunContext, "save_spikes", stop_once)
    cfg = {**_SPIKING, "epochs": 2}
    with pytest.raises(KeyboardInterrupt):
        _run("ib-spiking", cfg, tmp_path)
    r = _run("ib-spiking", cfg, tmp_path)
    assert r.status == "complete"
    np.testing.assert_array_equal(r.metrics["epoch"], [0, 1])
    assert [len(t.train_inputs) for t in fake_circuit_trainers] == [2, 1]


# ------------------------------------------------------------------------------ rule-demo

_DEMO = {"n_pre": 5, "n_post": 3, "duration": 0.3, "record_dt": 0.05}


def test_rule_demo_post_rate_and_spikes_and_weight_records(tmp_path):
    """``record_dt`` spaces the weight records; ``post_rate_hz`` is the saved spikes per
    neuron and second; the saved spikes are (neuron index, time in s)."""
    cfg = {**_DEMO, "rule": "hebbian", "w_scale_mV": 8.0, "rate_high": 80.0, "rate_low": 40.0}
    r = _run("rule-demo", cfg, tmp_path, seed=2)
    np.testing.assert_allclose(r.metrics["time"], np.arange(6) * 0.05, atol=1e-9)
    i, t = r.spikes["post"]
    assert len(i) > 0 and set(i.tolist()) <= {0, 1, 2}
    assert t.min() >= 0.0 and t.max() < 0.3
    assert r.summary["post_rate_hz"] == pytest.approx(len(i) / (3 * 0.3))


def test_rule_demo_neurons_are_refractory_for_2_ms_after_a_spike(tmp_path):
    """Input strong enough to fire the neurons at every input spike still leaves at least
    2 ms between two spikes of one neuron."""
    cfg = {**_DEMO, "rule": "hebbian", "w_scale_mV": 40.0, "rate_high": 1000.0}
    r = _run("rule-demo", {**cfg, "rate_low": 1000.0, "duration": 0.1}, tmp_path)
    i, t = r.spikes["post"]
    assert len(t) >= 3 * 20
    for neuron in range(3):
        assert np.diff(np.sort(t[i == neuron])).min() >= 2e-3 - 1e-9


def test_rule_demo_without_psp_jump_keeps_the_neurons_silent(tmp_path):
    """w_scale_mV 0: inputs at 1 kHz (which fire the neurons at 1 mV per unit weight) leave
    them at rest."""
    cfg = {**_DEMO, "rule": "hebbian", "w_scale_mV": 0.0, "rate_high": 1000.0}
    r = _run("rule-demo", {**cfg, "rate_low": 1000.0, "duration": 0.1}, tmp_path)
    assert r.summary["post_rate_hz"] == 0.0 and len(r.spikes["post"][0]) == 0


def test_rule_demo_first_half_of_the_inputs_fires_at_rate_high(tmp_path):
    """With rate_low 0 the second half (inputs 2..4 of 5) never spikes, so STDP leaves its
    weights at w_init; the first half (inputs 0, 1) fires and its weights move."""
    cfg = {**_DEMO, "rule": "stdp", "w_scale_mV": 10.0, "rate_high": 100.0, "rate_low": 0.0}
    r = _run("rule-demo", {**cfg, "w_init": 0.4}, tmp_path)
    final = r.weights["final"]
    np.testing.assert_array_equal(final[:, 2:], 0.4)
    assert not np.any(final[:, :2] == 0.4)
    np.testing.assert_array_equal(r.metrics["w_low"], 0.4)
    assert r.metrics["w_high"][-1] != 0.4 and r.summary["w_low_final"] == 0.4


def test_rule_demo_modulator_rate_drives_the_three_factor_rule(tmp_path):
    """Without reward spikes (modulator_rate 0) reward-modulated STDP leaves every weight at
    w_init; with them the weights move."""
    cfg = {**_DEMO, "rule": "reward-stdp", "rule_params": ("eta=50*Hz",), "w_scale_mV": 8.0}
    cfg.update(rate_high=80.0, duration=0.5)
    silent = _run("rule-demo", {**cfg, "modulator_rate": 0.0}, tmp_path, "silent.h5")
    np.testing.assert_array_equal(silent.weights["final"], 0.5)
    driven = _run("rule-demo", {**cfg, "modulator_rate": 40.0}, tmp_path, "driven.h5")
    assert not np.allclose(driven.weights["final"], 0.5)


def test_rule_demo_spikes_follow_the_run_seed(tmp_path):
    cfg = {**_DEMO, "rule": "hebbian", "w_scale_mV": 8.0, "rate_high": 80.0}
    a = _run("rule-demo", cfg, tmp_path, "a.h5", seed=1)
    b = _run("rule-demo", cfg, tmp_path, "b.h5", seed=1)
    c = _run("rule-demo", cfg, tmp_path, "c.h5", seed=2)
    np.testing.assert_array_equal(a.spikes["post"][1], b.spikes["post"][1])
    assert not np.array_equal(a.spikes["post"][1], c.spikes["post"][1])


def test_rule_demo_rule_params_tolerate_spaces_around_name_and_value():
    from plastix.sims.exp_rules import RuleDemoConfig

    rule = RuleDemoConfig(rule="stdp", rule_params=(" tau_plus = 10*ms ",)).build_rule()
    assert rule.tau_plus == 10 * ms
