"""Benchmark of the spiking IB circuit (issue 5): accuracy against the rate IB rule, and speed
of the ways to run it, measured side by side in one run.

    python benchmarks/bench_ib_spiking.py --part accuracy|speed [--quick] [--fashion] [--seeds N]
        [--no-record]

Accuracy (digits, 64-100-10; ``--fashion`` adds a Fashion-MNIST subset, 784-100-10), over
``--seeds`` seeds: the spiking IB rule with exact ξ (cpp_standalone, one build re-run per
sample) and with reservoir ξ inside the simulation (kernel-memory and factorised
ξ-modulators, one run per epoch), against the rate IB rule on the same architecture
(:class:`plastix.bridges.ib_training.IBTrainer`, its reference settings), and the spiking
circuit with the hidden layer frozen (readout only) to show what the IB rule adds.

Speed (same circuit, same samples): the per-sample loop on runtime (numpy) and on
cpp_standalone (re-runs), a whole epoch as one compiled cpp_standalone run with each
modulator, the same without a modulator, and with static synapses (plasticity overhead).
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
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import count, record_section  # noqa: E402

from plastix.circuits.ib_network import (  # noqa: E402
    CompiledEpochTrainer,
    ExactXiTrainer,
    IBCircuitSpec,
    XiSettings,
    init_weights,
)
from plastix.sims.datasets import load_dataset  # noqa: E402
from plastix.sims.exp_ib_spiking import IBSpikingConfig, circuit_spec  # noqa: E402

SEED = 0
#: The ib-spiking experiment's digits defaults, which every digits circuit here uses.
DEFAULTS = IBSpikingConfig().resolved()
#: The factorised modulator's IB rate: a tenth of the default.
FACTORISED_ETA = DEFAULTS.eta / 10
#: The experiment's Fashion-MNIST defaults (stronger initial weights, slower readout), chosen
#: on another subset (CLI ``--seed 7``) than the one scored here (RESULTS.md section
#: ib-spiking-tuning).
FASHION = IBSpikingConfig(dataset="fashion-mnist").resolved()
#: Fashion-MNIST subset (train, test): 1000 test images put one standard error of an
#: accuracy near 65 % at 1.5 points (300 images: 2.7, as large as the goals' margins).
FASHION_SIZES = (1000, 1000)


def _spec(
    n_input: int, hidden: tuple[int, ...], eta: float | None = None, cfg=DEFAULTS
) -> IBCircuitSpec:
    """The circuit of the experiment config ``cfg`` (``eta`` overrides the IB rate)."""
    cfg = replace(cfg, hidden=hidden)
    if eta is not None:
        cfg = replace(cfg, eta=eta)
    return circuit_spec(cfg, n_input, 10)


def _w_init(cfg) -> dict[str, float]:
    """The config's initial hidden weights (mean and spread, mV)."""
    return {"mean": cfg.w_init_mean, "spread": cfg.w_init_spread}


def _data(name: str, n_train: int | None, n_test: int | None):
    ds = load_dataset(name, n_train=n_train, n_test=n_test, seed=SEED).flat()
    return (
        np.asarray(ds.x_train, float),
        np.asarray(ds.y_train),
        np.asarray(ds.x_test, float),
        np.asarray(ds.y_test),
    )


def spiking_exact(data, hidden, epochs, cache, seed=SEED, cfg=DEFAULTS):
    x, y, xt, yt = data
    spec = _spec(x.shape[1], hidden, cfg=cfg)
    rng = np.random.default_rng(seed)
    w0 = init_weights(spec, rng, **_w_init(cfg))
    rows = []
    with ExactXiTrainer(
        spec, w0, XiSettings(), backend="cpp_standalone", cache_root=cache, seed=seed
    ) as trainer:
        for epoch in range(epochs):
            order = rng.permutation(len(x))
            train = trainer.train_epoch(x[order], y[order])
            test = trainer.evaluate(xt, yt)
            rows.append((epoch, train.accuracy, test.accuracy, train.samples_per_s))
            msg = f"train {train.accuracy:.3f} test {test.accuracy:.3f}"
            print(f"  spiking exact-xi epoch {epoch}: {msg}", flush=True)
    return rows


def fit_modulators(hidden, n_input, kind="kernel-memory", n_classes=10, seed=SEED, cfg=DEFAULTS):
    """One ξ-modulator per hidden layer, fitted a priori on synthetic streams (the settings
    of the ib-spiking experiment: kernel-memory keeps all input coordinates up to 256,
    factorised has 200 reservoir units per neuron)."""
    from plastix.sims.exp_ib_spiking import fit_modulator

    cfg = replace(cfg, modulator=kind)
    return [fit_modulator(cfg, n, n_classes, n_input, seed=seed + k) for k, n in enumerate(hidden)]


