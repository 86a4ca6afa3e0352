"""Details of the IB circuit trainers: the working memory and when samples enter it, ξ of a
layer, the per-sample updates of the exact-ξ mode, warm-up counts, seeds of successive runs,
rate means carried between passes, spike rasters of compiled epochs, pass results and the
names of cached circuit builds.

Simulations run on Brian2's runtime device with numpy code generation and silent or tiny
inputs, so each takes a second or two.
"""

from __future__ import annotations

import numpy as np
import pytest
from brian2 import Hz, ms, second

from plastix.circuits.ib_network import (
    CompiledEpochTrainer,
    ExactXiTrainer,
    IBCircuitSpec,
    PassResult,
    SampleRecord,
    WorkingMemory,
    XiSettings,
    _circuit_cache_key,
    _pass_result,
    _warmup_samples,
    init_weights,
    layer_xi,
)
from plastix.circuits.layers import SampleTiming
from plastix.plasticity.hsic import modulatory_signal
from plastix.plasticity.ib_rule import IBThreeFactor, apply_eligibility_update


def _spec(**kw) -> IBCircuitSpec:
    """A small circuit with 20 ms slots (16 ms learning windows, 1 ms steps)."""
    defaults = dict(
        hidden=(6,),
        timing=SampleTiming(presentation=20 * ms, settle=4 * ms, dt=1 * ms),
        rule=IBThreeFactor(eta=300 * Hz),
        input_rate=300 * Hz,
        rate_mean_tau=0.3 * second,
    )
    defaults.update(kw)
    return IBCircuitSpec(**defaults)


def _weights(spec: IBCircuitSpec, seed: int = 0):
    return init_weights(spec, np.random.default_rng(seed), mean=0.7, spread=0.7)


def _softmax(b: np.ndarray) -> np.ndarray:
    e = np.exp(b - b.max())
    return e / e.sum()


def _silent_bias_path(b0, labels, spec: IBCircuitSpec) -> np.ndarray:
    """Readout bias after learned samples with a silent hidden layer (logits = bias): each
    adds ``readout_eta * window * (onehot(y) - softmax(b))``."""
    eta, window = float(spec.readout_eta), float(spec.timing.window)
    b = np.asarray(b0, dtype=float).copy()
    for label in labels:
        b = b + eta * window * (np.eye(len(b))[label] - _softmax(b))
    return b


def test_working_memory_keeps_the_last_window_samples_oldest_first():
    memory = WorkingMemory(3)
    for k in range(5):
        memory.push(np.array([float(k)]), np.array([1.0, 0.0]), [np.array([10.0 * k])])
        assert memory.full == (k >= 2)
    assert [float(item[0][0]) for item in memory.items] == [2.0, 3.0, 4.0]
    assert [float(item[2][0][0]) for item in memory.items] == [20.0, 30.0, 40.0]


def test_xi_settings_refuse_a_one_sample_window_and_an_unknown_site():
    with pytest.raises(ValueError, match="window: B = 1"):
        XiSettings(window=1)
    with pytest.raises(ValueError, match="site: 'hidden' is not one of"):
        XiSettings(site="hidden")
    assert XiSettings(window=2).window == 2


def test_layer_xi_rate_site_is_the_modulatory_signal_of_the_rates():
    rng = np.random.default_rng(1)
    x, z = rng.random((5, 4)), rng.random((5, 6))
    y = np.eye(3)[[0, 1, 2, 0, 1]]
    for method in ("exact", "diagonal"):
        settings = XiSettings(
            gamma=3.0, sigmas=(0.4, 0.2, 0.8), window=5, method=method, site="rate"
        )
        expected = np.asarray(modulatory_signal(x, y, z, 3.0, (0.4, 0.2, 0.8), method))
        np.testing.assert_allclose(layer_xi(x, y, z, settings), expected, rtol=1e-12)
    assert not np.allclose(
        modulatory_signal(x, y, z, 3.0, (0.4, 0.2, 0.8), "diagonal"),
        modulatory_signal(x, y, z, 3.0, (0.4, 0.2, 0.8), "exact"),
    )


