"""Tests for plastix.bridges.pruning, the ``pruning`` experiment and its plot."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import BatchSampler, DataLoader

from plastix.bridges.pruning import (
    UCB,
    EpsilonGreedy,
    ForgettingCounter,
    IndexedTensorDataset,
    InfoBatch,
    PruningSampler,
    StaticPruning,
    StaticScores,
    UniformDynamic,
    el2n_scores,
    evaluate_classifier,
    forgetting_scores,
    grand_scores,
    plan_keep_counts,
    train_classifier_epoch,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blobs(n: int = 240, n_classes: int = 3, dim: int = 10, seed: int = 0):
    """Gaussian clusters, one per class, well separated."""
    g = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(n_classes, dim, generator=g)
    y = torch.arange(n) % n_classes
    x = centres[y] + torch.randn(n, dim, generator=g)
    return x, y


def mlp(dim: int = 10, n_classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, 32), nn.ReLU(), nn.Linear(32, n_classes))


def run_epochs(sampler: PruningSampler, losses=None) -> list[torch.Tensor]:
    """Iterate every planned epoch, reporting ``losses[i]`` (default 1.0) for each sample."""
    served = []
    for _ in range(sampler.epochs):
        idx = torch.tensor(list(sampler), dtype=torch.long)
        served.append(idx)
        loss = torch.ones(len(idx)) if losses is None else losses[idx].float()
        sampler.update(idx, loss)
    return served


ALL_DYNAMIC = [UniformDynamic, EpsilonGreedy, UCB, InfoBatch]


# ----------------------------------------------------------------------- budget and rate


def test_plan_keep_counts_meets_the_budget_with_annealing_and_scoring():
    counts = plan_keep_counts(1000, 10, 0.5, scoring_passes=1500, anneal_epochs=2)
    assert counts[-2:] == [1000, 1000]
    assert sum(counts) + 1500 == 5000
    assert max(counts[:-2]) - min(counts[:-2]) <= 1


@pytest.mark.parametrize(("n", "epochs", "rate"), [(503, 8, 0.3), (997, 7, 0.45), (10, 3, 0.5)])
def test_plan_keep_counts_spends_the_rounded_budget(n, epochs, rate):
    """(1 - rate) E N passes rounded to the nearest pass, not truncated (0.7 * 8 * 503 =
    2816.8 -> 2817)."""
    assert sum(plan_keep_counts(n, epochs, rate)) == round((1 - rate) * epochs * n)


def test_plan_keep_counts_refuses_an_unreachable_rate():
    with pytest.raises(ValueError, match="rate: 0.8.*rate <="):
        plan_keep_counts(1000, 10, 0.8, scoring_passes=2000, anneal_epochs=0)


def test_plan_keep_counts_accepts_the_smallest_budget_of_one_pass_per_pruned_epoch():
    """A budget of exactly one pass per pruned epoch is reachable: round(0.1 * 2 * 10) = 2
    passes over 2 epochs, and round(0.4 * 3 * 10) - 10 annealing = 2 over the 2 pruned ones."""
    assert plan_keep_counts(10, 2, 0.9) == [1, 1]
    assert plan_keep_counts(10, 3, 0.6, anneal_epochs=1) == [1, 1, 10]


def test_plan_keep_counts_allows_every_epoch_to_anneal_at_rate_zero():
    """anneal_epochs == epochs is allowed (only more is refused): all epochs use full data."""
    assert plan_keep_counts(10, 3, 0.0, anneal_epochs=3) == [10, 10, 10]
    sampler = PruningSampler(10, UCB(anneal_epochs=3), rate=0.0, epochs=3)
    assert sampler.keep_counts == [10, 10, 10]
    with pytest.raises(ValueError, match="all 3 epochs are full-data annealing"):
        plan_keep_counts(10, 3, 0.5, anneal_epochs=3)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_sampler_rejects_rate_outside_unit_interval(rate):
    with pytest.raises(ValueError, match="rate"):
        PruningSampler(100, UniformDynamic(), rate=rate, epochs=3)


@pytest.mark.parametrize("rate", [True, "0.5", None])
def test_sampler_rejects_non_numeric_rate(rate):
    with pytest.raises(TypeError, match="rate"):
        PruningSampler(100, UniformDynamic(), rate=rate, epochs=3)


def test_sampler_rejects_bad_arguments():
    with pytest.raises(TypeError, match="strategy"):
        PruningSampler(100, "ucb", rate=0.5, epochs=3)
    with pytest.raises(ValueError, match="epochs"):
        PruningSampler(100, UCB(), rate=0.5, epochs=0)
    with pytest.raises(ValueError, match="epsilon"):
        EpsilonGreedy(epsilon=1.5)
    with pytest.raises(ValueError, match="decay"):
        UCB(decay=1.0)
    with pytest.raises(ValueError, match="c:"):
        UCB(c=-1.0)
    with pytest.raises(ValueError, match="epsilon_decay"):
        EpsilonGreedy(epsilon_decay=0.0)
    with pytest.raises(ValueError, match="epsilon_decay"):
        EpsilonGreedy(epsilon_decay=1.5)
    with pytest.raises(ValueError, match="decay_unit: 'step'"):
        UCB(decay_unit="step")
    with pytest.raises(ValueError, match="anneal_epochs: -1"):
        EpsilonGreedy(anneal_epochs=-1)
    with pytest.raises(TypeError, match="anneal_epochs"):
        UCB(anneal_epochs=1.5)


@pytest.mark.parametrize("strategy_cls", ALL_DYNAMIC)
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.7])
def test_realized_rate_equals_target_for_every_strategy(strategy_cls, rate):
    n, epochs = 503, 8
    sampler = PruningSampler(n, strategy_cls(), rate=rate, epochs=epochs, seed=1)
    losses = torch.rand(n, generator=torch.Generator().manual_seed(0))
    served = run_epochs(sampler, losses)
    stats = sampler.stats()
    record = stats.as_dict()
    assert record["passes_done"] == stats.training_passes == sum(len(s) for s in served)
    assert record["strategy"] == strategy_cls.name and record["epochs"] == epochs
    assert stats.passes_done + stats.passes_saved == epochs * n
    assert abs(stats.realized_rate - rate) <= 1 / (epochs * n)
    for s in served:  # no sample twice in one epoch
        assert len(torch.unique(s)) == len(s)


def test_static_scoring_passes_come_out_of_the_budget():
    n, epochs = 400, 10
    scores = StaticScores("el2n", torch.rand(n), passes=2 * n, wall_s=0.0)
    sampler = PruningSampler(n, StaticPruning(scores), rate=0.5, epochs=epochs)
    served = run_epochs(sampler)
    stats = sampler.stats()
    assert stats.scoring_passes == 2 * n
    assert sum(len(s) for s in served) == 3 * n  # 5n allowed - 2n scoring
    assert stats.realized_rate == pytest.approx(0.5)


def test_static_pruning_keeps_the_highest_scores_every_epoch():
    n = 100
    scores = StaticScores("grand", torch.arange(n, dtype=torch.float32), passes=0, wall_s=0.0)
    sampler = PruningSampler(n, StaticPruning(scores), rate=0.6, epochs=3)
    for idx in run_epochs(sampler):
        assert sorted(idx.tolist()) == list(range(60, 100))


def test_static_scores_must_match_the_data():
    scores = StaticScores("el2n", torch.rand(10), passes=0, wall_s=0.0)
    with pytest.raises(ValueError, match="10 scores for a data set of 20"):
        PruningSampler(20, StaticPruning(scores), rate=0.5, epochs=2)
    with pytest.raises(TypeError, match="StaticScores"):
        StaticPruning(torch.rand(10))


def test_stats_report_the_wall_time_the_static_scores_took():
    """scoring_wall_s is the StaticScores' own wall_s; a dynamic strategy scored nothing."""
    scores = StaticScores("el2n", torch.rand(20), passes=0, wall_s=12.5)
    static = PruningSampler(20, StaticPruning(scores), rate=0.5, epochs=2).stats()
    assert static.scoring_wall_s == 12.5 and static.as_dict()["scoring_wall_s"] == 12.5
    dynamic = PruningSampler(20, UniformDynamic(), rate=0.5, epochs=2).stats()
    assert dynamic.scoring_wall_s == 0.0


