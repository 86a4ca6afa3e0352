"""IB three-factor rule against backprop on rate networks (issue 3), measured side by side.

(a) Fashion-MNIST accuracy, MLP 784-128-64-10 (ReLU + LayerNorm), window / minibatch B = 8,
    the same network, initial weights, training samples and epochs for both rules.
(b) B sweep of the IB rule (table + benchmarks/figures/ib_bsweep.png).
(c) Speed: seconds per IB step / seconds per backprop step (same network, B = 8), epochs of
    both interleaved in one run; the per-epoch ratio is given too (the IB rule takes one step
    per sample, backprop one per minibatch of B).
(--probe) Where the gap to backprop comes from: the IB rule at other learning rates (and with a
    cosine decay, against backprop with the same decay), gammas, kernel widths, windows and
    the two published approximations of xi, the exact layer-wise HSIC objective by autograd,
    backprop and the readout-only control, scored on held-out training images (never the test
    set); each trained network's hidden features are also read out by a freshly trained linear
    probe.

(--select-lr) (a) for IB and backprop, each at its own learning rate chosen on held-out training
    images.
(--seeds S ...) (a)'s IB and backprop runs from several seeds: the spread of the gap.
(--search N) Random search over the IB rule's settings jointly (learning rate, gamma, sigma_x,
    sigma_z, mean-centred inputs), N settings plus the reference one, scored on held-out training
    images; the best three are scored again from another seed, next to backprop.

Usage: python benchmarks/bench_ib_rate.py [--quick] [--no-record] [--epochs N] [--probe]
       [--select-lr] [--search N] [--seeds S ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import math
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from plastix.bridges.ib_training import IBRule, evaluate, make_trainer
from plastix.bridges.rate_networks import RateMLP
from plastix.sims.datasets import load_dataset
from plastix.sims.plots import pyplot, write_figure

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _record import count, record_section  # noqa: E402

HIDDEN = (128, 64)


def _test_sizes(quick: bool) -> tuple[int | None, int | None]:
    """Training and test images of the runs scored on the test set: all of them, or a
    stratified subset for a smoke run."""
    return (2000, 1000) if quick else (None, None)


def _data(n_train: int | None, n_test: int | None):
    ds = load_dataset("fashion-mnist", n_train=n_train, n_test=n_test, seed=0).flat()
    return tuple(
        torch.as_tensor(np.ascontiguousarray(a))
        for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test)
    )


def _net(seed: int) -> RateMLP:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RateMLP(784, HIDDEN, 10)


def train(method, data, epochs, window, lr, seed=0, rule=None, net=None, lr_decay="constant"):
    """``(curve, seconds)``: ``method`` trained for ``epochs`` on ``data = (x, y, x_scored,
    y_scored)`` from seed ``seed`` (initial weights of :func:`_net` unless ``net`` is given,
    and the sample order); ``curve`` holds (accuracy on x, accuracy on x_scored) per epoch,
    ``seconds`` the training time without the scoring. ``lr_decay`` "cosine" anneals the
    learning rate to zero over the run (:func:`cosine_decay`)."""
    x, y, xt, yt = data
    net = _net(seed) if net is None else net
    trainer = make_trainer(method, net, window=window, lr=lr, ib_rule=rule)
    if lr_decay == "cosine":  # one step per sample (sliding window) or per minibatch
        per_epoch = x.shape[0] if method in ("ib", "hsic") else math.ceil(x.shape[0] / window)
        cosine_decay(trainer.optimizer, epochs * per_epoch)
    gen = torch.Generator().manual_seed(seed)
    curve, seconds = [], 0.0
    for _ in range(epochs):
        seconds += trainer.train_epoch(x, y, gen).seconds
        curve.append((evaluate(net, x, y)[0], evaluate(net, xt, yt)[0]))
        print(
            f"  {method} B={window} epoch {len(curve)}: train {curve[-1][0]:.4f} "
            f"test {curve[-1][1]:.4f} ({seconds:.0f} s)",
            flush=True,
        )
    return curve, seconds


def speed(data, window, rounds, ib_samples):
    """Median seconds per step of IB and backprop epochs, interleaved."""
    x, y, _, _ = data
    ib = make_trainer("ib", _net(0), window=window, lr=1e-4)
    bp = make_trainer("backprop", _net(0), window=window, lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    ib_x, ib_y = x[:ib_samples], y[:ib_samples]
    bp_x, bp_y = x[: ib_samples * window], y[: ib_samples * window]
    ib_step, bp_step = [], []
    for _ in range(rounds):
        ib_step.append(ib.train_epoch(ib_x, ib_y, gen).seconds_per_step)
        bp_step.append(bp.train_epoch(bp_x, bp_y, gen).seconds_per_step)
    return statistics.median(ib_step), statistics.median(bp_step)


PROBE_RUNS: tuple[tuple[str, str, dict], ...] = (
    # (label, method, IBRule / lr overrides); the first IB row is the accuracy run's setting
    ("IB rule, reference setting", "ib", {}),
    ("IB rule, lr 3e-4", "ib", {"lr": 3e-4}),
    ("IB rule, lr 1e-3", "ib", {"lr": 1e-3}),
    ("IB rule, γ 10", "ib", {"gamma": 10.0}),
    ("IB rule, γ 50", "ib", {"gamma": 50.0}),
    ("IB rule, σ_z 0.5", "ib", {"sigmas": (0.5, 0.1, 0.5)}),
    ("IB rule, σ_z 2", "ib", {"sigmas": (0.5, 0.1, 2.0)}),
    ("IB rule, σ_x 1", "ib", {"sigmas": (1.0, 0.1, 1.0)}),
    ("IB rule, ξ at the ReLU output", "ib", {"xi_site": "relu"}),
    ("IB rule, ξ row-centred (arXiv-era Julia form)", "ib", {"xi_method": "row-centred"}),
    ("IB rule, ξ diagonal (Frontiers JAX form)", "ib", {"xi_method": "diagonal"}),
    ("IB rule, B 32", "ib", {"window": 32}),
    ("IB rule, cosine lr decay", "ib", {"lr_decay": "cosine"}),
    ("layer-wise HSIC objective by autograd", "hsic", {}),
    ("backprop (AdamW 1e-3, minibatch 8)", "backprop", {"lr": 1e-3}),
    ("backprop, cosine lr decay", "backprop", {"lr": 1e-3, "lr_decay": "cosine"}),
    ("readout only (AdamW 1e-3, minibatch 8)", "readout", {"lr": 1e-3}),
)


def cosine_decay(optimizer: torch.optim.Optimizer, total_steps: int) -> None:
    """After every step of ``optimizer``: ``lr_t = lr_0 · ½ (1 + cos(π t / T))``, T =
    ``total_steps`` (cosine annealing without restarts, Loshchilov & Hutter, ICLR 2017)."""
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, total_steps) / total_steps))
    )
    optimizer.register_step_post_hook(lambda *_: schedule.step())


def linear_probe(net: RateMLP, x, y, xv, yv, epochs: int, seed: int) -> float:
    """Validation accuracy of a fresh readout (AdamW 1e-3, minibatch 32) trained on the
    frozen hidden features of a copy of ``net``."""
    probe = _net(seed)
    probe.load_state_dict(net.state_dict())
    torch.nn.init.zeros_(probe.readout.weight)
    torch.nn.init.zeros_(probe.readout.bias)
    trainer = make_trainer("readout", probe, window=32, lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        trainer.train_epoch(x, y, gen)
    return evaluate(probe, xv, yv)[0]


def validation_split(n_fit: int, n_val: int):
    """``n_fit`` training images to fit and ``n_val`` other training images to score (a fixed
    random split, seed 123; the test set is never touched): ``(xf, yf, xv, yv)``."""
    ds = load_dataset("fashion-mnist").flat()
    x = torch.as_tensor(np.ascontiguousarray(ds.x_train))
    y = torch.as_tensor(np.ascontiguousarray(ds.y_train))
    split = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(123))
    fit, val = split[:n_fit], split[n_fit : n_fit + n_val]
    return x[fit], y[fit], x[val], y[val]


def probe(n_fit: int, n_val: int, epochs: int, runs=PROBE_RUNS) -> list[tuple]:
    """Train every run of ``runs`` on ``n_fit`` training images; score it, and a linear probe
    of its hidden features, on ``n_val`` other training images."""
    xf, yf, xv, yv = validation_split(n_fit, n_val)
    rows = []
    for label, method, overrides in runs:
        settings = dict(overrides)
        lr = settings.pop("lr", 1e-4 if method in ("ib", "hsic") else 1e-3)
        lr_decay = settings.pop("lr_decay", "constant")
        window = settings.get("window", 8)
        rule = IBRule(**settings) if method in ("ib", "hsic") else None
        net = _net(0)
        curve, seconds = train(
            method, (xf, yf, xv, yv), epochs, window, lr, rule=rule, net=net, lr_decay=lr_decay
        )
        probed = linear_probe(net, xf, yf, xv, yv, epochs, 0)
        val = [scored for _, scored in curve]
        rows.append((label, method, curve[-1][0], val, probed, seconds, lr_decay))
        print(f"  {label}: val {val} probe {probed:.4f} ({seconds:.0f} s)", flush=True)
    return rows


def probe_report(rows, n_fit: int, n_val: int, epochs: int, command: str, wall: float) -> str:
    lines = [
        "## IB rule: where the gap to backprop comes from (rate networks, issue 3)",
        "",
        f"Command: `{command}` — {dt.date.today().isoformat()}, 2 CPU cores, shared (torch 1 "
        f"thread); wall {wall / 60:.1f} min.",
        "",
        f"Fashion-MNIST, MLP 784-128-64-10 (ReLU + LayerNorm), the same initial weights and "
        f"sample order for every row; {n_fit} training images to fit, {n_val} other training "
        f"images to score (the test set is not used), {epochs} epochs. Unless a row says "
        "otherwise: B = 8, γ 2, σ (0.5, 0.1, 1), ξ at the LayerNorm output, AdamW lr 1e-4 "
        "held constant. "
        "*Linear probe*: a fresh readout trained on the row's frozen hidden features (AdamW "
        f"1e-3, minibatch 32, {epochs} epochs); if it beats the row's own readout, the readout "
        "and not the hidden layers limits the row. Accuracies in %.",
        "",
        "| run | fit | validation per epoch | linear probe | training s |",
        "|---|---|---|---|---|",
    ]
    for label, _, fit, curve, probed, secs, _ in rows:
        per_epoch = ", ".join(f"{100 * a:.1f}" for a in curve)
        lines.append(
            f"| {label} | {100 * fit:.1f} | {per_epoch} | {100 * probed:.1f} | {secs:.0f} |"
        )
    # final validation accuracy and linear-probe gain of each row; the first IB row is the
    # reference setting
    final = {label: curve[-1] for label, _, _, curve, *_ in rows}
    gain = {label: probed - curve[-1] for label, _, _, curve, probed, *_ in rows}
    by_method = {method: label for label, method, *_ in reversed(rows)}  # first row per method
    cosine = {method: label for label, method, *_, decay in rows if decay == "cosine"}
    ib = [label for label, method, *_ in rows if method == "ib"]
    best = max(ib, key=final.get)
    most = max(ib, key=gain.get)
    lines += [
        "",
        f"- Best IB row: {best}, {100 * final[best]:.1f} %"
        + (
            f"; backprop {100 * final[by_method['backprop']]:.1f} % (gap "
            f"{100 * (final[by_method['backprop']] - final[best]):.1f} points)."
            if "backprop" in by_method
            else "."
        ),
        f"- Linear probe minus own readout: {100 * gain[ib[0]]:+.1f} points for the reference "
        f"setting; largest over the IB rows {100 * gain[most]:+.1f} ({most}).",
    ]
    if "hsic" in by_method:
        lines.append(
            "- Exact layer-wise HSIC objective by autograd minus the IB rule (reference "
            f"setting): {100 * (final[by_method['hsic']] - final[ib[0]]):+.1f} points."
        )
    if {"ib", "backprop"} <= cosine.keys():
        ib_gain = final[cosine["ib"]] - final[ib[0]]
        bp_gain = final[cosine["backprop"]] - final[by_method["backprop"]]
        lines.append(
            f"- Cosine learning-rate decay to zero over the run: IB {ib_gain * 100:+.1f} points, "
            f"backprop {bp_gain * 100:+.1f} points; gap backprop − IB "
            f"{100 * (final[cosine['backprop']] - final[cosine['ib']]):.1f} points with the "
            f"decay, {100 * (final[by_method['backprop']] - final[ib[0]]):.1f} without."
        )
    return "\n".join(lines)


LR_GRIDS = {"ib": (1e-5, 3e-5, 1e-4, 3e-4), "backprop": (1e-4, 3e-4, 1e-3)}


def select_lrs(n_fit: int, n_val: int, epochs: int) -> dict[str, list[tuple[float, float]]]:
    """Validation accuracy after ``epochs`` for every rate of :data:`LR_GRIDS`, per method."""
    split = validation_split(n_fit, n_val)
    return {
        method: [(lr, train(method, split, epochs, 8, lr)[0][-1][1]) for lr in grid]
        for method, grid in LR_GRIDS.items()
    }


def selected_lr_run(args) -> None:
    """Each rule at its own learning rate, chosen on held-out training images (never the test
    set), then trained on all training images and tested as in (a)."""
    start = time.perf_counter()
    n_fit, n_val, sel_epochs = (1000, 500, 1) if args.quick else (10000, 5000, 8)
    scores = select_lrs(n_fit, n_val, sel_epochs)
    chosen = {m: max(rows, key=lambda r: r[1])[0] for m, rows in scores.items()}
    n_train, n_test = _test_sizes(args.quick)
    data = _data(n_train, n_test)
    epochs = 1 if args.quick else args.epochs
    curves = {m: train(m, data, epochs, 8, chosen[m]) for m in ("ib", "backprop")}
    cmd = "python benchmarks/bench_ib_rate.py --select-lr" + (
        " --quick" if args.quick else f" --epochs {args.epochs}"
    )
    lines = [
        "## IB three-factor rule vs backprop, each at its own validated learning rate (issue 3)",
        "",
        f"Command: `{cmd}` — {dt.date.today().isoformat()}, 2 CPU cores, shared (torch 1 "
        f"thread); wall {(time.perf_counter() - start) / 60:.1f} min.",
        "",
        "Network, data, rules and AdamW settings as in section ib-rate, except the learning "
        f"rates. Selection: each rate trains on {n_fit} training images for {sel_epochs} "
        f"epochs and is scored on {n_val} other training images (the split of section "
        "ib-rate-probe; the test set is not used); the best validation accuracy wins. A "
        f"selection run sees {100 * n_fit * sel_epochs / (len(data[0]) * epochs):.0f} % as many "
        "samples as the final run, so it can favour rates that learn fast over rates that "
        "settle higher.",
        "",
        "| method | lr | validation accuracy |",
        "|---|---|---|",
    ]
    for method, rows in scores.items():
        for lr, acc in rows:
            mark = " (chosen)" if lr == chosen[method] else ""
            lines.append(f"| {method} | {lr:g}{mark} | {100 * acc:.1f} |")
    lines += [
        "",
        f"Then {_count(n_train, 60000)} training images, {_count(n_test, 10000)} test images, "
        f"{epochs} epochs, "
        f"the same initial weights; IB lr {chosen['ib']:g}, backprop lr {chosen['backprop']:g}. "
        "Accuracies in % (train / test).",
        "",
        *ib_vs_backprop_lines(curves["ib"], curves["backprop"]),
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_record:
        record_section("ib-rate-selected-lr", markdown)


SEARCH_SPACE = {
    "lr": (5e-5, 1e-4, 2e-4),
    "gamma": (0.5, 1.0, 2.0, 4.0),
    "sigma_x": (0.25, 0.5, 1.0),
    "sigma_z": (0.7, 1.0, 1.4),
    "centred": (False, True),
}
SEARCH_REFERENCE = {"lr": 1e-4, "gamma": 2.0, "sigma_x": 0.5, "sigma_z": 1.0, "centred": False}


def search_settings(n: int, seed: int = 0) -> list[dict]:
    """The reference setting, then ``n`` other settings of :data:`SEARCH_SPACE` drawn without
    replacement."""
    keys = list(SEARCH_SPACE)
    grid = [
        dict(zip(keys, values, strict=True)) for values in itertools.product(*SEARCH_SPACE.values())
    ]
    others = [s for s in grid if s != SEARCH_REFERENCE]
    return [SEARCH_REFERENCE, *random.Random(seed).sample(others, min(n, len(others)))]


def _rule_of(setting: dict) -> IBRule:
    return IBRule(gamma=setting["gamma"], sigmas=(setting["sigma_x"], 0.1, setting["sigma_z"]))


def _train_setting(method: str, setting: dict, data, epochs: int, seed: int):
    """:func:`train` with ``setting``'s learning rate and IB rule; centred inputs subtract the
    mean of the images trained on from both sets of ``data = (x, y, x_scored, y_scored)``."""
    torch.set_num_threads(1)
    x, y, xs, ys = data
    if setting["centred"]:
        mean = x.mean(0, keepdim=True)
        x, xs = x - mean, xs - mean
    rule = _rule_of(setting) if method == "ib" else None
    return train(method, (x, y, xs, ys), epochs, 8, setting["lr"], seed=seed, rule=rule)


def search_score(method: str, setting: dict, seed: int, n_fit: int, n_val: int, epochs: int):
    """Validation accuracy per epoch of ``method`` trained with ``setting`` from ``seed`` (the
    initial weights and the sample order) on the split of :func:`validation_split`."""
    curve, _ = _train_setting(method, setting, validation_split(n_fit, n_val), epochs, seed)
    return [scored for _, scored in curve]


def final_curve(method: str, setting: dict, epochs: int, quick: bool, seed: int = 0):
    """``(curve, seconds)`` of ``setting`` from ``seed`` on all of Fashion-MNIST (a subset with
    ``quick``), tested on the test set."""
    data = _data(*_test_sizes(quick))
    return _train_setting(method, setting, data, epochs, seed)


def _percent(a: float) -> str:
    return f"{100 * a:.1f}"


def _inputs_text(s: dict) -> str:
    return "centred" if s["centred"] else "raw"


def _setting_text(s: dict) -> str:
    return (
        f"lr {s['lr']:g}, γ {s['gamma']:g}, σ_x {s['sigma_x']:g}, σ_z {s['sigma_z']:g}, "
        f"{_inputs_text(s)}"
    )


def _backprop_text(s: dict) -> str:
    return f"lr {s['lr']:g}, {_inputs_text(s)}"


def search_run(args) -> None:
    """Random search of the IB rule's settings (section ib-rate-search); with
    ``--final-epochs`` the best IB setting and the best backprop row then train on all of
    Fashion-MNIST and are tested, side by side."""
    start = time.perf_counter()
    n_fit, n_val, epochs = (1000, 500, 1) if args.quick else (10000, 5000, 3)
    settings = search_settings(2 if args.quick else args.search)
    bp_settings = [
        {**SEARCH_REFERENCE, "lr": lr, "centred": c} for lr in (1e-4, 1e-3) for c in (False, True)
    ]
    with ProcessPoolExecutor(max_workers=2) as pool:

        def scores(jobs):
            futures = [
                pool.submit(search_score, m, s, seed, n_fit, n_val, epochs) for m, s, seed in jobs
            ]
            return [f.result() for f in futures]

        first = scores([("ib", s, 0) for s in settings])
        ranked = sorted(range(len(settings)), key=lambda i: first[i][-1], reverse=True)
        again = [i for i in ranked[:3] if i != 0] + [0]  # the best three and the reference
        second = dict(zip(again, scores([("ib", settings[i], 1) for i in again]), strict=True))
        bp = scores([("backprop", s, seed) for s in bp_settings for seed in (0, 1)])
        mean = {i: (first[i][-1] + second[i][-1]) / 2 for i in second}
        best = max((i for i in second if i != 0), key=mean.get, default=0)
        bp_mean = [(bp[2 * k][-1] + bp[2 * k + 1][-1]) / 2 for k in range(len(bp_settings))]
        bp_best = max(range(len(bp_settings)), key=bp_mean.__getitem__)
        final = None
        if args.final_epochs:
            final = {
                method: pool.submit(final_curve, method, setting, args.final_epochs, args.quick)
                for method, setting in (("ib", settings[best]), ("backprop", bp_settings[bp_best]))
            }
            final = {method: future.result() for method, future in final.items()}
    wall = time.perf_counter() - start
    cmd = f"python benchmarks/bench_ib_rate.py --search {2 if args.quick else args.search}"
    cmd += f" --final-epochs {args.final_epochs}" if args.final_epochs else ""
    cmd += " --quick" if args.quick else ""
    space = " × ".join(
        "{"
        + ", ".join(
            ("centred" if v else "raw") if isinstance(v, bool) else f"{v:g}" for v in values
        )
        + "}"
        for values in SEARCH_SPACE.values()
    )
    lines = [
        "## IB rule: random search over its settings (rate networks, issue 3)",
        "",
        f"Command: `{cmd}` — {dt.date.today().isoformat()}, 2 CPU cores (two runs at a time, "
        f"torch 1 thread each); wall {wall / 60:.1f} min.",
        "",
        f"Fashion-MNIST, MLP 784-128-64-10 (ReLU + LayerNorm), B = 8, exact ξ at the LayerNorm "
        f"output, σ_y 0.1; {n_fit} training images to fit, {n_val} other training images to "
        f"score (the split of section ib-rate-probe; the test set is not used), {epochs} epochs. "
        f"The reference setting and {len(settings) - 1} settings drawn at random (seed 0) from "
        f"lr × γ × σ_x × σ_z × inputs = {space} (centred: the fit images' mean pixel "
        "subtracted). Seed 0 fixes the initial weights and sample order; the best three "
        "settings and the reference are trained again from seed 1, since a single short-run "
        "score moves by a point or two from epoch to epoch. Validation accuracy in % per epoch; "
        "10 % is chance (the layers collapsed).",
        "",
        "| rank | lr | γ | σ_x | σ_z | inputs | seed 0 | seed 1 (final) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rank, i in enumerate(ranked, 1):
        s = settings[i]
        tag = " (reference)" if i == 0 else ""
        rerun = _percent(second[i][-1]) if i in second else ""
        lines.append(
            f"| {rank}{tag} | {s['lr']:g} | {s['gamma']:g} | {s['sigma_x']:g} | {s['sigma_z']:g} "
            f"| {_inputs_text(s)} | {', '.join(map(_percent, first[i]))} | "
            f"{rerun} |"
        )
    lines += [
        "",
        "Backprop on the same split (AdamW, minibatches of 8), final validation accuracy in %, "
        "seed 0 / seed 1:",
        "",
        "| lr | inputs | seed 0 | seed 1 |",
        "|---|---|---|---|",
    ]
    for k, s in enumerate(bp_settings):
        lines.append(
            f"| {s['lr']:g} | {_inputs_text(s)} | {_percent(bp[2 * k][-1])} "
            f"| {_percent(bp[2 * k + 1][-1])} |"
        )
    lines += [
        "",
        f"- Mean of the two seeds: best searched setting ({_setting_text(settings[best])}) "
        f"{_percent(mean[best])} %, reference {_percent(mean[0])} % "
        f"({100 * (mean[best] - mean[0]):+.1f} points); best backprop row "
        f"({_backprop_text(bp_settings[bp_best])}) {_percent(bp_mean[bp_best])} % "
        f"(gap to the best IB setting {100 * (bp_mean[bp_best] - mean[best]):.1f} points).",
    ]
    if final is not None:
        n_train, n_test = _test_sizes(args.quick)
        lines += [
            "",
            f"Then both winners on {_count(n_train, 60000)} training images and "
            f"{_count(n_test, 10000)} test images, {args.final_epochs} epochs, seed 0 (the "
            "initial weights of section ib-rate), side by side: IB rule "
            f"({_setting_text(settings[best])}) and backprop "
            f"({_backprop_text(bp_settings[bp_best])}). Accuracies in % (train / test).",
            "",
            *ib_vs_backprop_lines(final["ib"], final["backprop"]),
        ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_record:
        record_section("ib-rate-search", markdown)


BACKPROP_REFERENCE = {**SEARCH_REFERENCE, "lr": 1e-3}  # the backprop setting of (a)
LAST_EPOCHS = 5  # the seeds table also averages the test accuracy over the last epochs


def seeds_run(args) -> None:
    """(a)'s two rules — IB at the reference setting, backprop at AdamW 1e-3 — on all of
    Fashion-MNIST from each seed of ``--seeds`` (initial weights and sample order), two runs
    at a time: the spread of the test-accuracy gap over seeds (section ib-rate-seeds)."""
    start = time.perf_counter()
    epochs = 1 if args.quick else args.epochs
    jobs = [(m, seed) for m in ("ib", "backprop") for seed in args.seeds]  # long runs first
    settings = {"ib": SEARCH_REFERENCE, "backprop": BACKPROP_REFERENCE}
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = {
            (m, seed): pool.submit(final_curve, m, settings[m], epochs, args.quick, seed)
            for m, seed in jobs
        }
        curves = {job: future.result()[0] for job, future in futures.items()}
    wall = time.perf_counter() - start
    last = min(LAST_EPOCHS, epochs)

    def tested(m: str, seed: int, window: int) -> float:
        return statistics.mean(test for _, test in curves[m, seed][-window:])

    cmd = "python benchmarks/bench_ib_rate.py --seeds " + " ".join(map(str, args.seeds))
    cmd += " --quick" if args.quick else f" --epochs {args.epochs}"
    n_train, n_test = _test_sizes(args.quick)
    lines = [
        "## IB rule vs backprop over seeds (rate networks, issue 3)",
        "",
        f"Command: `{cmd}` — {dt.date.today().isoformat()}, 2 CPU cores (two runs at a time, "
        f"torch 1 thread each); wall {wall / 60:.1f} min.",
        "",
        f"The two rules of section ib-rate (a) — IB rule at the reference setting "
        f"({_setting_text(SEARCH_REFERENCE)}), backprop ({_backprop_text(BACKPROP_REFERENCE)}) "
        f"— on {_count(n_train, 60000)} training images and {_count(n_test, 10000)} test "
        f"images, {epochs} epochs, MLP 784-128-64-10, B = 8. Each seed fixes the initial "
        "weights and the sample order; both rules start from the same weights. Test accuracy "
        f"in %: after the last epoch, and the mean over the last {last} epochs (the IB curve "
        "moves by a point or two from epoch to epoch).",
        "",
        "| seed | IB last | backprop last | gap last | IB mean last "
        f"{last} | backprop mean last {last} | gap mean |",
        "|---|---|---|---|---|---|---|",
    ]
    gaps, mean_gaps = [], []
    for seed in args.seeds:
        ib, bp = tested("ib", seed, 1), tested("backprop", seed, 1)
        ib_m, bp_m = tested("ib", seed, last), tested("backprop", seed, last)
        gaps.append(100 * (bp - ib))
        mean_gaps.append(100 * (bp_m - ib_m))
        lines.append(
            f"| {seed} | {_percent(ib)} | {_percent(bp)} | {gaps[-1]:.1f} | {_percent(ib_m)} "
            f"| {_percent(bp_m)} | {mean_gaps[-1]:.1f} |"
        )
    lines += [
        "",
        f"Gap backprop − IB over {len(args.seeds)} seed(s): after the last epoch "
        f"{_spread(gaps)} points, on the last-{last}-epoch means {_spread(mean_gaps)} points "
        "(goal ≤ 4).",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_record:
        record_section("ib-rate-seeds", markdown)


def ib_vs_backprop_lines(ib: tuple, backprop: tuple) -> list[str]:
    """Markdown: per-epoch train / test accuracy of an IB and a backprop run (``(curve,
    seconds)`` each, as :func:`train` returns) and the test gap against issue 3's goal."""
    (ib_curve, ib_s), (bp_curve, bp_s) = ib, backprop
    lines = ["| epoch | IB rule | backprop |", "|---|---|---|"]
    for e, (a, b) in enumerate(zip(ib_curve, bp_curve, strict=True), 1):
        lines.append(
            f"| {e} | {_percent(a[0])} / {_percent(a[1])} | {_percent(b[0])} / {_percent(b[1])} |"
        )
    gap = 100 * (bp_curve[-1][1] - ib_curve[-1][1])
    verdict = "met" if gap <= 4.0 else "missed"
    return [
        *lines,
        "",
        f"Test-accuracy gap backprop − IB: **{gap:.1f} points** (goal ≤ 4; {verdict}). Training "
        f"time: IB {ib_s:.0f} s, backprop {bp_s:.0f} s.",
    ]


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f} (mean ± s.d.)"


