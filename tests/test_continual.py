"""Tests of the continual-learning harness, the nte-continual experiment and its plots."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from figure_parts import errorbars
from torch import nn

from plastix.bridges.continual import (
    ContinualResult,
    EWCLearner,
    LearnerConfig,
    NTELearner,
    Task,
    average_accuracy,
    evaluate,
    forgetting,
    make_learner,
    masked_logits,
    mlp,
    output_mask,
    permuted_tasks,
    run_continual,
    split_tasks,
    task1_forgetting,
)
from plastix.bridges.tangent_ensemble import NeuralTangentEnsemble


def _blobs(n_classes=4, dim=16, n_train=200, n_test=200, seed=0, spread=0.6):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, dim, generator=g) * 1.5
    n = n_train + n_test
    y = torch.arange(n) % n_classes
    x = centres[y] + spread * torch.randn(n, dim, generator=g)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def _model(dim=16, hidden=(32,), n_out=4, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return mlp(dim, hidden, n_out)


# --- tasks and masks -------------------------------------------------------------------------


def test_permuted_tasks_keep_labels_and_permute_features():
    xtr, ytr, xte, yte = _blobs()
    tasks = permuted_tasks(xtr, ytr, xte, yte, 3, seed=1)
    assert [t.name for t in tasks] == ["permuted-1", "permuted-2", "permuted-3"]
    torch.testing.assert_close(tasks[0].x_train, xtr)
    for t in tasks[1:]:
        assert not torch.equal(t.x_train, xtr)
        torch.testing.assert_close(t.x_train.sort(1).values, xtr.sort(1).values)
        assert torch.equal(t.y_train, ytr) and torch.equal(t.classes, torch.arange(4))
    again = permuted_tasks(xtr, ytr, xte, yte, 3, seed=1)
    assert torch.equal(again[2].x_test, tasks[2].x_test)
    with pytest.raises(ValueError, match="n_tasks must be a positive integer"):
        permuted_tasks(xtr, ytr, xte, yte, 0)


def test_split_tasks_partition_the_classes():
    xtr, ytr, xte, yte = _blobs(n_classes=6)
    tasks = split_tasks(xtr, ytr, xte, yte, 3, class_order=[5, 4, 3, 2, 1, 0])
    assert [t.classes.tolist() for t in tasks] == [[5, 4], [3, 2], [1, 0]]
    for t in tasks:
        assert set(t.y_train.tolist()) == set(t.classes.tolist())
        assert set(t.y_test.tolist()) == set(t.classes.tolist())
    assert sum(len(t.y_train) for t in tasks) == len(ytr)
    with pytest.raises(ValueError, match="positive divisor"):
        split_tasks(xtr, ytr, xte, yte, 4)
    with pytest.raises(ValueError, match="must be a permutation"):
        split_tasks(xtr, ytr, xte, yte, 3, class_order=[0, 0, 1, 2, 3, 4])


def test_task_refuses_mismatched_data():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="x_train has 3 rows but y_train has 2"):
        Task("t", x, torch.zeros(2, dtype=torch.long), x, torch.zeros(3), torch.arange(2))


def test_output_masks_per_scenario():
    xtr, ytr, xte, yte = _blobs(n_classes=6)
    tasks = split_tasks(xtr, ytr, xte, yte, 3)
    assert output_mask(tasks, 1, "domain", 6) is None
    assert output_mask(tasks, 1, "task", 6).tolist() == [False, False, True, True, False, False]
    assert output_mask(tasks, 1, "class", 6).tolist() == [True, True, True, True, False, False]
    with pytest.raises(ValueError, match="scenario='other' is not valid"):
        output_mask(tasks, 0, "other", 6)
    with pytest.raises(ValueError, match="only 4 outputs"):
        output_mask(tasks, 2, "task", 4)


def test_masked_head_predicts_only_active_classes():
    model = _model(n_out=6)
    x = torch.randn(50, 16)
    mask = torch.tensor([False, False, True, True, False, False])
    pred = masked_logits(model(x), mask).argmax(1)
    assert set(pred.tolist()) <= {2, 3}
    y = torch.full((50,), 2)
    # restricting the choice to a set holding the true class never lowers the accuracy
    assert evaluate(model, x, y, mask) >= evaluate(model, x, y, None)


# --- metrics ---------------------------------------------------------------------------------


def test_metrics_match_hand_computation():
    r = np.array([[0.9, 0.1, 0.1], [0.6, 0.8, 0.1], [0.5, 0.7, 0.95]])
    np.testing.assert_allclose(average_accuracy(r), [0.9, 0.7, (0.5 + 0.7 + 0.95) / 3])
    # F1 = 0.9 - 0.6; F2 = mean(max(0.9, 0.6) - 0.5, 0.8 - 0.7)
    np.testing.assert_allclose(forgetting(r), [0.0, 0.3, 0.25])
    assert task1_forgetting(r) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="must be square"):
        forgetting(np.zeros((2, 3)))


def test_forgetting_takes_the_best_of_the_earlier_rows_only():
    """F_i compares R[i, j] with the best of rows l < i, never row i itself, so a task that
    improved after later training (backward transfer) has negative forgetting.

    F_1 = max(R[0, 0]) - R[1, 0] = 0.5 - 0.9 = -0.4 (row 1's own 0.9 must not enter the max).
    """
    np.testing.assert_allclose(forgetting([[0.5, 0.0], [0.9, 0.8]]), [0.0, -0.4])


# --- learners and the loop -------------------------------------------------------------------


def _permuted_blobs(n_tasks=2, **kwargs):
    return permuted_tasks(*_blobs(**kwargs), n_tasks, seed=0)


def test_run_continual_learns_each_task_and_reports_after_each():
    tasks = _permuted_blobs(3)
    learner = make_learner(_model(), LearnerConfig(optimizer="sgd", lr=0.1))
    seen = []
    res = run_continual(
        learner,
        tasks,
        "domain",
        n_outputs=4,
        epochs=3,
        batch_size=32,
        on_task_end=lambda i, r: seen.append((i, r.accuracy_matrix[i].copy())),
    )
    assert res.accuracy_matrix.shape == (3, 3)
    assert [i for i, _ in seen] == [0, 1, 2]
    assert np.all(np.diag(res.accuracy_matrix) > 0.9)
    assert res.task1_retention.tolist() == res.accuracy_matrix[:, 0].tolist()
    assert np.all(np.isfinite(res.train_loss))


def test_ewc_forgets_less_than_sgd_from_the_same_start():
    tasks = _permuted_blobs(2, spread=1.0)
    out = {}
    for name, lam in (("sgd", 0.0), ("ewc", 30.0)):
        learner = make_learner(
            _model(hidden=(16,)), LearnerConfig(optimizer=name, lr=0.05, ewc_lambda=lam)
        )
        out[name] = run_continual(learner, tasks, "domain", n_outputs=4, epochs=5, batch_size=32)
    assert out["sgd"].task1_forgetting > 0.3  # the set-up does forget under plain SGD
    assert out["ewc"].task1_forgetting < 0.5 * out["sgd"].task1_forgetting
    assert out["ewc"].accuracy_matrix[1, 1] > 0.8  # and still learns task 2


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_away_from_it():
    tasks = _permuted_blobs(1)
    model = _model()
    learner = EWCLearner(model, torch.optim.SGD(model.parameters(), lr=0.1), ewc_lambda=10.0)
    x, y = tasks[0].x_train[:8], tasks[0].y_train[:8]
    with torch.no_grad():
        plain = float(learner.loss(x, y, None))
        learner.end_task(0, tasks[0], None)
        assert float(learner.loss(x, y, None)) == pytest.approx(plain)
        for p in model.parameters():
            p.add_(0.1)
        moved = float(nn.functional.cross_entropy(model(x), y))
        assert float(learner.loss(x, y, None)) > moved


@pytest.mark.parametrize("per_example", [False, True])
def test_nte_learner_learns_and_keeps_its_invariants(per_example):
    tasks = _permuted_blobs(2)
    model = _model()
    # no clip: in so small a net the mean |w| (≈ 0.1) is close to the default max_delta
    config = LearnerConfig(
        optimizer="nte", lr=0.05, nte_max_delta=None, nte_per_example=per_example
    )
    learner = make_learner(model, config)
    assert isinstance(learner, NTELearner)
    opt = learner.optimizer
    signs = [torch.sign(p.detach()).clone() for p in model.parameters()]
    res = run_continual(learner, tasks, "domain", n_outputs=4, epochs=4, batch_size=32)
    assert res.accuracy_matrix[0, 0] > 0.8 and res.accuracy_matrix[1, 1] > 0.8
    for p, s in zip(model.parameters(), signs, strict=True):
        assert torch.equal(torch.sign(p.detach()), s)
    total = sum(float(p.detach().abs().sum()) for p in model.parameters())
    assert total == pytest.approx(opt.l1_norm, rel=1e-5)


@pytest.mark.parametrize("scenario", ["task", "class"])
def test_split_scenarios_run(scenario):
    xtr, ytr, xte, yte = _blobs(n_classes=4)
    tasks = split_tasks(xtr, ytr, xte, yte, 2)
    learner = make_learner(_model(), LearnerConfig(optimizer="adam", lr=0.01))
    res = run_continual(learner, tasks, scenario, n_outputs=4, epochs=3, batch_size=32)
    assert res.accuracy_matrix[0, 0] > 0.9
    if scenario == "class":
        # before task 2 is trained its classes are masked out: accuracy exactly 0
        assert res.accuracy_matrix[0, 1] == 0.0
    else:
        assert res.accuracy_matrix[1, 0] > 0.5  # the task-1 head is still masked to 2 classes


class _FrozenLearner:
    """A learner that never changes its model: the accuracy matrix then shows only which
    output mask each evaluation used."""

    def __init__(self, model: nn.Module):
        self.model = model

    def begin_task(self, task_index):
        return None

    def train_batch(self, x, y, mask):
        return 0.0

    def end_task(self, task_index, task, mask):
        return None


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        # all 4 units active: always class 2
        ("domain", [[0.0, 0.5], [0.0, 0.5]]),
        # task j's own classes: {0, 1} → class 1, {2, 3} → class 2, whatever row
        ("task", [[0.5, 0.5], [0.5, 0.5]]),
        # the classes seen up to task i: row 0 → class 1, row 1 → class 2, for every task j
        ("class", [[0.5, 0.0], [0.0, 0.5]]),
    ],
)
def test_evaluation_masks_follow_the_scenario(scenario, expected):
    """R[i, j] is tested with the mask of task j in the task scenario but with the mask of the
    classes seen up to task i in the class scenario (and with none in the domain scenario).

    Zero weights and bias [0, 1, 5, 0] predict the highest active logit: class 2 when units
    2, 3 are active, else class 1. Task 1 holds classes {0, 1}, task 2 {2, 3}, each with test
    labels alternating between its two classes, so predicting one of them scores 0.5.
    """
    model = nn.Linear(2, 4)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([0.0, 1.0, 5.0, 0.0]))
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    tasks = [
        Task(f"t{k}", x, y, x, y, torch.tensor(classes))
        for k, (classes, y) in enumerate(
            [([0, 1], torch.tensor([0, 1, 0, 1])), ([2, 3], torch.tensor([2, 3, 2, 3]))]
        )
    ]
    res = run_continual(_FrozenLearner(model), tasks, scenario, n_outputs=4, batch_size=2)
    np.testing.assert_array_equal(res.accuracy_matrix, expected)


def test_make_learner_passes_the_expansion_to_the_ensemble():
    """nte_expansion="init" reaches the optimizer: it expands about the weights it was given,
    keeping them as each parameter's seed w0 and adding the small initial Δw to the weights."""
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    config = LearnerConfig(optimizer="nte", nte_expansion="init", nte_max_delta=None)
    learner = make_learner(model, config)
    opt = learner.optimizer
    assert opt.expansion == "init"
    for p, w0 in zip(model.parameters(), before, strict=True):
        state = opt.state[p]
        assert "seed" in state
        torch.testing.assert_close(state["seed"], w0, rtol=0, atol=0)
        torch.testing.assert_close(p.detach(), w0 + opt.displacement(p))
        assert 0 < float(opt.displacement(p).abs().max()) < 0.01  # init_noise 1e-3 noise


def test_resume_at_a_task_boundary_reproduces_the_uninterrupted_run():
    tasks = _permuted_blobs(3)
    config = LearnerConfig(optimizer="ewc", lr=0.05, momentum=0.5, ewc_lambda=50.0)
    saved = {}
    first = make_learner(_model(), config)

    def keep(i: int, result: ContinualResult) -> None:
        if i == 0:
            saved["model"] = copy.deepcopy(first.model.state_dict())
            saved["learner"] = copy.deepcopy(first.state_dict())
            saved["result"] = copy.deepcopy(result)

    full = run_continual(
        first, tasks, "domain", n_outputs=4, epochs=2, batch_size=32, on_task_end=keep
    )
    resumed = make_learner(_model(seed=9), config)
    resumed.model.load_state_dict(saved["model"])
    resumed.load_state_dict(saved["learner"])
    out = run_continual(
        resumed,
        tasks,
        "domain",
        n_outputs=4,
        epochs=2,
        batch_size=32,
        start_task=1,
        partial=saved["result"],
    )
    np.testing.assert_array_equal(out.accuracy_matrix, full.accuracy_matrix)


def test_bad_arguments_are_refused():
    tasks = _permuted_blobs(2)
    learner = make_learner(_model(), LearnerConfig(optimizer="sgd"))
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        run_continual(learner, tasks, "domain", n_outputs=4, epochs=0)
    with pytest.raises(ValueError, match="scenario='iid' is not valid"):
        run_continual(learner, tasks, "iid", n_outputs=4)
    with pytest.raises(ValueError, match="tasks is empty"):
        run_continual(learner, [], "domain", n_outputs=4)
    with pytest.raises(ValueError, match="start_task=1 needs"):
        run_continual(learner, tasks, "domain", n_outputs=4, start_task=1)
    with pytest.raises(ValueError, match="optimizer='rmsprop' is not valid"):
        LearnerConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="applies to 'sgd' and 'ewc' only"):
        LearnerConfig(optimizer="adam", momentum=0.9)
    with pytest.raises(ValueError, match="momentum must be in"):
        LearnerConfig(optimizer="sgd", momentum=1.0)
    with pytest.raises(ValueError, match="lr must be a positive number"):
        LearnerConfig(optimizer="sgd", lr=-0.1)
    with pytest.raises(ValueError, match="hidden must be a non-empty list"):
        mlp(4, [], 2)
    with pytest.raises(ValueError, match="init='xavier' is not valid"):
        mlp(4, [3], 2, init="xavier")
    with pytest.raises(TypeError, match="needs a NeuralTangentEnsemble"):
        NTELearner(learner.model, torch.optim.SGD(learner.model.parameters(), lr=0.1))