# ----------------------------------------------------------------------- DataLoader contract


def test_dataloader_len_and_epochs_follow_the_plan():
    x, y = blobs(200)
    sampler = PruningSampler(200, UCB(), rate=0.5, epochs=4, seed=0)
    loader = DataLoader(IndexedTensorDataset(x, y), batch_size=32, sampler=sampler)
    for epoch in range(4):
        expected = sampler.keep_counts[epoch]
        assert len(loader) == math.ceil(expected / 32)
        seen = []
        for xb, yb, idx in loader:
            assert torch.equal(xb, x[idx]) and torch.equal(yb, y[idx])
            sampler.update(idx, torch.rand(len(idx)))
            seen.append(idx)
        assert len(torch.cat(seen)) == expected
    assert sampler.epoch == 4
    with pytest.raises(RuntimeError, match="planned for 4 epochs"):
        iter(sampler)


def test_batched_fetch_through_batch_sampler():
    x, y = blobs(100)
    sampler = PruningSampler(100, UniformDynamic(), rate=0.5, epochs=2)
    loader = DataLoader(
        IndexedTensorDataset(x, y), sampler=BatchSampler(sampler, 16, False), batch_size=None
    )
    total = 0
    for xb, yb, idx in loader:
        assert xb.shape == (len(idx), 10) and torch.equal(yb, y[idx])
        sampler.update(idx, torch.ones(len(idx)))
        total += len(idx)
    assert total == sampler.keep_counts[0]


def test_update_rejects_a_reduced_loss():
    sampler = PruningSampler(50, UCB(), rate=0.5, epochs=2)
    idx = torch.tensor(list(sampler)[:8])
    with pytest.raises(ValueError, match="already reduced.*reduction='none'"):
        sampler.update(idx, torch.tensor(1.3))


@pytest.mark.parametrize("shape", [(7,), (8, 1), (8, 3)])
def test_update_rejects_a_loss_of_the_wrong_shape(shape):
    sampler = PruningSampler(50, UCB(), rate=0.5, epochs=2)
    idx = torch.tensor(list(sampler)[:8])
    with pytest.raises(ValueError, match="per_sample_loss: shape"):
        sampler.update(idx, torch.ones(shape))


