"""Edges of the neural tangent ensemble optimizer and the continual-learning harness not
checked elsewhere: the closure of ``step``, an underflowing L1 sum, zero-size parameters, the
scale of the initial noise, refusals a user hits (bad noise, mismatched or empty task data,
NaN inputs), the forgetting window, train / eval modes in the loop, gradient clearing between
batches, and options that make_learner must pass on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from plastix.bridges.continual import (
    DEFAULT_LRS,
    ContinualResult,
    EWCLearner,
    LearnerConfig,
    NTELearner,
    OptimizerLearner,
    Task,
    average_accuracy,
    evaluate,
    forgetting,
    make_learner,
    mlp,
    output_mask,
    permuted_tasks,
    run_continual,
    task1_forgetting,
)
from plastix.bridges.tangent_ensemble import NeuralTangentEnsemble


def _param(values, dtype=torch.float64):
    return nn.Parameter(torch.tensor(values, dtype=dtype))


def _linear(weights=(0.3, -0.2), bias=True, seed=0):
    """A double-precision linear layer (2 inputs, 1 output) with the given weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Linear(2, 1, bias=bias).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([weights]))
    return model


def _data(n=8, n_in=3, n_classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, n_in, generator=g), torch.arange(n) % n_classes


# --- the optimizer ---------------------------------------------------------------------------


def test_step_with_a_closure_uses_its_gradient_and_returns_its_loss():
    """``step(closure)`` follows torch's contract: the closure runs with gradients enabled
    (step itself runs under no_grad), its backward fills ``p.grad`` for the update, and step
    returns the loss it gave. loss = w·x with x = [1, 2]: the gradient is [1, 2] and the
    update is the hand-computed one of the batch form (likelihoods [0.9, 1.2] at lr = 0.1)."""
    w = _param([0.3, -0.2])
    opt = NeuralTangentEnsemble([w], lr=0.1, max_delta=None)
    x = torch.tensor([1.0, 2.0], dtype=torch.float64)

    def closure():
        opt.zero_grad()
        loss = (w * x).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss.detach()) == pytest.approx(0.3 - 0.4)
    expected = torch.tensor([0.27, -0.24], dtype=torch.float64) * 0.5 / 0.51
    torch.testing.assert_close(w.detach(), expected)


@pytest.mark.parametrize(("dtype", "shift"), [(torch.float32, -200.0), (torch.float64, -1000.0)])
def test_projection_survives_an_underflowing_l1_sum(dtype, shift):
    """When every exp(log|Δw|) underflows to 0 the L1 sum is 0 and cannot be renormalised by
    division; the log-space projection still restores Σ|Δw| = z (as for an overflow): a step
    with zero gradients then gives back the construction-time weights [0.3, −0.2]."""
    w = _param([0.3, -0.2], dtype=dtype)
    opt = NeuralTangentEnsemble([w], max_delta=None)
    opt.state[w]["log_magnitude"] += shift  # exp(shift) is 0 at this precision
    assert float(opt.state[w]["log_magnitude"].exp().sum()) == 0.0
    w.grad = torch.zeros(2, dtype=dtype)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([0.3, -0.2], dtype=dtype))
    assert opt.l1_norm == pytest.approx(0.5)


def test_a_zero_size_parameter_takes_part_without_error():
    """A parameter with no entries (e.g. an empty bias) holds no L1 mass and has no likelihood
    to check: both step forms go on, and the other parameter gets the hand-computed update
    (per-example: g1 = [1, 2], g2 = [−1, 0.5] → likelihoods [0.99, 1.26] → sum 0.5)."""

    class WithEmpty(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = _linear(bias=False)
            self.empty = nn.Parameter(torch.zeros(0, dtype=torch.float64))

        def forward(self, x):
            return self.lin(x) + self.empty.sum()

    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=torch.float64)
    for method in ("vmap", "loop"):
        model = WithEmpty()
        opt = NeuralTangentEnsemble(model.parameters(), lr=0.1, max_delta=None)
        opt.step_per_example(model, lambda out, y: out.sum(), x, torch.zeros(2), method=method)
        expected = torch.tensor([[0.297, -0.252]], dtype=torch.float64) * 0.5 / 0.549
        torch.testing.assert_close(model.lin.weight.detach(), expected)
        assert model.empty.shape == (0,)
    model = WithEmpty()
    opt = NeuralTangentEnsemble(model.parameters(), lr=0.1, max_delta=None)
    model(x[:1]).sum().backward()
    opt.step()
    expected = torch.tensor([[0.27, -0.24]], dtype=torch.float64) * 0.5 / 0.51
    torch.testing.assert_close(model.lin.weight.detach(), expected)


