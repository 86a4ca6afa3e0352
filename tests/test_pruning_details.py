"""Details of plastix.bridges.pruning: tie-breaking, which samples each strategy keeps, the
weights and refusals of ``PruningSampler.update``, pass accounting mid-run and the checks of
the strategies' options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from plastix.bridges.pruning import (
    UCB,
    EpsilonGreedy,
    InfoBatch,
    PruningSampler,
    PruningStrategy,
    StaticPruning,
    StaticScores,
    UniformDynamic,
    grand_scores,
    plan_keep_counts,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _static(scores: torch.Tensor, passes: int = 0) -> StaticPruning:
    return StaticPruning(StaticScores("el2n", scores, passes=passes, wall_s=0.0))


def test_equal_scores_are_ranked_in_a_seed_dependent_random_order():
    """Four samples share the highest score and two are kept: which two depends on the seed,
    every one of the four is kept for some seed and the lower-scored samples never are."""
    scores = torch.tensor([0.0, 3.0, 1.0, 3.0, 3.0, 0.5, 3.0, 2.0])
    kept_sets = set()
    for seed in range(20):
        sampler = PruningSampler(8, _static(scores), rate=0.75, epochs=1, seed=seed)
        assert sampler.keep_counts == [2]
        kept_sets.add(frozenset(sampler))
    assert set().union(*kept_sets) == {1, 3, 4, 6}
    assert len(kept_sets) > 1


def test_unseen_samples_fill_the_first_epoch_in_random_order():
    """All samples start unseen (score +inf, a tie): UCB's first half epoch is a random half,
    not the first indices."""
    firsts = set()
    for seed in range(5):
        sampler = PruningSampler(20, UCB(), rate=0.5, epochs=2, seed=seed)
        firsts.add(frozenset(sampler))
    assert frozenset(range(10)) not in firsts
    assert len(firsts) > 1


def test_static_pruning_keeps_the_same_samples_every_epoch_despite_ties():
    """The score order is fixed once: tied scores do not make the kept set change between
    epochs."""
    sampler = PruningSampler(20, _static(torch.ones(20)), rate=0.5, epochs=4, seed=0)
    epochs = []
    for _ in range(4):
        served = torch.tensor(list(sampler))
        sampler.update(served, torch.ones(len(served)))
        epochs.append(set(served.tolist()))
    assert all(len(e) == 10 for e in epochs)
    assert all(e == epochs[0] for e in epochs)


def test_sampler_serves_the_kept_samples_in_shuffled_order():
    """The strategy returns the kept samples highest score first; the sampler shuffles them,
    so the epoch is not served in score order."""
    sampler = PruningSampler(100, _static(torch.arange(100.0)), rate=0.5, epochs=1, seed=0)
    served = list(sampler)
    assert sorted(served) == list(range(50, 100))
    assert served != sorted(served, reverse=True)
    assert served != sorted(served)


def test_plan_keep_counts_names_the_highest_reachable_rate():
    """1000 samples, 10 epochs, 2000 scoring passes: one pass per epoch is the least, so the
    highest rate is 1 - (2000 + 10) / 10000 = 0.799, which is accepted."""
    with pytest.raises(ValueError, match=r"rate <= 0\.799,"):
        plan_keep_counts(1000, 10, 0.8, scoring_passes=2000)
    assert plan_keep_counts(1000, 10, 0.799, scoring_passes=2000) == [1] * 10


def test_plan_keep_counts_gives_the_leftover_passes_to_the_earliest_epochs():
    """round(0.5 * 4 * 11) = 22 passes over 4 epochs: 6, 6, 5, 5; with one annealing epoch
    round(0.5 * 4 * 11) - 11 = 11 over 3 pruned epochs: 4, 4, 3 and then 11."""
    assert plan_keep_counts(11, 4, 0.5) == [6, 6, 5, 5]
    assert plan_keep_counts(11, 4, 0.5, anneal_epochs=1) == [4, 4, 3, 11]


@pytest.mark.parametrize(("delta", "epochs", "anneal"), [(0.9, 6, 0), (0.5, 3, 1), (0.7, 10, 3)])
def test_infobatch_prunes_the_first_ceil_delta_epochs(delta, epochs, anneal):
    """Pruned epochs are ceil(delta E) (5.4 -> 6, 1.5 -> 2, 7 -> 7), not delta E rounded."""
    assert InfoBatch(delta=delta).anneal_epochs(epochs) == anneal


def test_infobatch_splits_at_the_mean_loss_of_seen_samples_and_counts_unseen_as_hard():
    """Samples 0-4 seen with losses 1, 2, 2, 2, 8 (mean 3): W = {0, 1, 2, 3}; the unseen 5-9
    belong to H with sample 4 (h = 6). Keeping 8: p_W = max(0.5 * 0.8, (8 - 6) / 4) = 0.5,
    two of W with weight (4 * 6) / (2 * 6) = 2 and all of H with weight 1."""
    strategy = InfoBatch(min_relative_keep=0.5)
    strategy.reset(10)
    strategy.observe(torch.arange(5), torch.tensor([1.0, 2.0, 2.0, 2.0, 8.0], dtype=torch.float64))
    for seed in range(5):
        idx, weights = strategy.select(0, 8, torch.Generator().manual_seed(seed))
        by_index = dict(zip(idx.tolist(), weights.tolist(), strict=True))
        assert len(by_index) == 8
        assert set(range(4, 10)) <= set(by_index)
        well = [i for i in by_index if i < 4]
        assert len(well) == 2
        assert [by_index[i] for i in well] == [2.0, 2.0]
        assert all(by_index[i] == 1.0 for i in range(4, 10))


def test_update_returns_infobatch_rescaling_for_each_kept_well_learned_sample():
    """6 well-learned samples (loss 0.1) and 4 hard (5.0), 8 kept: all 4 hard with weight 1
    and 4 of the 6 well learned with weight 1 / (1 - r) = 1.5 (r = 1/3 of W pruned).
    ``update`` returns each batch's weights in the order of its indices, in the loss dtype."""
    strategy = InfoBatch(delta=1.0)
    sampler = PruningSampler(10, strategy, rate=0.2, epochs=1, seed=0)
    assert sampler.keep_counts == [8]
    losses = torch.where(torch.arange(10) < 6, 0.1, 5.0).double()
    strategy.observe(torch.arange(10), losses)
    served = torch.tensor(list(sampler))
    weights = torch.cat(
        [sampler.update(batch, losses[batch].float()) for batch in (served[:3], served[3:])]
    )
    assert weights.dtype == torch.float32
    hard = served >= 6
    assert int(hard.sum()) == 4
    assert torch.all(weights[hard] == 1.0)
    assert torch.all(weights[~hard] == 1.5)


