"""Class labels outside [0, C) are refused up front with a ValueError naming the value."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from plastix.bridges import pruning
from plastix.bridges.continual import (
    LearnerConfig,
    Task,
    make_learner,
    mlp,
    permuted_tasks,
    run_continual,
)
from plastix.bridges.ib_training import IBRule, evaluate, layer_hsic
from plastix.bridges.pruning import el2n_scores, forgetting_scores, grand_scores
from plastix.bridges.rate_networks import RateMLP

OUT_OF_RANGE = [(5, r"\[0, 3\); got 5"), (-1, r"\[0, 3\); got -1")]


def _data(bad_label: int, n: int = 12, n_classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(n, 4, generator=generator)
    y = torch.arange(n) % n_classes
    y[n // 2] = bad_label
    return x, y


@pytest.mark.parametrize(("bad", "fragment"), OUT_OF_RANGE)
def test_layer_hsic_refuses_labels_outside_the_readout(bad, fragment):
    x, y = _data(bad)
    with pytest.raises(ValueError, match=r"y: labels must lie in " + fragment + "; the readout"):
        layer_hsic(RateMLP(4, (5,), 3), x, y, IBRule(window=4))


def test_window_data_check_reports_the_negative_label():
    x, y = _data(-7)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\); got -7;"):
        evaluate(RateMLP(4, (5,), 3), x, y)


def _optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.1)


@pytest.mark.parametrize(("bad", "fragment"), OUT_OF_RANGE)
@pytest.mark.parametrize("scorer", ["el2n", "grand", "forgetting"])
def test_static_scorers_refuse_labels_outside_the_model_outputs(scorer, bad, fragment):
    x, y = _data(bad)
    make_model = lambda: nn.Linear(4, 3)  # noqa: E731
    with pytest.raises(ValueError, match=r"y: labels must lie in " + fragment + "; the model"):
        if scorer == "el2n":
            el2n_scores(make_model, _optimizer, x, y, batch_size=4)
        elif scorer == "grand":
            grand_scores(make_model, x, y, batch_size=4)
        else:
            forgetting_scores(make_model, _optimizer, x, y, batch_size=4)


class _NoisyLinear(nn.Linear):
    """A forward that draws from the global RNG, so an extra forward would shift training."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 0.1 * torch.randn(x.shape[0], self.out_features)


def test_el2n_label_probe_leaves_the_scores_unchanged(monkeypatch):
    x, y = _data(0)

    def scores() -> torch.Tensor:
        torch.manual_seed(0)
        make_model = lambda: _NoisyLinear(4, 3)  # noqa: E731
        return el2n_scores(make_model, _optimizer, x, y, n_models=2, batch_size=4).scores

    probed = scores()
    monkeypatch.setattr(pruning, "_check_labels_fit", lambda *args: None)
    assert torch.equal(probed, scores())


@pytest.mark.parametrize(("bad", "fragment"), [(2, r"\[0, 2\); got 2"), (-1, r"\[0, 2\); got -1")])
def test_train_bptt_refuses_labels_outside_the_output_layer(bad, fragment):
    from brian2 import ms

    from plastix.bridges.snntorch_bridge import BPTTConfig, to_snntorch, train_bptt
    from plastix.circuits.feedforward import FeedForwardSpec, LayerSpec, NeuronParams

    spec = FeedForwardSpec(
        4,
        (
            LayerSpec(np.ones((3, 4)), NeuronParams("LIF")),
            LayerSpec(np.ones((2, 3)), NeuronParams("LI")),
        ),
    )
    x, y = _data(bad, n_classes=2)
    with pytest.raises(ValueError, match=r"y: labels must lie in " + fragment + "; the output"):
        train_bptt(to_snntorch(spec, 1 * ms), x, y, BPTTConfig(steps=3, settle=0, batch=4))


def _learner():
    return make_learner(mlp(4, [5], 3), LearnerConfig(optimizer="sgd", lr=0.1))


def test_run_continual_refuses_train_labels_beyond_n_outputs():
    x, y = _data(5)
    tasks = permuted_tasks(x, y, x, y % 3, n_tasks=1)
    with pytest.raises(
        ValueError, match=r"task 'permuted-1': y_train: labels must lie in \[0, 3\); got 5"
    ):
        run_continual(_learner(), tasks, "domain", n_outputs=3, batch_size=4)


def test_run_continual_refuses_negative_test_labels():
    x, y = _data(0)
    task = Task("hand-made", x, y, x, torch.where(y == 2, -1, y), torch.arange(3))
    with pytest.raises(ValueError, match=r"task 'hand-made': y_test: labels .* got -1; the model"):
        run_continual(_learner(), [task], "domain", n_outputs=3, batch_size=4)


def test_check_labels_names_the_negative_label_when_both_ends_are_out_of_range():
    """With labels too small and too large at once, the message names the smallest one."""
    from plastix.bridges.checks import check_labels

    with pytest.raises(ValueError, match=r"^y: labels must lie in \[0, 3\); got -2; fix it$"):
        check_labels(torch.tensor([-2, 0, 7]), 3, "fix it")


def test_check_labels_accepts_no_labels_and_the_largest_class():
    """An empty label tensor passes, as do labels up to n_classes - 1."""
    from plastix.bridges.checks import check_labels

    check_labels(torch.zeros(0, dtype=torch.long), 3, "fix it")
    check_labels(torch.tensor([0, 2]), 3, "fix it")
    with pytest.raises(ValueError, match=r"\[0, 3\); got 3; fix it"):
        check_labels(torch.tensor([0, 3]), 3, "fix it")