@pytest.mark.parametrize("method", ["row-centred", "diagonal"])
def test_layer_xi_norm_site_uses_the_chosen_method(method):
    """The 'norm' site pulls the chosen method's signal at LayerNorm(z) back through the
    LayerNorm (g - mean g - n mean(g n)) / std of the last sample."""
    rng = np.random.default_rng(2)
    x, z = rng.random((6, 4)), rng.random((6, 7))
    y = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    settings = XiSettings(gamma=2.0, sigmas=(0.5, 0.1, 1.0), window=6, method=method)
    std = np.sqrt(z.var(axis=1, keepdims=True) + 1e-5)
    n = (z - z.mean(axis=1, keepdims=True)) / std
    g = np.asarray(modulatory_signal(x, y, n, 2.0, (0.5, 0.1, 1.0), method), dtype=float)
    expected = (g - g.mean() - n[-1] * np.mean(g * n[-1])) / std[-1, 0]
    np.testing.assert_allclose(layer_xi(x, y, z, settings), expected, rtol=1e-10)
    exact = XiSettings(gamma=2.0, sigmas=(0.5, 0.1, 1.0), window=6)
    assert not np.allclose(layer_xi(x, y, z, exact), expected)


def test_pass_result_accuracy_and_speed_edge_cases():
    result = PassResult(np.array([1, 2, 0, 3]), np.array([1, 0, 0, 3]), [], wall_s=2.0)
    assert result.accuracy == 0.75
    assert result.samples_per_s == 2.0
    empty = PassResult(np.zeros(0, int), np.zeros(0, int), [], wall_s=0.0)
    assert empty.accuracy == 0.0
    assert np.isnan(empty.samples_per_s)


def test_pass_result_predicts_the_largest_logit_and_averages_window_rates():
    """Mean rates are the window spike counts averaged over the samples, per second of the
    learning window (16 ms here), one array per hidden layer."""
    spec = _spec(hidden=(2, 1), n_classes=3)
    records = [
        SampleRecord([np.array([1.0, 3.0]), np.array([0.0])], np.array([0.1, 0.5, 0.2]), None),
        SampleRecord([np.array([3.0, 5.0]), np.array([2.0])], np.array([0.9, 0.5, 0.2]), None),
    ]
    result = _pass_result(spec, records, np.array([1.0, 2.0]), 4.0, {})
    assert result.predictions.tolist() == [1, 0]
    assert result.labels.tolist() == [1, 2] and result.labels.dtype.kind == "i"
    np.testing.assert_allclose(result.mean_rates[0], [2.0 / 0.016, 4.0 / 0.016])
    np.testing.assert_allclose(result.mean_rates[1], [1.0 / 0.016])
    assert result.accuracy == 0.5 and result.wall_s == 4.0


def test_warmup_is_three_rate_mean_times_rounded_up_to_whole_samples():
    # 3 x 0.25 s / 20 ms = 37.5 -> 38; 3 x 0.2 s / 20 ms = 30 (whole already)
    assert _warmup_samples(_spec(rate_mean_tau=0.25 * second)) == 38
    assert _warmup_samples(_spec(rate_mean_tau=1 * second)) == 150
    # whole numbers of samples that float division puts just above: 15.000000000000002
    assert _warmup_samples(_spec(rate_mean_tau=0.1 * second)) == 15
    spec = _spec(rate_mean_tau=0.25 * second)
    w0 = _weights(spec)
    assert ExactXiTrainer(spec, w0, XiSettings()).warmup == 38
    assert ExactXiTrainer(spec, w0, XiSettings(), warmup=0).warmup == 0
    assert CompiledEpochTrainer(spec, w0, 4, 0).warmup == 38
    assert CompiledEpochTrainer(spec, w0, 4, 0, warmup=3).warmup == 3


def test_circuit_cache_key_names_the_structure_and_ignores_values():
    spec = _spec()
    key = _circuit_cache_key(spec, 1, None)
    assert key.startswith("ib-circuit-") and len(key) == len("ib-circuit-") + 16
    same_structure = _spec(
        timing=SampleTiming(presentation=30 * ms, settle=5 * ms, dt=1 * ms),
        input_rate=200 * Hz,
        rule=IBThreeFactor(eta=100 * Hz),
    )
    assert _circuit_cache_key(same_structure, 1, None) == key
    others = [
        _circuit_cache_key(spec, 2, None),
        _circuit_cache_key(_spec(hidden=(7,)), 1, None),
        _circuit_cache_key(_spec(hidden=(6, 6)), 1, None),
        _circuit_cache_key(_spec(n_input=32), 1, None),
        _circuit_cache_key(_spec(n_classes=4), 1, None),
        _circuit_cache_key(spec.static(), 1, None),
        _circuit_cache_key(_spec(rule=IBThreeFactor(eta=300 * Hz, update="continuous")), 1, None),
    ]
    assert key not in others and len(set(others)) == len(others)


