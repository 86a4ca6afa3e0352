"""Benchmark: neural tangent ensemble (NTE) against SGD, SGD + momentum, Adam and EWC on
5-task permuted Fashion-MNIST with a 2-hidden-layer ReLU MLP, side by side in one run.

Measures (Benjamin, Pehle & Daruwalla, NeurIPS 2024, reproduced at small scale):

- task-1 forgetting ``R[0, 0] − R[4, 0]`` of every optimizer at the main width (goal: NTE at
  most half of SGD's and a quarter of Adam's);
- forgetting against width for NTE, SGD and Adam (paper: wider reduces it for NTE and SGD, not
  for Adam) and against SGD momentum (paper: more momentum, more forgetting);
- the time of one training step (forward, backward, update) with the NTE batch form against
  plain SGD on the same model (goal ≤ 1.3×), and of the update alone.

Hyper-parameters are the NTE authors' MNIST configs (batch 128, 2 epochs per task, SGD lr
0.01, Adam lr 1e-3 with betas (0.9, 0.99), NTE η = 0.01, β = 1, max_delta 0.1, expansion about
the origin); the training set per task is a stratified subset to fit the time budget.

    python benchmarks/bench_nte.py            # full run, writes the "nte" section of RESULTS.md
    python benchmarks/bench_nte.py --quick    # smoke run, records nothing
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from plastix.bridges.continual import (
    LearnerConfig,
    make_learner,
    mlp,
    permuted_tasks,
    run_continual,
)
from plastix.bridges.tangent_ensemble import NeuralTangentEnsemble
from plastix.sims.datasets import load_dataset

OUT = Path(__file__).with_name("out") / "nte"
CHANCE = 0.1  # 10 classes


def _model(width: int, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return mlp(784, [width, width], 10)


def _train(tasks, name: str, width: int, momentum: float, seed: int, args) -> dict:
    config = LearnerConfig(
        optimizer=name,
        momentum=momentum,
        ewc_lambda=args.ewc_lambda,
        ewc_fisher_samples=args.ewc_samples,
        seed=seed,
    )
    learner = make_learner(_model(width, seed), config)
    start = time.perf_counter()
    run = {"optimizer": name, "width": width, "momentum": momentum, "seed": seed}
    try:
        res = run_continual(
            learner, tasks, "domain", n_outputs=10, epochs=args.epochs, batch_size=128, seed=seed
        )
    except FloatingPointError as exc:  # a diverged run is recorded as such, not dropped
        nan = float("nan")
        metrics = (
            "task1_after_task1",
            "task1_final",
            "task1_forgetting",
            "average_accuracy",
            "task1_kept",
        )
        return {
            **run,
            **dict.fromkeys(metrics, nan),
            "diverged": str(exc),
            "wall_s": time.perf_counter() - start,
        }
    r = res.accuracy_matrix
    return {
        **run,
        "matrix": r.tolist(),
        "task1_after_task1": float(r[0, 0]),
        "task1_final": float(r[-1, 0]),
        "task1_forgetting": res.task1_forgetting,
        "task1_kept": _ratio(r[-1, 0] - CHANCE, r[0, 0] - CHANCE),
        "average_accuracy": float(res.average_accuracy[-1]),
        "wall_s": time.perf_counter() - start,
    }


def _step_times(width: int, threads: int, reps: int) -> dict[str, float]:
    """Median seconds of one training step and of the update alone, SGD and NTE interleaved."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(128, 784, generator=gen), torch.randint(0, 10, (128,), generator=gen)
    models = {"sgd": _model(width, 0), "nte": _model(width, 0)}
    optims = {
        "sgd": torch.optim.SGD(models["sgd"].parameters(), lr=0.01),
        "nte": NeuralTangentEnsemble(models["nte"].parameters(), lr=0.01, max_delta=0.1),
    }

    def update(kind: str) -> None:
        if kind == "nte":
            optims[kind].step(batch_size=128)
        else:
            optims[kind].step()

    def full(kind: str) -> None:
        optims[kind].zero_grad(set_to_none=True)
        nn.functional.cross_entropy(models[kind](x), y).backward()
        update(kind)

    times: dict[str, list[float]] = {f"{k}_{w}": [] for k in models for w in ("step", "update")}
    for kind in models:  # warm-up
        full(kind)
    for _ in range(reps):
        for kind in models:
            t0 = time.perf_counter()
            full(kind)
            t1 = time.perf_counter()
            update(kind)
            t2 = time.perf_counter()
            times[f"{kind}_step"].append(t1 - t0)
            times[f"{kind}_update"].append(t2 - t1)
    torch.set_num_threads(previous)
    return {k: statistics.median(v) for k, v in times.items()}


def _mean(runs: list[dict], key: str, **match) -> float:
    vals = [r[key] for r in runs if all(r[k] == v for k, v in match.items())]
    return float(np.mean(vals)) if vals else float("nan")


def _ratio(a: float, b: float) -> float:
    """a / b for a positive b; NaN otherwise (nothing to compare against)."""
    return float(a / b) if b > 0 else float("nan")