def test_update_rejects_indices_not_served_this_epoch():
    sampler = PruningSampler(50, UniformDynamic(), rate=0.5, epochs=2)
    with pytest.raises(RuntimeError, match="no epoch has started"):
        sampler.update(torch.tensor([0]), torch.ones(1))
    served = set(sampler)
    missing = sorted(set(range(50)) - served)[:3]
    with pytest.raises(ValueError, match="not served"):
        sampler.update(torch.tensor(missing), torch.ones(3))
    with pytest.raises(ValueError, match=r"\[0, 50\)"):
        sampler.update(torch.tensor([50]), torch.ones(1))
    previous = sorted(served)
    second = set(sampler)  # epoch 2: epoch 1's samples are no longer served
    stale = [i for i in previous if i not in second][:2]
    with pytest.raises(ValueError, match="not served in epoch 1"):
        sampler.update(torch.tensor(stale), torch.ones(2))


def test_update_rejects_wrong_types_and_nan():
    sampler = PruningSampler(50, UCB(), rate=0.0, epochs=1)
    list(sampler)
    with pytest.raises(TypeError, match="indices"):
        sampler.update([0, 1], torch.ones(2))
    with pytest.raises(TypeError, match="indices"):
        sampler.update(torch.tensor([0.0, 1.0]), torch.ones(2))
    with pytest.raises(TypeError, match="per_sample_loss"):
        sampler.update(torch.tensor([0, 1]), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        sampler.update(torch.tensor([0, 1]), torch.tensor([1.0, float("nan")]))


def test_dataset_wrapper_checks_its_tensors():
    with pytest.raises(ValueError, match="first dimension"):
        IndexedTensorDataset(torch.zeros(5, 2), torch.zeros(4))
    with pytest.raises(TypeError, match="torch.Tensor"):
        IndexedTensorDataset(np.zeros((5, 2)))


def test_dataset_wrapper_refuses_a_scalar_tensor():
    """A 0-d tensor has no sample axis: refused with the first-dimension message."""
    with pytest.raises(ValueError, match=r"tensors\[1\]: first dimension"):
        IndexedTensorDataset(torch.zeros(5), torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"tensors\[0\]: first dimension"):
        IndexedTensorDataset(torch.tensor(1.0))


# ----------------------------------------------------------------------- strategy behaviour


@pytest.mark.parametrize("strategy", [EpsilonGreedy(epsilon=0.0), UCB(c=0.0)])
def test_rl_strategies_cover_unseen_samples_first_then_exploit_high_loss(strategy):
    n = 100
    sampler = PruningSampler(n, strategy, rate=0.5, epochs=3)
    losses = torch.arange(n, dtype=torch.float32)  # sample i has loss i
    first, second, third = run_epochs(sampler, losses)
    assert set(first.tolist()) | set(second.tolist()) == set(range(n))  # optimistic start
    assert sorted(third.tolist()) == list(range(50, 100))  # then the 50 highest losses


def test_epsilon_greedy_explores_an_epsilon_share():
    n = 200
    strategy = EpsilonGreedy(epsilon=0.25)
    strategy.reset(n)
    strategy.observe(torch.arange(n), torch.arange(n, dtype=torch.float64))  # loss of i is i
    chosen = set(strategy.select(0, 100, torch.Generator().manual_seed(3))[0].tolist())
    top = set(range(125, 200))  # (1 - eps) * 100 = 75 greedy picks
    assert len(chosen) == 100 and top <= chosen
    explored = chosen - top
    assert len(explored) == 25 and min(explored) < 100  # random picks reach low-loss samples


def test_epsilon_greedy_rounds_its_greedy_share_to_the_nearest_sample():
    """(1 - 0.2) * 7 = 5.6 greedy picks round to 6 (not 5): the 6 highest losses (14..19)
    are always kept and exactly one other sample explored, whatever the generator."""
    n = 20
    strategy = EpsilonGreedy(epsilon=0.2)
    strategy.reset(n)
    strategy.observe(torch.arange(n), torch.arange(n, dtype=torch.float64))  # loss of i is i
    for seed in range(10):
        chosen = set(strategy.select(0, 7, torch.Generator().manual_seed(seed))[0].tolist())
        assert len(chosen) == 7 and set(range(14, 20)) <= chosen


def test_ucb_adds_c_times_the_standard_deviation_not_the_variance():
    """Sample 0: losses 1.5, 2.5 give mean 2.0, variance 0.25, sigma 0.5: bound 2.5. Sample 1:
    2.4 twice, bound 2.4. With c = 1 sample 0 ranks first (mean + variance would be 2.25)."""
    strategy = UCB(c=1.0, decay=0.5, decay_unit="observation")
    strategy.reset(2)
    idx = torch.arange(2)
    strategy.observe(idx, torch.tensor([1.5, 2.4], dtype=torch.float64))
    strategy.observe(idx, torch.tensor([2.5, 2.4], dtype=torch.float64))
    assert strategy.mean.tolist() == pytest.approx([2.0, 2.4])
    assert strategy.var.tolist() == pytest.approx([0.25, 0.0])
    for seed in range(3):
        chosen, _ = strategy.select(1, 1, torch.Generator().manual_seed(seed))
        assert chosen.tolist() == [0]


def test_ucb_prefers_uncertain_samples_at_equal_mean_loss():
    n = 40
    strategy = UCB(c=2.0, decay=0.5)
    strategy.reset(n)
    idx = torch.arange(n)
    noisy = idx < 20
    strategy.observe(idx, torch.ones(n, dtype=torch.float64))
    strategy.observe(idx, torch.where(noisy, 3.0, 1.0).double())
    strategy.observe(idx, torch.where(noisy, -1.0, 1.0).double())
    assert torch.allclose(strategy.mean[~noisy], torch.ones(20, dtype=torch.float64))
    chosen, _ = strategy.select(0, 20, torch.Generator().manual_seed(0))
    assert sorted(chosen.tolist()) == list(range(20))


def test_moving_loss_follows_the_ema_equations():
    strategy = EpsilonGreedy(decay=0.8)
    strategy.reset(1)
    idx = torch.tensor([0])
    values = [2.0, 1.0, 4.0]
    mean, var = values[0], 0.0
    for k, v in enumerate(values):
        strategy.observe(idx, torch.tensor([v], dtype=torch.float64))
        if k:
            diff = v - mean
            mean += 0.2 * diff
            var = 0.8 * (var + 0.2 * diff * diff)
    assert strategy.mean.item() == pytest.approx(mean)
    assert strategy.var.item() == pytest.approx(var)


def test_moving_loss_discounts_a_stale_loss_by_the_epochs_since_it_was_measured():
    gen = torch.Generator().manual_seed(0)
    idx = torch.tensor([0])
    results = {}
    for unit in ("epoch", "observation"):
        strategy = UCB(decay=0.5, decay_unit=unit)
        strategy.reset(1)
        strategy.select(0, 1, gen)  # epoch 0
        strategy.observe(idx, torch.tensor([2.0], dtype=torch.float64))
        strategy.select(3, 1, gen)  # next seen three epochs later
        strategy.observe(idx, torch.tensor([1.0], dtype=torch.float64))
        results[unit] = (strategy.mean.item(), strategy.var.item())
    alpha = 1.0 - 0.5**3  # old estimate decayed over 3 epochs
    assert results["epoch"][0] == pytest.approx(2.0 - alpha)
    assert results["epoch"][1] == pytest.approx((1.0 - alpha) * alpha)
    assert results["observation"] == (pytest.approx(1.5), pytest.approx(0.25))


def test_moving_loss_measures_the_gap_from_the_latest_observation():
    """Seen at epochs 0, 2 and 3 (decay 0.5 per epoch): the last update is one epoch after the
    previous one, so alpha = 0.5, not 1 - 0.5**3 as if it were still measured from epoch 0.
    Epoch 2 (gap 2, alpha 0.75): mean 2 + 0.75 * 2 = 3.5, var 0.25 * 0.75 * 4 = 0.75;
    epoch 3 (gap 1, alpha 0.5): mean 3.5 - 0.5 * 3.5 = 1.75, var 0.5 * (0.75 + 0.5 * 12.25)."""
    gen = torch.Generator().manual_seed(0)
    idx = torch.tensor([0])
    strategy = UCB(decay=0.5, decay_unit="epoch")
    strategy.reset(1)
    for epoch, loss in ((0, 2.0), (2, 4.0), (3, 0.0)):
        strategy.select(epoch, 1, gen)
        strategy.observe(idx, torch.tensor([loss], dtype=torch.float64))
    assert strategy.last_epoch.tolist() == [3]
    assert strategy.mean.item() == pytest.approx(1.75)
    assert strategy.var.item() == pytest.approx(0.5 * (0.75 + 0.5 * 3.5**2))


def test_epsilon_greedy_decays_its_exploration_share_per_epoch():
    n = 200
    strategy = EpsilonGreedy(epsilon=0.4, epsilon_decay=0.5)
    strategy.reset(n)
    strategy.observe(torch.arange(n), torch.arange(n, dtype=torch.float64))  # loss of i is i
    for epoch, n_explore in ((0, 40), (2, 10)):  # eps = 0.4, then 0.4 * 0.5**2 = 0.1
        chosen = set(strategy.select(epoch, 100, torch.Generator().manual_seed(3))[0].tolist())
        greedy = set(range(n - (100 - n_explore), n))
        assert len(chosen) == 100 and greedy <= chosen
        assert len(chosen - greedy) == n_explore


@pytest.mark.parametrize("strategy_cls", [EpsilonGreedy, UCB])
def test_rl_annealing_trains_all_samples_at_the_end_and_meets_the_rate(strategy_cls):
    n, epochs = 300, 6
    sampler = PruningSampler(n, strategy_cls(anneal_epochs=2), rate=0.5, epochs=epochs, seed=0)
    losses = torch.rand(n, generator=torch.Generator().manual_seed(1))
    served = run_epochs(sampler, losses)
    for idx in served[-2:]:  # annealing: every sample once
        assert sorted(idx.tolist()) == list(range(n))
    # 0.5 * 6 * 300 = 900 passes; 600 go to annealing, 300 to the four pruned epochs
    assert [len(idx) for idx in served[:-2]] == [75, 75, 75, 75]
    assert sampler.stats().realized_rate == pytest.approx(0.5, abs=1 / (n * epochs))


def test_rl_annealing_that_leaves_no_budget_is_refused():
    with pytest.raises(ValueError, match="rate: 0.5.*3 full-data annealing"):
        PruningSampler(100, EpsilonGreedy(anneal_epochs=3), rate=0.5, epochs=6)
    with pytest.raises(ValueError, match="anneal_epochs: 7 exceeds the run's 6 epochs"):
        PruningSampler(100, UCB(anneal_epochs=7), rate=0.0, epochs=6)


def test_infobatch_keeps_hard_samples_and_rescales_kept_well_learned_ones():
    n = 1000
    strategy = InfoBatch()
    strategy.reset(n)
    # 700 easy samples (loss 0.1), 300 hard (5.0): mean 1.57, so the 700 are well learned
    strategy.observe(torch.arange(n), torch.where(torch.arange(n) < 700, 0.1, 5.0).double())
    idx, weights = strategy.select(0, 657, torch.Generator().manual_seed(0))
    hard, easy = idx >= 700, idx < 700
    assert len(idx) == 657 and len(torch.unique(idx)) == 657
    assert hard.sum() == 300 and torch.all(weights[hard] == 1.0)  # every hard sample kept
    assert torch.allclose(weights[easy], torch.full((357,), 700 / 357, dtype=weights.dtype))
    assert weights.sum().item() == pytest.approx(n)  # unbiased: weights sum to N


def test_infobatch_counts_a_loss_equal_to_the_mean_as_not_well_learned():
    """Well learned means strictly below the mean: losses 0, 1, 2 (mean 1) leave only sample
    0 in W (w = 1, h = 2). Keeping 2 keeps all of H, p_W = max(0.5 * 2/3, 0) rounds to none
    of W, so samples 1 and 2 are kept with weight 1."""
    strategy = InfoBatch(min_relative_keep=0.5)
    strategy.reset(3)
    strategy.observe(torch.arange(3), torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64))
    for seed in range(5):
        idx, weights = strategy.select(0, 2, torch.Generator().manual_seed(seed))
        assert sorted(idx.tolist()) == [1, 2]
        assert weights.tolist() == [1.0, 1.0]