def test_circuit_cache_key_tells_modulator_configs_apart():
    from types import SimpleNamespace

    spec = _spec()
    a, b = SimpleNamespace(config=("units", 20)), SimpleNamespace(config=("units", 30))
    assert _circuit_cache_key(spec, 1, [a]) == _circuit_cache_key(spec, 1, [a])
    assert _circuit_cache_key(spec, 1, [a]) != _circuit_cache_key(spec, 1, [b])
    assert _circuit_cache_key(spec, 1, [a]) != _circuit_cache_key(spec, 1, None)


def _record(counts, bias_acc) -> SampleRecord:
    return SampleRecord([np.asarray(c, dtype=float) for c in counts], np.zeros(3), bias_acc)


def test_learn_moves_the_readout_by_its_accumulator_and_hidden_layers_only_with_a_full_window():
    """``_learn`` adds ``readout_eta`` times the readout accumulator and the bias accumulator;
    hidden weights stay until the memory holds B samples, then each layer moves by
    ``apply_eligibility_update`` with ξ of its own window rates."""
    spec = _spec(hidden=(4, 3), n_classes=3, n_input=5, readout_eta=2 * Hz)
    w0 = _weights(spec)
    xi_settings = XiSettings(window=3)
    trainer = ExactXiTrainer(spec, w0, xi_settings, backend="numpy")
    rng = np.random.default_rng(4)
    xs = rng.random((3, 5))
    labels = [0, 2, 1]
    counts = [[rng.integers(0, 5, 4), rng.integers(0, 5, 3)] for _ in range(3)]
    elig = [rng.normal(size=(4, 5)), rng.normal(size=(3, 4))]
    acc = rng.normal(size=(3, 3))
    bias_acc = np.array([0.1, -0.3, 0.2])
    scale = float(spec.timing.window) * float(spec.rule.rate_norm)

    for k in range(2):
        record = _record(counts[k], bias_acc)
        trainer._remember(xs[k], labels[k], record)
        trainer._learn(record, elig, acc)
    for got, start in zip(trainer.weights.hidden, w0.hidden, strict=True):
        np.testing.assert_array_equal(got, start)
    np.testing.assert_allclose(trainer.weights.readout, w0.readout + 2 * 2.0 * acc, rtol=1e-12)
    np.testing.assert_allclose(trainer.weights.bias, w0.bias + 2 * 2.0 * bias_acc, rtol=1e-12)

    record = _record(counts[2], bias_acc)
    trainer._remember(xs[2], labels[2], record)
    trainer._learn(record, elig, acc)
    ys = np.eye(3)[labels]
    for k in range(2):
        zs = np.stack([np.asarray(c[k], dtype=float) for c in counts]) / scale
        xi = layer_xi(xs, ys, zs, xi_settings)
        expected = apply_eligibility_update(w0.hidden[k], elig[k], xi, spec.rule)
        np.testing.assert_allclose(trainer.weights.hidden[k], expected, rtol=1e-12)
        assert not np.array_equal(expected, w0.hidden[k])
    np.testing.assert_allclose(trainer.weights.readout, w0.readout + 3 * 2.0 * acc, rtol=1e-12)
    for start, original in zip(w0.hidden, _weights(spec).hidden, strict=True):
        np.testing.assert_array_equal(start, original)  # the caller's weights are untouched


