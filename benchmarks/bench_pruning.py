"""Benchmark: dynamic data pruning against plain full-data training, side by side in one run.

Fashion-MNIST (stratified training subset, full 10k test set), the small CNN of the
``pruning`` experiment, SGD + cosine learning rate. The reference is the plain torch way:
``DataLoader(TensorDataset(x, y), shuffle=True)`` and a mean cross-entropy, trained on all
data every epoch. Each strategy then trains a network from the same initial weights through
``PruningSampler`` at 50 % and 70 % of the per-sample passes saved (scoring and annealing
included). Training wall-clock includes scoring, selection and loss bookkeeping, and excludes
the final test evaluation. torch runs on one thread (the machine's 2 cores are shared).

Goals (issue 8): at 50 % the best strategy loses at most 0.5 accuracy points against full data
and trains at least 1.8x faster; at 70 % epsilon-greedy and UCB beat uniform dynamic pruning.

    python benchmarks/bench_pruning.py            # full benchmark, records RESULTS.md
    python benchmarks/bench_pruning.py --quick    # smoke run, records nothing
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from plastix.bridges.pruning import (
    IndexedTensorDataset,
    PruningSampler,
    el2n_scores,
    evaluate_classifier,
    forgetting_scores,
    grand_scores,
    train_classifier_epoch,
)
from plastix.sims.datasets import load_dataset
from plastix.sims.exp_pruning import PruningConfig, SmallCNN, make_strategy

sys.path.insert(0, str(Path(__file__).parent))
from _record import count, record_section, write_json  # noqa: E402

STRATEGIES = ("uniform", "epsilon-greedy", "ucb", "infobatch", "el2n", "grand", "forgetting")
RL = ("epsilon-greedy", "ucb")


def seeded_model(seed: int) -> SmallCNN:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SmallCNN((1, 28, 28), 10)


def make_optimizer(cfg: PruningConfig):
    return lambda model: torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


class Timed:
    """Accumulates the wall-clock and process CPU time spent inside ``with self.timer():``."""

    wall_s = 0.0
    cpu_s = 0.0

    @contextlib.contextmanager
    def timer(self):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall_s += time.perf_counter() - wall
            self.cpu_s += time.process_time() - cpu


class FullRun(Timed):
    """Plain torch reference: shuffled DataLoader over all samples, mean cross-entropy."""

    def __init__(self, cfg: PruningConfig, data, seed: int) -> None:
        self.x, self.y, self.x_test, self.y_test = data
        self.name, self.rate, self.seed = "full", 0.0, seed
        self.model = seeded_model(seed)
        self.optimizer = make_optimizer(cfg)(self.model)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, cfg.epochs)
        self.loader = DataLoader(
            TensorDataset(self.x, self.y),
            batch_size=cfg.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        )
        self.passes = 0

    def epoch(self) -> None:
        with self.timer():
            self.model.train()
            for xb, yb in self.loader:
                loss = F.cross_entropy(self.model(xb), yb)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.passes += len(yb)
            self.schedule.step()

    def result(self) -> dict:
        return {
            "strategy": self.name,
            "rate": self.rate,
            "seed": self.seed,
            "realized_rate": 0.0,
            "accuracy": evaluate_classifier(self.model, self.x_test, self.y_test),
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "scoring_wall_s": 0.0,
            "passes_done": self.passes,
        }


class PrunedRun(Timed):
    """The same network trained through ``PruningSampler``; static scoring is timed too."""

    def __init__(self, cfg: PruningConfig, data, seed: int, name: str, rate: float) -> None:
        self.x, self.y, self.x_test, self.y_test = data
        self.name, self.rate, self.seed = name, rate, seed
        x, y = self.x, self.y
        with self.timer():
            scores = None
            if name == "el2n":
                scores = el2n_scores(
                    lambda: seeded_model(seed + 10),
                    make_optimizer(cfg),
                    x,
                    y,
                    score_epochs=cfg.score_epochs,
                    n_models=cfg.score_models,
                    batch_size=cfg.batch_size,
                    seed=seed,
                )
            elif name == "grand":
                scores = grand_scores(
                    lambda: seeded_model(seed + 20), x, y, n_models=cfg.score_models
                )
            elif name == "forgetting":
                scores = forgetting_scores(
                    lambda: seeded_model(seed + 30),
                    make_optimizer(cfg),
                    x,
                    y,
                    score_epochs=cfg.forgetting_epochs,
                    batch_size=cfg.batch_size,
                    seed=seed,
                )
            self.sampler = PruningSampler(
                len(y), make_strategy(cfg, name, scores), rate=rate, epochs=cfg.epochs, seed=seed
            )
            self.loader = DataLoader(
                IndexedTensorDataset(x, y), batch_size=cfg.batch_size, sampler=self.sampler
            )
            self.model = seeded_model(seed)
            self.optimizer = make_optimizer(cfg)(self.model)
            self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, cfg.epochs)

    def epoch(self) -> None:
        with self.timer():
            train_classifier_epoch(self.model, self.optimizer, self.loader, sampler=self.sampler)
            self.schedule.step()

    def result(self) -> dict:
        stats = self.sampler.stats()
        return {
            "strategy": self.name,
            "rate": self.rate,
            "seed": self.seed,
            "realized_rate": stats.realized_rate,
            "accuracy": evaluate_classifier(self.model, self.x_test, self.y_test),
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "scoring_wall_s": stats.scoring_wall_s,
            "passes_done": stats.passes_done,
        }


def run_seed(cfg: PruningConfig, data, seed: int, strategies, rates) -> list[dict]:
    """All runs of one seed, interleaved epoch by epoch (round-robin, order rotated each
    epoch) so that changes in the machine's load affect every run alike."""
    runs = [FullRun(cfg, data, seed)]
    runs += [PrunedRun(cfg, data, seed, name, rate) for rate in rates for name in strategies]
    for epoch in range(cfg.epochs):
        shift = epoch % len(runs)
        for run in runs[shift:] + runs[:shift]:
            run.epoch()
    return [run.result() for run in runs]