def test_infobatch_anneal_epochs_tolerate_float_error_in_delta_times_epochs():
    """0.56 * 25 is 14.000000000000002 in floating point: 14 pruned epochs, 11 annealing."""
    assert InfoBatch(delta=0.56).anneal_epochs(25) == 11
    sampler = PruningSampler(10, InfoBatch(delta=0.56), rate=0.1, epochs=25)
    assert sampler.keep_counts[-11:] == [10] * 11 and sampler.keep_counts[-12] < 10


def test_infobatch_anneals_on_full_data_and_meets_the_rate():
    n, epochs = 1000, 8
    strategy = InfoBatch(delta=0.875)
    assert strategy.anneal_epochs(epochs) == 1
    sampler = PruningSampler(n, strategy, rate=0.3, epochs=epochs, seed=0)
    losses = torch.where(torch.arange(n) < 700, 0.1, 5.0)
    for epoch in range(epochs):
        idx = torch.tensor(list(sampler))
        weights = sampler.update(idx, losses[idx])
        if epoch == 0:  # nothing seen yet: a uniform subset, weight 1
            assert len(idx) < n and torch.all(weights == 1.0)
    assert len(idx) == n and torch.all(weights == 1.0)  # last epoch: all data, weight 1
    assert sampler.stats().realized_rate == pytest.approx(0.3, abs=1 / (n * epochs))


