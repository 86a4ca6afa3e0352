"""Details of the rate-network trainers and their experiments: the AdamW settings each method
gets, the minibatch loop (shuffle, partial last batch, mean loss), which window and which
kernel weights each IB step sees, the xi site of the IB and layer-wise HSIC updates, the
leaky units' update per Euler step, evaluate and layer_hsic written out by hand, and what the
rate experiments take from their configs (default learning rates, the HSIC probe, refusals).

Small networks in float64; each test takes well under a second or two.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hsic_parts import capture_first_step, hsic_by_hand, kernel_by_hand

from plastix.bridges.ib_training import (
    AdamWSettings,
    BackpropTrainer,
    IBRule,
    IBTrainer,
    LayerwiseHSICTrainer,
    PHSICRule,
    PHSICTrainer,
    ReadoutOnlyTrainer,
    evaluate,
    ib_gradients,
    layer_hsic,
    make_trainer,
    stream_order,
)
from plastix.bridges.rate_networks import LeakyIntegration, LeakyRateMLP, RateMLP
from plastix.plasticity.hsic import (
    layer_objective,
    modulatory_weights,
    xi_from_weights,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(n, n_in=5, n_classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=gen, dtype=torch.float64)
    y = torch.arange(n) % n_classes
    return x, y


def _net(n_in=5, hidden=(6, 4), n_classes=3, seed=0):
    torch.manual_seed(seed)
    return RateMLP(n_in, hidden, n_classes).double()


# --- optimiser settings -----------------------------------------------------------------------


def test_every_trainer_defaults_to_the_reference_adamw():
    """AdamW with b1 0.9, b2 0.99, weight decay 1e-4 (the reference code's optax.adamw) and
    the documented default learning rates: 1e-4 for the HSIC rules, 1e-3 for backprop, pHSIC
    and the readout-only control."""
    trainers = {
        IBTrainer(_net(), IBRule(window=4)): 1e-4,
        LayerwiseHSICTrainer(_net(), IBRule(window=4)): 1e-4,
        BackpropTrainer(_net(), batch=4): 1e-3,
        PHSICTrainer(_net(), batch=4): 1e-3,
        ReadoutOnlyTrainer(_net(), batch=4): 1e-3,
    }
    for trainer, lr in trainers.items():
        group = trainer.optimizer.param_groups[0]
        assert group["lr"] == lr, type(trainer).__name__
        assert tuple(group["betas"]) == (0.9, 0.99)
        assert group["weight_decay"] == 1e-4
    for method, lr in [("ib", 1e-4), ("hsic", 1e-4), ("backprop", 1e-3), ("phsic", 1e-3)]:
        group = make_trainer(method, _net(), window=4).optimizer.param_groups[0]
        assert group["lr"] == lr, method
        assert group["weight_decay"] == 1e-4


def test_adamw_settings_reach_the_optimiser_for_every_method():
    settings = AdamWSettings(lr=0.02, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.3)
    group = settings.build(_net().parameters()).param_groups[0]
    assert (group["lr"], tuple(group["betas"]), group["eps"]) == (0.02, (0.8, 0.95), 1e-3)
    assert group["weight_decay"] == 0.3
    for method in ("ib", "hsic", "backprop", "phsic", "readout"):
        trainer = make_trainer(method, _net(), window=4, lr=0.02, weight_decay=0.3)
        group = trainer.optimizer.param_groups[0]
        assert (group["lr"], group["weight_decay"]) == (0.02, 0.3), method


# --- the minibatch loop -----------------------------------------------------------------------


@pytest.mark.parametrize(("n", "steps", "seen"), [(10, 3, 10), (9, 2, 8)])
def test_backprop_epoch_is_a_shuffled_minibatch_loop(n, steps, seen):
    """One epoch: the generator's permutation cut into minibatches of B in order, the last
    one shorter (skipped, and not counted as seen, when it holds a single sample), one AdamW
    step (b2 0.99, decay 1e-4) on each minibatch's mean cross-entropy; the epoch loss is the
    mean over the steps."""
    x, y = _data(n)
    net, ref = _net(), _net()
    stats = BackpropTrainer(net, batch=4).train_epoch(x, y, torch.Generator().manual_seed(5))

    order = torch.randperm(n, generator=torch.Generator().manual_seed(5))
    opt = torch.optim.AdamW(ref.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=1e-4)
    losses = []
    for idx in (order[0:4], order[4:8], order[8:]):
        if idx.numel() < 2:
            continue
        opt.zero_grad()
        loss = F.cross_entropy(ref(x[idx]), y[idx])
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert (stats.steps, stats.samples) == (steps, seen)
    assert stats.loss == pytest.approx(np.mean(losses), rel=1e-12)
    for a, b in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_readout_only_epoch_trains_the_readout_on_the_frozen_normalised_features():
    """The control's epoch is the minibatch loop of backprop applied to the readout alone, on
    the last hidden layer's LayerNorm output (what the readout sees in the network)."""
    x, y = _data(10)
    net, ref = _net(), _net()
    ReadoutOnlyTrainer(net, batch=4).train_epoch(x, y, torch.Generator().manual_seed(4))

    with torch.no_grad():
        features = ref.trace(x)[0][-1].n
    order = torch.randperm(10, generator=torch.Generator().manual_seed(4))
    params = list(ref.readout.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.99), weight_decay=1e-4)
    for idx in (order[0:4], order[4:8], order[8:]):
        opt.zero_grad()
        F.cross_entropy(ref.readout(features[idx]), y[idx]).backward()
        opt.step()
    for a, b in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b)