def summarize(runs: list[dict], rates, strategies) -> dict:
    """Mean accuracy and speed-ups (per seed full / pruned wall-clock, geometric mean)."""
    seeds = sorted({r["seed"] for r in runs})
    full = {s: [r for r in runs if r["seed"] == s and r["strategy"] == "full"] for s in seeds}
    full_wall = {s: statistics.mean(r["wall_s"] for r in full[s]) for s in seeds}
    full_cpu = {s: statistics.mean(r["cpu_s"] for r in full[s]) for s in seeds}
    full_acc = statistics.mean(r["accuracy"] for s in seeds for r in full[s])
    table = {}
    for rate in rates:
        for name in strategies:
            sel = [r for r in runs if r["strategy"] == name and r["rate"] == rate]
            if not sel:
                continue
            table[(name, rate)] = {
                "accuracy": statistics.mean(r["accuracy"] for r in sel),
                "accuracies": [r["accuracy"] for r in sel],
                "realized_rate": statistics.mean(r["realized_rate"] for r in sel),
                "speedup": float(
                    np.exp(np.mean([np.log(full_wall[r["seed"]] / r["wall_s"]) for r in sel]))
                ),
                "cpu_speedup": float(
                    np.exp(np.mean([np.log(full_cpu[r["seed"]] / r["cpu_s"]) for r in sel]))
                ),
                "wall_s": statistics.mean(r["wall_s"] for r in sel),
                "scoring_wall_s": statistics.mean(r["scoring_wall_s"] for r in sel),
            }
    return {
        "full_accuracy": full_acc,
        "full_wall_s": statistics.mean(full_wall.values()),
        "table": table,
    }


