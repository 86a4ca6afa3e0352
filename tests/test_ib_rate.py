"""Rate networks trained by the IB three-factor rule and its baselines (plastix.bridges)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from brian2 import Hz

from plastix.bridges.ib_training import (
    AdamWSettings,
    IBRule,
    IBTrainer,
    evaluate,
    ib_gradients,
    layer_hsic,
    make_trainer,
    stream_order,
)
from plastix.bridges.rate_networks import (
    ConvBlock,
    DenseBlock,
    LeakyIntegration,
    LeakyRateMLP,
    RateCNN,
    RateMLP,
)
from plastix.plasticity.hsic import gaussian_kernel, layer_objective, modulatory_weights
from plastix.plasticity.ib_rule import IBThreeFactor, apply_eligibility_update
from plastix.sims.datasets import load_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tensors(name, n_train=None, n_test=None, flat=True):
    ds = load_dataset(name, n_train=n_train, n_test=n_test, seed=0)
    if flat:
        ds = ds.flat()
    return (
        torch.as_tensor(np.array(ds.x_train)),
        torch.as_tensor(np.array(ds.y_train)),
        torch.as_tensor(np.array(ds.x_test)),
        torch.as_tensor(np.array(ds.y_test)),
    )


def _window(seed=0, window=6, n_in=5, n_classes=3, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(window, n_in, generator=gen, dtype=dtype)
    y = torch.randint(0, n_classes, (window,), generator=gen)
    return x, y, F.one_hot(y, n_classes).to(dtype)


# --- the three-factor update is the layer-local VJP ------------------------------------------


@pytest.mark.parametrize("site", ["relu", "norm"])
@pytest.mark.parametrize("layer_norm", [True, False])
def test_dense_three_factor_equals_layer_local_vjp(site, layer_norm):
    torch.manual_seed(0)
    block = DenseBlock(5, 7, layer_norm).double()
    p = torch.randn(4, 5, dtype=torch.float64)
    xi = torch.randn(7, dtype=torch.float64)
    with torch.no_grad():
        trace = block.finish(p, block.pre_activation(p))
        rule = block.three_factor_grads(trace, xi, site)
    z_last = block.finish(p, block.pre_activation(p)).z(site)[-1]
    vjp = torch.autograd.grad(z_last, list(block.parameters()), grad_outputs=xi)
    for mine, ref in zip(rule, vjp, strict=True):
        torch.testing.assert_close(mine, ref)
    if site == "relu":  # the plain three-factor form: (xi * ReLU'(a_B)) outer p_B
        delta = xi * (trace.a[-1] > 0)
        torch.testing.assert_close(rule[0], torch.outer(delta, p[-1]))


def test_conv_three_factor_equals_layer_local_vjp():
    torch.manual_seed(0)
    block = ConvBlock(2, 3).double()
    p = torch.randn(3, 2, 6, 6, dtype=torch.float64)
    xi = torch.randn(3 * 6 * 6, dtype=torch.float64)
    with torch.no_grad():
        rule = block.three_factor_grads(block.finish(p, block.pre_activation(p)), xi, "relu")
    z_last = block.finish(p, block.pre_activation(p)).z("relu")[-1]
    (vjp,) = torch.autograd.grad(z_last, [block.conv.weight], grad_outputs=xi)
    torch.testing.assert_close(rule[0], vjp)
    with pytest.raises(ValueError, match="xi_site"):
        block.three_factor_grads(block.finish(p, block.pre_activation(p)), xi, "norm")


def test_leaky_three_factor_equals_vjp_of_one_euler_step():
    torch.manual_seed(0)
    net = LeakyRateMLP(4, (5,), 3, integration=LeakyIntegration(5e-3, 1e-3, 10)).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    state = [s + 0.3 for s in net.initial_state(3, x)]
    xi = torch.randn(5, dtype=torch.float64)
    _, traces, _ = net.time_step(x, state)
    z_last = traces[0].z("norm")[-1]
    block = net.blocks[0]
    vjp = torch.autograd.grad(z_last, list(block.parameters()), grad_outputs=xi)
    with torch.no_grad():
        _, traces, _ = net.time_step(x, state)
        rule = block.three_factor_grads(traces[0], xi, "norm")
    for mine, ref in zip(rule, vjp, strict=True):
        torch.testing.assert_close(mine, ref)


@pytest.mark.parametrize("method", ["exact", "row-centred"])
def test_ib_gradients_hidden_is_gradient_of_objective_through_current_sample(method):
    """Exact xi: the IB update of each hidden layer equals d/dW of its HSIC objective when only
    the current sample's activity z_B depends on W (the memory holds the others fixed)."""
    torch.manual_seed(1)
    net = RateMLP(5, (6, 4), 3).double()
    rule = IBRule(gamma=2.0, sigmas=(0.7, 0.3, 1.2), window=6, xi_method=method)
    x, y, y1 = _window()
    weights = modulatory_weights(
        gaussian_kernel(x, rule.sigmas[0]), gaussian_kernel(y1, rule.sigmas[1]), rule.gamma, method
    )
    grads = ib_gradients(net, x, y1, weights, rule)
    traces, logits = net.trace(x, detach_inputs=True)
    for layer, (block, t) in enumerate(zip(net.blocks, traces, strict=True)):
        z = t.z("norm")
        z_mixed = torch.cat([z[:-1].detach(), z[-1:]])
        objective = layer_objective(x, y1, z_mixed, rule.gamma, rule.sigmas)
        ref = torch.autograd.grad(objective, list(block.parameters()))
        mine = grads[2 * layer : 2 * layer + 2]
        for a, b in zip(mine, ref, strict=True):
            if method == "exact":
                torch.testing.assert_close(a, b)
            else:  # the approximation points the same way
                assert F.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.5
    ce = torch.autograd.grad(F.cross_entropy(logits, y), list(net.readout.parameters()))
    for a, b in zip(grads[-2:], ce, strict=True):
        torch.testing.assert_close(a, b)


