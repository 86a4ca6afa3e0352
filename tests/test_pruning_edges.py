"""Edges of plastix.bridges.pruning no other test reaches: refusals of ``update`` for indices
that are not a 1-D integer batch, stats mid-run, the epoch results and mode of
``train_classifier_epoch``, batched evaluation, the static scorers' input checks, seeds,
frozen and dropout layers in GraNd, and UniformDynamic's fresh subset per epoch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from plastix.bridges.pruning import (
    UCB,
    IndexedTensorDataset,
    InfoBatch,
    PruningSampler,
    UniformDynamic,
    el2n_scores,
    evaluate_classifier,
    forgetting_scores,
    grand_scores,
    train_classifier_epoch,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _seeded(make, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def _small_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))


def _data(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=generator), torch.arange(n) % 3


def _sgd(lr: float):
    return lambda model: torch.optim.SGD(model.parameters(), lr=lr)


# ----------------------------------------------------------------------- sampler: update, stats


def test_update_refuses_a_bool_mask_instead_of_indices():
    """A bool mask of the served samples is not a list of indices: read as integers it would
    report samples 0 and 1 only, so it is refused and nothing is counted."""
    sampler = PruningSampler(10, UCB(), rate=0.0, epochs=1)
    list(sampler)
    with pytest.raises(TypeError, match="bool tensor"):
        sampler.update(torch.ones(10, dtype=torch.bool), torch.ones(10))
    assert sampler.stats().training_passes == 0


def test_update_refuses_indices_that_are_not_one_dimensional():
    """Indices of shape (B, 1) with a loss of shape (B,) would return (B, 1) weights that
    broadcast the loss to (B, B): refused, and nothing is counted."""
    sampler = PruningSampler(10, InfoBatch(delta=1.0), rate=0.2, epochs=1, seed=0)
    served = torch.tensor(list(sampler))
    with pytest.raises(ValueError, match=r"indices: shape \(4, 1\); expected a 1-D tensor"):
        sampler.update(served[:4].unsqueeze(1), torch.ones(4))
    assert sampler.stats().training_passes == 0


def test_update_accepts_an_empty_batch():
    """An empty batch (e.g. every sample filtered out) returns no weights and counts no pass."""
    sampler = PruningSampler(10, UCB(), rate=0.5, epochs=2, seed=0)
    list(sampler)
    weights = sampler.update(torch.zeros(0, dtype=torch.long), torch.zeros(0))
    assert weights.shape == (0,)
    assert sampler.stats().training_passes == 0


@pytest.mark.parametrize("strategy", [UCB(), InfoBatch()])
def test_update_keeps_no_autograd_graph_in_the_strategy_state(strategy):
    """The strategy records detached losses: a loss that requires grad (the usual case) must
    not leave the moving averages or scores attached to the batch's graph."""
    sampler = PruningSampler(10, strategy, rate=0.5, epochs=2, seed=0)
    served = torch.tensor(list(sampler))
    logits = torch.randn(len(served), 3, requires_grad=True)
    per_sample = F.cross_entropy(
        logits, torch.zeros(len(served), dtype=torch.long), reduction="none"
    )
    weights = sampler.update(served, per_sample)
    assert not weights.requires_grad
    state = strategy.mean if isinstance(strategy, UCB) else strategy.score
    assert not state.requires_grad and state.grad_fn is None


def test_stats_record_counts_the_epochs_started_not_the_epochs_planned():
    """One epoch of a three-epoch plan: the record's ``epochs`` is 1, consistent with its
    full-data reference of 1 * 10 passes (and the realised rate of that one epoch)."""
    sampler = PruningSampler(10, UniformDynamic(), rate=0.5, epochs=3, seed=0)
    served = torch.tensor(list(sampler))
    sampler.update(served, torch.ones(len(served)))
    record = sampler.stats().as_dict()
    assert record["epochs"] == 1
    assert record["full_data_passes"] == record["epochs"] * 10 == 10
    assert record["passes_done"] == 5 and record["realized_rate"] == 0.5


def test_ucb_refuses_a_bool_exploration_weight():
    """Bools are not numbers in this package: ``c=True`` is refused, not read as 1.0."""
    with pytest.raises(ValueError, match="c: True"):
        UCB(c=True)


