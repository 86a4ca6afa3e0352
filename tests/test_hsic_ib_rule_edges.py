"""Edges of the HSIC maths, the IB rule's Brian2 forms and the rate-network trainers (third
mutation audit): kernels of one sample or of malformed matrices, windows of B = 2, streams
whose labels miss the last class, rules handed to make_trainer, and the continuous Brian2
form's gate, eligibility decay and weight bounds worked out by hand.

Small sizes in float64; the Brian2 runs use the numpy target and last well under a second.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from brian2 import Hz, Network, NeuronGroup, SpikeGeneratorGroup, Synapses, ms
from hsic_parts import capture_first_step, hsic_by_hand, kernel_by_hand

from plastix.bridges.ib_training import (
    AdamWSettings,
    BackpropTrainer,
    IBRule,
    IBTrainer,
    LayerwiseHSICTrainer,
    PHSICRule,
    layer_hsic,
    make_trainer,
    stream_order,
)
from plastix.bridges.rate_networks import RateMLP
from plastix.plasticity.hsic import (
    cosine_kernel,
    gaussian_kernel,
    hsic,
    modulatory_weights,
    plausible_hsic,
    sliding_windows,
)
from plastix.plasticity.ib_rule import IBThreeFactor

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _net(n_in=4, hidden=(5,), n_classes=3, seed=0):
    torch.manual_seed(seed)
    return RateMLP(n_in, hidden, n_classes).double()


# --- kernels and HSIC estimators -----------------------------------------------------------


def test_hsic_estimators_refuse_one_sample_kernels_and_feature_matrices():
    """A kernel over one sample has no spread: HSIC would divide by (B - 1)^2 = 0 and pHSIC
    would be 0 whatever the data. A (B, d) feature matrix passed where a (B, B) kernel belongs
    is refused by pHSIC as by HSIC, not averaged as if it were one."""
    one = torch.ones(1, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="B >= 2"):
        hsic(one, one)
    with pytest.raises(ValueError, match="B >= 2"):
        plausible_hsic(one, one)
    features = torch.rand(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="not matching"):
        plausible_hsic(features, features)


def test_kernels_refuse_a_single_vector_and_nan_features():
    """A 1-D vector is one sample of d features or d samples of one feature; the caller must
    say which ((1, d) or (d, 1)). NaN in the cosine kernel's input would make whole rows NaN."""
    with pytest.raises(ValueError, match=r"expected \(B, d >= 1\)"):
        gaussian_kernel(torch.zeros(4, dtype=torch.float64), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        cosine_kernel(torch.tensor([[float("nan"), 1.0], [1.0, 0.0]]))


def test_sliding_windows_refuse_a_fractional_window():
    """A window of 2.5 samples is refused rather than truncated to 2."""
    with pytest.raises(ValueError, match="window"):
        sliding_windows(torch.zeros(5, 2), 2.5)


# --- the trainers' settings and data schedule ---------------------------------------------


def test_stream_order_of_two_sample_windows_never_pairs_a_sample_with_itself():
    """B = 2: the stream is the shuffled epoch preceded by its last entry, so each of the n
    windows holds two different samples and every sample is current exactly once."""
    n = 7
    order = stream_order(n, 2, torch.Generator().manual_seed(3))
    assert order.shape == (n + 1,)
    assert sorted(order[1:].tolist()) == list(range(n))
    assert all(int(order[t]) != int(order[t + 1]) for t in range(n))


def test_rule_settings_refuse_zero_bandwidths_two_bandwidths_and_negative_weight_decay():
    """A zero bandwidth divides by zero in the kernel; two bandwidths leave one kernel
    without; a negative weight decay would grow the weights (torch refuses it only later,
    when the optimiser is built)."""
    with pytest.raises(ValueError, match=r"sigmas\[1\]"):
        IBRule(sigmas=(0.5, 0.0, 1.0))
    with pytest.raises(ValueError, match="sigma_x, sigma_y, sigma_z"):
        IBRule(sigmas=(0.5, 0.1))
    with pytest.raises(ValueError, match="sigma_z"):
        PHSICRule(sigma_z=0.0)
    with pytest.raises(ValueError, match="weight_decay"):
        AdamWSettings(weight_decay=-1e-4)


def test_make_trainer_hands_over_the_given_rules_and_refuses_a_window_mismatch():
    """make_trainer trains with the rule it is given (not a default one), and refuses an IB
    rule whose window differs from the ``window`` asked for."""
    rule = IBRule(gamma=5.0, sigmas=(0.7, 0.2, 1.3), window=4, xi_method="row-centred")
    for method in ("ib", "hsic"):
        assert make_trainer(method, _net(), window=4, ib_rule=rule).rule == rule, method
    with pytest.raises(ValueError, match="differs from ib_rule.window = 4"):
        make_trainer("ib", _net(), window=8, ib_rule=rule)
    phsic = PHSICRule(gamma=3.5, sigma_z=2.0)
    assert make_trainer("phsic", _net(), window=4, phsic_rule=phsic).rule == phsic


def test_window_data_refuse_more_inputs_than_labels_and_infinite_inputs():
    """Six inputs with five labels, or an infinite input, are refused with the problem named
    (not an index error or a NaN network)."""
    trainer = IBTrainer(_net(), IBRule(window=2))
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(6, 4, dtype=torch.float64), torch.arange(6) % 3
    with pytest.raises(ValueError, match="6 inputs but 5 labels"):
        trainer.train_epoch(x, y[:5], gen)
    x[2, 1] = float("inf")
    with pytest.raises(ValueError, match="x: contains NaN or inf"):
        trainer.train_epoch(x, y, gen)
    net = _net()
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(ValueError, match="x: contains NaN or inf"):
        BackpropTrainer(net, batch=2).train_epoch(x, y, gen)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


# --- labels that miss the last class -------------------------------------------------------


def _two_class_stream(n=6):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1, 0])[:n]  # a 3-class readout; class 2 never appears
    return x, y


