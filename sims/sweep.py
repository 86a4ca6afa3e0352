"""Sweeps: the product of a config grid and seeds, run as independent runs on Dask distributed.

Every run writes its own HDF5 result under ``<out_dir>/runs/``; ``<out_dir>/index.json`` lists
them with their overrides, seed and status. A run that fails is recorded as failed and the sweep
goes on. Running the same sweep again skips complete runs, re-runs failed ones and resumes
interrupted ones from their checkpoints. A worker that dies mid-run has its task rescheduled by
Dask, and the new attempt resumes from the run's last checkpoint. A sweep holds
``<out_dir>/sweep.lock`` while it runs, so a second sweep into the folder is refused;
:func:`sweep_status` (``plastix show OUT_DIR``) gives each run's status meanwhile.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plastix.processes import (
    LockFileDenied,
    LockHeld,
    LockHolder,
    hold_lock_file,
    lock_holder,
)
from plastix.scalars import is_integer, is_real
from plastix.sims.config import ConfigError, config_to_dict, read_config_file
from plastix.sims.results import atomic_path, run_differences

INDEX_NAME = "index.json"
#: Held by the sweep running into a folder (it names the sweep's host and process).
LOCK_NAME = "sweep.lock"


def parse_grid(items: Sequence[str] | None) -> dict[str, list[str]]:
    """``["B=2,4,8", "lr=0.1,0.01"]`` → ``{"B": ["2", "4", "8"], "lr": ["0.1", "0.01"]}``.

    Values are separated by commas, or by semicolons where a value is itself a list:
    ``"hidden=128,64;256"`` → ``{"hidden": ["128,64", "256"]}``.
    """
    grid: dict[str, list[str]] = {}
    for item in items or []:
        key, sep, values = item.partition("=")
        key = key.strip()
        separator = ";" if ";" in values else ","
        choices = [v.strip() for v in values.split(separator) if v.strip()]
        if not sep or not key or not choices:
            raise ConfigError(
                f"--grid {item!r}: expected key=v1,v2,..., e.g. --grid B=2,4,8 (list-valued "
                "keys: values separated by ';', e.g. --grid 'hidden=128,64;256')"
            )
        if key in grid:
            raise ConfigError(f"--grid: key {key!r} given twice; list all its values once")
        grid[key] = choices
    return grid


def _plain_number(value: Any) -> Any:
    """A numpy number (a grid from ``np.arange``, say) as a Python int or float, as it goes
    into run ids and ``index.json``; any other value unchanged."""
    if is_integer(value):
        return int(value)
    if is_real(value):
        return float(value)
    return value


def _run_id(overrides: Mapping[str, Any], seed: int) -> str:
    parts = [f"{k}={v}" for k, v in sorted(overrides.items())] + [f"seed={seed}"]
    text = re.sub(r"[^A-Za-z0-9.=_-]+", "_", "__".join(parts))
    if len(text) > 120:
        digest = hashlib.sha1(text.encode()).hexdigest()[:12]
        text = f"{text[:100]}__{digest}"
    return text


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    overrides: dict[str, Any]
    seed: int
    path: str


@dataclass
class SweepSummary:
    out_dir: Path
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return sum(r["status"] == "failed" for r in self.runs)

    def describe(self) -> str:
        counts: dict[str, int] = {}
        for r in self.runs:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        lines = [f"sweep in {self.out_dir}: {len(self.runs)} runs ({parts})"]
        for r in self.runs:
            if r["status"] in ("failed", "running", "interrupted", "unknown"):
                detail = r.get("error") or r.get("holder")
                lines.append(f"  {r['status']}: {r['run_id']}" + (f": {detail}" if detail else ""))
        lines.append(f"index: {self.out_dir / INDEX_NAME}")
        return "\n".join(lines)


def sweep_status(out_dir: str | Path) -> SweepSummary:
    """The runs of the sweep in ``out_dir`` as they are now: ``complete`` or ``failed`` (its
    result file says which), ``running`` (a process holds its lock; ``holder`` names it),
    ``interrupted`` (a checkpoint and no process), ``unknown`` (its lock file cannot be read:
    another user's), else ``pending``."""
    from plastix.sims.results import checkpoint_path, read_result, run_lock_path

    index = read_index(out_dir)
    if index is None:
        raise ConfigError(f"{str(out_dir)!r} has no {INDEX_NAME}: not a plastix sweep folder")
    runs = []
    for entry in index["runs"]:
        path = Path(entry["path"])
        entry = {k: v for k, v in entry.items() if k != "error"}
        try:
            holder = lock_holder(run_lock_path(path))
        except LockFileDenied as exc:
            entry |= {"status": "unknown", "error": str(exc)}
            runs.append(entry)
            continue
        if holder is not None:
            entry |= {"status": "running", "holder": str(holder)}
        elif path.is_file():
            try:
                result = read_result(path)
            except (ValueError, OSError) as exc:
                entry |= {"status": "failed", "error": f"unreadable result: {exc}"}
            else:
                entry["status"] = result.status
                if "error" in result.attrs:
                    entry["error"] = str(result.attrs["error"]).strip().splitlines()[-1]
        elif checkpoint_path(path).exists():
            entry["status"] = "interrupted"
        else:
            entry["status"] = "pending"
        runs.append(entry)
    return SweepSummary(Path(out_dir), runs)


def plan_sweep(
    experiment: str,
    grid: Mapping[str, Sequence[Any]],
    *,
    seeds: int | Sequence[int] = 1,
    out_dir: Path,
    base_overrides: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    device: str | None = None,
    imports: Sequence[str] = (),
    data_root: str | None = None,
) -> list[PlannedRun]:
    """Expand the grid × seeds and validate every config before any run starts."""
    from plastix.sims.experiments import (
        can_write_under,
        get_experiment,
        import_modules,
        prepare_run,
    )

    import_modules(imports)
    get_experiment(experiment)  # an unknown experiment is refused before anything else
    if isinstance(seeds, bool):
        seed_list: list[Any] = []  # refused below, as any count that is not an int
    elif is_integer(seeds):
        seed_list = list(range(seeds))
    else:
        seed_list = list(seeds)
    if not seed_list or any(not is_integer(s) or s < 0 for s in seed_list):
        raise ConfigError(f"--seeds must be a positive count, got {seeds!r}")
    seed_list = [int(s) for s in seed_list]
    if len(set(seed_list)) != len(seed_list):
        raise ConfigError(
            f"seeds {seed_list} name a seed twice: each would write the same run file; "
            "give each seed once"
        )
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ConfigError(f"--out-dir {str(out_dir)!r} exists and is not a folder")
    if not can_write_under(Path(out_dir) / "runs" / "run.h5"):
        raise ConfigError(
            f"--out-dir {str(out_dir)!r}: no folder can be created there (a parent is not a "
            "folder, or is not writable); choose another --out-dir"
        )
    try:
        holder = lock_holder(Path(out_dir) / LOCK_NAME)
    except LockFileDenied as exc:
        raise _sweep_lock_denied(out_dir, exc) from None
    if holder is not None and not holder.is_this_process:
        raise _another_sweep_runs(out_dir, holder)
    earlier = read_index(out_dir)
    if earlier is not None and earlier["experiment"] != experiment:
        raise ConfigError(
            f"--out-dir {str(out_dir)!r} holds a sweep of experiment {earlier['experiment']!r}, "
            f"not {experiment!r}; use another --out-dir"
        )
    both = sorted(set(grid) & set(base_overrides or {}))
    if both:
        raise ConfigError(
            f"--set and --grid both give {', '.join(both)}; give each key in one of them"
        )
    base = dict(read_config_file(config_file)) if config_file else {}
    base.update(base_overrides or {})
    keys = list(grid)
    ids: dict[str, dict[str, Any]] = {}
    runs_dir = Path(out_dir).resolve() / "runs"  # absolute: workers may run elsewhere
    planned = []
    seen: dict[str, dict[str, Any]] = {}
    for combo in itertools.product(*(grid[k] for k in keys)):
        overrides = {k: _plain_number(v) for k, v in zip(keys, combo, strict=True)}
        # config, device, dataset (files and sizes) and output checks for every grid point
        cfg = prepare_run(
            experiment,
            overrides={**base, **overrides},
            device=device,
            seed=seed_list[0],
            out=runs_dir / "_check_.h5",
            data_root=data_root,
        ).cfg
        same = seen.setdefault(json.dumps(config_to_dict(cfg), sort_keys=True), overrides)
        if same is not overrides:
            raise ConfigError(
                f"--grid: {overrides} and {same} are the same config; list each value once"
            )
        other = ids.setdefault(_run_id(overrides, 0), overrides)
        if other is not overrides:
            raise ConfigError(
                f"--grid: {overrides} and {other} give runs the same file name "
                f"({_run_id(overrides, 0)}); use values that differ in letters or digits"
            )
        for seed in seed_list:
            run_id = _run_id(overrides, seed)
            path = runs_dir / f"{run_id}.h5"
            _refuse_another_sweeps_files(path, (experiment, config_to_dict(cfg), seed), out_dir)
            planned.append(PlannedRun(run_id, {**base, **overrides}, seed, str(path)))
    return planned


def _refuse_another_sweeps_files(
    path: Path, run: tuple[str, dict[str, Any], int], out_dir: str | Path
) -> None:
    """A run's result or checkpoint left by a different config (another sweep into the same
    folder, e.g. with other ``--set`` values) is never reused or replaced."""
    from plastix.sims.results import read_checkpoint, read_result

    there = None
    if path.is_file():
        try:
            there = read_result(path).identity
        except (ValueError, OSError):
            return  # unreadable: an earlier attempt that died while writing; it is re-run
    else:
        try:
            saved = read_checkpoint(path)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if saved is not None:
            there = saved[0].identity
    differences = run_differences(there, run) if there is not None else []
    if differences:
        raise ConfigError(
            f"--out-dir {str(out_dir)!r} already holds {path.name} from a different sweep "
            f"({'; '.join(differences)}); use another --out-dir (or delete that folder)"
        )


def _is_complete(path: str | Path) -> bool:
    from plastix.sims.results import read_result

    try:
        return read_result(path).status == "complete"
    except (ValueError, OSError):
        return False


def read_index(out_dir: str | Path) -> dict[str, Any] | None:
    """The ``index.json`` of the sweep in ``out_dir`` (None where there is none), run paths
    absolute; a file that is not a sweep index is refused with a ConfigError."""
    path = Path(out_dir) / INDEX_NAME
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text())
        runs = [{**r, "path": str(Path(out_dir).resolve() / r["path"])} for r in index["runs"]]
        return {"experiment": index["experiment"], "runs": runs}
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"--out-dir {str(out_dir)!r}: {INDEX_NAME} is not a plastix sweep index "
            f"({type(exc).__name__}: {exc}); use another --out-dir"
        ) from None