def test_infobatch_prunes_hard_samples_too_when_the_budget_demands_it():
    n = 1000
    strategy = InfoBatch(min_relative_keep=0.5)
    strategy.reset(n)
    strategy.observe(torch.arange(n), torch.where(torch.arange(n) < 500, 0.1, 5.0).double())
    idx, weights = strategy.select(0, 200, torch.Generator().manual_seed(0))
    easy = idx < 500
    assert len(idx) == 200
    # keep fraction 0.2 < hard share: easy kept at half the average rate, hard at the rest
    assert easy.sum() == round(0.5 * 0.2 * 500)  # p_W = 0.1, p_H = 150 / 500 = 0.3
    assert torch.allclose(weights[easy], torch.full((50,), 3.0, dtype=weights.dtype))
    assert torch.all(weights[~easy] == 1.0)  # weights p_H / p_W and 1


def test_forgetting_counter_counts_correct_to_wrong_transitions():
    counter = ForgettingCounter(3)
    target = torch.tensor([0, 0, 0])
    right, wrong = torch.tensor([[1.0, 0.0]] * 3), torch.tensor([[0.0, 1.0]] * 3)
    sequence = {
        0: [right, wrong, right, wrong],
        1: [wrong, wrong, right, right],
        2: [wrong, wrong, wrong, wrong],
    }
    for step in range(4):
        logits = torch.stack([sequence[i][step][i] for i in range(3)])
        counter.record(torch.arange(3), logits, target)
    assert counter.scores().tolist() == [2.0, 0.0, 5.0]  # never learned: presentations + 1


# ----------------------------------------------------------------------- static scorers


def test_grand_vectorized_matches_per_sample_backward():
    x, y = blobs(60)
    torch.manual_seed(0)
    fast = grand_scores(lambda: _seeded_mlp(0), x, y, batch_size=16)
    slow = grand_scores(lambda: _seeded_mlp(0), x, y, batch_size=16, vectorize=False)
    assert torch.allclose(fast.scores, slow.scores, rtol=1e-4)
    assert fast.passes == 60 and fast.method == "grand"
    # check one sample against an explicit gradient
    model = _seeded_mlp(0)
    F.cross_entropy(model(x[:1]), y[:1]).backward()
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters()))
    assert fast.scores[0].item() == pytest.approx(norm.item(), rel=1e-4)