def test_stream_order_makes_every_sample_current_once():
    order = stream_order(20, 5, torch.Generator().manual_seed(0))
    assert order.shape == (24,)
    current = [int(order[t + 4]) for t in range(20)]
    assert sorted(current) == list(range(20))
    # the stream wraps around: the first windows hold the end of the shuffled epoch, so every
    # window holds B distinct samples (no sample is its own memory)
    torch.testing.assert_close(order[:4], order[-4:])
    assert all(len(set(order[t : t + 5].tolist())) == 5 for t in range(20))


def test_an_epoch_in_chunks_trains_exactly_as_in_one_piece(monkeypatch):
    """train_epoch computes the kernel weights chunk by chunk (to bound memory); the chunks
    must neither repeat nor skip a window: n steps, each sample current once, and the same
    weights as an epoch in one chunk."""
    from plastix.bridges import ib_training

    x, y = torch.randn(20, 5, dtype=torch.float64), torch.arange(20) % 3

    def epoch(chunk_elements: int) -> tuple[list[int], list[torch.Tensor]]:
        monkeypatch.setattr(ib_training, "WEIGHT_CHUNK_ELEMENTS", chunk_elements)
        torch.manual_seed(0)
        trainer = IBTrainer(RateMLP(5, (6,), 3).double(), IBRule(window=4))
        current, step = [], trainer.step

        def recording_step(x_window, y_window, weights):
            current.append(int((x == x_window[-1]).all(1).nonzero()))
            step(x_window, y_window, weights)

        trainer.step = recording_step
        trainer.train_epoch(x, y, torch.Generator().manual_seed(1))
        return current, [p.detach().clone() for p in trainer.net.parameters()]

    current_whole, whole = epoch(10**6)
    current_chunked, chunked = epoch(4 * 5 * 3)  # chunks of 3 windows
    assert current_chunked == current_whole and sorted(current_whole) == list(range(20))
    for a, b in zip(chunked, whole, strict=True):
        torch.testing.assert_close(a, b)