def _write_index(out_dir: Path, experiment: str, runs: list[dict[str, Any]]) -> None:
    """``index.json``: the experiment and one entry per run, its path relative to ``out_dir``."""
    relative = [{**r, "path": str(Path(r["path"]).relative_to(out_dir.resolve()))} for r in runs]
    with atomic_path(out_dir / INDEX_NAME) as tmp, open(tmp, "w") as fh:
        json.dump({"experiment": experiment, "runs": relative}, fh, indent=1)


def run_one(
    experiment: str,
    run: PlannedRun,
    device: str | None,
    data_root: str | None,
    imports: Sequence[str] = (),
) -> dict[str, Any]:
    """Run (or resume) one planned run; never raises for a failure of the run itself."""
    from plastix.sims.experiments import import_modules, run_experiment

    import_modules(imports)
    path = Path(run.path)
    entry = {"run_id": run.run_id, "overrides": run.overrides, "seed": run.seed, "path": run.path}
    if path.exists():
        if _is_complete(path):
            return {**entry, "status": "complete", "skipped": True}
        path.unlink()  # a failed or unreadable earlier attempt is replaced
    try:
        run_experiment(
            experiment, run.overrides, device=device, seed=run.seed, out=path, data_root=data_root
        )
    except Exception as exc:  # noqa: BLE001 - the sweep records any run failure and goes on
        return {**entry, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    return {**entry, "status": "complete", "skipped": False}


def run_sweep(
    experiment: str,
    grid: Mapping[str, Sequence[Any]],
    *,
    seeds: int | Sequence[int] = 1,
    out_dir: str | Path,
    base_overrides: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    device: str | None = None,
    scheduler: str | None = None,
    n_workers: int = 2,
    data_root: str | None = None,
    imports: Sequence[str] = (),
) -> SweepSummary:
    """Run the sweep on a Dask cluster (a LocalCluster unless ``scheduler`` names one)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError(
            "plastix sweep needs Dask distributed; install it with pip install 'plastix[dask]'"
        ) from None

    out_dir = Path(out_dir)
    if n_workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {n_workers}")
    plan = {"seeds": seeds, "out_dir": out_dir, "base_overrides": base_overrides}
    plan |= {"config_file": config_file, "device": device, "imports": imports}
    plan |= {"data_root": data_root}
    plan_sweep(experiment, grid, **plan)  # every check before anything is started or written
    if scheduler:
        client, cluster = _connect(scheduler), None
    else:
        # brian2 installs a SIGINT handler when imported, which only the main thread may do;
        # Dask runs tasks in worker threads, so each worker imports brian2 at start-up.
        cluster = LocalCluster(
            preload=["brian2"],
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
        )
        client = Client(cluster)
    try:
        (out_dir / "runs").mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(hold_lock_file(out_dir / LOCK_NAME))
            except LockHeld as exc:
                raise _another_sweep_runs(out_dir, exc.holder) from None
            except LockFileDenied as exc:
                raise _sweep_lock_denied(out_dir, exc) from None
            # planned again under the lock: the folder's index and files as they are now
            planned = plan_sweep(experiment, grid, **plan)
            status = _run_planned(experiment, planned, out_dir, client, device, data_root, imports)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return SweepSummary(out_dir, list(status.values()))


def _another_sweep_runs(out_dir: str | Path, holder: LockHolder) -> ConfigError:
    return ConfigError(
        f"--out-dir {str(out_dir)!r}: another sweep is running into it ({holder}); wait for "
        "it to finish, or choose another --out-dir"
    )


def _sweep_lock_denied(out_dir: str | Path, denied: LockFileDenied) -> ConfigError:
    return ConfigError(f"--out-dir {str(out_dir)!r}: {denied}")


def _run_planned(
    experiment: str,
    planned: list[PlannedRun],
    out_dir: Path,
    client: Any,
    device: str | None,
    data_root: str | None,
    imports: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Run the planned runs on ``client``'s cluster, keeping the folder's index up to date (the
    caller holds the folder's lock); returns the index entries by run id."""
    from dask.distributed import as_completed

    earlier = read_index(out_dir)
    status = {  # runs of earlier sweeps into this folder (another grid) stay in its index
        r["run_id"]: r for r in (earlier["runs"] if earlier is not None else [])
    }
    status |= {
        r.run_id: {
            "run_id": r.run_id,
            "overrides": r.overrides,
            "seed": r.seed,
            "path": r.path,
            "status": "complete" if _is_complete(r.path) else "pending",
        }
        for r in planned
    }
    _write_index(out_dir, experiment, list(status.values()))
    futures = [
        client.submit(
            run_one,
            experiment,
            r,
            device,
            data_root,
            tuple(imports),
            key=f"plastix-{r.run_id}",
            pure=False,
        )
        for r in planned
    ]
    for future in as_completed(futures):
        try:
            entry = future.result()
        except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker after repeated crashes
            run_id = future.key.removeprefix("plastix-")
            entry = {**status[run_id], "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        status[entry["run_id"]] = entry
        _write_index(out_dir, experiment, list(status.values()))
    return status


def _connect(scheduler: str):
    """A Dask client of the scheduler at ``scheduler``, or a ConfigError that says why not."""
    from dask.distributed import Client

    try:
        return Client(scheduler, timeout=30)
    except (OSError, ValueError, TypeError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    # A Client whose constructor raised stays in a reference cycle with its IO-loop thread
    # running, and only the cyclic collector finalises it. Its finaliser stops that loop under
    # distributed's class-wide LoopRunner lock; run later inside the IO-loop thread of the next
    # LocalCluster, whose start holds that lock while it waits for the thread, it deadlocks until
    # distributed's 10 s start-up limit fails the cluster. Finalise it here, in this thread.
    gc.collect()
    raise ConfigError(
        f"--scheduler {scheduler!r}: cannot connect ({problem}); give the address of a running "
        "Dask scheduler, e.g. tcp://host:8786"
    )


def load_sweep(out_dir: str | Path):
    """One table of a sweep: config keys and summary scalars as columns, one row per run."""
    from plastix.sims.results import runs_table

    index = read_index(out_dir)
    if index is None:
        raise FileNotFoundError(f"{str(out_dir)!r} has no {INDEX_NAME}: not a plastix sweep folder")
    paths = [Path(r["path"]) for r in index["runs"]]
    lost = [str(p) for p, r in zip(paths, index["runs"], strict=True)
            if r["status"] == "complete" and not p.is_file()]  # fmt: skip
    if lost:
        raise FileNotFoundError(
            f"{Path(out_dir) / INDEX_NAME} lists {len(lost)} complete run(s) whose files are "
            f"missing, e.g. {lost[0]}; restore them, or run the sweep again to redo them"
        )
    return runs_table([p for p in paths if p.is_file()])


def aggregate(table, by: Sequence[str], metrics: Sequence[str], confidence: float = 0.95):
    """Mean, standard deviation, count and the Student-t confidence half-width over seeds.

    half_width = t_{(1+c)/2, n-1} · s / √n  (NaN for a single seed).
    """
    import numpy as np
    import pandas as pd
    from scipy import stats

    missing = [c for c in [*by, *metrics] if c not in table.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the table; available: {list(table.columns)}")
    rows = []
    for key, group in table.groupby(list(by), dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key, strict=True))
        for m in metrics:
            values = group[m].astype(float).dropna().to_numpy()
            n = len(values)
            mean = float(values.mean()) if n else np.nan
            std = float(values.std(ddof=1)) if n > 1 else np.nan
            half = (
                float(stats.t.ppf((1 + confidence) / 2, n - 1) * std / np.sqrt(n))
                if n > 1
                else np.nan
            )
            row.update({f"{m}_mean": mean, f"{m}_std": std, f"{m}_n": n, f"{m}_ci": half})
        rows.append(row)
    return pd.DataFrame(rows)