# --- the IB sliding window --------------------------------------------------------------------


@pytest.mark.parametrize("method", ["row-centred", "diagonal"])
def test_window_weights_use_the_rules_sigmas_gamma_and_method(method):
    """Weights of window t: modulatory_weights of the Gaussian kernels of samples t..t+B-1 with
    sigma_x on the inputs, sigma_y on the labels, the rule's gamma and xi method."""
    rule = IBRule(gamma=3.0, sigmas=(0.7, 0.2, 1.0), window=4, xi_method=method)
    trainer = IBTrainer(_net(), rule)
    x, y = _data(7)
    y1 = F.one_hot(y, 3).double()
    weights = trainer.window_weights(x, y1)
    assert weights.shape == (4, 4)
    for t in range(4):
        kx, ky = kernel_by_hand(x[t : t + 4], 0.7), kernel_by_hand(y1[t : t + 4], 0.2)
        torch.testing.assert_close(weights[t], modulatory_weights(kx, ky, 3.0, method))


def test_each_ib_step_gets_the_weights_of_its_own_window_current_sample_last():
    """train_epoch hands step t the stream window order[t .. t+B-1] (labels one-hot) and the
    kernel weights of exactly that window, so the current sample is the window's last."""
    x, y = _data(9)
    rule = IBRule(gamma=3.0, sigmas=(0.7, 0.2, 1.0), window=4)
    trainer = IBTrainer(_net(), rule)
    seen = []
    trainer.step = lambda xw, yw, w: seen.append((xw.clone(), yw.clone(), w.clone()))
    trainer.train_epoch(x, y, torch.Generator().manual_seed(2))
    order = stream_order(9, 4, torch.Generator().manual_seed(2))
    assert len(seen) == 9
    for t, (xw, yw, w) in enumerate(seen):
        idx = order[t : t + 4]
        torch.testing.assert_close(xw, x[idx])
        torch.testing.assert_close(yw, F.one_hot(y[idx], 3).double())
        expected = modulatory_weights(
            kernel_by_hand(xw, 0.7), kernel_by_hand(yw, 0.2), 3.0, "exact"
        )
        torch.testing.assert_close(w, expected)