def test_init_expansion_noise_scales_with_init_noise():
    """About the initial weights, Δw starts as ``init_noise · N(0, 1)`` from the seeded private
    generator: the same seed with four times the init_noise gives exactly four times the Δw
    (and the zero_noise setting, for exactly-zero entries, plays no part)."""

    def initial_delta(init_noise, zero_noise=1e-3):
        w = _param([0.3, -0.2, 0.1, 0.4])
        opt = NeuralTangentEnsemble(
            [w],
            max_delta=None,
            expansion="init",
            init_noise=init_noise,
            zero_noise=zero_noise,
            seed=2,
        )
        return opt.displacement(w).clone()

    small = initial_delta(0.01)
    torch.testing.assert_close(initial_delta(0.04), 4 * small)
    torch.testing.assert_close(initial_delta(0.01, zero_noise=0.5), small)


@pytest.mark.parametrize("value", [0.0, -1e-3, float("nan")])
def test_zero_noise_must_be_positive(value):
    """zero_noise = 0 would leave exactly-zero entries at zero with zeros="noise" (sign 0: a
    silently frozen weight); it is refused like init_noise."""
    with pytest.raises(ValueError, match="zero_noise must be a positive"):
        NeuralTangentEnsemble([_param([0.3, 0.0, -0.2])], max_delta=None, zero_noise=value)


@pytest.mark.parametrize("seed", [1.5, True, "0"])
def test_optimizer_seed_must_be_an_int(seed):
    """A fractional or non-numeric seed is refused rather than truncated."""
    with pytest.raises(TypeError, match="seed must be an int"):
        NeuralTangentEnsemble([_param([0.3, -0.2])], max_delta=None, seed=seed)


# --- tasks -----------------------------------------------------------------------------------


def test_task_refuses_mismatched_or_empty_test_data():
    x = torch.zeros(3, 2)
    y = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="x_test has 3 rows but y_test has 2"):
        Task("t", x, y, x, y[:2], torch.arange(2))
    with pytest.raises(ValueError, match="at least one train and one test example"):
        Task("t", x, y, x[:0], y[:0], torch.arange(2))
    with pytest.raises(ValueError, match="at least one train and one test example"):
        Task("t", x[:0], y[:0], x, y, torch.arange(2))


def test_task_builders_refuse_negative_labels_and_non_finite_inputs():
    x, y = np.random.default_rng(0).random((6, 4)), np.arange(6) % 3
    with pytest.raises(ValueError, match="y_train: labels must be whole class indices >= 0"):
        permuted_tasks(x, y - 1, x, y, 2)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="x_test: contains NaN or inf"):
        permuted_tasks(x, y, bad, y, 2)
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match="x_train: contains NaN or inf"):
        permuted_tasks(bad, y, x, y, 2)


def test_permuted_tasks_apply_the_same_permutation_to_train_and_test():
    """A task's pixel permutation is one fixed map of the input: with the same array given as
    train and test inputs, every task's test inputs equal its train inputs."""
    x, y = np.random.default_rng(1).random((5, 7)), np.arange(5) % 2
    for task in permuted_tasks(x, y, x, y, 3, seed=4):
        assert torch.equal(task.x_test, task.x_train)


def test_permuted_tasks_count_classes_that_occur_in_the_test_labels_only():
    """The shared classes are 0..max over train and test labels: a class present only in the
    test set is still an output unit of every task (and so active in its masked head)."""
    x = np.zeros((4, 2))
    tasks = permuted_tasks(x, [0, 1, 0, 1], x, [0, 1, 2, 0], 2)
    for task in tasks:
        assert task.classes.tolist() == [0, 1, 2]
    assert output_mask(tasks, 1, "task", 3).tolist() == [True, True, True]


def test_output_mask_refuses_a_class_equal_to_the_number_of_outputs():
    """Class indices run 0..n_outputs−1: a task that uses class n_outputs is refused with the
    message naming the output count (not an IndexError from the mask)."""
    x, y = torch.zeros(2, 1), torch.tensor([2, 3])
    tasks = [Task("t", x, y, x, y, torch.tensor([2, 3]))]
    with pytest.raises(ValueError, match="uses class 3 but the model has only 3 outputs"):
        output_mask(tasks, 0, "class", 3)
    assert output_mask(tasks, 0, "class", 4).tolist() == [False, False, True, True]


# --- metrics ---------------------------------------------------------------------------------


def test_forgetting_ignores_accuracy_before_a_task_was_trained():
    """F_i takes the best of R[l, j] for j ≤ l < i only: accuracy on task j measured before it
    was trained (rows l < j) is not a level that was later lost.

    R[0, 1] = 0.9 (chance-level luck before task 2 is trained) must not enter: F_2 =
    mean(max(0.8, 0.7) − 0.6, max(0.5) − 0.4) = mean(0.2, 0.1) = 0.15.
    """
    r = [[0.8, 0.9, 0.1], [0.7, 0.5, 0.1], [0.6, 0.4, 0.9]]
    np.testing.assert_allclose(forgetting(r), [0.0, 0.1, 0.15])