def test_lecun_init_has_unit_fan_in_variance_truncated_weights_and_zero_biases():
    torch.manual_seed(0)
    model = mlp(400, [300], 200, init="lecun")
    for layer in (model[0], model[2]):
        sigma = 1.0 / math.sqrt(layer.in_features)
        w = layer.weight.detach()
        assert abs(float(w.var()) / sigma**2 - 1.0) < 0.03  # 6e4 draws: s.e. of var ~0.6 %
        assert float(w.abs().max()) <= 2 * sigma / 0.87962566103423978 + 1e-6
        assert torch.count_nonzero(layer.bias) == 0
    torch_default = mlp(400, [300], 200)  # U(±1/√fan_in): variance 1/(3 fan_in), biases nonzero
    assert abs(float(torch_default[0].weight.detach().var()) * 400 * 3 - 1.0) < 0.03
    assert torch.count_nonzero(torch_default[0].bias) > 0


def test_momentum_buffer_is_cleared_between_tasks_on_request():
    tasks = _permuted_blobs(2)
    learner = make_learner(
        _model(), LearnerConfig(optimizer="sgd", momentum=0.9, reset_between_tasks=True)
    )
    learner.train_batch(tasks[0].x_train[:8], tasks[0].y_train[:8], None)
    assert len(learner.optimizer.state) > 0
    learner.begin_task(1)
    assert len(learner.optimizer.state) == 0