def test_leaky_readout_update_is_the_cross_entropy_gradient_through_one_euler_step():
    """The readout of leaky units learns from its state after each Euler step,
    ``o = s + (dt/tau)(W p + b - s)``: its update is dCE/dW through that step, so it carries the
    factor dt/tau."""
    torch.manual_seed(0)
    net = LeakyRateMLP(4, (5,), 3, integration=LeakyIntegration(5e-3, 1e-3, 2)).double()
    trainer = IBTrainer(net, IBRule(window=4))
    applied = []
    trainer._apply = applied.append  # record, leave the weights as they are
    x, y, y1 = _window(window=4, n_in=4)
    trainer.step(x, y1, trainer.window_weights(x, y1)[0])
    _, _, out = net.time_step(x, net.initial_state(4, x))
    ce = torch.autograd.grad(F.cross_entropy(out, y), list(net.readout.parameters()))
    for mine, ref in zip(applied[0][-2:], ce, strict=True):
        torch.testing.assert_close(mine, ref)


def test_detached_trace_keeps_every_gradient_inside_its_layer():
    torch.manual_seed(0)
    net = RateMLP(5, (6, 4), 3).double()
    x, y, _ = _window()
    traces, logits = net.trace(x, detach_inputs=True)
    F.cross_entropy(logits, y).backward()
    assert all(p.grad is None for p in net.blocks.parameters())  # the readout's loss stays there
    assert all(p.grad is not None for p in net.readout.parameters())
    traces[1].n.sum().backward()  # the second layer's output reaches its own weights only
    assert all(p.grad is None for p in net.blocks[0].parameters())
    assert all(p.grad is not None for p in net.blocks[1].parameters())


def test_phsic_loss_uses_the_centred_label_kernel():
    """Pogodin & Latham's layer loss with their label kernel written out: cosine similarity of
    centred one-hot labels is 1 within a class and -1/(C-1) across classes."""
    from plastix.bridges.ib_training import PHSICRule, PHSICTrainer

    torch.manual_seed(0)
    net = RateMLP(5, (6, 4), 3).double()
    rule = PHSICRule()
    trainer = PHSICTrainer(net, rule, batch=6)
    x, y, _ = _window()
    k_y = torch.where(y[:, None] == y[None, :], 1.0, -1 / (3 - 1)).double()

    def phsic(a, b):
        return ((a - a.mean()) * b).mean()

    traces, logits = net.trace(x, detach_inputs=True)
    expected = F.cross_entropy(logits, y)
    for t in traces:
        h = t.h.flatten(1)
        k_z = torch.exp(-(torch.cdist(h, h) ** 2) / (2 * rule.sigma_z**2))
        expected = expected + phsic(k_z, k_z) - rule.gamma * phsic(k_y, k_z)
    torch.testing.assert_close(trainer._loss(x, y), expected)


# --- networks ---------------------------------------------------------------------------------