def spiking_compiled(
    data, hidden, epochs, cache, xi_source, eta=None, seed=SEED, modulator="kernel-memory",
    cfg=DEFAULTS,
):  # fmt: skip
    """Compiled epochs (one cpp_standalone run each): reservoir ξ, or hidden frozen."""
    x, y, xt, yt = data
    spec = _spec(x.shape[1], hidden, eta if xi_source == "reservoir" else 0.0, cfg)
    rng = np.random.default_rng(seed)
    w0 = init_weights(spec, rng, **_w_init(cfg))
    mods = None
    if xi_source == "reservoir":
        mods = fit_modulators(hidden, x.shape[1], modulator, seed=seed, cfg=cfg)
    rows = []
    with CompiledEpochTrainer(
        spec, w0, len(x), len(xt), xi_source=xi_source, xi_modulators=mods,
        backend="cpp_standalone", cache_root=cache, seed=seed,
    ) as trainer:  # fmt: skip
        for epoch in range(epochs):
            order = rng.permutation(len(x))
            train, test = trainer.run_epoch(x[order], y[order], xt, yt)
            rows.append((epoch, train.accuracy, test.accuracy, trainer.last_run_s))
            print(f"  spiking compiled xi={xi_source} ({modulator}) epoch {epoch}: test "
                  f"{test.accuracy:.3f}", flush=True)  # fmt: skip
    return rows


def rate_ib(data, hidden, epochs, seed=SEED):
    from plastix.bridges.ib_training import IBTrainer, evaluate
    from plastix.bridges.rate_networks import RateMLP

    x, y, xt, yt = (torch.as_tensor(a) for a in data)
    x, xt = x.float(), xt.float()
    torch.manual_seed(seed)
    net = RateMLP(x.shape[1], hidden, 10)
    trainer = IBTrainer(net)
    gen = torch.Generator().manual_seed(seed)
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
    spec = _spec(64, (100,))
    w0 = init_weights(spec, np.random.default_rng(SEED), **_w_init(DEFAULTS))
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
    for kind in ("kernel-memory", "factorised"):
        with CompiledEpochTrainer(
            spec, w0, n_epoch, 0, xi_source="reservoir",
            xi_modulators=fit_modulators((100,), 64, kind),
            backend="cpp_standalone", cache_root=cache, seed=SEED,
        ) as t:  # fmt: skip
            t.build()
            start = time.perf_counter()
            t.run_epoch(x[:n_epoch], y[:n_epoch])
            total = time.perf_counter() - start
        out[f"reservoir_{kind}"] = n_epoch / total
        out[f"reservoir_{kind}_run_only"] = n_epoch / t.last_run_s
        msg = f"{out[f'reservoir_{kind}']:.1f} samples/s"
        print(f"  cpp_standalone one-run epoch with reservoir xi ({kind}): {msg}", flush=True)
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


def _final(rows) -> float:
    return 100 * rows[-1][2]


def _mean_sd(values) -> str:
    values = np.asarray(values, float)
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.1f} ± {sd:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="subsets, 1 epoch, 1 seed; records nothing"
    )
    parser.add_argument("--fashion", action="store_true", help="add a Fashion-MNIST subset")
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--epochs", type=count(), default=3)
    parser.add_argument("--seeds", type=count(), default=3, help="seeds for the accuracy tables")
    parser.add_argument(
        "--part",
        choices=("accuracy", "speed"),
        required=True,
        help="accuracy (section ib-spiking) or speed (section ib-spiking-speed; run it on a "
        "quiet machine)",
    )
    args = parser.parse_args()
    args.no_record = args.no_record or args.quick  # a smoke run records nothing
    if args.part == "speed":
        speed_part(args)
    else:
        accuracy_part(args)