def test_exact_xi_learns_each_sample_with_itself_last_in_the_window():
    """With a 2-sample window and one warm-up sample, the update of sample k sees the memory
    ``[x[k-1], x[k]]``: the sample enters the memory before its own update."""
    spec = _spec()
    w0 = _weights(spec)
    x = np.random.default_rng(5).random((3, spec.n_input))
    y = np.array([0, 1, 2])
    seen = []
    with ExactXiTrainer(
        spec, w0, XiSettings(window=2), backend="numpy", seed=0, warmup=1
    ) as trainer:
        learn = trainer._learn

        def spy(record, elig, acc):
            seen.append([item[0].copy() for item in trainer.memory.items])
            learn(record, elig, acc)

        trainer._learn = spy
        trainer.train_epoch(x, y)
    assert len(seen) == 2
    for k, window in zip((1, 2), seen, strict=True):
        np.testing.assert_array_equal(np.stack(window), x[k - 1 : k + 1])


def test_evaluation_changes_no_weight_even_with_a_full_memory():
    spec = _spec()
    w0 = _weights(spec)
    x = np.random.default_rng(6).random((3, spec.n_input))
    y = np.array([0, 1, 2])
    with ExactXiTrainer(
        spec, w0, XiSettings(window=2), backend="numpy", seed=0, warmup=2
    ) as trainer:
        trainer.train_epoch(x[:2], y[:2])  # warm-up only: fills the memory, learns nothing
        assert trainer.memory.full
        trainer.evaluate(x, y)
        after = trainer.weights
    for got, start in zip(after.hidden, w0.hidden, strict=True):
        np.testing.assert_array_equal(got, start)
    np.testing.assert_array_equal(after.readout, w0.readout)
    np.testing.assert_array_equal(after.bias, w0.bias)


def test_exact_xi_skip_warmup_learns_from_the_first_sample():
    """Silent input (logits = bias): after ``skip_warmup`` the very first pass follows the
    readout delta rule from sample 0 although ``warmup`` would hold all of it back."""
    spec = _spec()
    w0 = _weights(spec)
    w0.bias = np.linspace(0.3, -0.6, spec.n_classes)
    labels = np.array([2, 7, 2])
    silent = np.zeros((3, spec.n_input))
    with ExactXiTrainer(spec, w0, XiSettings(window=8), backend="numpy", warmup=5) as trainer:
        trainer.skip_warmup()
        trainer.train_epoch(silent, labels)
        bias = trainer.weights.bias
    expected = _silent_bias_path(w0.bias, labels, spec)
    np.testing.assert_allclose(bias, expected, rtol=1e-9, atol=1e-12)


def test_successive_runs_draw_new_spikes_and_the_seed_fixes_them():
    """Each run of a trainer gets its own seed derived from ``seed``: a second evaluation of the
    same sample draws other input spikes, a new trainer with the same seed repeats the first
    run exactly and one with another seed does not."""
    spec = _spec()
    w0 = _weights(spec)
    x = np.full((1, spec.n_input), 0.5)
    y = np.array([3])

    def input_spikes(seed: int, runs: int):
        with ExactXiTrainer(
            spec, w0, XiSettings(), backend="numpy", seed=seed, raster_samples=1
        ) as trainer:
            return [trainer.evaluate(x, y).spikes["input"] for _ in range(runs)]

    first, second = input_spikes(3, 2)
    [again] = input_spikes(3, 1)
    [other] = input_spikes(4, 1)
    assert len(first[1]) > 20
    np.testing.assert_array_equal(again[0], first[0])
    np.testing.assert_array_equal(again[1], first[1])
    for different in (second, other):
        assert len(different[1]) != len(first[1]) or not np.array_equal(different[1], first[1])


def test_exact_xi_passes_carry_the_rate_means_over():
    """A silent layer's rate means only decay (``exp(-t / rate_mean_tau)``): a pass starts
    from the trainer's rate means and hands the decayed values back."""
    spec = _spec()
    start = np.linspace(0.1, 0.6, 6)
    with ExactXiTrainer(spec, _weights(spec), XiSettings(), backend="numpy") as trainer:
        trainer.rate_means = [start.copy()]
        trainer.evaluate(np.zeros((3, spec.n_input)), np.array([0, 1, 2]))
        means = trainer.rate_means
    decay = np.exp(-3 * float(spec.timing.slot) / float(spec.rate_mean_tau))
    np.testing.assert_allclose(means[0], start * decay, rtol=1e-9)