def test_layer_hsic_label_kernel_is_as_wide_as_the_readout_when_a_class_is_missing():
    """The one-hot labels have one column per readout class whatever the batch holds, so the
    label kernel's bandwidth is sigma_y sqrt(3) here, not sigma_y sqrt(2)."""
    x, y = _two_class_stream()
    net = _net()
    rule = IBRule(sigmas=(0.6, 0.3, 1.4), xi_site="relu")
    ky = kernel_by_hand(F.one_hot(y, 3).double(), 0.3)
    traces, _ = net.trace(x)
    got = layer_hsic(net, x, y, rule)
    for (_, hy), t in zip(got, traces, strict=True):
        kz = kernel_by_hand(t.h.flatten(1).detach(), 1.4)
        assert hy == pytest.approx(float(hsic_by_hand(ky, kz)), rel=1e-10)


def test_ib_windows_use_readout_wide_labels_when_a_class_is_missing():
    """An IB epoch over a stream without class 2 (3-class readout): every window's labels are
    3 wide and its kernel weights are those of the 3-wide one-hot labels; a real epoch runs
    and changes the weights."""
    x, y = _two_class_stream()
    rule = IBRule(gamma=3.0, sigmas=(0.7, 0.2, 1.0), window=3)
    trainer = IBTrainer(_net(), rule)
    seen = []
    trainer.step = lambda xw, yw, w: seen.append((xw.clone(), yw.clone(), w.clone()))
    trainer.train_epoch(x, y, torch.Generator().manual_seed(2))
    assert len(seen) == 6
    for xw, yw, w in seen:
        assert yw.shape == (3, 3)
        expected = modulatory_weights(
            kernel_by_hand(xw, 0.7), kernel_by_hand(yw, 0.2), 3.0, "exact"
        )
        torch.testing.assert_close(w, expected)
    net = _net()
    before = [p.detach().clone() for p in net.parameters()]
    IBTrainer(net, rule).train_epoch(x, y, torch.Generator().manual_seed(2))
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_layerwise_hsic_objective_uses_readout_wide_labels_when_a_class_is_missing():
    """The layer-wise baseline's first window without class 2: its hidden gradient is that of
    HSIC(X, Z) - gamma HSIC(Y, Z) with 3-wide one-hot labels (label bandwidth sigma_y sqrt(3))."""
    x, y = _two_class_stream()
    rule = IBRule(gamma=3.0, sigmas=(0.7, 0.2, 1.1), window=4, xi_site="relu")
    net = _net()
    trainer = LayerwiseHSICTrainer(net, rule, AdamWSettings(lr=1e-12, weight_decay=0.0))
    grads = capture_first_step(trainer)
    trainer.train_epoch(x, y, torch.Generator().manual_seed(3))
    idx = stream_order(6, 4, torch.Generator().manual_seed(3))[:4]
    xw, y1 = x[idx], F.one_hot(y[idx], 3).double()
    block = _net().blocks[0]  # the network before the step
    z = block.finish(xw, block.pre_activation(xw)).h
    kz = kernel_by_hand(z, 1.1)
    objective = hsic_by_hand(kernel_by_hand(xw, 0.7), kz) - 3.0 * hsic_by_hand(
        kernel_by_hand(y1, 0.2), kz
    )
    ref = torch.autograd.grad(objective, list(block.parameters()))
    for a, b in zip(grads[:2], ref, strict=True):
        torch.testing.assert_close(a, b)


# --- the continuous Brian2 form, worked by hand --------------------------------------------


