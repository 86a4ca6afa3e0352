"""Fidelity of the pruning sampler's epoch and pass accounting, and the neural tangent
ensemble's refusals and state precision (audit of both modules)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from plastix.bridges.pruning import (
    UCB,
    EpsilonGreedy,
    IndexedTensorDataset,
    InfoBatch,
    PruningSampler,
    UniformDynamic,
)
from plastix.bridges.tangent_ensemble import NeuralTangentEnsemble

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _dataset(n: int) -> IndexedTensorDataset:
    return IndexedTensorDataset(torch.randn(n, 3), torch.zeros(n, dtype=torch.long))


class _RecordingUCB(UCB):
    """UCB that records, at each selection, how many losses it has observed so far."""

    def reset(self, n_samples):
        super().reset(n_samples)
        self.observed, self.at_select = 0, []

    def observe(self, indices, losses):
        super().observe(indices, losses)
        self.observed += indices.numel()

    def select(self, epoch, n_keep, generator):
        self.at_select.append((epoch, self.observed))
        return super().select(epoch, n_keep, generator)


# ----------------------------------------------------------------------- sampler: len and epochs


def test_len_in_the_training_loop_does_not_select_the_next_epoch_early():
    strategy = _RecordingUCB(decay_unit="observation")
    sampler = PruningSampler(100, strategy, rate=0.5, epochs=4, seed=0)
    loader = DataLoader(_dataset(100), batch_size=16, sampler=sampler)
    for _ in range(2):
        for _, _, idx in loader:
            len(loader)  # e.g. a "batch i / len(loader)" progress line before the update
            sampler.update(idx, torch.rand(len(idx), dtype=torch.float64))
    assert len(sampler) == 50 and len(sampler) == 50  # asking twice selects nothing
    # each epoch is selected only when it starts, after every loss of the previous one
    assert strategy.at_select == [(0, 0), (1, 50)]
    assert not (~strategy.seen).any()  # optimistic start: two half epochs cover the data


def test_len_reports_the_plan_and_does_not_raise_after_the_last_epoch():
    sampler = PruningSampler(100, UniformDynamic(), rate=0.5, epochs=2, seed=0)
    loader = DataLoader(_dataset(100), batch_size=16, sampler=sampler)  # 16, 16, 16, 2
    lengths = []
    for _ in range(2):
        for _, _, idx in loader:
            lengths.append(len(loader))
            sampler.update(idx, torch.ones(len(idx)))
    # in an epoch its own size; once its last index is drawn, the next epoch's (none: 0)
    assert lengths == [4, 4, 4, 4, 4, 4, 4, 0]
    assert len(sampler) == 0
    with pytest.raises(RuntimeError, match="planned for 2 epochs"):
        iter(sampler)


def test_an_epoch_left_early_ends_and_len_reports_the_next_one():
    sampler = PruningSampler(100, InfoBatch(delta=0.5), rate=0.3, epochs=4, seed=0)
    assert sampler.keep_counts == [40, 40, 100, 100]
    loader = DataLoader(_dataset(100), batch_size=10, sampler=sampler)
    for epoch in range(2):
        for i, (_, _, idx) in enumerate(loader):
            sampler.update(idx, torch.rand(len(idx), dtype=torch.float64))
            if epoch == 1 and i == 0:
                break  # e.g. a step budget ends epoch 1 early
    assert len(loader) == 10
    assert sum(1 for _ in loader) == 10


def test_closing_an_earlier_epochs_iterator_does_not_end_the_epoch_in_progress():
    """An iterator of epoch 0 left open and closed (or garbage collected) only once epoch 1
    has started must not end epoch 1: len stays epoch 1's size until its indices run out."""
    sampler = PruningSampler(100, InfoBatch(delta=0.5), rate=0.3, epochs=4, seed=0)
    assert sampler.keep_counts == [40, 40, 100, 100]
    stale = iter(sampler)
    next(stale)  # epoch 0 started, then abandoned
    current = iter(sampler)  # epoch 1
    stale.close()
    assert len(sampler) == 40
    assert len(list(current)) == 40
    assert len(sampler) == 100  # epoch 1 ran out: the plan of epoch 2


# ----------------------------------------------------------------------- sampler: pass accounting


def test_passes_are_the_samples_trained_not_the_indices_drawn():
    sampler = PruningSampler(100, UniformDynamic(), rate=0.5, epochs=4, seed=0)
    loader = DataLoader(_dataset(100), batch_size=16, sampler=sampler, drop_last=True)
    trained = 0
    for _ in range(4):
        for _, _, idx in loader:
            sampler.update(idx, torch.ones(len(idx)))
            trained += len(idx)
    stats = sampler.stats()
    assert trained == 4 * 48  # the last 2 of each 50 never reach the network
    assert stats.training_passes == stats.passes_done == trained
    assert stats.realized_rate == pytest.approx(1 - trained / 400)


def test_indices_drawn_ahead_but_not_trained_are_not_passes():
    sampler = PruningSampler(60, UniformDynamic(), rate=0.5, epochs=2, seed=0)
    drawn = iter(sampler)
    ahead = torch.tensor([next(drawn) for _ in range(20)])  # e.g. prefetched by workers
    sampler.update(ahead[:12], torch.ones(12))
    assert sampler.stats().training_passes == 12


