"""Details of the neural tangent ensemble optimizer and the continual-learning harness:
boundary cases of its checks, per-group options, held-fixed module parameters, seeds, and
the exact EWC penalty, Fisher estimate and learner wiring."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from plastix.bridges.continual import (
    EWCLearner,
    LearnerConfig,
    NTELearner,
    OptimizerLearner,
    Task,
    make_learner,
    masked_logits,
    run_continual,
)
from plastix.bridges.tangent_ensemble import (
    NeuralTangentEnsemble,
    likelihood_log_factor,
    per_example_gradients,
)


def _param(values, dtype=torch.float64):
    return nn.Parameter(torch.tensor(values, dtype=dtype))


class _HalfUsed(nn.Module):
    """Two parameters, of which the forward pass reads only ``used``."""

    def __init__(self):
        super().__init__()
        self.used = nn.Parameter(torch.tensor([0.3, -0.2], dtype=torch.float64))
        self.unused = nn.Parameter(torch.tensor([0.5], dtype=torch.float64))

    def forward(self, x):
        return x @ self.used


# --- likelihood checks -----------------------------------------------------------------------


def test_a_likelihood_of_exactly_zero_is_refused_with_its_value():
    """lr·g = 0.5·2 = 1 exactly: the expert likelihood 1 − lr·sign·g is 0, log1p(−1) = −inf,
    so the factor is refused (≤ −1, not only < −1) with the likelihood and the lr named."""
    sign = torch.tensor([1.0, -1.0], dtype=torch.float64)
    grad = torch.tensor([2.0, 0.0], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"1 - lr\*sign\*grad = 0 is not positive.*lr=0.5"):
        likelihood_log_factor(sign, grad, 0.5)
    w = _param([0.3, -0.2])
    opt = NeuralTangentEnsemble([w], lr=0.5, max_delta=None)
    w.grad = grad.clone()
    with pytest.raises(ValueError, match=r"= 0 is not positive.*with lr=0.5"):
        opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([0.3, -0.2], dtype=torch.float64))


def test_sparse_gradients_are_refused():
    w = _param([0.3, -0.2])
    opt = NeuralTangentEnsemble([w], lr=0.1, max_delta=None)
    w.grad = torch.tensor([1.0, 0.0], dtype=torch.float64).to_sparse()
    with pytest.raises(TypeError, match="does not support sparse gradients"):
        opt.step()


# --- construction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "match"),
    [
        ({"exponent": 0.0}, "exponent must be a positive"),
        ({"exponent": -1.0}, "exponent must be a positive"),
        ({"max_delta": 0.0}, "max_delta must be a positive"),
        ({"max_delta": -0.5}, "max_delta must be a positive"),
    ],
)
def test_bad_group_exponent_or_clip_is_refused(group, match):
    w = nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match=match):
        NeuralTangentEnsemble([{"params": [w], **group}], max_delta=None)


def test_clip_capacity_counts_only_the_entries_that_hold_mass():
    """With zeros="keep" an exactly-zero entry has |Δw| = 0 for ever, so it adds nothing to
    what the clip can hold: z = 0.5 in two live entries needs max_delta > 0.25, although three
    entries at 0.2 could hold 0.6."""
    with pytest.raises(ValueError, match=r"max_delta is too small.*all 2 entries"):
        NeuralTangentEnsemble([_param([0.3, 0.0, -0.2])], zeros="keep", max_delta=0.2)
    opt = NeuralTangentEnsemble([_param([0.3, 0.0, -0.2])], zeros="keep", max_delta=0.3)
    assert opt.l1_norm == pytest.approx(0.5)


def test_clip_that_can_only_just_hold_the_l1_norm_is_refused():
    """z = N · max_delta exactly (0.2 + 0.2 = 2 · 0.2) is refused: z ≥ N · max_delta."""
    with pytest.raises(ValueError, match="max_delta is too small"):
        NeuralTangentEnsemble([_param([0.2, -0.2])], max_delta=0.2)
    NeuralTangentEnsemble([_param([0.2, -0.2])], max_delta=0.2001)


def test_the_seed_chooses_the_noise_and_the_global_generator_is_untouched():
    """Initial Δw (init expansion) and the noise of zero entries come from a private generator
    seeded by ``seed``: the same seed repeats them, another seed changes them, and torch's
    global generator is left where it was."""

    def init_delta(seed):
        w = _param([0.3, -0.2, 0.1])
        opt = NeuralTangentEnsemble([w], max_delta=None, expansion="init", seed=seed)
        return opt.displacement(w).clone()

    def zero_noise(seed):
        w = _param([0.3, 0.0, 0.0])
        NeuralTangentEnsemble([w], max_delta=None, zeros="noise", seed=seed)
        return w.detach()[1:].clone()

    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first, noise = init_delta(5), zero_noise(5)
    assert torch.equal(torch.rand(3), expected_next)
    assert torch.equal(init_delta(5), first) and torch.equal(zero_noise(5), noise)
    assert not torch.equal(init_delta(6), first)
    assert not torch.equal(zero_noise(6), noise)


# --- per-group exponents ---------------------------------------------------------------------


def test_batch_step_uses_each_groups_own_exponent():
    """Each group's β tempers its likelihoods, not the optimizer default (1.0).

    lr = 0.1, g = [1, 1]: a (sign +) 0.9 ** 1 → 0.27; b (sign −) 1.1 ** 2 = 1.21 → 0.242;
    sum 0.512, renormalised to z = 0.5, signs kept.
    """
    a, b = _param([0.3]), _param([-0.2])
    opt = NeuralTangentEnsemble(
        [{"params": [a]}, {"params": [b], "exponent": 2.0}], lr=0.1, max_delta=None
    )
    a.grad = torch.tensor([1.0], dtype=torch.float64)
    b.grad = torch.tensor([1.0], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(a.detach(), torch.tensor([0.27 * 0.5 / 0.512], dtype=torch.float64))
    torch.testing.assert_close(
        b.detach(), torch.tensor([-0.242 * 0.5 / 0.512], dtype=torch.float64)
    )


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_per_example_step_uses_each_groups_own_exponent(method):
    """loss = w·x + b over examples x = 1, 2 with w = 0.3 (β = 1), b = −0.2 (β = 2), lr = 0.1.

    w: gradients 1, 2 → 0.9 · 0.8 = 0.72 → 0.216; b: gradients 1, 1 with sign − →
    (1.1 · 1.1) ** 2 = 1.4641 → 0.29282; sum 0.50882, renormalised to z = 0.5.
    """
    model = nn.Linear(1, 1).double()
    with torch.no_grad():
        model.weight.fill_(0.3)
        model.bias.fill_(-0.2)
    opt = NeuralTangentEnsemble(
        [{"params": [model.weight]}, {"params": [model.bias], "exponent": 2.0}],
        lr=0.1,
        max_delta=None,
    )
    x = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    opt.step_per_example(model, lambda out, y: out.sum(), x, torch.zeros(2), method=method)
    scale = 0.5 / 0.50882
    torch.testing.assert_close(model.weight.item(), 0.216 * scale)
    torch.testing.assert_close(model.bias.item(), -0.29282 * scale)


# --- per-example form ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_module_parameters_outside_the_optimizer_are_held_fixed(method):
    """step_per_example takes a module with more parameters than the optimizer holds: the
    bias stays where it is and the weight gets the exact two-example update
    (g1 = [1, 2], g2 = [−1, 0.5]: likelihoods [0.99, 1.26] → [0.297, 0.252] → sum 0.5)."""
    model = nn.Linear(2, 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.3, -0.2]]))
        model.bias.fill_(0.7)
    opt = NeuralTangentEnsemble([model.weight], lr=0.1, max_delta=None)
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=torch.float64)
    opt.step_per_example(model, lambda out, y: out.sum(), x, torch.zeros(2), method=method)
    expected = torch.tensor([[0.297, -0.252]], dtype=torch.float64) * 0.5 / 0.549
    torch.testing.assert_close(model.weight.detach(), expected)
    assert model.bias.item() == 0.7


def test_per_example_gradients_of_an_unused_parameter_are_zero_in_both_methods():
    """A parameter that the loss does not read has gradient zero for every example, with the
    loop (autograd gives None there) as with vmap."""
    model = _HalfUsed()
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [3.0, 0.0]], dtype=torch.float64)
    params = dict(model.named_parameters())
    for method in ("vmap", "loop"):
        grads, losses = per_example_gradients(
            model, lambda out, y: out.sum(), x, torch.zeros(3), params, method
        )
        torch.testing.assert_close(grads["used"], x)
        assert torch.equal(grads["unused"], torch.zeros(3, 1, dtype=torch.float64))
        torch.testing.assert_close(losses, x @ model.used.detach())


def test_per_example_step_leaves_an_unused_parameters_magnitude_to_the_projection():
    """The unused parameter's likelihood is 1 (zero gradient), so only the projection moves
    it: used [0.3, −0.2] with g = [1, 2] → [0.27, 0.24], unused 0.5; sum 1.01 → z = 1."""
    model = _HalfUsed()
    opt = NeuralTangentEnsemble(model.parameters(), lr=0.1, max_delta=None)
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    opt.step_per_example(model, lambda out, y: out.sum(), x, torch.zeros(1), method="loop")
    torch.testing.assert_close(
        model.used.detach(), torch.tensor([0.27, -0.24], dtype=torch.float64) / 1.01
    )
    torch.testing.assert_close(
        model.unused.detach(), torch.tensor([0.5], dtype=torch.float64) / 1.01
    )


def test_per_example_step_refuses_an_empty_batch_or_chunk_size_zero_and_changes_nothing():
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.3, -0.2]]))
    opt = NeuralTangentEnsemble(model.parameters(), lr=0.1, max_delta=None)
    loss_fn = lambda out, y: out.sum()  # noqa: E731
    with pytest.raises(ValueError, match="non-empty batch axis, got 0 and 0"):
        opt.step_per_example(model, loss_fn, torch.zeros(0, 2, dtype=torch.float64), torch.zeros(0))
    x = torch.ones(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer, got 0"):
        opt.step_per_example(model, loss_fn, x, torch.zeros(2), chunk_size=0)
    torch.testing.assert_close(
        model.weight.detach(), torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    )


# --- projection fallback ---------------------------------------------------------------------


def test_log_space_projection_fallback_still_clips():
    """When Σ exp(log|Δw|) overflows, the log-space projection renormalises to z = 0.5
    ([0.3, 0.2]) and then clips at max_delta = 0.26, like the ordinary path."""
    w = _param([0.3, -0.2], dtype=torch.float32)
    opt = NeuralTangentEnsemble([w], max_delta=0.26)
    opt.state[w]["log_magnitude"] += 100.0  # exp(100) overflows float32
    w.grad = torch.zeros(2)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([0.26, -0.2]))
    torch.testing.assert_close(opt.state[w]["log_magnitude"], torch.log(torch.tensor([0.26, 0.2])))


# --- continual learners ----------------------------------------------------------------------


class _NoVmap(nn.Module):
    """A linear layer whose forward reads a Python number from its input (``.item()``), which
    torch.func's vmap cannot trace: only the autograd loop computes its per-example
    gradients."""

    def __init__(self, n_in=3, n_out=4, seed=0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.lin = nn.Linear(n_in, n_out)

    def forward(self, x):
        scale = 1.0 if x.abs().sum().item() >= 0 else 2.0
        return scale * self.lin(x)


def _data(n=10, n_in=3, seed=0, labels=(0, 1, 3)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g)
    y = torch.tensor([labels[k % len(labels)] for k in range(n)])
    return x, y


def test_momentum_buffer_is_kept_between_tasks_unless_a_reset_is_asked_for():
    x, y = _data(8)
    for reset in (False, True):
        model = _NoVmap().lin
        sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        learner = OptimizerLearner(model, sgd, reset_between_tasks=reset)
        learner.begin_task(0)
        learner.train_batch(x, y, None)
        buffers = {id(p): sgd.state[p]["momentum_buffer"].clone() for p in model.parameters()}
        learner.begin_task(1)
        if reset:
            assert len(sgd.state) == 0
        else:
            for p in model.parameters():
                assert torch.equal(sgd.state[p]["momentum_buffer"], buffers[id(p)])


def test_nte_learner_batch_step_counts_every_example_of_the_batch():
    """The batch form is ``step(batch_size=B)`` on the masked mean cross-entropy: the same
    parameters as doing that by hand on a copy of the model."""
    x, y = _data(6)
    mask = torch.tensor([True, True, False, True])
    model, reference = _NoVmap(seed=1).lin, _NoVmap(seed=1).lin
    learner = NTELearner(model, NeuralTangentEnsemble(model.parameters(), lr=0.05, max_delta=None))
    by_hand = NeuralTangentEnsemble(reference.parameters(), lr=0.05, max_delta=None)
    loss = learner.train_batch(x, y, mask)
    expected = F.cross_entropy(masked_logits(reference(x), mask), y)
    expected.backward()
    by_hand.step(batch_size=6)
    assert loss == pytest.approx(expected.item())
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_nte_learner_per_example_step_uses_the_mask_and_the_chosen_method():
    """per_example_method="loop" reaches step_per_example (a model that vmap cannot trace
    still trains), and the loss of each example is taken over the active outputs only: the
    returned loss is the masked mean cross-entropy before the update."""
    x, y = _data(5)
    mask = torch.tensor([True, True, False, True])
    model, reference = _NoVmap(seed=2), _NoVmap(seed=2)
    opt = NeuralTangentEnsemble(model.parameters(), lr=0.05, max_delta=None)
    learner = NTELearner(model, opt, per_example=True, per_example_method="loop")
    with torch.no_grad():
        expected_loss = float(F.cross_entropy(masked_logits(reference(x), mask), y))
    by_hand = NeuralTangentEnsemble(reference.parameters(), lr=0.05, max_delta=None)

    def masked(out, target):
        return F.cross_entropy(masked_logits(out, mask), target)

    loss = learner.train_batch(x, y, mask)
    by_hand.step_per_example(reference, masked, x, y, method="loop")
    assert loss == pytest.approx(expected_loss)
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_ewc_penalty_is_half_lambda_times_the_fisher_weighted_squared_distance_summed():
    """L = CE + (λ/2) Σ_t Σ_i F_t,i (θ_i − θ*_t,i)², one term per stored task, by hand:
    θ = [[1, 2]], task 1: F = [[1, 3]], θ* = [[0, 0]] → 1 + 12 = 13; task 2: F = [[2, 0]],
    θ* = [[1.5, 0]] → 0.5; λ = 4 → penalty 2 · 13.5 = 27."""
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
    learner = EWCLearner(model, torch.optim.SGD(model.parameters(), lr=0.1), ewc_lambda=4.0)
    zeros = torch.zeros(2, 2)
    learner.penalties = [
        ({"weight": torch.tensor([[1.0, 3.0], [0.0, 0.0]])}, {"weight": zeros}),
        (
            {"weight": torch.tensor([[2.0, 0.0], [0.0, 0.0]])},
            {"weight": torch.tensor([[1.5, 0.0], [0.0, 0.0]])},
        ),
    ]
    x, y = torch.tensor([[1.0, -1.0]]), torch.tensor([1])
    plain = F.cross_entropy(model(x), y).item()
    assert learner.loss(x, y, None).item() == pytest.approx(plain + 27.0)
    learner.ewc_lambda = 0.0
    assert learner.loss(x, y, None).item() == pytest.approx(plain)


def _fisher_by_hand(model, task, rows, mask):
    trainable = {k: p for k, p in model.named_parameters() if p.requires_grad}
    fisher = {k: torch.zeros_like(p) for k, p in trainable.items()}
    for k in rows.tolist():
        model.zero_grad()
        logits = masked_logits(model(task.x_train[k : k + 1]), mask)
        F.cross_entropy(logits, task.y_train[k : k + 1]).backward()
        for name, p in trainable.items():
            fisher[name] += p.grad.pow(2)
    return {k: f / len(rows) for k, f in fisher.items()}


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_ewc_fisher_is_the_mean_squared_gradient_on_a_subset_drawn_per_task(method):
    """F_t = mean over the sampled examples of the squared gradient of the masked
    cross-entropy; the examples are the first ``fisher_samples`` of a permutation drawn from
    ``seed + task_index``, and every example (divided by their number) when the task has
    fewer. The anchor is a copy of the parameters at the end of the task."""
    x, y = _data(10)
    task = Task("t", x, y, x, y, torch.tensor([0, 1, 3]))
    mask = torch.tensor([True, True, False, True])
    lin = _NoVmap(seed=3).lin
    frozen = nn.Linear(4, 4)
    frozen.requires_grad_(False)
    model = (
        nn.Sequential(lin, frozen) if method == "vmap" else nn.Sequential(_NoVmap(seed=3), frozen)
    )
    learner = EWCLearner(
        model,
        torch.optim.SGD(lin.parameters(), lr=0.1),
        fisher_samples=4,
        seed=7,
        per_example_method=method,
    )
    learner.end_task(2, task, mask)
    rows = torch.randperm(10, generator=torch.Generator().manual_seed(7 + 2))[:4]
    fisher, anchor = learner.penalties[0]
    expected = _fisher_by_hand(model, task, rows, mask)
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert set(fisher) == set(anchor) == trainable
    for k in trainable:
        torch.testing.assert_close(fisher[k], expected[k])
        assert torch.equal(anchor[k], dict(model.named_parameters())[k].detach())
    learner.fisher_samples = 50  # more than the 10 examples: all of them, mean over 10
    learner.end_task(2, task, mask)
    expected = _fisher_by_hand(model, task, torch.arange(10), mask)
    for k in trainable:
        torch.testing.assert_close(learner.penalties[1][0][k], expected[k])


def test_make_learner_hands_every_option_to_the_optimizer_and_the_learner():
    """The NTE exponent, clip and seed, Adam's betas, SGD's momentum and the reset flag, and
    EWC's penalty weight, sample count and seed all reach what make_learner builds."""
    nte = make_learner(
        _NoVmap(seed=4).lin,
        LearnerConfig(
            optimizer="nte",
            lr=0.02,
            nte_exponent=0.5,
            nte_max_delta=2.0,
            nte_expansion="init",
            seed=11,
        ),
    )
    [group] = nte.optimizer.param_groups
    assert (group["lr"], group["exponent"], group["max_delta"]) == (0.02, 0.5, 2.0)
    same_seed = NeuralTangentEnsemble(
        _NoVmap(seed=4).lin.parameters(), max_delta=None, expansion="init", seed=11
    )
    for p, q in zip(nte.model.parameters(), same_seed.param_groups[0]["params"], strict=True):
        assert torch.equal(nte.optimizer.displacement(p), same_seed.displacement(q))
    adam = make_learner(
        _NoVmap().lin,
        LearnerConfig(optimizer="adam", adam_betas=(0.5, 0.75), reset_between_tasks=True),
    )
    assert adam.optimizer.param_groups[0]["betas"] == (0.5, 0.75)
    assert adam.reset_between_tasks is True
    sgd = make_learner(
        _NoVmap().lin, LearnerConfig(optimizer="sgd", momentum=0.25, reset_between_tasks=True)
    )
    assert sgd.optimizer.param_groups[0]["momentum"] == 0.25 and sgd.reset_between_tasks is True
    ewc = make_learner(
        _NoVmap().lin,
        LearnerConfig(
            optimizer="ewc",
            momentum=0.5,
            reset_between_tasks=True,
            ewc_lambda=7.0,
            ewc_fisher_samples=3,
            seed=9,
        ),
    )
    assert isinstance(ewc, EWCLearner)
    assert ewc.optimizer.param_groups[0]["momentum"] == 0.5
    assert (ewc.reset_between_tasks, ewc.ewc_lambda, ewc.fisher_samples, ewc.seed) == (
        True,
        7.0,
        3,
        9,
    )