def test_metrics_refuse_an_empty_accuracy_matrix():
    for metric in (average_accuracy, forgetting, task1_forgetting):
        with pytest.raises(ValueError, match="must be square"):
            metric(np.zeros((0, 0)))


# --- learners --------------------------------------------------------------------------------


def _two_batches(x, y):
    return [(x[:4], y[:4]), (x[4:], y[4:])]


def test_optimizer_learner_clears_the_gradient_before_each_batch():
    """Two train_batch calls are two ordinary SGD steps, each on its own batch's gradient
    (not on gradients accumulated over batches): the same weights as the loop by hand."""
    x, y = _data(8)
    model, reference = nn.Linear(3, 3), nn.Linear(3, 3)
    reference.load_state_dict(model.state_dict())
    learner = OptimizerLearner(model, torch.optim.SGD(model.parameters(), lr=0.5))
    sgd = torch.optim.SGD(reference.parameters(), lr=0.5)
    for xb, yb in _two_batches(x, y):
        learner.train_batch(xb, yb, None)
        sgd.zero_grad()
        F.cross_entropy(reference(xb), yb).backward()
        sgd.step()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_nte_learner_clears_the_gradient_before_each_batch():
    """The batch form of the NTE learner reads each batch's own mean gradient: two
    train_batch calls equal two hand-made ``step(batch_size=4)`` after zeroing."""
    x, y = _data(8)
    model, reference = nn.Linear(3, 3), nn.Linear(3, 3)
    reference.load_state_dict(model.state_dict())
    learner = NTELearner(model, NeuralTangentEnsemble(model.parameters(), lr=0.05, max_delta=None))
    opt = NeuralTangentEnsemble(reference.parameters(), lr=0.05, max_delta=None)
    for xb, yb in _two_batches(x, y):
        learner.train_batch(xb, yb, None)
        opt.zero_grad()
        F.cross_entropy(reference(xb), yb).backward()
        opt.step(batch_size=4)
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_ewc_fisher_uses_every_sampled_example_beyond_one_chunk():
    """The Fisher is computed in chunks of 64 examples; with 70 samples every one of them
    counts: the diagonal Fisher equals the mean squared per-example gradient over all 70."""
    x, y = _data(70, n_in=2, n_classes=2, seed=3)
    task = Task("t", x, y, x, y, torch.arange(2))
    model = nn.Linear(2, 2)
    learner = EWCLearner(model, torch.optim.SGD(model.parameters(), lr=0.1), fisher_samples=70)
    learner.end_task(0, task, None)
    expected = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    for k in range(70):
        model.zero_grad()
        F.cross_entropy(model(x[k : k + 1]), y[k : k + 1]).backward()
        for name, p in model.named_parameters():
            expected[name] += p.grad.pow(2) / 70
    fisher, _ = learner.penalties[0]
    for name in expected:
        torch.testing.assert_close(fisher[name], expected[name])


def test_ewc_learner_refuses_a_fisher_sample_count_below_one():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="fisher_samples must be a positive integer, got 0"):
        EWCLearner(model, torch.optim.SGD(model.parameters(), lr=0.1), fisher_samples=0)


def test_make_learner_leaves_frozen_parameters_out_of_the_ensemble():
    """Only trainable parameters enter the NTE: a frozen layer is not part of the L1 norm and
    is not rescaled by the projection of a step."""
    model = mlp(3, [4], 3)
    model[0].requires_grad_(False)
    frozen = [p.detach().clone() for p in model[0].parameters()]
    learner = make_learner(model, LearnerConfig(optimizer="nte", lr=0.05, nte_max_delta=None))
    held = [p for g in learner.optimizer.param_groups for p in g["params"]]
    assert {id(p) for p in held} == {id(p) for p in model[2].parameters()}
    trained = sum(float(p.detach().abs().sum()) for p in model[2].parameters())
    assert learner.optimizer.l1_norm == pytest.approx(trained)
    x, y = _data(6)
    learner.train_batch(x, y, None)
    for p, before in zip(model[0].parameters(), frozen, strict=True):
        assert torch.equal(p.detach(), before)


