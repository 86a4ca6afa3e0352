"""The ``plastix`` command line: list, info, run, show, plot, sweep.

Bad input (unknown experiment or key, wrong type, impossible value, missing file) is reported
before any work starts, with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from plastix.sims.config import ConfigError, config_fields, parse_set_options

if TYPE_CHECKING:
    from plastix.processes import LockHolder
    from plastix.sims.results import Result

EXIT_USAGE = 2


def _fail(message: str) -> int:
    print(f"plastix: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _cmd_list(args: argparse.Namespace) -> int:
    from plastix.sims.experiments import import_modules, load_experiments

    try:
        import_modules(args.imports or ())
    except ConfigError as exc:
        return _fail(str(exc))
    print("Experiments (config keys as KEY = default (type); pass none for a None value):")
    for name, spec in load_experiments().items():
        print(f"  {name:<16} {spec.description}")
        print(f"  {'':<16} devices: {', '.join(spec.devices)} (default {spec.default_device})")
        for f in config_fields(spec.config_cls):
            help_text = f"  {f.help}" if f.help else ""
            print(f"  {'':<18}{f.name} = {f.default!r}  ({f.type_name}){help_text}")
    print()
    try:
        from plastix.plasticity.rules import format_rules
    except ImportError:
        print("Rules: (rule registry not available)")
    else:
        print("Rules:")
        print(format_rules())
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import platform

    from plastix.sims.results import library_versions, plastix_version

    print(f"plastix {plastix_version()}  (Python {platform.python_version()})")
    for name, version in library_versions().items():
        print(f"  {name:<12} {version or 'not installed'}")
    print()
    try:
        from plastix.circuits.backend import format_backend_report
    except ImportError as exc:
        print(f"Backends: cannot be checked ({exc})")
    else:
        print(format_backend_report())
    print()
    print(_build_cache_line())
    return 0


def _build_cache_line() -> str:
    """Where compiled circuits are kept, and how much is kept there."""
    from plastix.circuits.backend import cached_projects
    from plastix.sims.experiments import BUILD_CACHE_ENV_VAR, build_cache_folder

    folder = build_cache_folder()
    if folder is None:
        return (
            f"Compiled circuits: not kept (${BUILD_CACHE_ENV_VAR}=off, or no writable cache "
            "folder); every standalone run compiles its circuit"
        )
    keys = folder.iterdir() if folder.is_dir() else ()
    projects = [p for key in keys for p in cached_projects(key)]
    size = sum(f.stat().st_size for p in projects for f in p.rglob("*") if f.is_file())
    return (
        f"Compiled circuits: kept in {folder} ({len(projects)} "
        f"project{'' if len(projects) == 1 else 's'}, {size / 2**20:.0f} MiB); "
        f"${BUILD_CACHE_ENV_VAR}=FOLDER moves them, ${BUILD_CACHE_ENV_VAR}=off stops keeping them"
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from plastix.sims.experiments import import_modules, prepare_run, run_experiment
    from plastix.sims.results import checkpoint_path, read_result

    try:
        import_modules(args.imports or ())
        overrides = parse_set_options(args.set)
        prepared = prepare_run(
            args.experiment,
            overrides=overrides,
            config_file=args.config,
            device=args.device,
            seed=args.seed,
            out=args.out,
            force=args.force,
            data_root=args.data_root,
        )
    except ConfigError as exc:
        return _fail(str(exc))
    out_path = prepared.out_path  # named here where --out is not given
    resuming = ", resuming from its checkpoint" if checkpoint_path(out_path).exists() else ""
    print(
        f"plastix: running {args.experiment} into {out_path}{resuming} "
        f"(plastix show {out_path} shows its progress)",
        file=sys.stderr,
    )
    try:
        path = run_experiment(
            args.experiment,
            overrides,
            config_file=args.config,
            device=args.device,
            seed=args.seed,
            out=out_path,
            data_root=args.data_root,
            progress=not args.no_progress,
            force=args.force,
        )
    except ConfigError as exc:  # another run is writing the same --out
        return _fail(str(exc))
    except KeyboardInterrupt:
        if not checkpoint_path(out_path).exists():
            resume = "no checkpoint was reached, so a new run starts from the beginning"
        elif args.out is None:
            resume = f"to resume from the last checkpoint, run it again with --out {out_path}"
        else:
            resume = "run the same command again to resume from the last checkpoint"
        print(f"plastix: interrupted; no result written; {resume}.", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - the run failed: show why, say where it is recorded
        traceback.print_exc()
        try:
            failed = read_result(out_path).status == "failed"
        except (OSError, ValueError):  # none there, or an unreadable file --force kept
            failed = False
        recorded = f"{out_path} records it (status failed)" if failed else "no result was written"
        print(
            f"plastix: the run failed; {recorded}. Fix the cause and run the same command to "
            "resume from the last checkpoint.",
            file=sys.stderr,
        )
        return 1
    result = read_result(path)
    print(f"wrote {path}")
    for key, value in result.summary.items():
        print(f"  {key}: {value}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from plastix.sims.results import read_result, run_lock_path

    if Path(args.file).is_dir():
        return _show_sweep(Path(args.file))
    holder = _holder_or_warn(run_lock_path(args.file))
    try:
        res = read_result(args.file)
    except FileNotFoundError as exc:
        return _show_unwritten(Path(args.file), holder, str(exc))
    except ValueError as exc:
        return _fail(str(exc))
    _print_result(res)
    if holder is not None:
        print(f"a run into this file is in progress ({holder}); it replaces this file when done")
    return 0


def _holder_or_warn(lock_file: Path) -> LockHolder | None:
    """Who holds ``lock_file``; None, with a warning on stderr, where it cannot be read."""
    from plastix.processes import LockFileDenied, lock_holder

    try:
        return lock_holder(lock_file)
    except LockFileDenied as exc:
        print(f"plastix: warning: {exc}; whether a run is writing is unknown", file=sys.stderr)
        return None


def _show_sweep(folder: Path) -> int:
    """``plastix show`` of a sweep folder: its runs' status as it is now."""
    from plastix.sims.sweep import LOCK_NAME, sweep_status

    try:
        summary = sweep_status(folder)
    except ConfigError as exc:
        return _fail(f"{exc}; name a result file (.h5) or a sweep's --out-dir")
    print(summary.describe())
    holder = _holder_or_warn(folder / LOCK_NAME)
    if holder is not None:
        print(f"a sweep is running into it ({holder})")
    return 0