# ----------------------------------------------------------------------- strategies: coverage


@pytest.mark.parametrize("epsilon", [0.2, 0.5, 1.0])
def test_epsilon_greedy_covers_the_data_before_revisiting_a_sample(epsilon):
    n = 1000
    sampler = PruningSampler(n, EpsilonGreedy(epsilon=epsilon), rate=0.5, epochs=4, seed=0)
    first = torch.tensor(list(sampler))
    sampler.update(first, torch.rand(len(first), dtype=torch.float64))
    second = torch.tensor(list(sampler))
    assert len(first) == len(second) == 500
    assert set(first.tolist()) | set(second.tolist()) == set(range(n))


# ----------------------------------------------------------------------- NTE: per-example refusal


def _linear(lr: float):
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.3, -0.2]]))
    return model, NeuralTangentEnsemble(model.parameters(), lr=lr, max_delta=None)


@pytest.mark.parametrize(
    ("x", "lr"),
    [
        ([[1 / 0.3, 0.0]], 0.3),  # 1 - lr * g rounds to 0 in float32: log factor -inf
        ([[float("-inf"), 0.5]], 0.1),  # -inf gradient on a positive weight: factor +inf
    ],
)
def test_per_example_step_refuses_a_non_finite_log_factor_and_changes_nothing(x, lr):
    model, opt = _linear(lr)
    before = (model.weight.detach().clone(), opt.state[model.weight]["log_magnitude"].clone())
    with pytest.raises(ValueError, match="not positive.*lower lr"):
        opt.step_per_example(model, lambda out, y: out.sum(), torch.tensor(x), torch.zeros(1))
    torch.testing.assert_close(model.weight.detach(), before[0])
    torch.testing.assert_close(opt.state[model.weight]["log_magnitude"], before[1])


# ----------------------------------------------------------------------- NTE: low-precision state


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_parameters_keep_a_float32_state_that_tracks_the_exact_update(dtype):
    gen = torch.Generator().manual_seed(0)
    w = torch.empty(1000).uniform_(-0.3, 0.3, generator=gen)
    g = torch.randn(1000, generator=gen).to(dtype) * 0.1
    p = nn.Parameter(w.to(dtype))
    q = nn.Parameter(p.detach().double())  # same start, float64 reference
    opt = NeuralTangentEnsemble([p], lr=0.01, max_delta=None)
    ref = NeuralTangentEnsemble([q], lr=0.01, max_delta=None)
    assert opt.state[p]["log_magnitude"].dtype == torch.float32
    for _ in range(10):
        p.grad, q.grad = g, g.double()
        opt.step(batch_size=8)
        ref.step(batch_size=8)
    exact = ref.displacement(q)
    torch.testing.assert_close(opt.displacement(p).double(), exact, rtol=1e-5, atol=0)
    # the parameter is the exact value rounded once to its dtype (exp2 may move it one ulp)
    ulp = torch.finfo(dtype).eps * exact.abs()
    assert torch.all((p.detach().double() - exact).abs() <= ulp)
    assert p.dtype == dtype


def test_low_precision_state_survives_a_state_dict_round_trip():
    torch.manual_seed(0)
    model = nn.Linear(3, 4).to(torch.bfloat16)
    opt = NeuralTangentEnsemble(model.parameters(), lr=0.05, max_delta=None)
    x = torch.randn(8, 3, dtype=torch.bfloat16)

    def train(m, o, steps):
        for _ in range(steps):
            o.zero_grad()
            m(x).square().mean().backward()
            o.step(batch_size=8)

    train(model, opt, 2)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    clone = nn.Linear(3, 4).to(torch.bfloat16)
    clone_opt = NeuralTangentEnsemble(clone.parameters(), lr=0.05, max_delta=None)
    clone.load_state_dict(saved_model)
    clone_opt.load_state_dict(saved_opt)
    for p, q in zip(model.parameters(), clone.parameters(), strict=True):
        for key in ("sign", "log_magnitude"):
            assert clone_opt.state[q][key].dtype == torch.float32
            assert torch.equal(clone_opt.state[q][key], opt.state[p][key])
    train(model, opt, 3)
    train(clone, clone_opt, 3)
    for p, q in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(p, q)
        assert torch.equal(opt.state[p]["log_magnitude"], clone_opt.state[q]["log_magnitude"])


def test_low_precision_init_expansion_and_per_example_step():
    model = nn.Linear(2, 1, bias=False).to(torch.bfloat16)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.3, -0.2]]))
    opt = NeuralTangentEnsemble(model.parameters(), lr=0.1, max_delta=None, expansion="init")
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=torch.bfloat16)
    opt.step_per_example(model, lambda out, y: out.sum(), x, torch.zeros(2))
    state = opt.state[model.weight]
    assert state["log_magnitude"].dtype == torch.float32 and state["seed"].dtype == torch.bfloat16
    expected = (state["seed"].float() + opt.displacement(model.weight)).to(torch.bfloat16)
    assert torch.equal(model.weight.detach(), expected)
