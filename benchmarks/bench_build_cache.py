"""Benchmark of the compiled-circuit cache: the main job (``plastix run ib-spiking``, digits,
cpp_standalone) with ``$PLASTIX_BUILD_CACHE=off`` (every run compiles its circuit from
nothing, the plain way) against the same run starting from the cache that earlier runs filled,
measured side by side in one session.

    python benchmarks/bench_build_cache.py [--repeats N] [--quick] [--no-record]

Each run is a fresh ``python -m plastix run`` process (seed 0), timed from start to exit. One
run first fills the cache; then each repeat runs both ways, alternating which goes first.
``--quick`` trains on 50 samples for one epoch (mostly build time) and records nothing.

Writes the section ``build-cache`` of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import count, record_section  # noqa: E402

from plastix.sims.results import read_result  # noqa: E402

QUICK = ["--set", "n_train=50", "--set", "n_test=50", "--set", "epochs=1"]


def timed_run(out: Path, cache: str, extra: list[str]) -> tuple[float, float]:
    """Run the main job once with ``$PLASTIX_BUILD_CACHE=cache``; returns (seconds, test
    accuracy)."""
    env = {**os.environ, "PLASTIX_BUILD_CACHE": cache}
    argv = [sys.executable, "-m", "plastix", "run", "ib-spiking", "--device", "cpp_standalone"]
    argv += ["--seed", "0", "--out", str(out), "--no-progress", *extra]
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    return seconds, float(read_result(out).summary["test_accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=count(), default=2, help="runs each way")
    parser.add_argument("--quick", action="store_true", help="50 samples, 1 epoch; no record")
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args()
    extra = QUICK if args.quick else []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="plastix_bench_cache_") as scratch:
        folder = Path(scratch)
        cache = str(folder / "cache")
        fill_s, fill_acc = timed_run(folder / "fill.h5", cache, extra)
        print(f"first run, empty cache: {fill_s:.1f} s, test accuracy {fill_acc:.3f}", flush=True)
        rows = []
        for k in range(args.repeats):
            order = ("off", "cached") if k % 2 == 0 else ("cached", "off")
            for way in order:
                seconds, accuracy = timed_run(
                    folder / f"{way}{k}.h5", "off" if way == "off" else cache, extra
                )
                rows.append((k, way, seconds, accuracy))
                print(f"repeat {k}: {way}: {seconds:.1f} s, test accuracy {accuracy:.3f}")
    off = [s for _, way, s, _ in rows if way == "off"]
    cached = [s for _, way, s, _ in rows if way == "cached"]
    accuracies = {round(a, 6) for *_, a in rows} | {round(fill_acc, 6)}
    ratio = statistics.median(cached) / statistics.median(off)
    cmd = "python benchmarks/bench_build_cache.py"
    cmd += f" --repeats {args.repeats}" if args.repeats != 2 else ""
    cmd += " --quick" if args.quick else ""
    job = "50 training and 50 test samples, 1 epoch" if args.quick else "3 epochs"
    lines = [
        "## Compiled-circuit cache: the main job with and without it",
        "",
        f"Command: `{cmd}` — {dt.date.today()}, {os.cpu_count()} CPU cores, shared; "
        f"wall {(time.perf_counter() - started) / 60:.1f} min.",
        "",
        "`plastix run ib-spiking --device cpp_standalone --seed 0` (digits, 64-100-10, "
        f"{job}), each run a fresh process timed from start to exit. *off*: "
        "`PLASTIX_BUILD_CACHE=off`, the circuit compiled from nothing; *cached*: the build "
        "folder starts as a copy of the project an earlier run compiled, and `make` "
        "recompiles only the generated files that differ. A first run filled the cache "
        f"({fill_s:.0f} s).",
        "",
        "| repeat | way | seconds | test accuracy |",
        "|---|---|---|---|",
        *(f"| {k} | {way} | {s:.1f} | {100 * a:.1f} % |" for k, way, s, a in rows),
        "",
        f"Median run: off {statistics.median(off):.1f} s, cached "
        f"{statistics.median(cached):.1f} s; ratio cached / off **{ratio:.2f}** "
        f"(saved {statistics.median(off) - statistics.median(cached):.0f} s per run). "
        "Every run gave the same test accuracy: "
        f"{'yes' if len(accuracies) == 1 else 'no'}.",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if not (args.quick or args.no_record):
        record_section("build-cache", markdown)


if __name__ == "__main__":
    main()
