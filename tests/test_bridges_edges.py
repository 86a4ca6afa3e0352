"""Edges of the bridges that the broader tests leave open: refusals a user hits before any
work in the rate CNN and the reservoir-in-the-loop trainer (fast: no Brian2 run)."""

from __future__ import annotations

import pytest
import torch

from plastix.bridges.ib_reservoir import ReservoirIBTrainer, fit_layer_modulators
from plastix.bridges.ib_training import AdamWSettings, IBRule
from plastix.bridges.rate_networks import RateCNN, RateMLP

# -- rate networks ----------------------------------------------------------------------------


def test_rate_cnn_refuses_an_empty_channel_list():
    """A CNN needs at least one convolutional block (its docstring layout); without one it
    would silently be a linear readout on the raw pixels."""
    assert len(RateCNN((1, 4, 4), (2,), 2).blocks) == 1
    for channels in ((), []):
        with pytest.raises(ValueError, match="channels: need at least one convolutional block"):
            RateCNN((1, 4, 4), channels, 2)


# -- reservoir in the loop --------------------------------------------------------------------


def test_fit_layer_modulators_refuses_a_rule_of_another_kind():
    """Passing something other than an IBRule (e.g. the optimiser settings) is a TypeError
    that names ``rule``, not an AttributeError from deep inside."""
    with pytest.raises(TypeError, match="rule: expected an IBRule, got AdamWSettings"):
        fit_layer_modulators(RateMLP(6, (8,), 3), AdamWSettings())


@pytest.mark.parametrize("source", ["labels", "zero"])
def test_reservoir_epoch_checks_its_data_before_any_update(source):
    """Fewer samples than the window, or a label the readout has no output for, are refused
    with the trainer's messages (as :class:`IBTrainer` does), and the weights stay as they
    were."""
    torch.manual_seed(0)
    net = RateMLP(4, (5,), 3)
    start = [p.detach().clone() for p in net.parameters()]
    trainer = ReservoirIBTrainer(net, None, IBRule(window=4), xi_source=source)
    x = torch.rand(6, 4, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match="fewer than the window B = 4"):
        trainer.train_epoch(x[:3], y[:3])
    with pytest.raises(ValueError, match=r"class indices 0\.\.2"):
        trainer.train_epoch(x, torch.where(y == 2, 3, y))
    with pytest.raises(ValueError, match="NaN or inf"):
        trainer.train_epoch(torch.where(x > 0.9, torch.nan, x), y)
    for p, p0 in zip(net.parameters(), start, strict=True):
        assert torch.equal(p, p0)
