"""Details of the ib-spiking and rule-demo experiments and of the run harness that the other
tests leave open: which split ib-spiking evaluates on, what it stores for every hidden layer,
the backend and values its summary names, its config checks; how rule-demo splits its inputs
into halves; and the harness's checks of experiment registrations, the build cache setting
and --device cuda."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from plastix.sims.config import ConfigError
from plastix.sims.experiments import experiment, run_experiment
from plastix.sims.results import read_result

_SPIKING = {"n_train": 6, "n_test": 4, "hidden": [5, 3], "presentation_ms": 20.0, "dt_ms": 1.0}


def _spiking(tmp_path, device="runtime", **overrides):
    out = run_experiment(
        "ib-spiking", {**_SPIKING, **overrides}, device=device, out=tmp_path / "r.h5", seed=0
    )
    return read_result(out)


# ------------------------------------------------------------------------------ ib-spiking


@pytest.mark.parametrize("xi_source", ["exact", "none"])
def test_spiking_test_accuracy_is_measured_on_the_test_split(
    xi_source, tmp_path, fake_circuit_trainers
):
    """Every epoch's test pass gets all n_test test samples with their labels, in the
    dataset's order (here more test than training samples): never training samples, whose
    accuracy would pass for test accuracy, nor a part of the test split."""
    from plastix.sims.datasets import load_dataset

    _spiking(tmp_path, epochs=2, xi_source=xi_source, n_train=4, n_test=6)
    ds = load_dataset("digits", n_train=4, n_test=6, seed=0).flat()
    [trainer] = fake_circuit_trainers
    assert len(trainer.test_inputs) == 2
    for x, y in trainer.test_inputs:
        np.testing.assert_array_equal(x, np.asarray(ds.x_test, float))
        np.testing.assert_array_equal(y, np.asarray(ds.y_test))


def test_spiking_mean_rate_is_the_mean_over_every_hidden_neuron(tmp_path, fake_circuit_trainers):
    """With hidden layers of 5 neurons at 10 Hz and 3 at 40 Hz the logged mean_rate_hz is the
    mean over all 8 hidden neurons, (5 * 10 + 3 * 40) / 8 = 21.25 Hz: not the first layer's
    rate and not the mean of the two layer means (25 Hz)."""
    r = _spiking(tmp_path, epochs=1)
    np.testing.assert_allclose(r.metrics["mean_rate_hz"], [21.25])


def test_spiking_saves_the_weights_of_every_hidden_layer(tmp_path, fake_circuit_trainers):
    """w<k>_init and w<k>_epoch<e> are stored for every hidden layer k, each (n_post, n_pre):
    the second of two layers included."""
    r = _spiking(tmp_path, epochs=1, w_init_spread=0.0)
    assert r.weights["w0_init"].shape == r.weights["w0_epoch0"].shape == (5, 64)
    assert r.weights["w1_init"].shape == r.weights["w1_epoch0"].shape == (3, 5)
    trained = fake_circuit_trainers[0].weights
    np.testing.assert_array_equal(r.weights["w1_epoch0"], trained.hidden[1])


def test_spiking_summary_names_the_backend_that_ran_not_auto(tmp_path, fake_circuit_trainers):
    """--device auto: the trainer gets, and the summary names, the backend ``auto`` resolves
    to here (runtime, cpp_standalone or cuda_standalone)."""
    from plastix.circuits.backend import resolve_backend

    r = _spiking(tmp_path, device="auto", epochs=1)
    expected = resolve_backend("auto")
    assert expected != "auto"
    assert fake_circuit_trainers[0].options["backend"] == expected
    assert r.summary["backend"] == expected and r.attrs["device"] == "auto"


def test_spiking_summary_gives_the_initial_weight_mean_and_readout_rate_used(
    tmp_path, fake_circuit_trainers
):
    """Values the user sets are the ones the summary reports (w_init_mean, not its spread)."""
    r = _spiking(tmp_path, epochs=1, w_init_mean=0.3, w_init_spread=0.1, readout_eta=1.5)
    assert (r.summary["w_init_mean"], r.summary["readout_eta"]) == (0.3, 1.5)


def test_spiking_config_checks_presentation_and_settle_against_the_time_step():
    """Every timing key must be a whole number of dt_ms steps (presentation and settle as well
    as gap); multiples that floating point division leaves a hair off an integer
    (0.3 / 0.1 = 2.9999999999999996) are whole numbers and accepted, as SampleTiming does."""
    from plastix.sims.exp_ib_spiking import IBSpikingConfig, circuit_spec

    with pytest.raises(ValueError, match="presentation_ms: 20.25 is not a multiple of dt_ms 0.5"):
        IBSpikingConfig(presentation_ms=20.25, settle_ms=2.0).validate()
    with pytest.raises(ValueError, match="settle_ms: 2.25 is not a multiple of dt_ms 0.5"):
        IBSpikingConfig(presentation_ms=20.0, settle_ms=2.25).validate()
    cfg = IBSpikingConfig(dt_ms=0.1, presentation_ms=20.0, settle_ms=0.3, gap_ms=0.7)
    cfg.validate()
    assert circuit_spec(cfg, 64, 10).timing.settle_steps == 3


@pytest.mark.parametrize("sigmas", [(0.5, 0.1), (0.5, 0.1, 1.0, 2.0)])
def test_spiking_config_needs_exactly_three_kernel_widths(sigmas):
    from plastix.sims.exp_ib_spiking import IBSpikingConfig

    with pytest.raises(ValueError, match=r"give three widths \(sigma_x, sigma_y, sigma_z\)"):
        IBSpikingConfig(sigmas=sigmas).validate()


def test_kernel_memory_modulator_is_a_delay_line_computing_the_row_centred_xi(monkeypatch):
    """The module's contract for xi_source='reservoir', modulator='kernel-memory': a
    delay-line working memory (linear: identity units, no leak) and kernel units computing the
    row-centred xi, without a label-gated readout (that is the factorised modulator's)."""
    from plastix.sims import exp_ib_spiking
    from plastix.sims.exp_ib_spiking import IBSpikingConfig, fit_modulator

    monkeypatch.setattr(exp_ib_spiking, "fit_kernel_memory_modulator", lambda config: config)
    config = fit_modulator(IBSpikingConfig(window=3), 5, 3, 64, seed=0)
    assert (config.architecture, config.memory_topology) == ("kernel-memory", "delay-line")
    assert (config.xi_method, config.gated) == ("row-centred", False)
    assert (config.activation, config.leak) == ("identity", 1.0)


# ------------------------------------------------------------------------------ rule-demo


def test_rule_demo_with_two_inputs_has_one_input_in_each_half(tmp_path):
    """n_pre=2 (the smallest allowed): input 0 is the high half and input 1 the low half. At
    rate_low 0 input 1 never spikes, so STDP leaves its weight at w_init in every record and
    at the end, while input 0's weight moves; the summary's means are those of each half of
    the final weights."""
    cfg = {"rule": "stdp", "n_pre": 2, "n_post": 1, "duration": 0.3, "record_dt": 0.05}
    cfg.update(rate_high=100.0, rate_low=0.0, w_scale_mV=40.0, w_init=0.4)
    r = read_result(run_experiment("rule-demo", cfg, out=tmp_path / "r.h5"))
    final = r.weights["final"]
    assert final.shape == (1, 2)
    np.testing.assert_array_equal(r.metrics["w_low"], np.full(6, 0.4))
    assert r.metrics["w_high"][-1] != 0.4
    assert (r.summary["w_high_final"], r.summary["w_low_final"]) == (final[0, 0], final[0, 1])
    assert final[0, 1] == 0.4 and final[0, 0] != 0.4


def test_rule_demo_summary_means_are_over_each_half_of_the_final_weights(tmp_path):
    """w_high_final / w_low_final are the means of the final weights over the first
    n_pre // 2 inputs and over the rest (with 5 inputs: 0-1 and 2-4)."""
    cfg = {"rule": "hebbian", "n_pre": 5, "n_post": 3, "duration": 0.3, "record_dt": 0.05}
    cfg.update(rate_high=80.0, rate_low=40.0, w_scale_mV=8.0)
    r = read_result(run_experiment("rule-demo", cfg, out=tmp_path / "r.h5", seed=2))
    final = r.weights["final"]
    assert len(np.unique(final[:, 2:])) > 1  # the low half's weights differ: the mean tells
    assert r.summary["w_high_final"] == pytest.approx(final[:, :2].mean(), rel=1e-12)
    assert r.summary["w_low_final"] == pytest.approx(final[:, 2:].mean(), rel=1e-12)


def test_rule_demo_input_drives_the_neurons_through_the_weights(tmp_path):
    """Each input spike adds w * w_scale_mV to the membrane: at w = 0 strong input leaves the
    neurons silent (and a Hebbian rule without post spikes leaves w at 0); at w = 1 the same
    input (20 mV per spike) makes them fire."""
    cfg = {"rule": "hebbian", "n_pre": 4, "n_post": 2, "duration": 0.2, "record_dt": 0.05}
    cfg.update(rate_high=200.0, rate_low=200.0, w_scale_mV=20.0)
    silent = read_result(run_experiment("rule-demo", {**cfg, "w_init": 0.0}, out=tmp_path / "a.h5"))
    assert silent.summary["post_rate_hz"] == 0.0
    np.testing.assert_array_equal(silent.weights["final"], np.zeros((2, 4)))
    driven = read_result(run_experiment("rule-demo", {**cfg, "w_init": 1.0}, out=tmp_path / "b.h5"))
    assert driven.summary["post_rate_hz"] > 0.0


# ------------------------------------------------------------------------------ run harness


@dataclass
class _DetailsConfig:
    steps: int = 1


_PROBE_CALLS: list = []  # what test-details-probe does with its context, in order


@experiment("test-details-probe", _DetailsConfig, description="(test only)")
def _details_probe(cfg: _DetailsConfig, ctx) -> None:
    ctx.summary(steps=cfg.steps)
    while _PROBE_CALLS:
        _PROBE_CALLS.pop(0)(ctx)


def test_an_experiment_config_that_is_not_a_dataclass_is_refused():
    class Plain:
        steps = 1

    with pytest.raises(TypeError, match="'test-not-a-dataclass': config_cls must be a dataclass"):
        experiment("test-not-a-dataclass", Plain)
    from plastix.sims.experiments import load_experiments

    assert "test-not-a-dataclass" not in load_experiments()


def test_a_summary_value_set_again_is_replaced(tmp_path):
    """summary() sets values: a key given again (e.g. a best-so-far accuracy) keeps the
    latest value, not the first."""
    _PROBE_CALLS[:] = [lambda ctx: ctx.summary(best=0.5), lambda ctx: ctx.summary(best=0.75)]
    r = read_result(run_experiment("test-details-probe", out=tmp_path / "r.h5"))
    assert r.summary["best"] == 0.75


def test_build_cache_setting_expands_home_and_a_blank_xdg_cache_home_means_unset(
    tmp_path, monkeypatch
):
    """``$PLASTIX_BUILD_CACHE=~/builds`` is the folder in the home folder, not a folder named
    '~'; an empty ``$XDG_CACHE_HOME`` counts as unset (XDG spec): ~/.cache is used, not the
    current folder."""
    from plastix.sims.experiments import build_cache_folder

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PLASTIX_BUILD_CACHE", "~/builds")
    assert build_cache_folder() == tmp_path / "builds"
    monkeypatch.delenv("PLASTIX_BUILD_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert build_cache_folder() == tmp_path / ".cache" / "plastix" / "brian-builds"


def test_build_cache_setting_off_is_accepted_and_an_unwritable_folder_is_refused(monkeypatch):
    """``off`` (any case) means no cache and is no error; a folder that cannot be written (one
    under /proc, whatever the permission bits say) is refused naming the fix."""
    from plastix.sims.experiments import build_cache_folder, check_build_cache_setting

    for value in ("off", "OFF"):
        monkeypatch.setenv("PLASTIX_BUILD_CACHE", value)
        check_build_cache_setting()
        assert build_cache_folder() is None
    if not Path("/proc").is_dir():
        pytest.skip("needs /proc")
    monkeypatch.setenv("PLASTIX_BUILD_CACHE", "/proc/plastix-builds")
    with pytest.raises(ConfigError, match="'/proc/plastix-builds' cannot be written; point it"):
        check_build_cache_setting()


def test_device_cuda_is_refused_where_torch_sees_no_gpu(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="--device cuda: torch sees no CUDA GPU here"):
        run_experiment("test-details-probe", device="cuda", out=tmp_path / "r.h5")
    assert list(tmp_path.iterdir()) == []