def test_ib_trains_on_exactly_one_window_of_samples():
    """B samples are enough: one window per sample, weights change."""
    x, y = _data(4)
    net = _net()
    before = [p.detach().clone() for p in net.parameters()]
    stats = IBTrainer(net, IBRule(window=4)).train_epoch(x, y, torch.Generator().manual_seed(0))
    assert stats.steps == 4
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_ib_gradients_at_the_relu_site_follow_the_relu_objective():
    """xi_site 'relu': the hidden update is d/dW of HSIC(X, Z) - gamma HSIC(Y, Z) with Z the
    ReLU output, through the current sample only (the rest of the window held fixed)."""
    net = _net()
    rule = IBRule(gamma=2.0, sigmas=(0.7, 0.3, 1.2), window=6, xi_site="relu")
    x, y = _data(6)
    y1 = F.one_hot(y, 3).double()
    weights = modulatory_weights(kernel_by_hand(x, 0.7), kernel_by_hand(y1, 0.3), 2.0, "exact")
    grads = ib_gradients(net, x, y1, weights, rule)
    traces, _ = net.trace(x, detach_inputs=True)
    for layer, (block, t) in enumerate(zip(net.blocks, traces, strict=True)):
        z = t.h.flatten(1)
        z_mixed = torch.cat([z[:-1].detach(), z[-1:]])
        objective = layer_objective(x, y1, z_mixed, rule.gamma, rule.sigmas)
        ref = torch.autograd.grad(objective, list(block.parameters()))
        for a, b in zip(grads[2 * layer : 2 * layer + 2], ref, strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("site", ["relu", "norm"])
def test_leaky_step_applies_one_update_per_euler_step_with_the_rules_site(site):
    """Leaky units: ``steps`` updates per window, update k from the state after k Euler steps
    from rest (xi of the rule's site, the readout's cross-entropy gradient times dt/tau)."""
    torch.manual_seed(0)
    integration = LeakyIntegration(5e-3, 1e-3, 3)
    net = LeakyRateMLP(4, (5,), 3, integration=integration).double()
    rule = IBRule(sigmas=(0.5, 0.1, 0.8), window=4, xi_site=site)
    trainer = IBTrainer(net, rule)
    applied = []
    trainer._apply = applied.append  # record, leave the weights as they are
    x, y = _data(4, n_in=4)
    y1 = F.one_hot(y, 3).double()
    weights = trainer.window_weights(x, y1)[0]
    trainer.step(x, y1, weights)
    assert len(applied) == 3
    state = net.initial_state(4, x)
    for grads in applied:
        state, traces, out = net.time_step(x, [s.detach() for s in state])
        t = traces[0]
        xi = xi_from_weights(weights, t.z(site), 0.8)
        with torch.no_grad():
            hidden = net.blocks[0].three_factor_grads(t, xi, site)
        for a, b in zip(grads[:2], hidden, strict=True):
            torch.testing.assert_close(a, b)
        ce = torch.autograd.grad(F.cross_entropy(out, y), list(net.readout.parameters()))
        for a, b in zip(grads[2:], ce, strict=True):
            torch.testing.assert_close(a, b)


# --- layer-wise HSIC and pHSIC -----------------------------------------------------------------


def test_layerwise_hsic_step_is_each_layers_own_objective_on_the_current_window():
    """The first step of an epoch: window order[0 .. B-1]; each hidden layer's gradient is that
    of its own HSIC objective at the rule's site (nothing from later layers or the readout),
    the readout's that of the cross-entropy. The epoch loss is the mean cross-entropy over the
    windows (a negligible learning rate keeps the network as it was)."""
    x, y = _data(8)
    rule = IBRule(gamma=3.0, sigmas=(0.7, 0.2, 1.1), window=4, xi_site="relu")
    net = _net()
    trainer = LayerwiseHSICTrainer(net, rule, AdamWSettings(lr=1e-12, weight_decay=0.0))
    grads = capture_first_step(trainer)
    stats = trainer.train_epoch(x, y, torch.Generator().manual_seed(3))

    order = stream_order(8, 4, torch.Generator().manual_seed(3))
    idx = order[:4]
    xw, y1 = x[idx], F.one_hot(y[idx], 3).double()
    p = xw
    for layer, block in enumerate(net.blocks):
        t = block.finish(p.detach(), block.pre_activation(p.detach()))
        objective = layer_objective(xw, y1, t.h.flatten(1), 3.0, rule.sigmas)
        ref = torch.autograd.grad(objective, list(block.parameters()))
        for a, b in zip(grads[2 * layer : 2 * layer + 2], ref, strict=True):
            torch.testing.assert_close(a, b)
        p = t.n
    ce = F.cross_entropy(net.readout(p.detach()), y[idx])
    for a, b in zip(
        grads[4:], torch.autograd.grad(ce, list(net.readout.parameters())), strict=True
    ):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        losses = [
            float(F.cross_entropy(net(x[order[t : t + 4]]), y[order[t : t + 4]])) for t in range(8)
        ]
    assert stats.loss == pytest.approx(np.mean(losses), rel=1e-6)


def test_phsic_loss_weighs_the_label_term_by_the_rules_gamma():
    """pHSIC(Z, Z) - gamma pHSIC(Z, Y) per layer with gamma 3.5: the label term's weight is the
    rule's, not the default 2."""
    net = _net()
    x, y = _data(6)
    k_y = torch.where(y[:, None] == y[None, :], 1.0, -1 / 2).double()

    def phsic(a, b):
        return ((a - a.mean()) * b).mean()

    def loss(gamma):
        trainer = PHSICTrainer(net, PHSICRule(gamma=gamma, sigma_z=2.0), batch=6)
        return trainer._loss(x, y)

    traces, logits = net.trace(x)
    expected = F.cross_entropy(logits, y)
    for t in traces:
        h = t.h.flatten(1)
        k_z = torch.exp(-(torch.cdist(h, h) ** 2) / (2 * 2.0**2))
        expected = expected + phsic(k_z, k_z) - 3.5 * phsic(k_y, k_z)
    torch.testing.assert_close(loss(3.5), expected)


def test_phsic_step_keeps_each_layers_gradient_inside_the_layer():
    """The first pHSIC step: each hidden layer's gradient is that of its own
    pHSIC(Z, Z) - gamma pHSIC(Z, Y) on the first minibatch, with its input detached (no term of
    a later layer or of the readout reaches it)."""
    x, y = _data(8)
    net = _net()
    trainer = PHSICTrainer(net, PHSICRule(gamma=3.0, sigma_z=2.0), batch=4)
    grads = capture_first_step(trainer)
    trainer.train_epoch(x, y, torch.Generator().manual_seed(6))

    idx = torch.randperm(8, generator=torch.Generator().manual_seed(6))[:4]
    yb = y[idx]
    k_y = torch.where(yb[:, None] == yb[None, :], 1.0, -1 / 2).double()

    def phsic(a, b):
        return ((a - a.mean()) * b).mean()

    p = x[idx]
    for layer, block in enumerate(_net().blocks):  # the network before the step
        t = block.finish(p.detach(), block.pre_activation(p.detach()))
        h = t.h.flatten(1)
        k_z = torch.exp(-(torch.cdist(h, h) ** 2) / (2 * 2.0**2))
        objective = phsic(k_z, k_z) - 3.0 * phsic(k_y, k_z)
        ref = torch.autograd.grad(objective, list(block.parameters()))
        for a, b in zip(grads[2 * layer : 2 * layer + 2], ref, strict=True):
            torch.testing.assert_close(a, b)
        p = t.n


# --- evaluate and layer_hsic -------------------------------------------------------------------


def test_evaluate_is_accuracy_and_mean_cross_entropy_over_all_batches():
    """In batches smaller than the data: accuracy of the largest logit and the cross-entropy
    averaged over every sample."""
    x, y = _data(8)
    net = _net()
    with torch.no_grad():
        logits = net(x)
    accuracy = float((logits.argmax(-1) == y).double().mean())
    loss = float(-torch.log_softmax(logits, -1)[torch.arange(8), y].mean())
    assert 0 < accuracy < 1
    got = evaluate(net, x, y, batch=3)
    assert got[0] == pytest.approx(accuracy)
    assert got[1] == pytest.approx(loss, rel=1e-12)


def test_layer_hsic_uses_the_rules_kernels_and_site():
    """(HSIC(X, Z), HSIC(Y, Z)) per layer with sigma_x on the inputs, sigma_y on the one-hot
    labels and sigma_z on the rule's site (here the ReLU output)."""
    x, y = _data(7)
    net = _net()
    rule = IBRule(sigmas=(0.6, 0.3, 1.4), xi_site="relu")
    kx, ky = kernel_by_hand(x, 0.6), kernel_by_hand(F.one_hot(y, 3).double(), 0.3)
    traces, _ = net.trace(x)
    got = layer_hsic(net, x, y, rule)
    assert len(got) == 2
    for (hx, hy), t in zip(got, traces, strict=True):
        kz = kernel_by_hand(t.h.flatten(1).detach(), 1.4)
        assert hx == pytest.approx(float(hsic_by_hand(kx, kz)), rel=1e-10)
        assert hy == pytest.approx(float(hsic_by_hand(ky, kz)), rel=1e-10)


# --- the experiments ---------------------------------------------------------------------------


def _run(name, overrides, tmp_path, file="r.h5"):
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    return read_result(
        run_experiment(name, overrides=overrides, out=tmp_path / file, seed=0, progress=False)
    )


def test_rate_experiment_configs_default_to_the_documented_learning_rates():
    from plastix.sims.exp_ib import (
        BackpropConfig,
        BSweepConfig,
        IBConfig,
        LayerwiseHSICConfig,
        PHSICConfig,
    )

    for cls in (IBConfig, LayerwiseHSICConfig, BSweepConfig):
        assert cls().lr == 1e-4, cls.__name__
    for cls in (BackpropConfig, PHSICConfig):
        assert cls().lr == 1e-3, cls.__name__


def test_hsic_probe_covers_the_first_256_test_samples(tmp_path):
    """The logged HSIC of each layer is layer_hsic of the final network on the first 256 test
    samples (of 300 here)."""
    from plastix.sims.datasets import load_dataset

    cfg = {"dataset": "xor", "n_train": 16, "n_test": 300, "hidden": [4], "window": 4}
    r = _run("hsic-layerwise", {**cfg, "epochs": 1}, tmp_path)
    net = RateMLP(2, (4,), 2)
    net.load_state_dict({k: torch.as_tensor(v) for k, v in r.weights.items()})
    ds = load_dataset("xor", n_train=16, n_test=300, seed=0)
    xt, yt = torch.as_tensor(ds.x_test), torch.as_tensor(ds.y_test)
    [(hx, hy)] = layer_hsic(net, xt[:256], yt[:256], IBRule(window=4))
    [(hx_all, _)] = layer_hsic(net, xt, yt, IBRule(window=4))
    assert hx_all != pytest.approx(hx, rel=1e-3)
    assert r.metrics["hsic_x_layer0"][-1] == pytest.approx(hx, rel=1e-5)
    assert r.metrics["hsic_y_layer0"][-1] == pytest.approx(hy, rel=1e-5)


def test_bsweep_refuses_any_window_longer_than_the_training_set(tmp_path):
    from plastix.sims.config import ConfigError
    from plastix.sims.experiments import run_experiment

    cfg = {"dataset": "xor", "n_train": 8, "n_test": 4, "hidden": [3], "windows": [2, 16]}
    with pytest.raises(ConfigError, match="windows: a window of 16 samples is longer"):
        run_experiment("ib-bsweep", cfg, out=tmp_path / "r.h5")
    assert not (tmp_path / "r.h5").exists()


@pytest.mark.parametrize("name", ["phsic", "hsic-layerwise"])
def test_baselines_without_leaky_units_refuse_them_before_running(name, tmp_path):
    from plastix.sims.config import ConfigError
    from plastix.sims.experiments import run_experiment

    with pytest.raises(ConfigError, match="model: .* supports 'mlp' and 'cnn'; set model=mlp"):
        run_experiment(name, {"model": "leaky-mlp"}, out=tmp_path / "r.h5")
    assert not (tmp_path / "r.h5").exists()


def test_leaky_mlp_experiment_takes_tau_and_dt_in_their_places(tmp_path, monkeypatch):
    """tau_ms is the time constant and dt_ms the Euler step (tau 5 ms, dt 1 ms: rate 0.2)."""
    from plastix.sims import exp_ib

    built = []
    make = exp_ib.make_trainer

    def recording(method, net, **kwargs):
        built.append(net)
        return make(method, net, **kwargs)

    monkeypatch.setattr(exp_ib, "make_trainer", recording)
    cfg = {"dataset": "xor", "n_train": 8, "n_test": 4, "hidden": [3], "window": 4}
    leaky = {"model": "leaky-mlp", "tau_ms": 5.0, "dt_ms": 1.0, "steps": 2, "epochs": 1}
    _run("ib-rate", {**cfg, **leaky}, tmp_path)
    assert built[0].integration == LeakyIntegration(5e-3, 1e-3, 2)
    assert built[0].integration.rate == pytest.approx(0.2)
