"""Details of the compare experiment (``plastix.sims.exp_compare``) no other test pins: the
settings each arm takes from the shared config, how the arms shuffle, time and count their
epochs, what pruning feeds back, the transfer checks, the printed table and the HDF5 rows."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from compare_parts import TINY_COMPARE, CompareContext, compare_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- config -------------------------------------------------------------------------------


def test_compare_config_refuses_repeated_arms_and_sigmas_that_are_not_three():
    """An arm named twice would overwrite its own rows; the IB kernels need exactly
    (sigma_x, sigma_y, sigma_z)."""
    from plastix.sims.exp_compare import CompareConfig

    with pytest.raises(ValueError, match="repeats an arm"):
        CompareConfig(arms=("backprop", "rate-ib", "backprop")).validate()
    CompareConfig(arms=("backprop", "rate-ib")).validate()
    for sigmas in ((0.5, 0.1), (0.5, 0.1, 1.0, 2.0)):
        with pytest.raises(ValueError, match="give \\(sigma_x, sigma_y, sigma_z\\)"):
            CompareConfig(sigmas=sigmas).validate()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [({"window": 1}, "window"), ({"pruning_rate": 0.96}, "pruning_rate")],
)
def test_compare_config_bounds_are_checked_before_any_work(overrides, match, tmp_path):
    """The IB working memory needs B >= 2; pruning keeps at least 5 % of each epoch."""
    from plastix.sims.config import ConfigError
    from plastix.sims.experiments import prepare_run

    with pytest.raises(ConfigError, match=match):
        prepare_run("compare", overrides={**TINY_COMPARE, **overrides}, out=tmp_path / "r.h5")
    prepare_run(
        "compare",
        overrides={**TINY_COMPARE, "window": 2, "pruning_rate": 0.95},
        out=tmp_path / "ok.h5",
    )


def _fake_dataset(monkeypatch, low: float, high: float):
    """``load_dataset`` replaced by 8 + 4 samples of 5 features spanning [low, high]."""
    import plastix.sims.datasets as datasets

    def load(name, root=None, *, n_train=None, n_test=None, seed=0):
        x = np.linspace(low, high, 60, dtype=np.float32).reshape(12, 5)
        y = np.arange(12) % 2
        return datasets.Dataset(name, x[:8], y[:8], x[8:], y[8:], ("a", "b"))

    monkeypatch.setattr(datasets, "load_dataset", load)


@pytest.mark.parametrize(("low", "high"), [(-0.5, 1.0), (0.0, 1.5)])
def test_compare_refuses_features_outside_the_unit_interval(monkeypatch, tmp_path, low, high):
    """Features are firing probabilities for the spiking arms: below 0 or above 1 is refused
    (each side on its own)."""
    from plastix.sims.experiments import run_experiment

    _fake_dataset(monkeypatch, low, high)
    overrides = {**TINY_COMPARE, "n_train": 8, "n_test": 4, "arms": ("backprop",)}
    with pytest.raises(ValueError, match="features leave \\[0, 1\\]"):
        run_experiment("compare", overrides, device="numpy", out=tmp_path / "r.h5")


def test_compare_accepts_features_that_reach_both_ends_of_the_unit_interval(monkeypatch, tmp_path):
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    _fake_dataset(monkeypatch, 0.0, 1.0)
    overrides = {**TINY_COMPARE, "n_train": 8, "n_test": 4, "arms": ("backprop",)}
    out = run_experiment("compare", overrides, device="numpy", out=tmp_path / "r.h5")
    assert read_result(out).summary["backprop_samples_seen"] == 8


# --- shared pieces ------------------------------------------------------------------------


def test_rate_network_init_depends_on_the_seed_only_and_leaves_torch_global_rng_alone():
    """rate-ib and backprop start from the same weights (one seed), whatever torch's global
    generator did before, and building the network draws nothing from it."""
    from plastix.sims.exp_compare import CompareConfig, _rate_mlp

    cfg = CompareConfig(hidden=(4,))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = _rate_mlp(cfg, 5, 3, seed=4)
    torch.testing.assert_close(torch.rand(3), expected)
    b = _rate_mlp(cfg, 5, 3, seed=4)  # the global generator has moved on meanwhile
    c = _rate_mlp(cfg, 5, 3, seed=5)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    assert not torch.equal(a.readout.weight, c.readout.weight)


def test_epoch_order_reshuffles_every_epoch_without_pruning():
    """Without a sampler each epoch is a fresh permutation of all samples."""
    from plastix.sims.exp_compare import _epoch_order

    gen = torch.Generator().manual_seed(0)
    first, second = _epoch_order(None, 20, gen), _epoch_order(None, 20, gen)
    for order in (first, second):
        assert sorted(order.tolist()) == list(range(20))
        assert not torch.equal(order, torch.arange(20))
    assert not torch.equal(first, second)


# --- the spiking arm (Brian2 trainer replaced by a stand-in) --------------------------------


class _FakeCircuitTrainer:
    """Stands in for ExactXiTrainer: records what it is given; every training pass adds 1 to
    the hidden weights and takes 1.5 s; test accuracy is 0.1 per pass trained."""

    made: list = []

    def __init__(self, spec, weights, xi, **kwargs):
        self.weights, self.xi, self.kwargs = weights.copy(), xi, kwargs
        self.passes: list = []
        _FakeCircuitTrainer.made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def train_epoch(self, x, y):
        self.passes.append((x.copy(), y.copy()))
        for w in self.weights.hidden:
            w += 1.0
        return SimpleNamespace(wall_s=1.5)

    def evaluate(self, x, y):
        return SimpleNamespace(accuracy=0.1 * len(self.passes))


def test_spiking_arm_shuffles_aligned_samples_each_epoch_and_returns_the_trained_weights(
    monkeypatch, tmp_path
):
    """Each epoch shows every training sample once, labels kept with their samples, in a new
    order drawn from the run's generator; the IB settings, the run seed and the learned (not
    the initial) weights are the arm's; wall time adds up over epochs, before-training first."""
    import plastix.sims.exp_compare as exp
    from plastix.circuits.ib_network import init_weights

    _FakeCircuitTrainer.made = []
    monkeypatch.setattr(exp, "ExactXiTrainer", _FakeCircuitTrainer)
    cfg = exp.CompareConfig(hidden=(4,), epochs=2, window=3, gamma=1.5, sigmas=(0.4, 0.2, 0.9))
    spec = exp.circuit_spec(cfg, 5, 3)
    w0 = init_weights(spec, np.random.default_rng(0))
    x = np.random.default_rng(1).random((12, 5))
    y = np.arange(12) % 3
    x[:, 0] = y / 10  # the label is readable from the sample
    ctx = CompareContext(seed=3, workdir=tmp_path)
    log = exp._Logger(ctx)
    weights = exp._run_spiking_ib(cfg, ctx, log, spec, w0, (x, y, x[:6], y[:6]), "numpy")

    [trainer] = _FakeCircuitTrainer.made
    assert (trainer.xi.window, trainer.xi.gamma, trainer.xi.sigmas) == (3, 1.5, (0.4, 0.2, 0.9))
    assert trainer.kwargs["seed"] == 3
    orders = []
    for xs, ys in trainer.passes:
        np.testing.assert_array_equal(ys, np.round(xs[:, 0] * 10).astype(int))
        order = [int(np.flatnonzero((x == row).all(1))[0]) for row in xs]
        assert sorted(order) == list(range(12)) and order != list(range(12))
        orders.append(order)
    assert orders[0] != orders[1]
    np.testing.assert_allclose(weights.hidden[0], w0.hidden[0] + 2.0)
    assert log.arms["spiking-ib"].points == [
        (0, 0, 0.0, 0.0),
        (1, 12, 1.5, pytest.approx(0.1)),
        (2, 24, 3.0, pytest.approx(0.2)),
    ]


