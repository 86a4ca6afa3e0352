"""Details of the snntorch bridge and the rate networks that the broader tests leave open:
which snntorch resets the bridge accepts, what one BPTT epoch optimises, the dtype of the
raster and the leaky integrator's documented defaults (fast: no Brian2 run)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from brian2 import ms

from plastix.bridges.rate_networks import LeakyIntegration, LeakyRateMLP
from plastix.bridges.snntorch_bridge import (
    BPTTConfig,
    bernoulli_raster,
    from_snntorch,
    readout_logits,
    to_snntorch,
    train_bptt,
)
from plastix.circuits.feedforward import FeedForwardSpec, LayerSpec, NeuronParams

DT = 1 * ms


def _li_readout_spec() -> FeedForwardSpec:
    """input 4 -> LIF (3) -> LI (2), weights that make the readout move step by step."""
    return FeedForwardSpec(
        4,
        (
            LayerSpec(np.full((3, 4), 8.0), NeuronParams("LIF")),
            LayerSpec(np.array([[3.0, -1.0, 2.0], [-2.0, 1.0, 0.5]]), NeuronParams("LI")),
        ),
    )


# -- from_snntorch: resets it accepts ---------------------------------------------------------


def test_synaptic_zero_reset_one_step_late_is_refused_but_leaky_zero_reset_is_not():
    """snntorch's default ``reset_delay=True`` zeroes a Leaky membrane at the start of the
    next step, which is the same trajectory as resetting in the spike's step; a Synaptic
    neuron, however, loses the whole next step's membrane, which no Brian2 reset does."""
    torch.manual_seed(0)
    x = 2.0 * torch.rand(30, 1, 3, dtype=torch.float64)
    late = snn.Leaky(beta=0.8, reset_mechanism="zero")
    prompt = snn.Leaky(beta=0.8, reset_mechanism="zero", reset_delay=False)
    mem_late = mem_prompt = torch.zeros(1, 3, dtype=torch.float64)
    spikes_late, spikes_prompt = [], []
    for t in range(30):
        s, mem_late = late(x[t], mem_late)
        spikes_late.append(s)
        s, mem_prompt = prompt(x[t], mem_prompt)
        spikes_prompt.append(s)
    assert torch.stack(spikes_prompt).sum() > 5
    assert torch.equal(torch.stack(spikes_late), torch.stack(spikes_prompt))
    spec = from_snntorch(torch.nn.Sequential(torch.nn.Linear(3, 3), late), DT)
    assert spec.layers[0].neuron.model == "LIF" and spec.layers[0].neuron.reset == "value"

    synaptic = snn.Synaptic(alpha=0.5, beta=0.8, reset_mechanism="zero")
    with pytest.raises(ValueError, match=r"net\[1\]: reset_delay=True"):
        from_snntorch(torch.nn.Sequential(torch.nn.Linear(3, 3), synaptic), DT)


# -- train_bptt: what one epoch optimises ----------------------------------------------------