def _seeded_mlp(seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return mlp()


def test_el2n_and_forgetting_scores_count_their_passes_and_rank_mislabelled_samples():
    x, y = blobs(300)
    y = y.clone()
    flipped = torch.arange(0, 300, 10)
    y[flipped] = (y[flipped] + 1) % 3  # 30 wrong labels: the hardest samples

    def make_optimizer(model):
        return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    el2n = el2n_scores(
        lambda: _seeded_mlp(1), make_optimizer, x, y, score_epochs=3, n_models=2, batch_size=32
    )
    assert el2n.passes == 2 * (3 + 1) * 300 and el2n.scores.shape == (300,)
    assert set(torch.topk(el2n.scores, 30).indices.tolist()) == set(flipped.tolist())
    forget = forgetting_scores(
        lambda: _seeded_mlp(2), make_optimizer, x, y, score_epochs=4, batch_size=32
    )
    assert forget.passes == 4 * 300
    assert forget.scores[flipped].mean() > forget.scores[~_mask(300, flipped)].mean() + 1.0


def test_el2n_score_is_the_error_norm_of_each_sample():
    """With nothing learned (lr 0) the score is ``|| softmax(f(x)) - onehot(y) ||_2`` of the
    fresh model, whatever the number of models averaged (all start from the same weights)."""
    x, y = blobs(30)

    def make_optimizer(model):
        return torch.optim.SGD(model.parameters(), lr=0.0)

    scores = el2n_scores(lambda: _seeded_mlp(3), make_optimizer, x, y, n_models=2).scores
    with torch.no_grad():
        probs = _seeded_mlp(3)(x).softmax(1)
    expected = (probs - F.one_hot(y, 3)).norm(dim=1).double()
    torch.testing.assert_close(scores, expected, rtol=1e-6, atol=1e-7)


class _FixedWeights:
    """A sampler stand-in whose ``update`` returns fixed per-sample loss weights."""

    def __init__(self, weights: torch.Tensor):
        self.weights = weights

    def update(self, idx, per_sample_loss):
        return self.weights


def test_train_classifier_epoch_scales_each_sample_loss_by_the_sampler_weight():
    x, y = blobs(4)
    loader = DataLoader(IndexedTensorDataset(x, y), batch_size=4)

    def one_epoch(weights):
        model = _seeded_mlp(4)
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        train_classifier_epoch(model, optimizer, loader, sampler=_FixedWeights(weights))
        return [p.detach() for p in model.parameters()]

    start = [p.detach() for p in _seeded_mlp(4).parameters()]
    for a, b in zip(one_epoch(torch.zeros(4)), start, strict=True):
        torch.testing.assert_close(a, b)  # every loss weighted 0: nothing learned
    # weight 4 on sample 2 alone, in a mean over 4: one SGD step on sample 2's loss only
    model = _seeded_mlp(4)
    F.cross_entropy(model(x[2:3]), y[2:3]).backward()
    expected = [p.detach() - p.grad for p in model.parameters()]
    for a, b in zip(one_epoch(torch.tensor([0.0, 0.0, 4.0, 0.0])), expected, strict=True):
        torch.testing.assert_close(a, b)


def _mask(n: int, idx: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(n, dtype=torch.bool)
    mask[idx] = True
    return mask


# ----------------------------------------------------------------------- training


@pytest.mark.parametrize("strategy_cls", ALL_DYNAMIC)
def test_pruned_training_learns_a_rate_network(strategy_cls):
    x, y = blobs(900, seed=1)
    x, y, x_test, y_test = x[:600], y[:600], x[600:], y[600:]
    model = _seeded_mlp(0)
    sampler = PruningSampler(600, strategy_cls(), rate=0.5, epochs=6, seed=0)
    loader = DataLoader(IndexedTensorDataset(x, y), batch_size=32, sampler=sampler)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    results = [train_classifier_epoch(model, optimizer, loader, sampler=sampler) for _ in range(6)]
    assert sum(r.passes for r in results) == 1800
    assert evaluate_classifier(model, x_test, y_test) > 0.9


class TinySNN(nn.Module):
    """Two snntorch Leaky layers, 6 steps, spike counts + final membrane as logits."""

    def __init__(self, dim: int = 10, n_classes: int = 3) -> None:
        super().__init__()
        import snntorch as snn

        self.fc1, self.fc2 = nn.Linear(dim, 32), nn.Linear(32, n_classes)
        self.lif1, self.lif2 = snn.Leaky(beta=0.9), snn.Leaky(beta=0.9)

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        count, current = 0.0, self.fc1(x)
        for _ in range(6):
            spk1, mem1 = self.lif1(current, mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            count = count + spk2
        return count + mem2


def test_pruning_trains_an_snntorch_spiking_network():
    pytest.importorskip("snntorch")
    x, y = blobs(450, seed=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = TinySNN()
    sampler = PruningSampler(300, UCB(), rate=0.5, epochs=6, seed=0)
    loader = DataLoader(IndexedTensorDataset(x[:300], y[:300]), batch_size=25, sampler=sampler)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    first = train_classifier_epoch(model, optimizer, loader, sampler=sampler)
    for _ in range(5):
        last = train_classifier_epoch(model, optimizer, loader, sampler=sampler)
    assert last.loss < first.loss
    assert evaluate_classifier(model, x[300:], y[300:]) > 0.8
    assert sampler.stats().realized_rate == pytest.approx(0.5)
    grand = grand_scores(TinySNN, x[:20], y[:20], vectorize=False)  # surrogate spikes: loop
    assert grand.scores.shape == (20,) and torch.all(grand.scores > 0)


# ----------------------------------------------------------------------- experiment and plot


def test_pruning_experiment_writes_a_sweep(tmp_path):
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    overrides = {
        "dataset": "digits",
        "strategies": ("full", "uniform", "ucb", "infobatch", "grand"),
        "rates": (0.5,),
        "epochs": 4,
        "n_train": 400,
        "n_test": 200,
        "batch_size": 32,
        "rl_anneal_epochs": 1,
    }
    res = read_result(run_experiment("pruning", overrides, out=tmp_path / "r.h5", seed=0))
    assert res.status == "complete"
    assert len(res.metrics["run"]) == 1 + 4
    ucb_epochs = res.metrics["epoch_passes"][res.metrics["epoch_run"] == 2]  # run 2: ucb
    assert ucb_epochs.tolist() == [134, 133, 133, 400]  # 1000 passes, last epoch annealed
    realized = res.metrics["realized_rate"]
    assert np.allclose(realized, res.metrics["rate"], atol=1 / (4 * 400))
    assert np.all(res.metrics["passes_done"] + res.metrics["passes_saved"] == 4 * 400)
    assert res.arrays["accuracy"].shape == (5, 1)
    assert res.summary["test_accuracy"] > 0.5  # full data learns digits
    grand_rows = res.metrics["strategy_index"] == 4
    assert np.all(res.metrics["scoring_passes"][grand_rows] == 400)

    from plastix.sims.plots import plot_result

    written = plot_result(res, tmp_path / "figs")
    assert any(p.name.endswith("accuracy_vs_saved.png") for p in written)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rates": (1.0,)}, "rates"),
        ({"strategies": ("ucb", "ucb")}, "repeats"),
        ({"strategies": ("bogus",)}, "bogus"),
        ({"strategies": ("el2n",), "epochs": 4, "rates": (0.5,)}, "out of reach for 'el2n'"),
        (
            {"strategies": ("ucb",), "epochs": 4, "rates": (0.5,), "rl_anneal_epochs": 2},
            "out of reach for 'ucb'",
        ),
        ({"loss_decay_unit": "step"}, "loss_decay_unit"),
        ({"epsilon_decay": 0.0}, "epsilon_decay"),
    ],
)
def test_pruning_experiment_refuses_bad_config(tmp_path, overrides, message):
    from plastix.sims.config import ConfigError
    from plastix.sims.experiments import run_experiment

    with pytest.raises(ConfigError, match=message):
        run_experiment("pruning", overrides, out=tmp_path / "r.h5")
    assert not (tmp_path / "r.h5").exists()


def test_pruning_config_passes_the_rl_options_to_the_strategies():
    from plastix.sims.exp_pruning import PruningConfig, make_strategy

    cfg = PruningConfig(
        epsilon=0.3,
        epsilon_decay=0.8,
        ucb_c=0.5,
        loss_decay=0.7,
        loss_decay_unit="observation",
        rl_anneal_epochs=2,
    )
    greedy, ucb = make_strategy(cfg, "epsilon-greedy", None), make_strategy(cfg, "ucb", None)
    assert (greedy.epsilon, greedy.epsilon_decay, greedy.decay) == (0.3, 0.8, 0.7)
    assert ucb.c == 0.5 and ucb.decay == 0.7
    for strategy in (greedy, ucb):
        assert strategy.decay_unit == "observation" and strategy.anneal_epochs(10) == 2
    assert cfg.anneal_epochs("ucb") == 2 and cfg.anneal_epochs("uniform") == 0


def test_plot_accuracy_vs_saved_draws_one_line_per_strategy():
    from plastix.sims.plots_pruning import plot_accuracy_vs_saved

    curves = {
        "uniform": (np.array([0.3, 0.5, 0.5]), np.array([0.9, 0.85, 0.87])),
        "ucb": (np.array([0.3, 0.5]), np.array([0.91, 0.88])),
    }
    fig = plot_accuracy_vs_saved(curves, full_accuracy=0.92)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"uniform", "ucb", "full data"} <= set(labels)
    uniform = next(c for c in ax.containers if c.get_label() == "uniform")
    assert np.allclose(uniform.lines[0].get_ydata(), [90.0, 86.0])  # repeats averaged
    with pytest.raises(ValueError, match="equal length"):
        plot_accuracy_vs_saved({"x": (np.array([0.1]), np.array([0.5, 0.6]))})


def test_resnet18_has_the_cifar_resnet18_shape():
    from plastix.sims.exp_pruning import ResNet18

    model = ResNet18(3, 10)
    assert sum(p.numel() for p in model.parameters()) == 11_173_962  # He et al. 2016, CIFAR
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_random_crop_flip_shifts_or_mirrors_each_image():
    from plastix.sims.exp_pruning import random_crop_flip

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8) + 1.0
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape
    for original, augmented in zip(x, out, strict=True):
        candidates = []
        padded = F.pad(original, (2, 2, 2, 2))
        for dy in range(5):
            for dx in range(5):
                crop = padded[:, dy : dy + 8, dx : dx + 8]
                candidates += [crop, crop.flip(2)]
        assert any(torch.equal(augmented, c) for c in candidates)