def _one_spike(rule, *, gate, xi, w0=0.0, duration=10 * ms, dt=0.05 * ms):
    """One presynaptic spike at t = 0 onto one postsynaptic neuron with psi = 1 and the given
    gate and ξ (``modulation``); returns (w, elig, elig_sum in seconds) after ``duration``."""
    pre = SpikeGeneratorGroup(1, [0], [0.0] * ms, dt=dt)
    post = NeuronGroup(1, "psi : 1\ngate : 1\nmodulation : 1", dt=dt)
    post.psi, post.gate, post.modulation = 1.0, gate, xi
    syn = Synapses(pre, post, dt=dt, **rule.brian2_form().synapses_kwargs())
    syn.connect()
    syn.w = w0
    Network(pre, post, syn).run(duration, namespace={})
    return float(syn.w[0]), float(syn.elig[0]), float(syn.elig_sum_[0])


def test_continuous_form_eligibility_follows_the_two_time_constants():
    """After one spike, ``pre_trace / tau_pre = exp(-t / tau_pre) / tau_pre`` drives
    ``tau_elig de/dt = -e + pre_trace / tau_pre / rate_norm``, so
    ``e(t) = (exp(-t/tau_pre) - exp(-t/tau_elig)) / (rate_norm (tau_pre - tau_elig))`` and E is
    its integral (gate 1); ξ = 0 leaves the weight alone. Euler steps of dt = tau_elig / 40:
    5 % tolerance."""
    rule = IBThreeFactor(
        eta=10 * Hz, update="continuous", tau_pre=20 * ms, tau_elig=2 * ms, rate_norm=100 * Hz
    )
    w, e, big_e = _one_spike(rule, gate=1.0, xi=0.0, w0=0.25)
    t, tp, te, rn = 10e-3, 20e-3, 2e-3, 100.0
    expected_e = (math.exp(-t / tp) - math.exp(-t / te)) / (rn * (tp - te))
    expected_big_e = (tp * (1 - math.exp(-t / tp)) - te * (1 - math.exp(-t / te))) / (
        rn * (tp - te)
    )
    assert e == pytest.approx(expected_e, rel=0.05)
    assert big_e == pytest.approx(expected_big_e, rel=0.05)
    assert w == pytest.approx(0.25, abs=1e-12)


def test_continuous_form_learns_nothing_while_the_gate_is_closed():
    """gate 0 (learning off): the eligibility still follows the spike, but neither the weight
    nor the integrated eligibility E moves, whatever ξ."""
    rule = IBThreeFactor(eta=1000 * Hz, update="continuous")
    w, e, big_e = _one_spike(rule, gate=0.0, xi=-50.0, w0=0.3)
    assert e > 0
    assert big_e == 0.0
    assert w == pytest.approx(0.3, abs=1e-12)


@pytest.mark.parametrize(("xi", "bound"), [(-100.0, 0.2), (100.0, -1.0)])
def test_continuous_form_clips_to_bounds_that_are_not_symmetric(xi, bound):
    """dw/dt = -eta ξ e drives the weight far past either bound; it stops at w_max = 0.2 or
    w_min = -1 (bounds not symmetric about zero)."""
    rule = IBThreeFactor(eta=1000 * Hz, update="continuous", w_min=-1.0, w_max=0.2)
    w, _, _ = _one_spike(rule, gate=1.0, xi=xi)
    assert w == pytest.approx(bound, abs=1e-12)


@pytest.mark.parametrize(
    ("gate", "expected_w", "expected_e"), [("1", [0.1, 0.5], 0.0), ("0", [0.3, 0.3], 0.0)]
)
def test_per_sample_update_statements_honour_the_gate_and_reset_the_eligibility(
    gate, expected_w, expected_e
):
    """``w <- clip(w - eta * gate * xi * E, w_min, w_max)`` then ``E <- 0``, worked by hand:
    eta 2 Hz, E 0.1 s, xi (1, -3), w 0.3 gives (0.1, 0.9), clipped to w_max 0.5; a closed gate
    leaves w alone but still clears E."""
    dt = 0.1 * ms
    rule = IBThreeFactor(eta=2 * Hz, w_min=-1.0, w_max=0.5)
    pre = SpikeGeneratorGroup(1, [], [] * ms, dt=dt)  # no spike: E stays as set
    post = NeuronGroup(2, "psi : 1\ngate : 1\nmod : 1", dt=dt)
    post.mod = [1.0, -3.0]
    syn = Synapses(pre, post, dt=dt, **rule.brian2_form().synapses_kwargs())
    syn.connect()
    syn.w = 0.3
    syn.elig_sum_ = 0.1
    syn.run_regularly(rule.brian2_sample_update("mod_post", gate=gate), dt=dt)
    Network(pre, post, syn).run(dt, namespace={})  # the statements run once, at t = 0
    assert np.asarray(syn.w[:]) == pytest.approx(expected_w, abs=1e-12)
    assert np.asarray(syn.elig_sum_[:]) == pytest.approx([expected_e] * 2, abs=1e-15)