def test_leaky_network_settles_to_the_rate_network():
    torch.manual_seed(0)
    leaky = LeakyRateMLP(6, (8, 5), 3, integration=LeakyIntegration(5e-3, 1e-3, 200)).double()
    rate = RateMLP(6, (8, 5), 3).double()
    rate.load_state_dict(leaky.state_dict())
    x = torch.randn(10, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(leaky(x), rate(x), rtol=1e-3, atol=1e-3)


def test_cnn_shapes_and_training_step():
    torch.manual_seed(0)
    net = RateCNN((1, 8, 8), (4, 6), 10)
    x = torch.rand(9, 1, 8, 8)
    assert net(x).shape == (9, 10)
    trainer = IBTrainer(net, IBRule(window=4, xi_site="relu"), AdamWSettings(lr=1e-2))
    before = [p.detach().clone() for p in net.parameters()]
    trainer.train_epoch(x, torch.randint(0, 10, (9,)), torch.Generator().manual_seed(0))
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


# --- learning ---------------------------------------------------------------------------------


def _fit(trainer, x, y, epochs):
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        trainer.train_epoch(x, y, gen)


def test_ib_learns_xor():
    x, y, xt, yt = _tensors("xor", n_test=300)
    torch.manual_seed(0)
    net = RateMLP(2, (10, 4), 2)
    rule = IBRule(gamma=10.0, sigmas=(0.3, 0.25, 2.0), window=64)  # XOR config of the reference
    _fit(IBTrainer(net, rule, AdamWSettings(lr=1e-3)), x, y, 2)
    assert evaluate(net, xt, yt)[0] > 0.85  # chance 0.5


def test_ib_learns_linear_with_leaky_units():
    x, y, xt, yt = _tensors("linear", n_train=150, n_test=300)
    torch.manual_seed(0)
    net = LeakyRateMLP(2, (4,), 2, integration=LeakyIntegration(5e-3, 1e-3, 8))
    rule = IBRule(gamma=10.0, sigmas=(0.5, 0.25, 1.0), window=16)
    _fit(IBTrainer(net, rule, AdamWSettings(lr=3e-3)), x, y, 1)
    assert evaluate(net, xt, yt)[0] > 0.85  # chance 0.5


def test_ib_learns_digits_and_raises_label_information_of_hidden_layers():
    x, y, xt, yt = _tensors("digits", n_train=600, n_test=300)
    torch.manual_seed(0)
    net = RateMLP(64, (64, 32), 10)
    rule = IBRule(window=8)
    before = layer_hsic(net, xt[:200], yt[:200], rule)
    _fit(IBTrainer(net, rule, AdamWSettings(lr=3e-4)), x, y, 3)
    after = layer_hsic(net, xt[:200], yt[:200], rule)
    assert evaluate(net, xt, yt)[0] > 0.6  # chance 0.1
    for (_, hy0), (_, hy1) in zip(before, after, strict=True):
        assert hy1 > 2 * hy0  # HSIC(Y, Z) grows in every hidden layer


def test_readout_only_control_leaves_hidden_layers_untouched():
    x, y, _, _ = _tensors("digits", n_train=200, n_test=10)
    net = RateMLP(64, (16,), 10)
    hidden = [p.detach().clone() for p in net.blocks.parameters()]
    readout = [p.detach().clone() for p in net.readout.parameters()]
    _fit(make_trainer("readout", net, window=8), x, y, 1)
    assert all(torch.equal(a, b) for a, b in zip(hidden, net.blocks.parameters(), strict=True))
    assert not any(
        torch.equal(a, b) for a, b in zip(readout, net.readout.parameters(), strict=True)
    )


@pytest.mark.parametrize(("method", "lr", "epochs"), [("backprop", 1e-3, 2), ("phsic", 3e-3, 3)])
def test_baselines_learn_digits(method, lr, epochs):
    x, y, xt, yt = _tensors("digits", n_train=600, n_test=300)
    torch.manual_seed(0)
    net = RateMLP(64, (64, 32), 10)
    _fit(make_trainer(method, net, window=8, lr=lr), x, y, epochs)
    assert evaluate(net, xt, yt)[0] > 0.7


def test_layerwise_hsic_raises_its_objective_gap():
    x, y, xt, yt = _tensors("digits", n_train=200, n_test=200)
    torch.manual_seed(0)
    net = RateMLP(64, (32,), 10)
    rule = IBRule(window=8)
    before = layer_hsic(net, xt, yt, rule)
    _fit(make_trainer("hsic", net, window=8, lr=1e-3, ib_rule=rule), x, y, 1)
    after = layer_hsic(net, xt, yt, rule)
    # objective HSIC(X,Z) - gamma HSIC(Y,Z) falls
    assert after[0][0] - 2 * after[0][1] < before[0][0] - 2 * before[0][1]


# --- validation -------------------------------------------------------------------------------


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="B >= 2"):
        IBRule(window=1)
    with pytest.raises(ValueError, match="xi_method"):
        IBRule(xi_method="fast")
    with pytest.raises(ValueError, match="xi_site"):
        IBRule(xi_site="soma")
    with pytest.raises(ValueError, match=r"sigmas\[2\]"):
        IBRule(sigmas=(0.5, 0.1, -1.0))
    with pytest.raises(ValueError, match="dt"):
        LeakyIntegration(tau=1e-3, dt=2e-3)
    with pytest.raises(ValueError, match="steps"):
        LeakyIntegration(steps=1)
    with pytest.raises(ValueError, match="channels"):
        RateCNN((1, 4, 4), (2, 2, 2), 10)
    with pytest.raises(ValueError, match="lr"):
        AdamWSettings(lr=0.0)
    with pytest.raises(ValueError, match="method"):
        make_trainer("feedback-alignment", RateMLP(2, (3,), 2))