def test_annealing_epoch_after_a_rescaled_epoch_weights_every_sample_one():
    """The weights of a pruned InfoBatch epoch do not carry into the full-data epoch after it."""
    strategy = InfoBatch(delta=0.5)
    sampler = PruningSampler(10, strategy, rate=0.1, epochs=2, seed=0)
    assert sampler.keep_counts == [8, 10]
    losses = torch.where(torch.arange(10) < 6, 0.1, 5.0).double()
    strategy.observe(torch.arange(10), losses)
    first = torch.tensor(list(sampler))
    assert (sampler.update(first, losses[first]) == 1.5).sum() == 4
    second = torch.tensor(list(sampler))
    assert sorted(second.tolist()) == list(range(10))
    assert torch.all(sampler.update(second, losses[second]) == 1.0)


def test_infobatch_keeps_weight_one_when_rounding_keeps_only_well_learned_samples():
    """Nine losses 0 and one of 10 (mean 1): W = 0-8, H = {9}. With min_relative_keep 1 and 4
    kept, p_W = 0.4 and round(0.4 * 9) = 4 fills the epoch from W alone: those samples keep
    weight 1 (there is no kept H to normalise against), never 0."""
    strategy = InfoBatch(min_relative_keep=1.0)
    strategy.reset(10)
    strategy.observe(torch.arange(10), torch.tensor([0.0] * 9 + [10.0], dtype=torch.float64))
    idx, weights = strategy.select(0, 4, torch.Generator().manual_seed(0))
    assert len(set(idx.tolist())) == 4 and max(idx.tolist()) < 9
    assert weights.tolist() == [1.0] * 4


def test_update_refuses_a_negative_index():
    """-1 is not a dataset index, even though the last sample was served."""
    sampler = PruningSampler(10, UniformDynamic(), rate=0.0, epochs=1)
    list(sampler)
    with pytest.raises(ValueError, match=r"\[0, 10\), got range \[-1, 3\]"):
        sampler.update(torch.tensor([3, -1]), torch.ones(2))
    assert sampler.stats().training_passes == 0


@pytest.mark.parametrize("bad", [float("inf"), float("-inf")])
def test_update_refuses_an_infinite_loss(bad):
    sampler = PruningSampler(10, UCB(), rate=0.0, epochs=1)
    list(sampler)
    with pytest.raises(ValueError, match="NaN or inf"):
        sampler.update(torch.tensor([0, 1]), torch.tensor([1.0, bad]))
    assert sampler.stats().training_passes == 0