# --- rate-ib and backprop -----------------------------------------------------------------


def _record_adamw_lrs(monkeypatch) -> list:
    from plastix.bridges.ib_training import AdamWSettings

    lrs = []
    original = AdamWSettings.build

    def build(self, params):
        lrs.append(self.lr)
        return original(self, params)

    monkeypatch.setattr(AdamWSettings, "build", build)
    return lrs


def test_rate_ib_and_backprop_use_their_own_learning_rates_and_optimizer(monkeypatch):
    """``rate_ib_lr`` for the IB arm, ``backprop_lr`` for backprop; ``optimizer="nte"``
    replaces AdamW in the rate-ib trainer, which otherwise keeps AdamW."""
    import plastix.sims.exp_compare as exp
    from plastix.bridges.tangent_ensemble import NeuralTangentEnsemble

    trainers = []

    class Recording(exp.IBTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            trainers.append(self)

    monkeypatch.setattr(exp, "IBTrainer", Recording)
    lrs = _record_adamw_lrs(monkeypatch)
    cfg = exp.CompareConfig(hidden=(4,), epochs=1, window=4, rate_ib_lr=3e-3, backprop_lr=7e-3)
    data = compare_data(8)
    exp._run_rate_ib(
        cfg, CompareContext(), exp._Logger(CompareContext()), data, torch.Generator().manual_seed(0)
    )
    exp._run_backprop(
        cfg, CompareContext(), exp._Logger(CompareContext()), data, torch.Generator().manual_seed(0)
    )
    assert lrs == [3e-3, 7e-3]
    assert isinstance(trainers[0].optimizer, torch.optim.AdamW)
    nte = exp.CompareConfig(hidden=(4,), epochs=1, window=4, optimizer="nte")
    exp._run_rate_ib(
        nte, CompareContext(), exp._Logger(CompareContext()), data, torch.Generator().manual_seed(0)
    )
    assert isinstance(trainers[1].optimizer, NeuralTangentEnsemble)


def test_torch_arm_wall_time_adds_up_over_epochs(monkeypatch):
    """``<arm>_wall_s`` is the training time so far, summed over epochs (here every rate-ib
    epoch takes 1.5 s and every perf_counter tick of backprop 1 s)."""
    import plastix.sims.exp_compare as exp

    original = exp.IBTrainer.train_epoch

    def train_epoch(self, *args, **kwargs):
        stats = original(self, *args, **kwargs)
        stats.seconds = 1.5
        return stats

    monkeypatch.setattr(exp.IBTrainer, "train_epoch", train_epoch)
    ticks = iter(range(1000))
    monkeypatch.setattr(exp, "time", SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    cfg = exp.CompareConfig(hidden=(4,), epochs=3, window=4)
    log = exp._Logger(CompareContext())
    exp._run_rate_ib(cfg, CompareContext(), log, compare_data(8), torch.Generator().manual_seed(0))
    exp._run_backprop(cfg, CompareContext(), log, compare_data(8), torch.Generator().manual_seed(0))
    assert [p[2] for p in log.arms["rate-ib"].points] == [0.0, 1.5, 3.0, 4.5]
    assert [p[2] for p in log.arms["backprop"].points] == [0.0, 1.0, 2.0, 3.0]


def test_rate_ib_reports_the_per_sample_losses_of_each_pruned_epoch(monkeypatch):
    """After each epoch the sampler hears the cross-entropy of every sample it kept, from the
    network as trained so far (the last report matches the returned network)."""
    import torch.nn.functional as F

    import plastix.sims.exp_compare as exp
    from plastix.bridges.pruning import PruningSampler

    reports = []
    original = PruningSampler.update

    def update(self, indices, losses):
        reports.append((indices.clone(), losses.clone()))
        return original(self, indices, losses)

    monkeypatch.setattr(PruningSampler, "update", update)
    cfg = exp.CompareConfig(hidden=(4,), epochs=2, window=4, pruning="ucb", pruning_rate=0.5)
    x, y, *_ = data = compare_data(8)
    net = exp._run_rate_ib(
        cfg, CompareContext(), exp._Logger(CompareContext()), data, torch.Generator()
    )
    assert len(reports) == 2
    for indices, losses in reports:
        assert len(set(indices.tolist())) == len(indices) == len(losses) >= 4
    indices, losses = reports[-1]
    with torch.no_grad():
        expected = F.cross_entropy(net(x[indices]), y[indices], reduction="none")
    torch.testing.assert_close(losses, expected)


def test_backprop_multiplies_each_sample_loss_by_the_sampler_weight(monkeypatch):
    """The weights ``update`` returns (InfoBatch rescaling) scale each sample's loss: with
    ones for the first batch and zeros after it, only the first step has a gradient, so no
    gradient survives from one batch into the next either."""
    import plastix.sims.exp_compare as exp
    from plastix.bridges.pruning import PruningSampler

    calls = []

    def update(self, indices, losses):
        calls.append(len(indices))
        return torch.ones(len(indices)) if len(calls) == 1 else torch.zeros(len(indices))

    grads = []
    original_step = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        grads.append([p.grad.clone() for g in self.param_groups for p in g["params"]])
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(PruningSampler, "update", update)
    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    cfg = exp.CompareConfig(hidden=(4,), epochs=1, backprop_batch=2, pruning="infobatch")
    exp._run_backprop(
        cfg, CompareContext(), exp._Logger(CompareContext()), compare_data(8), torch.Generator()
    )
    assert len(grads) == len(calls) >= 3
    assert any(g.abs().sum() > 0 for g in grads[0])
    for later in grads[1:]:
        assert all(g.abs().sum() == 0 for g in later)


# --- snntorch-bptt ------------------------------------------------------------------------


def _short_presentations(**changes):
    """A compare config with 4 hidden units and 10 ms presentations (2 ms settle) at 1 ms."""
    from plastix.sims.exp_compare import CompareConfig

    settings = dict(hidden=(4,), presentation_ms=10.0, settle_ms=2.0, dt_ms=1.0)
    return CompareConfig(**(settings | changes))


def _bptt_setup(cfg, n_in: int = 5, n_classes: int = 3):
    from plastix.circuits.ib_network import init_weights
    from plastix.sims.exp_compare import bptt_config, circuit_spec

    spec = circuit_spec(cfg, n_in, n_classes)
    w0 = init_weights(spec, np.random.default_rng(0), mean=cfg.w_init_mean)
    bptt = bptt_config(cfg, spec)
    return spec, w0, bptt


def test_bptt_arm_trains_weights_and_logit_bias_but_no_hidden_biases(monkeypatch):
    """The circuit has no biases inside its dynamics, so BPTT leaves the Linear biases at 0
    and learns the logit offset (outside the dynamics) and the weights, with Adam at
    ``bptt_lr``."""
    import plastix.sims.exp_compare as exp

    made = []

    class Adam(torch.optim.Adam):
        def __init__(self, params, **kwargs):
            super().__init__(params, **kwargs)
            made.append(self)

    monkeypatch.setattr(torch.optim, "Adam", Adam)
    cfg = _short_presentations(
        epochs=1,
        bptt_batch=4,
        bptt_lr=0.05,
        backprop_lr=1e-4,
        input_rate_hz=500.0,
    )
    spec, w0, bptt = _bptt_setup(cfg)
    net, offset = exp._run_bptt(
        cfg,
        CompareContext(),
        exp._Logger(CompareContext()),
        spec,
        w0,
        compare_data(8),
        torch.Generator().manual_seed(0),
        bptt,
    )
    [adam] = made
    assert adam.param_groups[0]["lr"] == 0.05
    for linear in net.linears:
        assert not linear.bias.requires_grad
        torch.testing.assert_close(linear.bias, torch.zeros_like(linear.bias))
    assert not torch.allclose(offset.detach(), torch.as_tensor(w0.bias, dtype=torch.float32))


def test_bptt_arm_and_brian2_transfer_run_a_circuit_with_a_refractory_period():
    """snntorch has no refractory period: with ``t_ref_ms > 0`` the conversion drops it (as the
    config's help says) instead of refusing the circuit."""
    import plastix.sims.exp_compare as exp

    cfg = _short_presentations(
        epochs=1,
        t_ref_ms=2.0,
        bptt_batch=8,
    )
    spec, w0, bptt = _bptt_setup(cfg)
    data = compare_data(8)
    log = exp._Logger(CompareContext())
    exp._run_bptt(
        cfg, CompareContext(), log, spec, w0, data, torch.Generator().manual_seed(0), bptt
    )
    assert [p[:2] for p in log.arms["snntorch-bptt"].points] == [(0, 0), (1, 8)]
    assert 0.0 <= exp._brian2_in_snntorch(cfg, spec, w0, data, bptt) <= 1.0


def test_bptt_arm_trains_on_the_pruned_subsets_and_counts_them(monkeypatch):
    """With pruning, each BPTT epoch trains on the sampler's kept samples only (every batch's
    losses reported back), ``samples_seen`` counts those, and the wall time is the sum of the
    epochs' training seconds (here 2 s each)."""
    import plastix.sims.exp_compare as exp
    from plastix.bridges.pruning import PruningSampler

    reported = []
    original_update = PruningSampler.update

    def update(self, indices, losses):
        reported.append((self.stats().passes_done, indices.tolist()))
        return original_update(self, indices, losses)

    original_train = exp.train_bptt

    def train_bptt(*args, **kwargs):
        stats = original_train(*args, **kwargs)
        return {**stats, "seconds": 2.0}

    monkeypatch.setattr(PruningSampler, "update", update)
    monkeypatch.setattr(exp, "train_bptt", train_bptt)
    cfg = _short_presentations(
        epochs=2,
        bptt_batch=2,
        pruning="uniform",
        pruning_rate=0.5,
    )
    spec, w0, bptt = _bptt_setup(cfg)
    log = exp._Logger(CompareContext())
    exp._run_bptt(
        cfg,
        CompareContext(),
        log,
        spec,
        w0,
        compare_data(8),
        torch.Generator().manual_seed(0),
        bptt,
    )
    indices = [i for _, batch in reported for i in batch]
    assert len(indices) == 8  # 4 of 8 kept in each of 2 epochs
    assert len(set(indices[:4])) == 4 and len(set(indices[4:])) == 4
    assert all(len(batch) <= 2 for _, batch in reported)
    assert [p[:3] for p in log.arms["snntorch-bptt"].points] == [
        (0, 0, 0.0),
        (1, 4, 2.0),
        (2, 8, 4.0),
    ]


# --- transfer between simulators ------------------------------------------------------------


def _circuit_with_silent_readout(cfg, bias):
    """The compare circuit with a zero readout matrix: its class scores are the bias alone."""
    from plastix.circuits.ib_network import CircuitWeights

    spec, w0, bptt = _bptt_setup(cfg)
    weights = CircuitWeights(w0.hidden, np.zeros_like(w0.readout), np.asarray(bias, float))
    return spec, weights, bptt


def _skewed_labels(n_in: int = 5):
    x_train, y_train, x_test, _ = compare_data(6, n_test=6, n_in=n_in)
    return x_train, y_train, x_test, torch.tensor([2, 2, 2, 2, 0, 1])


def test_brian2_weights_in_snntorch_keep_the_readout_bias():
    """The Brian2 readout bias becomes the snntorch logit offset: a bias favouring class 2
    over a silent readout predicts 2 for every test sample (4 of 6 are 2)."""
    from plastix.sims.exp_compare import _brian2_in_snntorch

    cfg = _short_presentations()
    spec, weights, bptt = _circuit_with_silent_readout(cfg, [0.0, 0.0, 5.0])
    assert _brian2_in_snntorch(cfg, spec, weights, _skewed_labels(), bptt) == pytest.approx(4 / 6)


def test_same_raster_agreement_returns_brian2_accuracy_then_agreement_with_the_offset():
    """The Brian2 run adds the snntorch logit offset to its readout: with a silent readout
    both simulators pick the class the offset favours, so they agree on every sample and the
    Brian2 accuracy is the share of that class (accuracy first, then agreement)."""
    from plastix.bridges.snntorch_bridge import to_snntorch
    from plastix.circuits.feedforward import from_ib_circuit
    from plastix.sims.exp_compare import _same_raster_agreement

    cfg = _short_presentations()
    spec, weights, bptt = _circuit_with_silent_readout(cfg, [0.0, 0.0, 0.0])
    ff, _ = from_ib_circuit(spec, weights)
    net = to_snntorch(ff, spec.timing.dt)
    offset = torch.nn.Parameter(torch.tensor([0.0, 0.0, 5.0]))
    accuracy, agreement = _same_raster_agreement(net, offset, _skewed_labels(), bptt, seed=0)
    assert accuracy == pytest.approx(4 / 6)
    assert agreement == 1.0


# --- what is printed and stored ---------------------------------------------------------------


def test_table_reports_each_arm_at_its_last_evaluation_and_the_transfer_rows():
    """One row per arm (final accuracy, wall seconds, samples, samples per second; NaN
    throughput for an arm that took no time), then one row per transfer figure."""
    from plastix.sims.exp_compare import _Logger, _table

    log = _Logger(CompareContext())
    log.point("backprop", 0, 0, 0.0, 0.25)
    log.point("backprop", 1, 30, 2.0, 0.75)
    log.point("rate-ib", 0, 0, 0.0, 0.5)
    rows = _table(log, {"spiking_ib_in_snntorch_accuracy": 0.125}).splitlines()[2:]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert cells[0][0] == "backprop"
    assert [float(c) for c in cells[0][1:]] == [0.75, 2.0, 30.0, 15.0]
    assert cells[1][:4] == ["rate-ib", "0.500", "0.0", "0"] and math.isnan(float(cells[1][4]))
    assert cells[2][:2] == ["spiking_ib_in_snntorch_accuracy", "0.125"]
    assert len(cells) == 3


def test_compare_metrics_rows_and_bptt_settings_follow_the_config(monkeypatch, tmp_path, capsys):
    """Metrics: one ``step`` row per arm and evaluation, ``<arm>_epoch`` / ``_samples_seen`` /
    ``_wall_s`` growing with the epochs and ending at the summary's figures. BPTT runs the circuit's
    presentation in steps of dt (readout from the settle step), Bernoulli inputs of
    rate * dt per step, in batches of ``bptt_batch``. The table is printed."""
    import plastix.sims.exp_compare as exp
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    seen = []
    original = exp._run_bptt

    def run_bptt(cfg, ctx, log, spec, w0, data, gen, bptt):
        seen.append(bptt)
        return original(cfg, ctx, log, spec, w0, data, gen, bptt)

    monkeypatch.setattr(exp, "_run_bptt", run_bptt)
    monkeypatch.setattr(exp, "_snntorch_in_brian2", lambda *args: 0.75)
    monkeypatch.setattr(exp, "_same_raster_agreement", lambda *args: (0.5, 1.0))
    overrides = {
        **TINY_COMPARE,
        "epochs": 2,
        "arms": ("snntorch-bptt", "backprop"),
        "input_rate_hz": 200.0,
        "bptt_batch": 10,
        "backprop_batch": 6,
    }
    out = run_experiment("compare", overrides, device="numpy", out=tmp_path / "c.h5", seed=0)
    [bptt] = seen
    assert (bptt.steps, bptt.settle, bptt.batch) == (10, 2, 10)
    assert bptt.p_max == pytest.approx(0.2)
    res = read_result(out)
    np.testing.assert_array_equal(res.metrics["step"], np.arange(6))  # 3 rows for each arm
    evaluated = [
        ~np.isnan(res.metrics[f"{a}_test_accuracy"]) for a in ("snntorch_bptt", "backprop")
    ]
    np.testing.assert_array_equal(np.sum(evaluated, axis=0), np.ones(6))
    for arm in ("snntorch_bptt", "backprop"):
        kept = ~np.isnan(res.metrics[f"{arm}_epoch"])
        np.testing.assert_array_equal(res.metrics[f"{arm}_epoch"][kept], [0, 1, 2])
        np.testing.assert_array_equal(res.metrics[f"{arm}_samples_seen"][kept], [0, 24, 48])
        wall = res.metrics[f"{arm}_wall_s"][kept]
        assert wall[0] == 0.0 and np.all(np.diff(wall) > 0)
        assert wall[-1] == pytest.approx(res.summary[f"{arm}_train_wall_s"])
    printed = capsys.readouterr().out
    assert "| snntorch-bptt | " in printed and "| backprop | " in printed
    assert "| snntorch_bptt_in_brian2_accuracy | 0.750 |" in printed