def test_bad_data_is_refused():
    net = RateMLP(4, (3,), 2)
    trainer = IBTrainer(net, IBRule(window=8))
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="fewer than the window"):
        trainer.train_epoch(torch.rand(5, 4), torch.zeros(5, dtype=torch.int64), gen)
    with pytest.raises(TypeError, match="int64"):
        trainer.train_epoch(torch.rand(10, 4), torch.zeros(10), gen)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        trainer.train_epoch(torch.rand(10, 4), torch.full((10,), 3), gen)
    with pytest.raises(ValueError, match="does not fit the network input"):
        trainer.train_epoch(torch.rand(10, 5), torch.zeros(10, dtype=torch.int64), gen)
    with pytest.raises(TypeError, match="RateMLP/RateCNN only"):
        make_trainer("phsic", LeakyRateMLP(4, (3,), 2))


# --- experiments ------------------------------------------------------------------------------


def _run(name, overrides, tmp_path):
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    out = run_experiment(
        name, overrides=overrides, out=tmp_path / f"{name}.h5", seed=0, progress=False
    )
    return read_result(out)


def test_ib_rate_experiment_writes_metrics_and_weights(tmp_path):
    r = _run(
        "ib-rate",
        {
            "dataset": "xor",
            "epochs": 2,
            "n_train": 200,
            "n_test": 100,
            "hidden": [10, 4],
            "lr": 1e-3,
            "gamma": 10.0,
            "sigmas": [0.3, 0.25, 2.0],
        },
        tmp_path,
    )
    assert r.status == "complete"
    for key in (
        "epoch",
        "train_accuracy",
        "test_accuracy",
        "train_loss",
        "test_loss",
        "step_ms",
        "hsic_x_layer0",
        "hsic_y_layer1",
    ):
        assert r.metrics[key].shape == (2,)
    assert r.summary["test_accuracy"] > 0.7
    assert r.weights["blocks.0.linear.weight"].shape == (10, 2)
    assert {"samples_per_s", "step_ms", "train_accuracy"} <= set(r.summary)


@pytest.mark.parametrize("name", ["backprop", "phsic", "hsic-layerwise", "readout-only"])
def test_baseline_experiments_run(name, tmp_path):
    r = _run(
        name,
        {"dataset": "linear", "epochs": 1, "n_train": 64, "n_test": 50, "hidden": [4]},
        tmp_path,
    )
    assert r.metrics["test_accuracy"].shape == (1,)
    assert 0.0 <= r.summary["test_accuracy"] <= 1.0


def test_bsweep_experiment_logs_one_row_per_window(tmp_path):
    r = _run(
        "ib-bsweep",
        {
            "dataset": "linear",
            "epochs": 2,
            "n_train": 64,
            "n_test": 50,
            "hidden": [4],
            "windows": [2, 4, 16],
        },
        tmp_path,
    )
    np.testing.assert_array_equal(r.metrics["window"], [2, 4, 16])
    assert r.arrays["test_accuracy_curves"].shape == (3, 2)
    assert r.summary["best_window"] in (2, 4, 16)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"model": "cnn", "dataset": "xor"}, "image dataset"),
        ({"sigmas": [0.5, 0.1]}, "three widths"),
        ({"n_train": 4, "window": 8}, "longer than the 4 training samples of 'digits'"),
        # no n_train: the whole training set (1000 xor samples) is shorter than the window
        ({"dataset": "xor", "window": 5000}, "window of 5000 samples is longer than the 1000"),
        ({"xi_method": "fast"}, "valid choice"),
    ],
)
def test_experiment_config_errors(overrides, match, tmp_path):
    from plastix.sims.config import ConfigError
    from plastix.sims.experiments import run_experiment

    with pytest.raises(ConfigError, match=match):
        run_experiment("ib-rate", overrides=overrides, out=tmp_path / "r.h5", seed=0)
    assert not (tmp_path / "r.h5").exists()