def _show_unwritten(path: Path, holder: LockHolder | None, missing: str) -> int:
    """``plastix show`` of a result not written yet: a run writing it (status running) or an
    interrupted one (its checkpoint), with what they have logged up to their last checkpoint."""
    from plastix.sims.results import checkpoint_path, read_checkpoint, record_as_result

    try:
        saved = read_checkpoint(path)
    except ValueError as exc:
        return _fail(str(exc))
    if holder is None and saved is None:
        return _fail(missing)
    if holder is not None:
        status = f"running ({holder}); not written yet"
    else:
        status = (
            "interrupted; not written yet: run the same command, with --out "
            f"{path}, to resume from its checkpoint"
        )
    if saved is None:
        print(f"{path}: status={status}; no checkpoint reached yet")
        return 0
    _print_result(record_as_result(path, saved[0], "running" if holder else "interrupted"))
    print(f"status: {status}; shown: what it logged up to {checkpoint_path(path)}")
    return 0


def _print_result(res: Result) -> None:
    a = res.attrs
    print(
        f"{res.path}: {res.experiment}  status={res.status}  seed={a.get('seed')}  "
        f"device={a.get('device')}  created={a.get('created')}"
    )
    if "plastix_version" in a:
        print(f"  plastix {a.get('plastix_version')}  git {a.get('git_sha', 'unknown')}")
        print(f"  versions: {a.get('versions')}")
    print(f"  config: {json.dumps(res.config)}")
    if "error" in a:
        print("  error: " + str(a["error"]).strip().splitlines()[-1])
    print("summary:")
    for key, value in res.summary.items():
        print(f"  {key}: {value}")
    if res.metrics:
        print("metrics (first → last):")
        for name, values in res.metrics.items():
            if name == res.metric_axes.get(name):
                continue
            print(
                f"  {name} [{res.metric_axes[name]}, n={len(values)}]: "
                f"{values[0]:.4g} → {values[-1]:.4g}"
            )
    for group in ("arrays", "weights"):
        items = getattr(res, group)
        if items:
            print(f"{group}: " + ", ".join(f"{k}{tuple(v.shape)}" for k, v in items.items()))
    if res.spikes:
        print("spikes: " + ", ".join(f"{k} ({len(i)} spikes)" for k, (i, _) in res.spikes.items()))