def test_stats_count_only_the_epochs_started_so_far():
    """Before any epoch nothing is counted and the realised rate is 0; after one epoch of a
    four-epoch plan the full-data reference is one epoch (10 passes), not the whole plan."""
    sampler = PruningSampler(10, UniformDynamic(), rate=0.5, epochs=4, seed=0)
    before = sampler.stats()
    assert (before.full_data_passes, before.passes_done, before.passes_saved) == (0, 0, 0)
    assert before.realized_rate == 0.0
    served = torch.tensor(list(sampler))
    sampler.update(served, torch.ones(5))
    stats = sampler.stats()
    assert stats.epochs_started == 1 and stats.epochs_planned == 4
    assert (stats.full_data_passes, stats.passes_done, stats.passes_saved) == (10, 5, 5)
    assert stats.realized_rate == 0.5


def test_stats_record_of_a_static_run_separates_scoring_and_training_passes():
    """3 scoring passes, rate 0.5 over 2 epochs of 10: 10 - 3 = 7 training passes (4 + 3)."""
    sampler = PruningSampler(10, _static(torch.arange(10.0), passes=3), rate=0.5, epochs=2)
    assert sampler.keep_counts == [4, 3]
    for _ in range(2):
        served = torch.tensor(list(sampler))
        sampler.update(served, torch.ones(len(served)))
    assert sampler.stats().as_dict() == {
        "strategy": "el2n",
        "target_rate": 0.5,
        "epochs": 2,
        "passes_done": 10,
        "passes_saved": 10,
        "training_passes": 7,
        "scoring_passes": 3,
        "full_data_passes": 20,
        "realized_rate": 0.5,
        "scoring_wall_s": 0.0,
    }


def test_epsilon_greedy_explores_random_samples_outside_the_greedy_share():
    """Loss of sample i is i; 75 greedy picks are 125-199 and the 25 explored samples are a
    random draw from the other 125, different for different seeds, not the lowest indices."""
    strategy = EpsilonGreedy(epsilon=0.25)
    strategy.reset(200)
    strategy.observe(torch.arange(200), torch.arange(200, dtype=torch.float64))
    explored_sets = set()
    for seed in range(5):
        chosen = strategy.select(0, 100, torch.Generator().manual_seed(seed))[0].tolist()
        explored = frozenset(chosen) - set(range(125, 200))
        assert len(explored) == 25 and max(explored) < 125
        explored_sets.add(explored)
    assert frozenset(range(25)) not in explored_sets
    assert len(explored_sets) > 1


def test_grand_scores_average_over_models_and_count_each_models_passes():
    """Two identical models score as one, at twice the passes."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 4, generator=gen), torch.arange(12) % 3

    def make_model():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(5)
            return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))

    one = grand_scores(make_model, x, y, n_models=1, vectorize=False)
    two = grand_scores(make_model, x, y, n_models=2, vectorize=False)
    assert (one.passes, two.passes) == (12, 24)
    torch.testing.assert_close(two.scores, one.scores)


def test_strategy_options_refuse_values_outside_their_range():
    with pytest.raises(ValueError, match=r"delta: 0.0 is outside \(0, 1\]"):
        InfoBatch(delta=0.0)
    with pytest.raises(ValueError, match=r"min_relative_keep: 0.0 is outside \(0, 1\]"):
        InfoBatch(min_relative_keep=0.0)
    with pytest.raises(ValueError, match="c: nan"):
        UCB(c=float("nan"))
    assert InfoBatch(delta=1.0).anneal_epochs(5) == 0
    assert UCB(c=0.0).c == 0.0


@pytest.mark.parametrize(
    "scores",
    [torch.tensor([0.1, float("nan"), 0.3]), torch.tensor([0.1, float("inf")]), torch.ones(2, 2)],
)
def test_static_pruning_refuses_scores_that_cannot_be_ranked(scores):
    with pytest.raises(ValueError, match="finite 1-D tensor"):
        _static(scores)


class _TooFew(PruningStrategy):
    name = "too-few"

    def select(self, epoch, n_keep, generator):
        return torch.arange(n_keep - 1), None


def test_sampler_refuses_a_strategy_that_selects_the_wrong_number_of_samples():
    sampler = PruningSampler(10, _TooFew(), rate=0.5, epochs=1)
    with pytest.raises(RuntimeError, match="'too-few' selected 4 samples, expected 5"):
        iter(sampler)
    assert sampler.epoch == 0