def test_train_bptt_reports_the_cross_entropy_of_the_readout_from_settle_on():
    """With ``order`` given the generator draws only the input rasters, batch after batch, so
    the same draws rebuild them: the reported loss is the mean over batches of the
    cross-entropy of the readout averaged over steps ``settle..steps-1`` (lr 0: nothing
    moves). Averaging from step 0 gives another loss."""
    net = to_snntorch(_li_readout_spec(), DT, dtype=torch.float64)
    x = torch.tensor([[1.0, 0.5, 0.0, 1.0], [0.2, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    x = x.double()
    y = torch.tensor([0, 1, 1])
    cfg = BPTTConfig(steps=12, settle=6, batch=2, p_max=0.9)
    order = [2, 0, 1]
    stats = train_bptt(
        net,
        x,
        y,
        cfg,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.0),
        order=order,
        generator=torch.Generator().manual_seed(5),
    )
    gen = torch.Generator().manual_seed(5)
    expected, from_start = [], []
    with torch.no_grad():
        for sel in (torch.tensor([2, 0]), torch.tensor([1])):
            record = net(bernoulli_raster(x[sel], 12, 0.9, gen))
            expected.append(F.cross_entropy(readout_logits(net, record, 6), y[sel]))
            from_start.append(F.cross_entropy(readout_logits(net, record, 0), y[sel]))
    assert stats["loss"] == pytest.approx(float(sum(expected)) / 2, rel=1e-9)
    assert float(sum(from_start)) / 2 != pytest.approx(stats["loss"], rel=1e-3)


def test_train_bptt_clears_the_gradient_between_batches():
    """A frozen network with zero readout gives logits equal to the trainable ``offset``;
    plain SGD on the mean cross-entropy moves it by ``-lr (softmax(offset) - onehot(y))``
    averaged over each batch, from that batch's gradient alone."""
    net = to_snntorch(_li_readout_spec(), DT)
    with torch.no_grad():
        net.linears[1].weight.zero_()
        net.linears[1].bias.zero_()
    net.requires_grad_(False)
    offset = torch.zeros(2, requires_grad=True)
    lr = 0.5
    x = torch.full((4, 4), 0.5)
    y = torch.tensor([0, 0, 1, 1])
    cfg = BPTTConfig(steps=4, settle=1, batch=2)
    sgd = torch.optim.SGD([offset], lr=lr)
    train_bptt(net, x, y, cfg, optimizer=sgd, order=[0, 1, 2, 3], offset=offset)
    # batch [0, 0]: gradient softmax(0) - e0 = (-0.5, 0.5)
    first = torch.tensor([0.5 * lr, -0.5 * lr])
    # batch [1, 1]: gradient softmax(first) - e1
    p = torch.softmax(first, 0)
    second = first - lr * (p - torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(offset.detach(), second)


# -- SnnTorchFeedForward: input dtype --------------------------------------------------------


def test_network_takes_rasters_of_any_dtype_in_its_own_precision():
    """A raster of booleans or float64 (e.g. the numpy raster a Brian2 run gets) runs in the
    network's float32 and gives the same record as the float32 raster."""
    net = to_snntorch(_li_readout_spec(), DT)
    raster = np.random.default_rng(0).random((15, 2, 4)) < 0.5
    with torch.no_grad():
        ref = net(torch.as_tensor(raster, dtype=torch.float32))
        for dtype in (torch.bool, torch.float64):
            rec = net(torch.as_tensor(raster).to(dtype))
            assert rec.membranes[1].dtype == torch.float32
            torch.testing.assert_close(rec.membranes[1], ref.membranes[1], rtol=0, atol=0)
            torch.testing.assert_close(rec.spikes[0], ref.spikes[0], rtol=0, atol=0)
    assert ref.spikes[0].sum() > 0


# -- leaky rate units ------------------------------------------------------------------------


def test_leaky_integration_defaults_are_the_reference_cell():
    """The defaults are Daruwalla & Lipasti's ``LIFDenseCell``: tau 5 ms, dt 1 ms, 20 steps,
    i.e. dt / tau = 0.2 per Euler step, and a LeakyRateMLP uses them when given none."""
    default = LeakyIntegration()
    assert (default.tau, default.dt, default.steps) == (5e-3, 1e-3, 20)
    assert default.rate == pytest.approx(0.2)
    assert LeakyRateMLP(3, (4,), 2).integration == default
    assert math.isclose(LeakyRateMLP(3, (4,), 2).blocks[0].weight_gain, 0.2)


def test_leaky_prediction_is_differentiable_down_to_the_first_layer():
    """Backprop trains a LeakyRateMLP through its ``forward``: the gradient of the averaged
    readout reaches the hidden weights through every Euler step and matches a central finite
    difference."""
    torch.manual_seed(0)
    net = LeakyRateMLP(3, (4,), 2, integration=LeakyIntegration(5e-3, 1e-3, 6)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    weight = net.blocks[0].linear.weight
    (grad,) = torch.autograd.grad(net(x)[:, 0].sum(), [weight])
    h, numeric = 1e-6, torch.zeros_like(weight)
    with torch.no_grad():
        for i in range(weight.shape[0]):
            for j in range(weight.shape[1]):
                weight[i, j] += h
                up = net(x)[:, 0].sum()
                weight[i, j] -= 2 * h
                down = net(x)[:, 0].sum()
                weight[i, j] += h
                numeric[i, j] = (up - down) / (2 * h)
    assert grad.abs().max() > 1e-2
    torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=1e-7)


def test_rate_networks_refuse_samples_with_extra_dimensions():
    """Samples are taken flat ``(B, n_in)`` or in the input shape; a column vector per sample
    ``(B, n_in, 1)`` is neither and is refused rather than silently flattened."""
    from plastix.bridges.rate_networks import RateMLP

    net = RateMLP(3, (4,), 2)
    assert net(torch.zeros(2, 3)).shape == (2, 2)
    with pytest.raises(ValueError, match=r"x: sample shape \(3, 1\) does not fit"):
        net(torch.zeros(2, 3, 1))