def test_compiled_epoch_carries_the_rate_means_over():
    spec = _spec()
    start = np.linspace(0.1, 0.6, 6)
    with CompiledEpochTrainer(spec, _weights(spec), 2, 1, backend="numpy") as trainer:
        trainer.rate_means = [start.copy()]
        silent = np.zeros((2, spec.n_input))
        trainer.run_epoch(silent, np.array([0, 1]), silent[:1], np.array([2]))
        means = trainer.rate_means
    decay = np.exp(-3 * float(spec.timing.slot) / float(spec.rate_mean_tau))
    np.testing.assert_allclose(means[0], start * decay, rtol=1e-9)


def test_compiled_epoch_warms_up_only_in_the_first_epoch():
    """Silent input (logits = bias): with ``warmup=2`` and two training samples the first
    epoch leaves the bias alone; the second learns from both samples (the delta rule)."""
    spec = _spec()
    w0 = _weights(spec)
    w0.bias = np.linspace(-0.4, 0.5, spec.n_classes)
    labels = np.array([4, 1])
    silent = np.zeros((2, spec.n_input))
    with CompiledEpochTrainer(spec, w0, 2, 0, backend="numpy", warmup=2) as trainer:
        trainer.run_epoch(silent, labels)
        np.testing.assert_array_equal(trainer.weights.bias, w0.bias)
        trainer.run_epoch(silent, labels)
        bias = trainer.weights.bias
    expected = _silent_bias_path(w0.bias, labels, spec)
    np.testing.assert_allclose(bias, expected, rtol=1e-9, atol=1e-12)


def test_compiled_epoch_skip_warmup_learns_from_the_first_sample():
    spec = _spec()
    w0 = _weights(spec)
    w0.bias = np.linspace(-0.4, 0.5, spec.n_classes)
    labels = np.array([4, 1])
    with CompiledEpochTrainer(spec, w0, 2, 0, backend="numpy", warmup=2) as trainer:
        trainer.skip_warmup()
        trainer.run_epoch(np.zeros((2, spec.n_input)), labels)
        bias = trainer.weights.bias
    expected = _silent_bias_path(w0.bias, labels, spec)
    np.testing.assert_allclose(bias, expected, rtol=1e-9, atol=1e-12)


def test_compiled_epoch_raster_covers_the_first_test_samples_from_their_onset():
    """Silent training samples, then driven test samples: the test raster holds input spikes
    of the first ``raster_samples`` test samples only, timed from the first test onset."""
    spec = _spec()
    slot = float(spec.timing.slot)
    silent, driven = np.zeros((2, spec.n_input)), np.ones((3, spec.n_input))
    with CompiledEpochTrainer(
        spec, _weights(spec), 2, 3, backend="numpy", warmup=0, raster_samples=2
    ) as trainer:
        train, test = trainer.run_epoch(silent, np.array([0, 1]), driven, np.array([2, 3, 4]))
    i, t = test.spikes["input"]
    assert train.spikes == {}
    assert len(t) == len(i) > 50
    assert t.min() >= 0 and t.max() < 2 * slot
    assert np.any(t < slot) and np.any(t >= slot)  # both samples are there


def test_compiled_epoch_without_test_samples_rasters_the_training_samples():
    spec = _spec()
    slot = float(spec.timing.slot)
    x = np.r_[np.ones((1, spec.n_input)), np.zeros((2, spec.n_input))]
    with CompiledEpochTrainer(
        spec, _weights(spec), 3, 0, backend="numpy", warmup=0, raster_samples=1
    ) as trainer:
        train, test = trainer.run_epoch(x, np.array([0, 1, 2]))
    assert test is None
    i, t = train.spikes["input"]
    assert len(t) == len(i) > 20
    assert t.min() >= 0 and t.max() < slot


def test_compiled_epoch_refuses_sample_counts_it_was_not_built_for():
    spec = _spec()
    trainer = CompiledEpochTrainer(spec, _weights(spec), 2, 1, backend="numpy")
    x = np.zeros((3, spec.n_input))
    with pytest.raises(ValueError, match="3 \\+ 1 samples; this trainer was built for 2 \\+ 1"):
        trainer.run_epoch(x, np.zeros(3, int), x[:1], np.zeros(1, int))
    with pytest.raises(ValueError, match="2 \\+ 0 samples; this trainer was built for 2 \\+ 1"):
        trainer.run_epoch(x[:2], np.zeros(2, int))