# --- spiking network (snntorch, surrogate gradients) -----------------------------------------


class _RateCodedSNN(nn.Module):
    """Rate-coded input spikes → Linear → snn.Leaky (ATan surrogate) → Linear read-out summed
    over ``steps`` time steps."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int, steps: int = 5, seed: int = 0):
        import snntorch as snn

        super().__init__()
        self.fc1 = nn.Linear(n_in, n_hidden)
        self.lif = snn.Leaky(beta=0.8)
        self.fc2 = nn.Linear(n_hidden, n_out)
        self.steps = steps
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rates = x.clamp(0.0, 1.0)
        mem = self.lif.init_leaky()
        out = 0.0
        for _ in range(self.steps):
            spikes_in = torch.bernoulli(rates, generator=self.generator)
            spk, mem = self.lif(self.fc1(spikes_in), mem)
            out = out + self.fc2(spk)
        return out / self.steps


def test_snntorch_network_learns_two_tasks_with_the_nte_optimizer():
    xtr, ytr, xte, yte = _blobs(n_classes=3, dim=20, n_train=120, n_test=150, spread=0.5)
    xtr, xte = torch.sigmoid(2 * xtr), torch.sigmoid(2 * xte)  # firing probabilities in (0, 1)
    tasks = permuted_tasks(xtr, ytr, xte, yte, 2, seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _RateCodedSNN(20, 32, 3, steps=4)
    opt = NeuralTangentEnsemble(model.parameters(), lr=0.05, max_delta=0.5)
    learner = NTELearner(model, opt)
    z = opt.l1_norm
    signs = [torch.sign(p.detach()).clone() for p in model.parameters()]
    res = run_continual(learner, tasks, "domain", n_outputs=3, epochs=4, batch_size=10)
    assert res.accuracy_matrix[0, 0] > 0.75 and res.accuracy_matrix[1, 1] > 0.75  # chance 1/3
    for p, s in zip(model.parameters(), signs, strict=True):
        assert torch.equal(torch.sign(p.detach()), s)
    total = sum(float(p.detach().abs().sum()) for p in model.parameters())
    assert total <= z * (1 + 1e-5)
    # the exact per-example form runs on the spiking network through the autograd loop
    before = [p.detach().clone() for p in model.parameters()]
    opt.step_per_example(
        model, nn.functional.cross_entropy, xtr[:4], ytr[:4], method="loop", chunk_size=2
    )
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert sum(float(p.detach().abs().sum()) for p in model.parameters()) <= z * (1 + 1e-5)


# --- the experiment and its plots ------------------------------------------------------------

_SMALL = {
    "dataset": "digits",
    "n_tasks": 2,
    "optimizers": "nte,sgd",
    "widths": "16,32",
    "momenta": "0,0.9",
    "epochs": 1,
    "batch_size": 64,
    "n_train": 400,
    "n_test": 100,
    "nte_lr": 0.005,
}


def test_experiment_writes_the_grid(tmp_path):
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    path = run_experiment("nte-continual", _SMALL, out=tmp_path / "r.h5", seed=0)
    res = read_result(path)
    assert res.status == "complete"
    # per width: nte once, sgd at two momenta
    assert res.arrays["accuracy_matrices"].shape == (6, 2, 2)
    assert res.arrays["run_width"].tolist() == [16, 16, 16, 32, 32, 32]
    assert res.arrays["run_momentum"].tolist() == [0, 0, 0.9, 0, 0, 0.9]
    assert res.arrays["run_optimizer"].tolist() == [0, 1, 1, 0, 1, 1]
    # momentum at a fixed effective rate: sgd_lr · (1 − β) = 0.01 · 0.1 at β = 0.9
    np.testing.assert_allclose(res.arrays["run_lr"], [0.005, 0.01, 0.001] * 2)
    assert len(res.metrics["step"]) == 12 and res.metric_axes["task1_accuracy"] == "step"
    assert "task1_forgetting_sgd_w32_m0.9" in res.summary
    m = res.arrays["accuracy_matrices"]
    np.testing.assert_allclose(res.arrays["task1_forgetting"], m[:, 0, 0] - m[:, 1, 0])

    from plastix.sims.plots_nte import nte_continual_figures

    names = [name for name, _ in nte_continual_figures(res)]
    assert "forgetting_vs_width" in names and "forgetting_vs_momentum" in names
    assert sum(n.startswith("accuracy_") for n in names) == 6


def test_experiment_builds_its_inputs_and_models_as_configured(tmp_path, monkeypatch):
    from plastix.sims import exp_nte
    from plastix.sims.datasets import Dataset
    from plastix.sims.experiments import run_experiment

    inits, standardized = [], []

    def recording_mlp(*args):
        inits.append(args[-1])
        return mlp(*args)

    def recording_standardized(ds):
        standardized.append(ds.name)
        return original_standardized(ds)

    original_standardized = Dataset.standardized
    monkeypatch.setattr(exp_nte, "mlp", recording_mlp)
    monkeypatch.setattr(Dataset, "standardized", recording_standardized)
    overrides = {**_SMALL, "init": "lecun", "nte_max_delta": 1.0, "standardize": True}
    run_experiment("nte-continual", overrides, out=tmp_path / "r.h5")
    assert inits == ["lecun"] * 6 and standardized == ["digits"]


def test_experiment_resumes_after_an_interruption(tmp_path, monkeypatch):
    from plastix.sims.experiments import RunContext, run_experiment
    from plastix.sims.results import read_result

    overrides = {**_SMALL, "widths": "16", "momenta": "0.9"}
    reference = read_result(run_experiment("nte-continual", overrides, out=tmp_path / "a.h5"))
    calls = {"n": 0}
    original = RunContext.checkpoint

    def interrupt_in_the_second_run(self, state):
        original(self, state)
        calls["n"] += 1
        if calls["n"] == 4:  # nte: task 1, task 2, done; sgd: task 1 → stop here
            raise KeyboardInterrupt

    monkeypatch.setattr(RunContext, "checkpoint", interrupt_in_the_second_run)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("nte-continual", overrides, out=tmp_path / "b.h5")
    monkeypatch.setattr(RunContext, "checkpoint", original)
    assert not (tmp_path / "b.h5").exists()
    resumed = read_result(run_experiment("nte-continual", overrides, out=tmp_path / "b.h5"))
    np.testing.assert_array_equal(
        resumed.arrays["accuracy_matrices"], reference.arrays["accuracy_matrices"]
    )
    np.testing.assert_array_equal(resumed.metrics["step"], reference.metrics["step"])


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"optimizers": "nte,rmsprop"}, "rmsprop"),
        ({"momenta": "0.5,1.0"}, "momenta"),
        ({"optimizers": "nte,nte"}, "repeats a name"),
        ({"scenario": "task", "n_tasks": 3}, "does not split 10 classes"),
        ({"widths": "0"}, "widths"),
        ({"init": "xavier"}, "init"),
    ],
)
def test_experiment_refuses_bad_config(tmp_path, overrides, match):
    from plastix.sims.config import ConfigError
    from plastix.sims.experiments import run_experiment

    with pytest.raises(ConfigError, match=match):
        run_experiment("nte-continual", overrides, out=tmp_path / "r.h5")
    assert not (tmp_path / "r.h5").exists()


def test_plots_write_png_and_pdf(tmp_path):
    from plastix.sims.plots_nte import plot_accuracy_matrix, plot_forgetting_curves

    r = np.array([[0.9, 0.1], [0.6, 0.8]])
    plot_accuracy_matrix(r, tmp_path / "m.png")
    plot_forgetting_curves(
        [10, 100, 1000],
        {"nte": [0.3, 0.2, 0.1], "sgd": np.array([[0.4, 0.3, 0.2], [0.5, 0.3, 0.1]])},
        tmp_path / "w.pdf",
        xlabel="hidden width",
        log_x=True,
    )
    plot_forgetting_curves([0.0, 0.9], {"sgd": [0.1, 0.3]}, tmp_path / "mom.png", xlabel="momentum")
    for name in ("m.png", "w.pdf", "mom.png"):
        assert (tmp_path / name).stat().st_size > 1000
    with pytest.raises(ValueError, match="must be square"):
        plot_accuracy_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="expected shape"):
        plot_forgetting_curves([1, 2], {"nte": [0.1, 0.2, 0.3]}, xlabel="hidden width")
    with pytest.raises(ValueError, match="must end in .png or .pdf"):
        plot_accuracy_matrix(r, tmp_path / "m.svg")


def test_continual_result_metrics_follow_the_matrix():
    r = np.array([[0.9, 0.2], [0.7, 0.8]])
    res = ContinualResult(r, np.array([1.0, 0.5]))
    assert res.task1_forgetting == pytest.approx(0.2)
    np.testing.assert_allclose(res.forgetting, [0.0, 0.2])
    np.testing.assert_allclose(res.average_accuracy, [0.9, 0.75])


def test_forgetting_curves_sort_x_average_seeds_and_give_their_standard_error():
    """Points sorted by x; a 2-D series is its mean over seeds with error bars of the
    standard error (sample std, ddof=1, over sqrt(n_seeds)); log_x sets a log x-axis."""
    from plastix.sims.plots import pyplot
    from plastix.sims.plots_nte import plot_forgetting_curves

    fig = plot_forgetting_curves(
        [100, 10],
        {"nte": [0.2, 0.3], "sgd": np.array([[0.4, 0.1], [0.6, 0.5], [0.8, 0.3]])},
        xlabel="hidden width",
        log_x=True,
    )
    ax = fig.axes[0]
    bars = errorbars(ax)
    assert bars["nte"] == ([10.0, 100.0], [0.3, 0.2], None)
    x, y, half = bars["sgd"]
    assert x == [10.0, 100.0]
    np.testing.assert_allclose(y, [0.3, 0.6])
    # seeds at x=10: 0.1, 0.5, 0.3 -> sd 0.2; at x=100: 0.4, 0.6, 0.8 -> sd 0.2
    np.testing.assert_allclose(half, [0.2 / np.sqrt(3), 0.2 / np.sqrt(3)])
    assert ax.get_xscale() == "log" and ax.get_title() == "forgetting against hidden width"
    pyplot().close(fig)
    fig = plot_forgetting_curves([0.0, 0.9], {"sgd": [0.1, 0.3]}, xlabel="momentum")
    assert fig.axes[0].get_xscale() == "linear"
    pyplot().close(fig)


def test_accuracy_matrix_refuses_task_names_of_the_wrong_count():
    from plastix.sims.plots_nte import plot_accuracy_matrix

    with pytest.raises(ValueError, match="task_names has 1 names for 2 tasks"):
        plot_accuracy_matrix(np.eye(2), task_names=["a"])


def test_nte_continual_figures_compare_optimizers_at_the_lowest_momentum():
    """Per width: nte, sgd at momentum 0 and sgd at 0.9. Forgetting against width takes each
    optimizer at the lowest momentum; against momentum, each optimizer and width that has
    every momentum (sgd only). Accuracy-matrix figures are named by optimizer, width and,
    for sgd, momentum."""
    from pathlib import Path

    from plastix.sims.plots import pyplot
    from plastix.sims.plots_nte import nte_continual_figures
    from plastix.sims.results import Result

    arrays = {
        "accuracy_matrices": np.tile(np.eye(2), (6, 1, 1)),
        "run_optimizer": np.array([0, 1, 1, 0, 1, 1]),
        "run_width": np.array([16, 16, 16, 32, 32, 32]),
        "run_momentum": np.array([0.0, 0.0, 0.9, 0.0, 0.0, 0.9]),
        "task1_forgetting": np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
    }
    config = {"optimizers": ["nte", "sgd"]}
    res = Result(
        Path("/x/n.h5"), {"experiment": "nte-continual"}, config, {}, {}, {}, arrays, {}, {}
    )
    figures = dict(nte_continual_figures(res))
    assert list(figures) == [
        "accuracy_nte_w16",
        "accuracy_sgd_w16_m0",
        "accuracy_sgd_w16_m0.9",
        "accuracy_nte_w32",
        "accuracy_sgd_w32_m0",
        "accuracy_sgd_w32_m0.9",
        "forgetting_vs_width",
        "forgetting_vs_momentum",
    ]
    by_width = errorbars(figures["forgetting_vs_width"].axes[0])
    assert by_width == {
        "nte": ([16.0, 32.0], [0.1, 0.4], None),
        "sgd": ([16.0, 32.0], [0.2, 0.5], None),
    }
    by_momentum = errorbars(figures["forgetting_vs_momentum"].axes[0])
    assert by_momentum == {
        "sgd w16": ([0.0, 0.9], [0.2, 0.3], None),
        "sgd w32": ([0.0, 0.9], [0.5, 0.6], None),
    }
    for fig in figures.values():
        pyplot().close(fig)