def to_markdown(
    summary: dict,
    cfg: PruningConfig,
    args,
    n_train: int,
    started: str,
    total: tuple[float, float],
    seeds,
) -> str:
    table = summary["table"]
    full_acc = summary["full_accuracy"]
    out = [
        "## pruning — dynamic data pruning (issue 8)",
        "",
        f"Command: `python benchmarks/bench_pruning.py{' '.join([''] + args.argv)}`  ",
        f"Date: {started}; machine: 2 CPU cores, shared (torch on 1 thread); total "
        f"{total[0] / 60:.1f} min wall-clock, {total[1] / 60:.1f} min process CPU time (the gap "
        "is the load of other jobs on the shared cores).",
        "",
        f"Setup: Fashion-MNIST, stratified {n_train}-sample training subset, full 10,000-image "
        f"test set; small CNN (conv3x3 16 - pool - conv3x3 32 - pool - fc 64 - fc 10); SGD "
        f"lr {cfg.lr}, momentum {cfg.momentum}, weight decay {cfg.weight_decay}, batch "
        f"{cfg.batch_size}, cosine schedule over {cfg.epochs} epochs; seeds {list(seeds)} "
        "(each seed: same initial weights for every run). Reference: plain torch "
        "(`DataLoader(shuffle=True)`, all data every epoch). All runs of a seed are interleaved "
        "epoch by epoch (round-robin, order rotated each epoch; static scoring runs first), so "
        "load changes on the shared machine hit every run alike. Strategy settings: "
        f"epsilon-greedy eps={cfg.epsilon} x {cfg.epsilon_decay}^epoch, UCB c={cfg.ucb_c}, "
        f"moving-loss decay {cfg.loss_decay} per {cfg.loss_decay_unit}, "
        f"{cfg.rl_anneal_epochs} final full-data epoch(s) for epsilon-greedy and UCB; "
        f"InfoBatch delta={cfg.infobatch_delta} (last "
        f"{cfg.anneal_epochs('infobatch')} epoch(s) full data); EL2N {cfg.score_models} model "
        f"after {cfg.score_epochs} epoch(s); GraNd {cfg.score_models} model at init; "
        f"forgetting over {cfg.forgetting_epochs} epochs. Pruning rate = share of per-sample "
        "passes saved over the run, scoring and annealing included; wall-clock = training "
        "incl. scoring, without test evaluation. Speed-up = full-data wall-clock / strategy "
        "wall-clock, per seed, geometric mean; CPU speed-up the same with process CPU time.",
        "",
        f"Full data: test accuracy {100 * full_acc:.2f} %, "
        f"training {summary['full_wall_s']:.1f} s.",
        "",
        "| strategy | rate (target / realised) | test acc. % (per seed) | Δ vs full (pts) | "
        "wall s | scoring s | speed-up (wall) | speed-up (CPU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (name, rate), row in table.items():
        per_seed = ", ".join(f"{100 * a:.2f}" for a in row["accuracies"])
        out.append(
            f"| {name} | {rate:.2f} / {row['realized_rate']:.3f} | {100 * row['accuracy']:.2f} "
            f"({per_seed}) | {100 * (row['accuracy'] - full_acc):+.2f} | {row['wall_s']:.1f} | "
            f"{row['scoring_wall_s']:.1f} | {row['speedup']:.2f}× | {row['cpu_speedup']:.2f}× |"
        )
    out += ["", "Goals:", ""]
    at50 = {n: r for (n, rate), r in table.items() if rate == 0.5}
    if at50:
        best = max(at50, key=lambda n: at50[n]["accuracy"])
        loss = 100 * (full_acc - at50[best]["accuracy"])
        speed = at50[best]["speedup"]
        out.append(
            f"- 50 %: best strategy **{best}** loses {loss:.2f} points (goal ≤ 0.5: "
            f"{'met' if loss <= 0.5 else 'missed'}) and trains {speed:.2f}× faster in wall-clock "
            f"(goal ≥ 1.8×: {'met' if speed >= 1.8 else 'missed'})."
        )
    at70 = {n: r for (n, rate), r in table.items() if rate == 0.7}
    if "uniform" in at70:
        for name in RL:
            if name in at70:
                diff = 100 * (at70[name]["accuracy"] - at70["uniform"]["accuracy"])
                out.append(
                    f"- 70 %: {name} {100 * at70[name]['accuracy']:.2f} % vs uniform "
                    f"{100 * at70['uniform']['accuracy']:.2f} % ({diff:+.2f} points; goal: "
                    f"beats uniform: {'met' if diff > 0 else 'missed'})."
                )
    if args.notes:
        out += ["", args.notes.read_text().strip()]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run; records nothing")
    parser.add_argument("--seeds", type=count(), default=3)
    parser.add_argument("--n-train", type=count(), default=5000)
    parser.add_argument("--epochs", type=count(), default=20)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.5, 0.7])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--epsilon", type=float, default=PruningConfig.epsilon)
    parser.add_argument("--ucb-c", type=float, default=PruningConfig.ucb_c)
    parser.add_argument("--loss-decay", type=float, default=PruningConfig.loss_decay)
    parser.add_argument("--epsilon-decay", type=float, default=PruningConfig.epsilon_decay)
    parser.add_argument(
        "--loss-decay-unit",
        choices=("epoch", "observation"),
        default=PruningConfig.loss_decay_unit,
    )
    parser.add_argument("--rl-anneal-epochs", type=int, default=PruningConfig.rl_anneal_epochs)
    parser.add_argument(
        "--notes", type=Path, help="markdown appended to the section (e.g. exploratory runs)"
    )
    parser.add_argument("--no-record", action="store_true", help="print, do not write RESULTS.md")
    parser.add_argument("--json", type=Path, help="also write every run as JSON here")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.seeds, args.n_train, args.epochs = 1, 1000, 4
        args.rates, args.strategies = [0.5], ["uniform", "ucb", "infobatch", "grand"]
    torch.set_num_threads(1)
    cfg = PruningConfig(
        epochs=args.epochs,
        rates=tuple(args.rates),
        strategies=tuple(args.strategies),
        epsilon=args.epsilon,
        ucb_c=args.ucb_c,
        loss_decay=args.loss_decay,
        epsilon_decay=args.epsilon_decay,
        loss_decay_unit=args.loss_decay_unit,
        rl_anneal_epochs=args.rl_anneal_epochs,
    )
    cfg.validate()
    ds = load_dataset("fashion-mnist", n_train=args.n_train, seed=0)
    data = tuple(torch.from_numpy(a) for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test))
    started = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    t0, c0 = time.perf_counter(), time.process_time()
    runs = []
    for seed in range(args.seeds):
        for run in run_seed(cfg, data, seed, args.strategies, args.rates):
            runs.append(run)
            print(json.dumps(run), flush=True)
    total = (time.perf_counter() - t0, time.process_time() - c0)
    summary = summarize(runs, args.rates, args.strategies)
    markdown = to_markdown(summary, cfg, args, len(ds.y_train), started, total, range(args.seeds))
    print(markdown)
    if args.json:
        write_json(args.json, runs)
    if not (args.quick or args.no_record):
        record_section("pruning", markdown)


if __name__ == "__main__":
    main()