def _count(n: int | None, full: int) -> str:
    return f"all {full}" if n is None else f"{n} (stratified subset, seed 0)"


def plot_sweep(rows, path: Path) -> None:
    plt = pyplot()
    windows = [r[0] for r in rows]
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(windows, [100 * r[1] for r in rows], "o-", label="train")
    ax.plot(windows, [100 * r[2] for r in rows], "s-", label="test")
    ax.set_xscale("log", base=2)
    ax.set_xticks(windows, [str(w) for w in windows])
    ax.set_xlabel("window B (working memory, samples)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("IB rule, Fashion-MNIST, 784-128-64-10")
    ax.legend()
    fig.tight_layout()
    write_figure(fig, path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small smoke-test sizes; records nothing"
    )
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    parser.add_argument(
        "--epochs", type=count(), default=25, help="epochs of (a); 25 as the reference MNIST run"
    )
    parser.add_argument(
        "--probe", action="store_true", help="run only the probe of the gap (section ib-rate-probe)"
    )
    parser.add_argument(
        "--select-lr",
        action="store_true",
        help="run only (a) for IB and backprop, each at the learning rate that scores best on "
        "held-out training images (section ib-rate-selected-lr)",
    )
    parser.add_argument(
        "--search",
        type=count(),
        metavar="N",
        help="run only the random search of the IB rule's settings, N settings besides the "
        "reference (section ib-rate-search)",
    )
    parser.add_argument(
        "--final-epochs",
        type=count(0),
        default=0,
        metavar="E",
        help="with --search: then train the best IB setting and the best backprop row on all "
        "of Fashion-MNIST for E epochs and test them",
    )
    parser.add_argument(
        "--seeds",
        type=count(0),
        nargs="+",
        metavar="S",
        help="run only (a)'s IB and backprop runs from each seed S, two at a time, and report "
        "the spread of the gap (section ib-rate-seeds)",
    )
    args = parser.parse_args()
    args.no_record = args.no_record or args.quick  # a smoke run records nothing
    torch.set_num_threads(1)  # both rules; per-sample steps are fastest single-threaded
    if args.seeds is not None:
        if len(set(args.seeds)) != len(args.seeds):
            parser.error(f"--seeds: {args.seeds}; give distinct seeds")
        seeds_run(args)
        return
    if args.search is not None:
        search_run(args)
        return
    if args.select_lr:
        selected_lr_run(args)
        return
    if args.probe:
        start = time.perf_counter()
        n_fit, n_val, epochs = (1000, 500, 1) if args.quick else (10000, 5000, 3)
        rows = probe(n_fit, n_val, epochs, PROBE_RUNS[:2] if args.quick else PROBE_RUNS)
        command = "python benchmarks/bench_ib_rate.py --probe" + (" --quick" if args.quick else "")
        markdown = probe_report(rows, n_fit, n_val, epochs, command, time.perf_counter() - start)
        print(markdown)
        if not args.no_record:
            record_section("ib-rate-probe", markdown)
        return
    if args.quick:
        n_acc, n_test, epochs, n_sweep, sweep_epochs, windows = 2000, 1000, 1, 1000, 1, (2, 8)
        rounds, ib_samples = 2, 200
    else:
        n_acc, n_test, epochs, n_sweep, sweep_epochs = None, None, args.epochs, 10000, 3
        windows, rounds, ib_samples = (2, 4, 8, 16, 32), 5, 1000
    start = time.perf_counter()
    lr_ib, lr_bp, window = 1e-4, 1e-3, 8
    data = _data(n_acc, n_test)
    print("(a) accuracy", flush=True)
    ib_curve, ib_s = train("ib", data, epochs, window, lr_ib)
    bp_curve, bp_s = train("backprop", data, epochs, window, lr_bp)
    ph_curve, ph_s = train("phsic", data, epochs, window, lr_bp)
    ro_curve, ro_s = train("readout", data, epochs, window, lr_bp)
    gap = 100 * (bp_curve[-1][1] - ib_curve[-1][1])

    print("(b) B sweep", flush=True)
    sweep_data = _data(n_sweep, n_test)
    sweep_rows = []
    for b in windows:
        curve, secs = train("ib", sweep_data, sweep_epochs, b, lr_ib, rule=IBRule(window=b))
        sweep_rows.append((b, curve[-1][0], curve[-1][1], secs))
    # an unrecorded run keeps the recorded plot and draws its own in the temp folder
    figure = (Path(tempfile.gettempdir()) if args.no_record else HERE / "figures") / "ib_bsweep.png"
    plot_sweep(sweep_rows, figure)
    print(f"plot: {figure}", flush=True)

    print("(c) speed", flush=True)
    ib_step, bp_step = speed(data, window, rounds, ib_samples)
    ratio = ib_step / bp_step
    wall = time.perf_counter() - start

    cmd = "python benchmarks/bench_ib_rate.py" + (
        " --quick" if args.quick else f" --epochs {args.epochs}"
    )
    lines = [
        "## IB three-factor rule vs backprop (rate networks, issue 3)",
        "",
        f"Command: `{cmd}` — {dt.date.today().isoformat()}, 2 CPU cores, shared (torch 1 "
        f"thread for both rules); wall {wall / 60:.1f} min.",
        "",
        f"**(a) Fashion-MNIST, MLP 784-128-64-10 (ReLU + LayerNorm), B = {window}.** "
        f"{_count(n_acc, 60000)} training images, {_count(n_test, 10000)} test images, "
        f"{epochs} epochs for every rule from the same initial weights. IB rule: exact ξ, "
        f"ξ at the LayerNorm output, γ 2, σ (0.5, 0.1, 1) (reference MNIST config), AdamW lr "
        f"{lr_ib:g} (reference), sliding window (one step per sample). Backprop and pHSIC "
        f"(Pogodin & Latham 2020: γ 2, σ_z 5, layer inputs detached, readout by "
        f"cross-entropy): AdamW lr {lr_bp:g}, minibatches of {window}.",
        "",
        "Readout only: the control with hidden layers frozen at their initial weights "
        f"(AdamW lr {lr_bp:g}, minibatches of {window}). Accuracies in % (train / test).",
        "",
        "| epoch | IB rule | backprop | pHSIC | readout only |",
        "|---|---|---|---|---|",
    ]
    curves = (ib_curve, bp_curve, ph_curve, ro_curve)
    for e, accs in enumerate(zip(*curves, strict=True), 1):
        cells = " | ".join(f"{100 * tr:.1f} / {100 * te:.1f}" for tr, te in accs)
        lines.append(f"| {e} | {cells} |")
    verdict = "met" if gap <= 4.0 else "missed"
    lines += [
        "",
        f"Test-accuracy gap backprop − IB: **{gap:.1f} points** (goal ≤ 4; {verdict}). "
        f"IB − readout only: {100 * (ib_curve[-1][1] - ro_curve[-1][1]):+.1f} points. "
        f"Training time: IB {ib_s:.0f} s, backprop {bp_s:.0f} s, pHSIC {ph_s:.0f} s, readout "
        f"only {ro_s:.0f} s.",
        "",
        f"**(b) B sweep** (IB rule, {_count(n_sweep, 60000)} training images, "
        f"{sweep_epochs} epochs, same "
        f"settings; plot `benchmarks/figures/{figure.name}`):",
        "",
        "| B | train | test | training s |",
        "|---|---|---|---|",
    ]
    for b, tr, te, secs in sweep_rows:
        lines.append(f"| {b} | {100 * tr:.1f} | {100 * te:.1f} | {secs:.0f} |")
    verdict = "met" if ratio <= 1.5 else "missed"
    lines += [
        "",
        f"**(c) Speed**, B = {window}, median of {rounds} interleaved epochs each "
        f"({ib_samples} IB steps, {ib_samples} backprop steps): IB step "
        f"{1e3 * ib_step:.2f} ms, backprop step {1e3 * bp_step:.2f} ms, ratio "
        f"**{ratio:.2f}×** (goal ≤ 1.5×; {verdict}). Per epoch the IB rule takes B = {window} "
        f"times more steps than minibatch backprop: epoch-time ratio "
        f"{window * ratio:.1f}×.",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_record:
        record_section("ib-rate", markdown)


if __name__ == "__main__":
    main()