# ----------------------------------------------------------------------- uniform dynamic


def test_uniform_dynamic_draws_a_fresh_random_subset_every_epoch():
    """Raju et al.'s uniform baseline: each epoch a new random half, so the kept sets change
    between epochs and over four epochs more than one half of the data is trained."""
    sampler = PruningSampler(20, UniformDynamic(), rate=0.5, epochs=4, seed=0)
    kept = []
    for _ in range(4):
        served = torch.tensor(list(sampler))
        sampler.update(served, torch.ones(len(served)))
        kept.append(frozenset(served.tolist()))
    assert all(len(k) == 10 for k in kept)
    assert len(set(kept)) > 1
    assert len(frozenset().union(*kept)) > 10


# ----------------------------------------------------------------------- train / evaluate


class _Recorder(nn.Linear):
    """Identity-initialised 2 -> 2 linear layer that records its inputs and training mode."""

    def __init__(self) -> None:
        super().__init__(2, 2)
        with torch.no_grad():
            self.weight.copy_(torch.eye(2))
            self.bias.zero_()
        self.inputs, self.modes = [], []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        self.modes.append(self.training)
        return super().forward(x)


def _hand_example():
    """Logits equal the inputs: sample 2 is predicted 0 but labelled 1, the other four are
    right. Cross-entropy of logits (1, 0): log(1 + e^-1) when right, log(1 + e) when wrong."""
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1, 1, 0])
    return x, y


def test_epoch_result_is_the_per_sample_mean_over_all_batches():
    """Batches of 2, 2 and 1 with a frozen model (lr 0): the loss is the mean over the 5
    samples (not over the 3 batches) and the accuracy counts every batch: 4 of 5 right."""
    x, y = _hand_example()
    model = _Recorder()
    loader = DataLoader(IndexedTensorDataset(x, y), batch_size=2)
    result = train_classifier_epoch(model, torch.optim.SGD(model.parameters(), lr=0.0), loader)
    right, wrong = math.log(1 + math.exp(-1)), math.log(1 + math.e)
    assert result.passes == 5
    assert result.loss == pytest.approx((4 * right + wrong) / 5)
    assert result.accuracy == pytest.approx(0.8)


def test_train_classifier_epoch_trains_in_training_mode_after_an_evaluation():
    """evaluate_classifier leaves the model in eval mode; the next training epoch must switch
    it back (dropout and batch norm behave differently in the two modes)."""
    x, y = _hand_example()
    model = _Recorder()
    assert evaluate_classifier(model, x, y) == pytest.approx(0.8)
    assert not model.training
    model.modes.clear()
    loader = DataLoader(IndexedTensorDataset(x, y), batch_size=2)
    train_classifier_epoch(model, torch.optim.SGD(model.parameters(), lr=0.0), loader)
    assert model.modes == [True, True, True]


def test_train_classifier_epoch_feeds_the_model_the_transformed_inputs():
    """``transform`` (e.g. augmentation) is applied to each batch before the model sees it."""
    x, y = _hand_example()
    model = _Recorder()
    loader = DataLoader(IndexedTensorDataset(x, y), batch_size=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    train_classifier_epoch(model, optimizer, loader, transform=lambda xb: 3.0 * xb + 1.0)
    torch.testing.assert_close(torch.cat(model.inputs), 3.0 * x + 1.0)


def test_train_classifier_epoch_steps_on_each_batch_gradient_alone():
    """Two batches, plain SGD: the second step uses the second batch's gradient only (the
    gradients of the first are cleared), as two hand-made SGD steps do."""
    x, y = _data(8)
    loader = DataLoader(IndexedTensorDataset(x, y), batch_size=4)
    model = _seeded(_small_mlp)
    train_classifier_epoch(model, torch.optim.SGD(model.parameters(), lr=0.5), loader)
    reference = _seeded(_small_mlp)
    for s in (0, 4):
        reference.zero_grad()
        F.cross_entropy(reference(x[s : s + 4]), y[s : s + 4]).backward()
        with torch.no_grad():
            for p in reference.parameters():
                p -= 0.5 * p.grad
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a.detach(), b.detach())