def test_pruning_experiment_resumes_after_an_interruption(tmp_path, monkeypatch):
    import plastix.sims.exp_pruning as exp
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    overrides = {
        "dataset": "digits",
        "strategies": ("uniform", "ucb"),
        "rates": (0.5,),
        "epochs": 2,
        "n_train": 120,
        "n_test": 60,
        "batch_size": 30,
    }
    original, calls = exp._one_run, []

    def interrupted(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(exp, "_one_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("pruning", overrides, out=tmp_path / "r.h5", seed=0)
    assert not (tmp_path / "r.h5").exists() and (tmp_path / "r.h5.ckpt").exists()
    calls.clear()
    res = read_result(run_experiment("pruning", overrides, out=tmp_path / "r.h5", seed=0))
    assert calls == ["ucb"]  # the finished uniform run was not repeated
    assert res.metrics["strategy_index"].tolist() == [0.0, 1.0]
    assert len(res.metrics["step"]) == 4  # 2 runs x 2 epochs, none duplicated
    # the resumed run logs the steps of an uninterrupted one ([0, 1, 4, 5] before a fix)
    monkeypatch.setattr(exp, "_one_run", original)
    whole = read_result(run_experiment("pruning", overrides, out=tmp_path / "w.h5", seed=0))
    assert whole.metrics["step"].tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(res.metrics["step"], whole.metrics["step"])
    np.testing.assert_array_equal(res.metrics["epoch_run"], whole.metrics["epoch_run"])


def test_pruning_experiment_runs_a_spiking_network(tmp_path):
    pytest.importorskip("snntorch")
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    overrides = {
        "dataset": "digits",
        "model": "spiking-mlp",
        "strategies": ("ucb", "grand"),
        "rates": (0.4,),
        "epochs": 3,
        "n_train": 150,
        "n_test": 60,
        "batch_size": 25,
        "lr": 0.02,
    }
    res = read_result(run_experiment("pruning", overrides, out=tmp_path / "s.h5", seed=1))
    assert np.allclose(res.metrics["realized_rate"], 0.4, atol=1 / 450)
    assert res.metrics["scoring_passes"].tolist() == [0.0, 150.0]
    assert np.all(np.isfinite(res.metrics["train_loss"]))


def _write_fake_cifar10(folder, per_batch: int = 8, n_test: int = 20) -> None:
    """CIFAR-10 python-pickle layout with random images (the reader's file format)."""
    import pickle

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(n):
        return {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, n).tolist(),
        }

    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(per_batch)))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(n_test)))
    names = {"label_names": [f"class{k}" for k in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(names))


@pytest.mark.slow
def test_pruning_experiment_trains_resnet18_on_cifar_files(tmp_path):
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    _write_fake_cifar10(tmp_path / "data" / "cifar-10-batches-py")
    overrides = {
        "dataset": "cifar10",
        "strategies": ("full", "infobatch"),
        "rates": (0.5,),
        "epochs": 2,
        "batch_size": 10,
    }
    path = run_experiment(
        "pruning", overrides, out=tmp_path / "c.h5", data_root=str(tmp_path / "data")
    )
    res = read_result(path)
    assert res.summary["n_train"] == 40
    assert res.metrics["passes_done"].tolist() == [80.0, 40.0]
    assert np.all(np.isfinite(res.metrics["train_loss"]))


def test_pruning_figure_averages_full_data_runs_and_draws_asymmetric_ranges():
    """The 'full' strategy's runs become one dashed line at their mean accuracy (in %); a
    strategy without runs is left out; repeated rates give the mean with the min-max range."""
    from pathlib import Path

    from plastix.sims.plots import pyplot
    from plastix.sims.plots_pruning import pruning_curves, pruning_figures
    from plastix.sims.results import Result

    metrics = {
        "run": np.arange(5.0),
        "strategy_index": np.array([0, 0, 1, 1, 1]),
        "realized_rate": np.array([0.0, 0.0, 0.5, 0.5, 0.5]),
        "test_accuracy": np.array([0.9, 0.94, 0.70, 0.72, 0.78]),
    }
    arrays = {"strategies": np.array([b"full", b"uniform", b"ucb"])}
    res = Result(
        Path("/x/p.h5"), {"experiment": "pruning"}, {"dataset": "digits"}, {}, metrics, {},
        arrays, {}, {},
    )  # fmt: skip
    curves, full = pruning_curves(res)
    assert full == pytest.approx(0.92)
    assert list(curves) == ["uniform"]
    [(name, fig)] = pruning_figures(res)
    assert name == "accuracy_vs_saved"
    ax = fig.axes[0]
    assert ax.get_title() == "pruning on digits"
    [dashed] = [ln for ln in ax.lines if ln.get_label() == "full data"]
    np.testing.assert_allclose(dashed.get_ydata(), [92.0, 92.0])
    [uniform] = ax.containers
    np.testing.assert_allclose(uniform.lines[0].get_xdata(), [50.0])
    np.testing.assert_allclose(uniform.lines[0].get_ydata(), [220 / 3])
    [(low, high)] = [s[:, 1] for s in uniform.lines[2][0].get_segments()]
    assert (low, high) == (pytest.approx(70.0), pytest.approx(78.0))
    pyplot().close(fig)