@pytest.mark.parametrize(
    ("experiment", "overrides", "match"),
    [
        ("ib-bsweep", {"dataset": "xor", "windows": "2,4000"}, "windows: a window of 4000"),
        ("compare", {"window": 600}, "window of 600 samples is longer than the 500 training"),
    ],
)
def test_windows_longer_than_the_training_set_are_refused_before_work(
    experiment, overrides, match, tmp_path
):
    from plastix.sims.config import ConfigError
    from plastix.sims.experiments import prepare_run

    with pytest.raises(ConfigError, match=match):
        prepare_run(experiment, overrides=overrides, out=tmp_path / "r.h5")


def test_dense_and_conv_blocks_normalise_like_torch_layer_norm_with_eps_1e_6():
    """The hidden blocks' LayerNorm (no affine) is torch's layer_norm with eps 1e-6: over the
    features of a dense block, over (C, H, W) of a pooled convolutional block."""
    torch.manual_seed(0)
    dense = DenseBlock(5, 7).double()
    p = 0.01 * torch.randn(4, 5, dtype=torch.float64)  # small rates: eps matters
    with torch.no_grad():
        h = torch.relu(dense.linear(p))
        torch.testing.assert_close(dense(p), F.layer_norm(h, (7,), eps=1e-6))
        conv = ConvBlock(2, 3).double()
        x = 0.01 * torch.randn(2, 2, 6, 6, dtype=torch.float64)
        pooled = F.avg_pool2d(torch.relu(conv.conv(x)), 2)
        torch.testing.assert_close(conv(x), F.layer_norm(pooled, (3, 3, 3), eps=1e-6))


def test_networks_without_layer_norm_pass_the_relu_output_on():
    """layer_norm=False: a dense block outputs ReLU(W p + b), a convolutional block
    avgpool2(ReLU(conv(p))), in RateMLP, RateCNN and LeakyRateMLP alike."""
    torch.manual_seed(0)
    x = torch.randn(3, 4, dtype=torch.float64)
    mlp = RateMLP(4, (5,), 2, layer_norm=False).double()
    leaky = LeakyRateMLP(4, (5,), 2, layer_norm=False).double()
    cnn = RateCNN((1, 4, 4), (2,), 3, layer_norm=False).double()
    image = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        for net in (mlp, leaky):
            block = net.blocks[0]
            torch.testing.assert_close(block(x), torch.relu(block.linear(x)))
        (block,) = cnn.blocks
        expected = F.avg_pool2d(torch.relu(block.conv(image)), 2)
        torch.testing.assert_close(block(image), expected)
        torch.testing.assert_close(cnn(image), cnn.readout(expected.flatten(1)))


def test_a_unit_exactly_at_threshold_gets_no_three_factor_update():
    """ReLU'(0) = 0, as in autograd: a unit whose weights and bias are zero (a = 0, e.g. a
    pruned unit) is silent and its row of the update stays zero."""
    block = DenseBlock(3, 2, layer_norm=False).double()
    with torch.no_grad():
        block.linear.weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
        block.linear.bias.zero_()
        p = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
        d_w, d_b = block.three_factor_grads(
            block.finish(p, block.pre_activation(p)), torch.tensor([2.0, -1.0]).double(), "relu"
        )
    torch.testing.assert_close(d_w, torch.tensor([[0.0, 0.0, 0.0], [-1.0, -2.0, -3.0]]).double())
    torch.testing.assert_close(d_b, torch.tensor([0.0, -1.0]).double())