def _cmd_plot(args: argparse.Namespace) -> int:
    from plastix.sims.experiments import can_write_under
    from plastix.sims.plots import plot_result
    from plastix.sims.results import read_result

    results = []
    for file in args.files:
        try:
            results.append(read_result(file))
        except (FileNotFoundError, ValueError) as exc:
            return _fail(str(exc))
    stems = [res.path.stem for res in results]
    repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
    if repeated:
        return _fail(
            f"several files are named {', '.join(repeated)}; their figures would overwrite each "
            "other: plot them one at a time, each with its own --out-dir"
        )
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        return _fail(f"--out-dir {str(out_dir)!r} exists and is not a folder")
    if not can_write_under(out_dir / "figure.png"):
        return _fail(f"--out-dir {str(out_dir)!r}: no folder can be made or written there")
    written = 0
    for res in results:
        paths = plot_result(res, out_dir, fmt=args.format)
        if not paths:
            print(f"{res.path}: nothing to plot (no metrics, spikes, weights or arrays)")
        for path in paths:
            print(f"wrote {path}")
        written += len(paths)
    return 0 if written else 1


def _cmd_sweep(args: argparse.Namespace) -> int:
    from plastix.sims.sweep import parse_grid, run_sweep

    try:
        grid = parse_grid(args.grid)
        overrides = parse_set_options(args.set)
        summary = run_sweep(
            args.experiment,
            grid,
            seeds=args.seeds,
            out_dir=Path(args.out_dir),
            base_overrides=overrides,
            config_file=args.config,
            device=args.device,
            scheduler=args.scheduler,
            n_workers=args.workers,
            data_root=args.data_root,
            imports=args.imports or (),
        )
    except ConfigError as exc:
        return _fail(str(exc))
    print(summary.describe())
    return 0 if summary.n_failed == 0 else 1


def _add_import_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        metavar="MODULE",
        help="import a module (from this folder or the Python path) that registers your own "
        "experiments; repeatable",
    )


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML file of config keys")
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config key; repeatable"
    )
    parser.add_argument(
        "--device", help="cpu/cuda for torch experiments, a backend for Brian2 ones"
    )
    parser.add_argument("--data-root", help="folder with dataset files (else $PLASTIX_DATA)")
    _add_import_option(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plastix",
        description="Biologically plausible learning in spiking networks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    listing = sub.add_parser("list", help="experiments (with config keys) and plasticity rules")
    _add_import_option(listing)
    sub.add_parser("info", help="versions and which backends work here")

    run = sub.add_parser("run", help="run one experiment into an HDF5 result file")
    run.add_argument("experiment")
    _add_config_options(run)
    run.add_argument("--seed", type=int, default=0, help="0 to 2**32 - 1 (default 0)")
    run.add_argument(
        "--out", help="result file (.h5); default plastix_runs/<name>_seed<N>_<time>.h5"
    )
    run.add_argument("--force", action="store_true", help="replace an existing result file")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")

    show = sub.add_parser(
        "show",
        help="print a result file's attributes, summary and metrics (for a run in progress: "
        "what it logged up to its last checkpoint), or the status of each run of a sweep folder",
    )
    show.add_argument("file", metavar="FILE.h5|OUT_DIR")

    plot = sub.add_parser("plot", help="draw the figures a result file supports")
    plot.add_argument("files", nargs="+")
    plot.add_argument("--out-dir", default="plots", help="folder for the figures (default plots)")
    plot.add_argument("--format", choices=("png", "pdf"), default="png")

    sweep = sub.add_parser("sweep", help="run a grid of configs × seeds on Dask")
    sweep.add_argument("experiment")
    sweep.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2",
        default=[],
        help="values of one config key to sweep (';' between values that are lists, e.g. "
        "'hidden=128,64;256'); repeat for a product grid",
    )
    _add_config_options(sweep)
    sweep.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per grid point (1)")
    sweep.add_argument(
        "--out-dir",
        default="plastix_sweeps/sweep",
        help="sweep folder: runs/*.h5 and index.json (default plastix_sweeps/sweep)",
    )
    sweep.add_argument("--scheduler", help="address of a running Dask scheduler")
    sweep.add_argument("--workers", type=int, default=2, help="LocalCluster workers (2)")
    return parser


_COMMANDS = {
    "list": _cmd_list,
    "info": _cmd_info,
    "run": _cmd_run,
    "show": _cmd_show,
    "plot": _cmd_plot,
    "sweep": _cmd_sweep,
}


def main(argv: list[str] | None = None) -> int:
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # A background job of a non-interactive shell ignores SIGINT. Importing Brian2 replaces
        # that with a handler which then calls SIG_IGN as a function and fails (Brian2 2.9-2.11):
        # import it now and keep ignoring SIGINT, as the shell asked.
        import brian2  # noqa: F401

        signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = build_parser().parse_args(argv)
    return _COMMANDS[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