def accuracy_part(args) -> None:
    epochs = 1 if args.quick else args.epochs
    seeds = list(range(1 if args.quick else args.seeds))
    cache = Path(__file__).resolve().parents[1] / ".brian_builds"
    started = time.perf_counter()
    sizes = (300, 150) if args.quick else (None, None)
    digits = _data("digits", *sizes)
    methods = {
        "exact": "spiking IB, exact ξ (cpp_standalone, per-sample re-runs)",
        "kernel": "spiking IB, reservoir ξ inside the simulation: kernel-memory modulator "
        "(one cpp_standalone run per epoch)",
        "factorised": f"same, factorised modulator, eta {FACTORISED_ETA:g}/s (at the default "
        "rate its coherent errors make the hidden rates run away)",
        "readout": "spiking, hidden layer frozen, readout only (one run per epoch)",
        "rate": "rate IB rule (IBTrainer: ReLU+LayerNorm, AdamW 1e-4), same sizes",
    }

    def run_all(data, which, cfg=DEFAULTS):
        runs = {key: [] for key in which}
        for seed in seeds:
            print(f"seed {seed}", flush=True)
            for key in which:
                if key == "exact":
                    rows = spiking_exact(data, (100,), epochs, cache, seed=seed, cfg=cfg)
                elif key == "kernel":
                    rows = spiking_compiled(
                        data, (100,), epochs, cache, "reservoir", seed=seed, cfg=cfg
                    )
                elif key == "factorised":
                    rows = spiking_compiled(
                        data, (100,), epochs, cache, "reservoir", eta=FACTORISED_ETA, seed=seed,
                        modulator="factorised", cfg=cfg,
                    )  # fmt: skip
                elif key == "readout":
                    rows = spiking_compiled(data, (100,), epochs, cache, "none", seed=seed, cfg=cfg)
                else:
                    rows = rate_ib(data, (100,), epochs, seed=seed)
                runs[key].append(rows)
        return runs

    print("digits", flush=True)
    dig = run_all(digits, list(methods))
    fashion = None
    if args.fashion:
        fdata = _data("fashion-mnist", *((300, 150) if args.quick else FASHION_SIZES))
        print("fashion-mnist subset", flush=True)
        fashion = run_all(fdata, ["exact", "kernel", "readout", "rate"], FASHION)
    wall = time.perf_counter() - started

    cmd = "python benchmarks/bench_ib_spiking.py --part accuracy"
    cmd += (" --quick" if args.quick else "") + (" --fashion" if args.fashion else "")
    cmd += "" if args.quick or args.seeds == 3 else f" --seeds {args.seeds}"

    def verdict(ok):
        return "met" if ok else "missed"

    def table(runs):
        out = ["| method | final test accuracy %, mean ± sd | per seed | per epoch (seed 0) |",
               "|---|---|---|---|"]  # fmt: skip
        for key, rows in runs.items():
            finals = [_final(r) for r in rows]
            curve = ", ".join(f"{100 * r[2]:.1f}" for r in rows[0])
            per_seed = " / ".join(f"{f:.1f}" for f in finals)
            out.append(f"| {methods[key]} | {_mean_sd(finals)} | {per_seed} | {curve} |")
        return out

    def gap(runs, ahead, behind):
        diffs = [_final(a) - _final(b) for a, b in zip(runs[ahead], runs[behind], strict=True)]
        return float(np.mean(diffs)), " / ".join(f"{d:+.1f}" for d in diffs)

    def goal_lines(runs):
        rate_gap, rate_per = gap(runs, "rate", "exact")
        res_gap, res_per = gap(runs, "exact", "kernel")
        return [
            f"- Spiking IB (exact ξ) vs rate IB: behind by {rate_gap:+.1f} points on average "
            f"(per seed {rate_per}; negative: ahead; goal: within 3) — "
            f"{verdict(rate_gap <= 3)}.",
            f"- Reservoir ξ (kernel-memory) vs exact ξ: behind by {res_gap:+.1f} points on "
            f"average (per seed {res_per}; negative: ahead; goal: within 2) — "
            f"{verdict(res_gap <= 2)}.",
        ]

    n_tr = len(digits[0])
    cfg = DEFAULTS
    lines = [
        "## ib-spiking: spiking IB rule in Brian2 (issue 5)",
        "",
        f"Command: `{cmd}` — {dt.date.today().isoformat()}, {platform.machine()}, "
        f"2 CPU cores shared with other jobs (timings are noisy); total {wall / 60:.1f} min. "
        f"Spiking circuit (the ib-spiking experiment's defaults): Poisson input "
        f"({cfg.input_rate_hz:g} Hz for a white pixel), 100 LIF hidden, rate readout; "
        f"{cfg.presentation_ms:g} ms per sample (learning window {cfg.settle_ms:g}-"
        f"{cfg.presentation_ms:g} ms), dt {cfg.dt_ms:g} ms; IB rule eta {cfg.eta:g}/s, readout "
        f"delta rule {cfg.readout_eta:g}/s, B = {cfg.window}, gamma {cfg.gamma:g}, sigmas "
        f"{tuple(cfg.sigmas)}, LayerNorm site. "
        f"Seeds {seeds} (initial weights, sample order, spikes; the same data).",
        "",
        "Modulators (fitted a priori on synthetic streams, no dataset): *kernel-memory* — a "
        "delay-line working-memory reservoir (Rodan & Tiňo 2011) whose ridge readout recalls "
        "the last B - 1 coded samples (the input coordinates, all of them up to 256, else a "
        "256-dimensional random projection; labels; the layer's normalised "
        "rates) and kernel units that compute the row-centred ξ "
        "(plastix.circuits.kernel_memory; its Brian2 form reproduces the torch modulator, "
        "tests/test_kernel_memory.py); *factorised* — one 200-unit reservoir per neuron with a "
        "label-gated readout, which sees neither the input nor the other neurons.",
        "",
        f"### Accuracy, digits ({n_tr} train / {len(digits[2])} test), 64-100-10, "
        f"{epochs} epoch(s)",
        "",
        *table(dig),
        "",
        *goal_lines(dig),
    ]
    if fashion is not None:
        lines += [
            "",
            f"### Fashion-MNIST subset ({len(fdata[0])} train / {len(fdata[2])} test), "
            f"784-100-10, {epochs} epoch(s)",
            "",
            f"Spiking circuits as above except initial hidden weights of mean "
            f"{FASHION.w_init_mean:g} mV (digits {DEFAULTS.w_init_mean:g}) and readout delta rule "
            f"{FASHION.readout_eta:g}/s (digits {DEFAULTS.readout_eta:g}), the experiment's "
            "Fashion-MNIST defaults (`plastix run ib-spiking --set dataset=fashion-mnist`), "
            "chosen on another subset (section ib-spiking-tuning).",
            "",
            *table(fashion),
            "",
            *goal_lines(fashion),
        ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_record:
        record_section("ib-spiking", markdown)


def speed_part(args) -> None:
    cache = Path(__file__).resolve().parents[1] / ".brian_builds"
    started = time.perf_counter()
    sp = speed(cache, 20 if args.quick else 60, args.quick)
    wall = time.perf_counter() - started
    cmd = "python benchmarks/bench_ib_spiking.py --part speed" + (" --quick" if args.quick else "")

    def verdict(ok):
        return "met" if ok else "missed"

    lines = [
        "## ib-spiking speed: ways of running the spiking IB circuit (issue 5)",
        "",
        f"Command: `{cmd}` — {dt.date.today().isoformat()}, {platform.machine()}, 2 CPU "
        f"cores; total {wall / 60:.1f} min. Circuit and settings of the ib-spiking section.",
    ]
    ratio_loop = sp["reservoir_kernel-memory"] / sp["runtime_loop"]
    overhead = sp["cpp_epoch_static_run_only"] / sp["cpp_epoch_run_only"]
    lines += [
        "",
        "Digits 64-100-10, same circuit and samples:",
        "",
        "| way of running | samples/s |",
        "|---|---|",
        f"| runtime (numpy), per-sample loop, exact ξ | {sp['runtime_loop']:.2f} |",
        f"| cpp_standalone, one build re-run per sample, exact ξ | {sp['cpp_loop']:.2f} |",
    ]
    for kind in ("kernel-memory", "factorised"):
        lines.append(
            f"| cpp_standalone, epoch of {sp['n_epoch']} samples in one run, reservoir ξ "
            f"({kind}) | {sp[f'reservoir_{kind}']:.1f} "
            f"({sp[f'reservoir_{kind}_run_only']:.1f} run only) |"
        )
    lines += [
        f"| same, plastic synapses without a modulator (hidden ξ = 0) "
        f"| {sp['cpp_epoch']:.1f} ({sp['cpp_epoch_run_only']:.1f} run only) |",
        f"| same, static synapses | {sp['cpp_epoch_static']:.1f} "
        f"({sp['cpp_epoch_static_run_only']:.1f} run only) |",
        f"| cuda_standalone | {sp['cuda']} |",
        "",
        f"- Full epoch in one cpp_standalone run (kernel-memory reservoir ξ) vs the per-sample "
        f"runtime loop (exact ξ): {ratio_loop:.0f}× (goal ≥ 20×) — {verdict(ratio_loop >= 20)}.",
        f"- Plasticity overhead, static / plastic (run only): {overhead:.2f}× (goal ≤ 2×) — "
        f"{verdict(overhead <= 2)}; with the kernel-memory modulator as well: "
        f"{sp['cpp_epoch_static_run_only'] / sp['reservoir_kernel-memory_run_only']:.2f}×.",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_record:
        record_section("ib-spiking-speed", markdown)


if __name__ == "__main__":
    main()