def test_leaky_units_start_from_rest_and_take_one_euler_step_of_every_layer():
    """From rest (u = 0) one step gives ``u1 = (dt/tau)(W x + b)`` in the hidden layer and
    ``o1 = (dt/tau)(W_r n1 + b_r)`` at the readout; a second step ``u2 = u1 + (dt/tau)(W x + b
    - u1)``."""
    torch.manual_seed(0)
    net = LeakyRateMLP(4, (5,), 3, integration=LeakyIntegration(5e-3, 1e-3, 4)).double()
    x = torch.randn(2, 4, dtype=torch.float64)
    block, rate = net.blocks[0], 0.2
    with torch.no_grad():
        state = net.initial_state(2, x)
        assert [tuple(s.shape) for s in state] == [(2, 5), (2, 3)]
        assert all(torch.equal(s, torch.zeros_like(s)) for s in state)
        state, traces, out = net.time_step(x, state)
        drive = block.linear(x)
        torch.testing.assert_close(state[0], rate * drive)
        torch.testing.assert_close(traces[0].a, rate * drive)
        n1 = F.layer_norm(torch.relu(rate * drive), (5,), eps=1e-6)
        torch.testing.assert_close(out, rate * net.readout(n1))
        torch.testing.assert_close(state[1], out)
        state, _, _ = net.time_step(x, state)
        torch.testing.assert_close(state[0], rate * drive + rate * (drive - rate * drive))


@pytest.mark.parametrize("steps", [3, 5])
def test_leaky_prediction_averages_the_readout_over_the_second_half_of_odd_step_counts(steps):
    """With an odd number of steps the average runs over steps ``steps // 2 .. steps - 1``:
    ``steps - steps // 2`` readout states."""
    torch.manual_seed(0)
    net = LeakyRateMLP(4, (5,), 3, integration=LeakyIntegration(5e-3, 1e-3, steps)).double()
    x = torch.randn(2, 4, dtype=torch.float64)
    with torch.no_grad():
        state, outs = net.initial_state(2, x), []
        for _ in range(steps):
            state, _, out = net.time_step(x, state)
            outs.append(out)
        expected = torch.stack(outs[steps // 2 :]).mean(0)
        torch.testing.assert_close(net(x), expected)


def test_leaky_network_starts_from_the_weights_of_the_rate_network_of_the_same_seed():
    """LeakyRateMLP swaps its blocks for leaky ones keeping the weights drawn for them: with
    the same seed it starts from exactly the parameters of RateMLP."""
    torch.manual_seed(3)
    rate = RateMLP(4, (5, 6), 3)
    torch.manual_seed(3)
    leaky = LeakyRateMLP(4, (5, 6), 3)
    for (name, a), (_, b) in zip(
        rate.state_dict().items(), leaky.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_cnn_readout_fits_odd_image_sizes_that_pooling_floors():
    """Average pooling floors odd sizes (7 -> 3 -> 1): the readout takes C * 1 * 1 inputs."""
    net = RateCNN((1, 7, 5), (2, 3), 4)
    assert net.readout.in_features == 3 * 1 * 1
    assert net(torch.rand(2, 1, 7, 5)).shape == (2, 4)


def test_eligibility_update_steps_each_row_by_its_xi_and_clips_to_asymmetric_bounds():
    """``W <- clip(W - eta * xi[post] * E, w_min, w_max)`` worked by hand, with bounds that
    are not symmetric about zero."""
    rule = IBThreeFactor(eta=2 * Hz, w_min=-1.0, w_max=0.5)
    weight = np.array([[-0.9, 0.4, 0.0], [0.2, -0.9, 0.1]])
    elig = np.array([[0.1, -0.1, 0.0], [0.3, 0.2, 0.05]])  # seconds
    xi = np.array([1.0, -2.0])
    # steps eta * xi * E: [[0.2, -0.2, 0], [-1.2, -0.8, -0.2]]
    expected = np.array([[-1.0, 0.5, 0.0], [0.5, -0.1, 0.3]])
    np.testing.assert_allclose(apply_eligibility_update(weight, elig, xi, rule), expected)