def test_make_learner_passes_the_per_example_flag():
    """nte_per_example=True makes the learner take the exact per-example step: the same
    weights as ``step_per_example`` by hand on a copy."""
    model, reference = mlp(3, [4], 3), mlp(3, [4], 3)
    reference.load_state_dict(model.state_dict())
    config = LearnerConfig(optimizer="nte", lr=0.05, nte_max_delta=None, nte_per_example=True)
    learner = make_learner(model, config)
    assert learner.per_example is True
    by_hand = NeuralTangentEnsemble(reference.parameters(), lr=0.05, max_delta=None)
    x, y = _data(5)
    learner.train_batch(x, y, None)
    by_hand.step_per_example(reference, F.cross_entropy, x, y)
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_default_learning_rates_are_the_documented_ones():
    """``lr=None`` means SGD / EWC 0.01, Adam 1e-3, NTE η = 0.01 (LearnerConfig docstring),
    and make_learner builds the optimizer with that rate."""
    assert DEFAULT_LRS == {"nte": 0.01, "sgd": 0.01, "ewc": 0.01, "adam": 1e-3}
    adam = make_learner(nn.Linear(2, 2), LearnerConfig(optimizer="adam"))
    assert adam.optimizer.param_groups[0]["lr"] == 1e-3


def test_mlp_refuses_a_hidden_width_of_zero():
    with pytest.raises(ValueError, match="non-empty list of positive widths"):
        mlp(4, [3, 0], 2)


# --- evaluation and the loop -----------------------------------------------------------------


class _ModeProbe(nn.Module):
    """Predicts class 0 in eval mode and class 1 in training mode (a stand-in for the
    mode-dependent layers, dropout or batch norm, that make the two modes differ)."""

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 2)
        logits[:, 1 if self.training else 0] = 1.0
        return logits


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_runs_in_eval_mode_and_restores_the_mode(training):
    """evaluate scores the network in eval mode (labels all 0: accuracy 1, not the training
    mode's 0) and hands the model back in the mode it was given."""
    model = _ModeProbe()
    model.train(training)
    x, y = torch.zeros(5, 3), torch.zeros(5, dtype=torch.long)
    assert evaluate(model, x, y, None, batch_size=2) == 1.0
    assert model.training is training


class _ModeLearner:
    """A learner that changes nothing and records, per batch, whether the model is in training
    mode and, per task, the output mask handed to end_task."""

    def __init__(self, model):
        self.model = model
        self.modes: list[bool] = []
        self.end_masks: list = []

    def begin_task(self, task_index):
        return None

    def train_batch(self, x, y, mask):
        self.modes.append(self.model.training)
        return 0.0

    def end_task(self, task_index, task, mask):
        self.end_masks.append(None if mask is None else mask.tolist())


def _split_tasks_of(n_tasks=3):
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    return [
        Task(
            f"t{k}",
            x,
            torch.tensor([2 * k, 2 * k + 1] * 2),
            x,
            torch.tensor([2 * k] * 4),
            torch.tensor([2 * k, 2 * k + 1]),
        )
        for k in range(n_tasks)
    ]


def test_run_continual_trains_in_training_mode_after_evaluating():
    """Every task is trained with the model in training mode (dropout on), even though the
    evaluation after each task switches it to eval mode, and even if it arrived in eval mode."""
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 6))
    model.eval()
    learner = _ModeLearner(model)
    run_continual(learner, _split_tasks_of(3), "domain", n_outputs=6, batch_size=2)
    assert learner.modes == [True] * 6


def test_end_task_gets_the_training_mask_of_the_task_just_trained():
    """In the class scenario the mask of task i covers the classes of tasks 0..i; end_task
    (e.g. EWC's Fisher) gets that mask, the one task i was trained with."""
    learner = _ModeLearner(nn.Linear(3, 6))
    run_continual(learner, _split_tasks_of(3), "class", n_outputs=6, batch_size=4)
    assert learner.end_masks == [
        [True, True, False, False, False, False],
        [True, True, True, True, False, False],
        [True] * 6,
    ]


def test_run_continual_refuses_a_non_finite_training_loss():
    """A diverged run stops with a FloatingPointError naming the task and the fix, instead of
    filling the accuracy matrix with results of a broken model."""

    class Diverging(_ModeLearner):
        def train_batch(self, x, y, mask):
            return float("nan")

    with pytest.raises(FloatingPointError, match="'t0'.*lower the learning rate"):
        run_continual(Diverging(nn.Linear(3, 6)), _split_tasks_of(2), "domain", n_outputs=6)


def test_resuming_after_the_last_task_returns_the_saved_result():
    """start_task = len(tasks) (a run checkpointed after its last task) is a valid resume
    point: nothing is trained and the saved matrix and losses come back unchanged."""
    tasks = _split_tasks_of(2)
    saved = ContinualResult(np.array([[0.5, 0.25], [0.75, 1.0]]), np.array([0.3, 0.2]))
    learner = _ModeLearner(nn.Linear(3, 6))
    out = run_continual(learner, tasks, "domain", n_outputs=6, start_task=2, partial=saved)
    np.testing.assert_array_equal(out.accuracy_matrix, saved.accuracy_matrix)
    np.testing.assert_array_equal(out.train_loss, saved.train_loss)
    assert learner.modes == []