def _per_seed_ratios(runs: list[dict], width: int, other: str) -> str:
    seeds = sorted({r["seed"] for r in runs})
    ratios = []
    for seed in seeds:
        sel = {"width": width, "momentum": 0.0, "seed": seed}
        ratios.append(
            _ratio(
                _mean(runs, "task1_forgetting", optimizer="nte", **sel),
                _mean(runs, "task1_forgetting", optimizer=other, **sel),
            )
        )
    return ", ".join(f"{v:.2f}" for v in ratios)


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run; records nothing")
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--n-train", type=int, default=10000, help="training examples per task")
    parser.add_argument("--n-test", type=int, default=2000, help="test examples per task")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per task")
    parser.add_argument("--seeds", type=int, default=2, help="number of seeds")
    parser.add_argument("--width", type=int, default=1000, help="main hidden width")
    parser.add_argument("--widths", type=int, nargs="+", default=[100, 300], help="extra widths")
    parser.add_argument("--momenta", type=float, nargs="+", default=[0.9, 0.99])
    parser.add_argument("--ewc-lambda", type=float, default=400.0)
    parser.add_argument("--ewc-samples", type=int, default=200, help="Fisher examples per task")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    parser.add_argument("--speed-reps", type=int, default=30)
    parser.add_argument("--json", type=Path, default=OUT / "bench_nte.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.epochs, args.seeds = 500, 300, 1, 1
        args.widths, args.momenta, args.speed_reps, args.no_record = [100], [0.9], 3, True
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()

    ds = load_dataset("fashion-mnist", n_train=args.n_train, n_test=args.n_test, seed=0).flat()
    plan = [("nte", args.width, 0.0), ("sgd", args.width, 0.0), ("adam", args.width, 0.0)]
    plan += [("ewc", args.width, 0.0)]
    plan += [("sgd", args.width, m) for m in args.momenta]
    plan += [(name, w, 0.0) for w in args.widths for name in ("nte", "sgd", "adam")]
    runs = []
    for seed in range(args.seeds):
        tasks = permuted_tasks(ds.x_train, ds.y_train, ds.x_test, ds.y_test, 5, seed=seed)
        for name, width, momentum in plan:
            run = _train(tasks, name, width, momentum, seed, args)
            runs.append(run)
            print(
                f"[{(time.perf_counter() - t_start) / 60:4.1f} min] "
                f"seed {seed} {name:4s} w{width:<5d} m{momentum:<4g} "
                f"task1 {run['task1_after_task1']:.3f} -> {run['task1_final']:.3f} "
                f"(forgetting {run['task1_forgetting']:+.3f}) avg {run['average_accuracy']:.3f} "
                f"[{run['wall_s']:.0f} s]",
                flush=True,
            )
    train_s = time.perf_counter() - t_start
    speed = {t: _step_times(args.width, t, args.speed_reps) for t in sorted({1, 2})}
    total_s = time.perf_counter() - t_start

    W = args.width
    forget = {
        name: _mean(runs, "task1_forgetting", optimizer=name, width=W, momentum=0.0)
        for name in ("nte", "sgd", "adam", "ewc")
    }
    widths = sorted({W, *args.widths})
    by_width = {
        name: [
            _mean(runs, "task1_forgetting", optimizer=name, width=w, momentum=0.0) for w in widths
        ]
        for name in ("nte", "sgd", "adam")
    }
    momenta = [0.0, *sorted(args.momenta)]
    by_momentum = [
        _mean(runs, "task1_forgetting", optimizer="sgd", width=W, momentum=m) for m in momenta
    ]
    nte_vs_sgd = _ratio(forget["nte"], forget["sgd"])
    nte_vs_adam = _ratio(forget["nte"], forget["adam"])
    widths_help = {n: v[-1] < v[0] for n, v in by_width.items()}
    momentum_hurts = by_momentum[-1] > by_momentum[0]
    momentum_monotone = all(a < b for a, b in zip(by_momentum, by_momentum[1:], strict=False))
    ratio_step = {t: s["nte_step"] / s["sgd_step"] for t, s in speed.items()}
    ratio_update = {t: s["nte_update"] / s["sgd_update"] for t, s in speed.items()}

    command = " ".join(
        ["python benchmarks/bench_nte.py", *(sys.argv[1:] if argv is None else argv)]
    )
    lines = [
        "## Neural tangent ensemble: continual learning (issue 7)",
        "",
        f"Command: `{command}` — "
        f"{dt.date.today().isoformat()}, 2 CPU cores, shared (Python {platform.python_version()}, "
        f"torch {torch.__version__}); total {total_s / 60:.1f} min.",
        "",
        f"Set-up: 5-task permuted Fashion-MNIST (task 1 unpermuted), domain-incremental, one "
        f"10-way head; MLP 784-{W}-{W}-10 (ReLU, PyTorch default init); per task a stratified "
        f"subset of {args.n_train} training and {args.n_test} test images (the same images "
        f"permuted per task); {args.epochs} epochs per task, batch 128; {args.seeds} seed(s); "
        f"torch threads {args.threads} for training. Hyper-parameters from the NTE authors' "
        "MNIST configs, untuned here: SGD lr 0.01; Adam lr 1e-3, betas (0.9, 0.99); NTE "
        "η = 0.01, β = 1, max_delta 0.1, expansion about the origin, batch form; EWC = SGD lr "
        f"0.01 + λ = {args.ewc_lambda:g} with the empirical Fisher of {args.ewc_samples} "
        "examples per task (λ · lr · 4 · max F < 2, so SGD stays stable on the accumulated "
        "penalties; not tuned further). "
        "Forgetting = task-1 accuracy after task 1 minus after task 5; kept = the fraction of "
        "task 1's above-chance accuracy left after task 5, (R[4,0] − 0.1) / (R[0,0] − 0.1), "
        "which allows for how much was learned. Means over seeds.",
        "",
        f"| optimizer (width {W}) | task 1 after task 1 | after task 5 | forgetting | kept | "
        "average accuracy after task 5 |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in [("nte", 0.0), ("sgd", 0.0), ("adam", 0.0), ("ewc", 0.0)] + [
        ("sgd", m) for m in sorted(args.momenta)
    ]:
        label = name if not m else f"sgd + momentum {m:g}"
        sel = {"optimizer": name, "width": W, "momentum": m}
        lines.append(
            f"| {label} | {_mean(runs, 'task1_after_task1', **sel):.3f} | "
            f"{_mean(runs, 'task1_final', **sel):.3f} | "
            f"{_mean(runs, 'task1_forgetting', **sel):+.3f} | "
            f"{_mean(runs, 'task1_kept', **sel):.2f} | "
            f"{_mean(runs, 'average_accuracy', **sel):.3f} |"
        )
    lines += [
        "",
        "Task-1 forgetting against width (in brackets: task-1 accuracy after task 1; a net "
        "that learned little has little to forget):",
        "",
        "| optimizer | " + " | ".join(f"width {w}" for w in widths) + " |",
        "|---|" + "---|" * len(widths),
    ]
    for name, vals in by_width.items():
        learned = [
            _mean(runs, "task1_after_task1", optimizer=name, width=w, momentum=0.0) for w in widths
        ]
        cells = [f"{v:+.3f} ({a:.2f})" for v, a in zip(vals, learned, strict=True)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"SGD task-1 forgetting against momentum (width {W}): "
        + ", ".join(f"{m:g}: {v:+.3f}" for m, v in zip(momenta, by_momentum, strict=True)),
        "",
        "Step time (median of interleaved repetitions, batch 128, width "
        f"{W}): "
        + "; ".join(
            f"{t} thread{'s' if t > 1 else ''}: SGD step {s['sgd_step'] * 1e3:.1f} ms, NTE step "
            f"{s['nte_step'] * 1e3:.1f} ms (ratio {ratio_step[t]:.3f}×); update alone "
            f"{s['sgd_update'] * 1e3:.2f} vs {s['nte_update'] * 1e3:.2f} ms "
            f"({ratio_update[t]:.0f}×)"
            for t, s in speed.items()
        ),
        "",
        "Goals:",
        "",
        f"- NTE task-1 forgetting ≤ ½ SGD's: NTE/SGD = {nte_vs_sgd:.2f} (per seed: "
        f"{_per_seed_ratios(runs, W, 'sgd')}) — {_verdict(nte_vs_sgd <= 0.5)}.",
        f"- NTE task-1 forgetting ≤ ¼ Adam's: NTE/Adam = {nte_vs_adam:.2f} (per seed: "
        f"{_per_seed_ratios(runs, W, 'adam')}) — {_verdict(nte_vs_adam <= 0.25)}.",
        f"- Width reduces forgetting for NTE ({_verdict(widths_help['nte'])}) and SGD "
        f"({_verdict(widths_help['sgd'])}) but not for Adam "
        f"({_verdict(not widths_help['adam'])}), comparing width {widths[0]} with {widths[-1]}.",
        f"- More momentum, more forgetting (SGD, momentum {momenta[-1]:g} against 0): "
        f"{_verdict(momentum_hurts)}; monotone over {', '.join(f'{m:g}' for m in momenta)}: "
        f"{'yes' if momentum_monotone else 'no'}.",
        "- NTE step (batch form) ≤ 1.3× SGD step on the same model: "
        + ", ".join(
            f"{ratio_step[t]:.3f}× with {t} thread{'s' if t > 1 else ''} — "
            f"{_verdict(ratio_step[t] <= 1.3)}"
            for t in speed
        )
        + ".",
        f"- Whole benchmark ≤ 20 min: {total_s / 60:.1f} min (training {train_s / 60:.1f} min) —"
        f" {_verdict(total_s <= 1200)}.",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs, "speed": speed},
            indent=1,
        )
    )
    if not args.no_record:
        from _record import record_section

        record_section("nte", markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