def test_evaluate_classifier_in_batches_scores_every_sample():
    """Batches of 2 over 5 samples (2, 2, 1) give the same accuracy as one batch: 4 of 5."""
    x, y = _hand_example()
    model = _Recorder()
    assert evaluate_classifier(model, x, y, batch_size=2) == pytest.approx(0.8)
    assert evaluate_classifier(model, x, y, batch_size=1000) == pytest.approx(0.8)


# ----------------------------------------------------------------------- static scorers


@pytest.mark.parametrize("scorer", ["el2n", "grand", "forgetting"])
def test_static_scorers_refuse_float_or_misaligned_labels(scorer):
    """Labels must be integer class indices, one per sample of x (cross-entropy would read
    float targets as class probabilities)."""
    x, y = _data(6)

    def score(labels):
        if scorer == "el2n":
            return el2n_scores(_small_mlp, _sgd(0.1), x, labels, batch_size=3)
        if scorer == "grand":
            return grand_scores(_small_mlp, x, labels, batch_size=3)
        return forgetting_scores(_small_mlp, _sgd(0.1), x, labels, batch_size=3)

    with pytest.raises(ValueError, match=r"y: shape \(6,\), dtype torch.float32; expected integer"):
        score(y.float())
    with pytest.raises(ValueError, match=r"y: shape \(5,\).*labels of shape \(6,\)"):
        score(y[:5])


@pytest.mark.parametrize("scorer", [el2n_scores, forgetting_scores])
def test_static_scorers_refuse_zero_score_epochs(scorer):
    """Both scorers train at least one epoch (forgetting counts need presentations; EL2N is
    computed after training)."""
    x, y = _data(6)
    with pytest.raises(ValueError, match="score_epochs: 0 must be >= 1"):
        scorer(_small_mlp, _sgd(0.1), x, y, score_epochs=0, batch_size=3)


@pytest.mark.parametrize("scorer", [el2n_scores, forgetting_scores])
def test_static_scorer_seed_sets_the_training_order(scorer):
    """The same seed reproduces the scores; another seed shuffles the minibatches otherwise,
    so the trained model and its scores differ."""
    x, y = _data(24)

    def scores(seed):
        make = lambda: _seeded(_small_mlp, 7)  # noqa: E731 - same start for every call
        return scorer(make, _sgd(0.5), x, y, score_epochs=2, batch_size=4, seed=seed).scores

    torch.testing.assert_close(scores(0), scores(0))
    assert not torch.equal(scores(0), scores(1))


def _with_dropout() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Dropout(0.5), nn.Linear(6, 3))


@pytest.mark.parametrize("vectorize", [True, False])
def test_grand_scores_take_gradients_in_eval_mode(vectorize):
    """GraNd scores the network at initialisation in eval mode: dropout is off, so a model
    with dropout scores exactly like the same weights without it, and deterministically."""
    x, y = _data(10)
    with_dropout = grand_scores(lambda: _seeded(_with_dropout), x, y, vectorize=vectorize)
    plain = grand_scores(lambda: _seeded(_small_mlp), x, y, vectorize=vectorize)
    torch.testing.assert_close(with_dropout.scores, plain.scores, rtol=1e-5, atol=1e-7)


class _PartlyFrozen(nn.Module):
    """A frozen first layer and a trained readout; ``unused`` takes no part in the forward."""

    def __init__(self) -> None:
        super().__init__()
        self.body, self.head = nn.Linear(4, 6), nn.Linear(6, 3)
        self.body.requires_grad_(False)
        self.unused = nn.Parameter(torch.ones(5))

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)))


@pytest.mark.parametrize("vectorize", [True, False])
def test_grand_scores_norm_only_the_trained_parameters(vectorize):
    """Frozen parameters get no gradient and an unused one a zero gradient: the score of a
    sample is the gradient norm over the readout alone, checked against autograd."""
    x, y = _data(6)
    scores = grand_scores(lambda: _seeded(_PartlyFrozen), x, y, vectorize=vectorize).scores
    model = _seeded(_PartlyFrozen)
    expected = []
    for i in range(6):
        loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        grads = torch.autograd.grad(loss, [model.head.weight, model.head.bias])
        expected.append(torch.sqrt(sum(g.pow(2).sum() for g in grads)).item())
    torch.testing.assert_close(
        scores, torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=0
    )
