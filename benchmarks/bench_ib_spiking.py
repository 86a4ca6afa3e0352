"""Benchmark of the spiking IB circuit (issue 5): accuracy against the rate IB rule, and speed
of the ways to run it, measured side by side in one run.

    python benchmarks/bench_ib_spiking.py [--quick] [--fashion] [--no-record]

Accuracy (digits, 64-100-10): the spiking IB rule with exact ξ (cpp_standalone, one build
re-run per sample) and with reservoir ξ (the ξ-modulator inside the simulation, one run per
epoch) against the rate IB rule on the same architecture
(:class:`plastix.bridges.ib_training.IBTrainer`, its reference settings), and the spiking
circuit with the hidden layer frozen (readout only) to show what the IB rule adds.
``--fashion`` adds a Fashion-MNIST subset (784-100-10).

Speed (same circuit, same samples): the per-sample loop on runtime (numpy) and on
cpp_standalone (re-runs), a whole epoch as one compiled cpp_standalone run with reservoir ξ,
the same without the reservoir, and with static synapses (plasticity overhead).
cuda_standalone: code generation only where brian2cuda is importable.

Writes the section ``ib-spiking`` of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from brian2 import Hz

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import record_section  # noqa: E402

from plastix.circuits.ib_network import (  # noqa: E402
    CompiledEpochTrainer,
    ExactXiTrainer,
    IBCircuitSpec,
    XiSettings,
    init_weights,
)
from plastix.plasticity.ib_rule import IBThreeFactor  # noqa: E402
from plastix.sims.datasets import load_dataset  # noqa: E402

SEED = 0


def _spec(n_input: int, hidden: tuple[int, ...], eta: float, readout_eta: float) -> IBCircuitSpec:
    return IBCircuitSpec(
        n_input=n_input,
        hidden=hidden,
        input_rate=300 * Hz,
        readout_eta=readout_eta * Hz,
        rule=IBThreeFactor(eta=eta * Hz),
    )


def _data(name: str, n_train: int | None, n_test: int | None):
    ds = load_dataset(name, n_train=n_train, n_test=n_test, seed=SEED).flat()
    return (
        np.asarray(ds.x_train, float),
        np.asarray(ds.y_train),
        np.asarray(ds.x_test, float),
        np.asarray(ds.y_test),
    )


def spiking_exact(data, hidden, epochs, cache, eta=300.0, readout_eta=5.0):
    x, y, xt, yt = data
    spec = _spec(x.shape[1], hidden, eta, readout_eta)
    rng = np.random.default_rng(SEED)
    w0 = init_weights(spec, rng, mean=0.7, spread=0.7)
    rows = []
    with ExactXiTrainer(
        spec, w0, XiSettings(), backend="cpp_standalone", cache_root=cache, seed=SEED
    ) as trainer:
        for epoch in range(epochs):
            order = rng.permutation(len(x))
            train = trainer.train_epoch(x[order], y[order])
            test = trainer.evaluate(xt, yt)
            rows.append((epoch, train.accuracy, test.accuracy, train.samples_per_s))
            msg = f"train {train.accuracy:.3f} test {test.accuracy:.3f}"
            print(f"  spiking exact-xi epoch {epoch}: {msg}", flush=True)
    return rows


def fit_modulators(hidden, n_classes=10, units=200):
    from plastix.reservoirs.xi_modulator import XiModulatorConfig, fit_xi_modulator

    return [
        fit_xi_modulator(
            XiModulatorConfig(
                n_neurons=n,
                n_classes=n_classes,
                n_units=units,
                window_products=False,
                seed=SEED + k,
            )
        )
        for k, n in enumerate(hidden)
    ]


def spiking_compiled(data, hidden, epochs, cache, xi_source, eta=300.0, readout_eta=5.0):
    """Compiled epochs (one cpp_standalone run each): reservoir ξ, or hidden frozen."""
    x, y, xt, yt = data
    spec = _spec(x.shape[1], hidden, eta if xi_source == "reservoir" else 0.0, readout_eta)
    rng = np.random.default_rng(SEED)
    w0 = init_weights(spec, rng, mean=0.7, spread=0.7)
    mods = fit_modulators(hidden) if xi_source == "reservoir" else None
    rows = []
    with CompiledEpochTrainer(
        spec, w0, len(x), len(xt), xi_source=xi_source, xi_modulators=mods,
        backend="cpp_standalone", cache_root=cache, seed=SEED,
    ) as trainer:  # fmt: skip
        for epoch in range(epochs):
            order = rng.permutation(len(x))
            train, test = trainer.run_epoch(x[order], y[order], xt, yt)
            rows.append((epoch, train.accuracy, test.accuracy, trainer.last_run_s))
            print(f"  spiking compiled xi={xi_source} epoch {epoch}: test {test.accuracy:.3f}",
                  flush=True)  # fmt: skip
    return rows


def rate_ib(data, hidden, epochs):
    from plastix.bridges.ib_training import IBTrainer, evaluate
    from plastix.bridges.rate_networks import RateMLP

    x, y, xt, yt = (torch.as_tensor(a) for a in data)
    x, xt = x.float(), xt.float()
    torch.manual_seed(SEED)
    net = RateMLP(x.shape[1], hidden, 10)
    trainer = IBTrainer(net)
    gen = torch.Generator().manual_seed(SEED)
    rows = []
    for epoch in range(epochs):
        stats = trainer.train_epoch(x, y, gen)
        acc = evaluate(net, xt, yt)[0]
        rows.append((epoch, evaluate(net, x, y)[0], acc, stats.samples / stats.seconds))
        print(f"  rate IB epoch {epoch}: test {acc:.3f}", flush=True)
    return rows


def speed(cache, n_loop: int, quick: bool):
    """Samples/s of each way to run the same 64-100-10 circuit on the same digits."""
    x, y, xt, yt = _data("digits", None, None)
    spec = _spec(64, (100,), 300.0, 5.0)
    w0 = init_weights(spec, np.random.default_rng(SEED), mean=0.7, spread=0.7)
    out = {}
    with ExactXiTrainer(spec, w0, XiSettings(), backend="numpy", seed=SEED) as t:
        r = t.train_epoch(x[:n_loop], y[:n_loop])
    out["runtime_loop"] = r.samples_per_s
    print(f"  runtime (numpy) per-sample loop: {r.samples_per_s:.2f} samples/s", flush=True)
    with ExactXiTrainer(
        spec, w0, XiSettings(), backend="cpp_standalone", cache_root=cache, seed=SEED
    ) as t:
        t.train_epoch(x[:2], y[:2])  # build and compile outside the timing
        r = t.train_epoch(x[:n_loop], y[:n_loop])
    out["cpp_loop"] = r.samples_per_s
    print(f"  cpp_standalone per-sample re-runs: {r.samples_per_s:.2f} samples/s", flush=True)
    n_epoch = 300 if quick else len(x)
    for plastic in (True, False):
        s = spec if plastic else spec.static()
        with CompiledEpochTrainer(
            s, w0, n_epoch, 0, backend="cpp_standalone", cache_root=cache, seed=SEED
        ) as t:
            t.build()
            start = time.perf_counter()
            t.run_epoch(x[:n_epoch], y[:n_epoch])
            total = time.perf_counter() - start
        key = "cpp_epoch" if plastic else "cpp_epoch_static"
        out[key] = n_epoch / total
        out[key + "_run_only"] = n_epoch / t.last_run_s
        msg = f"{out[key]:.1f} samples/s ({out[key + '_run_only']:.1f} run only)"
        print(f"  cpp_standalone one-run epoch, plastic={plastic}: {msg}", flush=True)
    with CompiledEpochTrainer(
        spec, w0, n_epoch, 0, xi_source="reservoir", xi_modulators=fit_modulators((100,)),
        backend="cpp_standalone", cache_root=cache, seed=SEED,
    ) as t:  # fmt: skip
        t.build()
        start = time.perf_counter()
        t.run_epoch(x[:n_epoch], y[:n_epoch])
        total = time.perf_counter() - start
    out["cpp_epoch_reservoir"] = n_epoch / total
    out["cpp_epoch_reservoir_run_only"] = n_epoch / t.last_run_s
    msg = f"{out['cpp_epoch_reservoir']:.1f} samples/s"
    print(f"  cpp_standalone one-run epoch with reservoir xi: {msg}", flush=True)
    out["n_epoch"] = n_epoch
    out["cuda"] = cuda_codegen(spec, w0)
    return out


def cuda_codegen(spec, w0) -> str:
    from plastix.circuits.backend import _import_brian2cuda

    try:
        _import_brian2cuda()
    except RuntimeError as err:
        return f"not run: {str(err).split('.')[0]}"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with CompiledEpochTrainer(
                spec, w0, 10, 0, backend="cuda_standalone", directory=tmp, codegen_only=True
            ) as t:
                t.build()
            return "code generated (no GPU here: not compiled/run)"
        except Exception as err:  # report, do not hide
            return f"code generation failed: {type(err).__name__}: {err}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="subsets and 1 epoch")
    parser.add_argument("--fashion", action="store_true", help="add a Fashion-MNIST subset")
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    epochs = 1 if args.quick else args.epochs
    cache = Path(__file__).resolve().parents[1] / ".brian_builds"
    started = time.perf_counter()
    sizes = (300, 150) if args.quick else (None, None)
    digits = _data("digits", *sizes)
    print("digits: spiking IB (exact / reservoir xi), readout-only, rate IB", flush=True)
    spk = spiking_exact(digits, (100,), epochs, cache)
    res = spiking_compiled(digits, (100,), epochs, cache, "reservoir")
    res_low = spiking_compiled(digits, (100,), epochs, cache, "reservoir", eta=30.0)
    ro = spiking_compiled(digits, (100,), epochs, cache, "none")
    rate = rate_ib(digits, (100,), epochs)
    fashion = None
    if args.fashion:
        fdata = _data("fashion-mnist", 1000, 300)
        print("fashion-mnist subset", flush=True)
        fashion = (
            spiking_exact(fdata, (100,), epochs, cache),
            rate_ib(fdata, (100,), epochs),
        )
    print("speed", flush=True)
    sp = speed(cache, 20 if args.quick else 60, args.quick)
    wall = time.perf_counter() - started

    cmd = "python benchmarks/bench_ib_spiking.py" + (" --quick" if args.quick else "")
    cmd += " --fashion" if args.fashion else ""
    gap = (rate[-1][2] - spk[-1][2]) * 100
    res_gap = (spk[-1][2] - max(res[-1][2], res_low[-1][2])) * 100
    ratio_loop = sp["cpp_epoch_reservoir"] / sp["runtime_loop"]
    overhead = sp["cpp_epoch_static_run_only"] / sp["cpp_epoch_run_only"]
    overhead_res = sp["cpp_epoch_static_run_only"] / sp["cpp_epoch_reservoir_run_only"]

    def row(name, rows):
        return f"| {name} | " + ", ".join(f"{r[2]:.3f}" for r in rows) + " |"

    def verdict(ok):
        return "met" if ok else "missed"

    n_tr = len(digits[0])
    lines = [
        "## ib-spiking: spiking IB rule in Brian2 (issue 5)",
        "",
        f"Command: `{cmd}` — {dt.date.today().isoformat()}, {platform.machine()}, "
        f"2 CPU cores shared with other jobs (timings are noisy); total {wall / 60:.1f} min. "
        "Spiking circuit: Poisson input (300 Hz for a white pixel), 100 LIF hidden, rate "
        "readout; 50 ms per sample (learning window 10-50 ms), dt 0.5 ms; IB rule eta 300/s, "
        "readout delta rule 5/s, B = 8, gamma 2, sigmas (0.5, 0.1, 1.0), LayerNorm site.",
        "",
        f"### Accuracy, digits ({n_tr} train / {len(digits[2])} test), 64-100-10, "
        f"{epochs} epoch(s), seed {SEED}",
        "",
        "| method | test accuracy per epoch |",
        "|---|---|",
        row("spiking IB, exact ξ (cpp_standalone, per-sample re-runs)", spk),
        row("spiking IB, reservoir ξ inside the simulation (one cpp_standalone run/epoch)", res),
        row("same, reservoir ξ with eta 30/s", res_low),
        row("spiking, hidden layer frozen, readout only (one run/epoch)", ro),
        row("rate IB rule (IBTrainer: ReLU+LayerNorm, AdamW 1e-4), same sizes", rate),
        "",
        f"- Spiking IB (exact ξ) vs rate IB: {gap:+.1f} points behind (goal: within 3) — "
        f"{verdict(gap <= 3)}.",
        f"- Reservoir ξ (better of the two rates) vs exact ξ: {res_gap:+.1f} points behind "
        f"(goal: within 2) — {verdict(res_gap <= 2)}. The modulator is the factorised, "
        "label-gated one of plastix.reservoirs.xi_modulator (200 units per neuron, fitted on "
        "synthetic streams; first-order features — window_products=False — since the "
        "second-order readout has no Brian2 form yet). Its Brian2 form reproduces the torch "
        "modulator to 1e-14 (tests/test_ib_spiking.py) and agrees with the exact ξ per sample "
        "(cosine about 0.9 in the loop), but its errors add up coherently over a stream: at "
        "the exact mode's rate the hidden rates run away (the 'eta 300/s' row); a 10x smaller "
        "rate slows but does not stop the drift.",
    ]
    if fashion is not None:
        fs, fr = fashion
        lines += [
            "",
            "### Fashion-MNIST subset (1000 train / 300 test), 784-100-10",
            "",
            f"spiking IB exact ξ: {fs[-1][2]:.3f}; rate IB: {fr[-1][2]:.3f} "
            f"({(fr[-1][2] - fs[-1][2]) * 100:+.1f} points).",
        ]
    lines += [
        "",
        "### Speed, digits 64-100-10, same circuit and samples",
        "",
        "| way of running | samples/s |",
        "|---|---|",
        f"| runtime (numpy), per-sample loop, exact ξ | {sp['runtime_loop']:.2f} |",
        f"| cpp_standalone, one build re-run per sample, exact ξ | {sp['cpp_loop']:.2f} |",
        f"| cpp_standalone, epoch of {sp['n_epoch']} samples in one run, reservoir ξ "
        f"| {sp['cpp_epoch_reservoir']:.1f} ({sp['cpp_epoch_reservoir_run_only']:.1f} run only) |",
        f"| same, plastic synapses without the reservoir (hidden ξ = 0) "
        f"| {sp['cpp_epoch']:.1f} ({sp['cpp_epoch_run_only']:.1f} run only) |",
        f"| same, static synapses | {sp['cpp_epoch_static']:.1f} "
        f"({sp['cpp_epoch_static_run_only']:.1f} run only) |",
        f"| cuda_standalone | {sp['cuda']} |",
        "",
        f"- Full epoch in one cpp_standalone run (reservoir ξ) vs the per-sample runtime loop "
        f"(exact ξ): {ratio_loop:.0f}× (goal ≥ 20×) — {verdict(ratio_loop >= 20)}.",
        f"- Plasticity overhead, static / plastic (run only): {overhead:.2f}× (goal ≤ 2×) — "
        f"{verdict(overhead <= 2)}; with the in-simulation reservoir as well: "
        f"{overhead_res:.2f}×.",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_record:
        record_section("ib-spiking", markdown)


if __name__ == "__main__":
    main()