def test_learner_config_refuses_momentum_for_the_tangent_ensemble():
    with pytest.raises(ValueError, match="momentum=0.5 applies to 'sgd' and 'ewc' only, not 'nte'"):
        LearnerConfig(optimizer="nte", momentum=0.5)
    assert LearnerConfig(optimizer="ewc", momentum=0.5).momentum == 0.5


class _RecordingLearner:
    """A learner that only records the first input feature of every example it is shown."""

    def __init__(self):
        self.model = nn.Linear(1, 2)
        self.seen: list[list[float]] = []

    def begin_task(self, task_index):
        self.seen.append([])

    def train_batch(self, x, y, mask):
        self.seen[-1] += x[:, 0].tolist()
        return 0.0

    def end_task(self, task_index, task, mask):
        return None


def test_batches_follow_a_permutation_drawn_per_task_and_epoch_from_the_seed():
    """Each epoch of task i visits every example once, in the order of successive draws of
    ``randperm`` from a generator seeded with ``seed * 1_000_003 + i``; so two tasks with the
    same data are visited in different orders."""
    x = torch.arange(6, dtype=torch.float32)[:, None]
    y = torch.zeros(6, dtype=torch.long)
    tasks = [Task(f"t{i}", x, y, x, y, torch.arange(2)) for i in range(2)]
    learner = _RecordingLearner()
    run_continual(learner, tasks, "domain", n_outputs=2, epochs=2, batch_size=4, seed=3)
    for i, seen in enumerate(learner.seen):
        generator = torch.Generator().manual_seed(3 * 1_000_003 + i)
        expected = torch.cat([torch.randperm(6, generator=generator) for _ in range(2)])
        assert seen == expected.float().tolist()
    assert learner.seen[0] != learner.seen[1]
