"""The HDF5 results store: one file per run, written atomically, plus checkpoints to resume from.

File contract (DESIGN.md): root attrs ``experiment``, ``config`` (JSON), ``seed``, ``device``,
``plastix_version``, ``versions`` (JSON), ``git_sha`` when known, ``created``, ``status``
(``running|complete|failed``); group ``summary`` (attrs = final scalars); group ``metrics`` with
1-D datasets sharing an axis dataset (each metric's ``axis`` attr names it); optional groups
``spikes/<monitor>`` (``i``, ``t`` in seconds), ``weights/<name>`` and ``arrays/<name>``.

A result is written to a temporary name in the target folder and renamed when complete, so a
crash or Ctrl-C never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import glob
import json
import os
import pickle
import secrets
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from plastix.processes import process_has_ended, this_host

STATUSES = ("running", "complete", "failed")
_VERSIONED = ("brian2", "torch", "numpy", "snntorch", "brian2cuda", "h5py")


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries a result depends on (None where not installed)."""
    out: dict[str, str | None] = {}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def plastix_version() -> str:
    try:
        return metadata.version("plastix")
    except metadata.PackageNotFoundError:
        return "unknown"


def _git(here: Path, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(
            ["git", "-C", str(here), *args], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None


def git_sha(source: str | Path = __file__) -> str | None:
    """The commit of the plastix source tree, with ``-dirty`` when tracked files differ from it;
    None unless the ``source`` file (this module) is tracked there: an installed copy inside
    some other git repository, e.g. a project's virtual environment, has no commit of its own."""
    here = Path(source).resolve().parent
    tracked = _git(here, "ls-files", "--error-unmatch", Path(source).name)
    head = _git(here, "rev-parse", "HEAD")
    if tracked is None or tracked.returncode != 0 or head is None or head.returncode != 0:
        return None
    sha = head.stdout.strip()
    if len(sha) != 40:
        return None
    changes = _git(here, "status", "--porcelain", "--untracked-files=no")
    return f"{sha}-dirty" if changes is not None and changes.stdout.strip() else sha


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it onto ``final`` only on success. The
    file is created exclusively with mode 0666, so the kernel applies the umask as for a plain
    ``open(final, "w")`` (mkstemp would make it owner-only). Its data reach the disk before the
    rename and the rename before return (fsync of the file, then of the folder), so a power cut
    leaves under ``final`` the old file or the whole new one, never an empty or partial one.
    The temporary name ``.NAME.HOST-PID.RANDOM.partial`` says which process writes it; the
    ones that ended processes of this host left (killed mid-write) are deleted first."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_partials_of_ended_processes(final)
    token = secrets.token_hex(8)
    tmp_path = final.with_name(f"{_partial_prefix(final)}{os.getpid()}.{token}.partial")
    os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp_path
        _fsync(tmp_path)
        os.replace(tmp_path, final)
        _fsync_folder(final.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _partial_prefix(final: Path) -> str:
    return f".{final.name}.{this_host()}-"


def _remove_partials_of_ended_processes(final: Path) -> None:
    """Delete the partial files of ``final`` whose writers, processes of this host, have ended
    (a SIGKILL or power cut skips ``atomic_path``'s own clean-up); the files of running
    writers and of other hosts sharing the folder are kept."""
    prefix = _partial_prefix(final)
    for path in final.parent.glob(f"{glob.escape(prefix)}*.partial"):
        pid = path.name[len(prefix) :].partition(".")[0]
        if pid.isdigit() and process_has_ended(int(pid)):
            path.unlink(missing_ok=True)


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    """fsync ``path``; a file system that cannot sync (EINVAL, ENOTSUP: some network and FUSE
    mounts) is passed over, a real failure to write (EIO, ENOSPC) is raised."""
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX only: Windows cannot open a folder)."""
    if hasattr(os, "O_DIRECTORY"):
        _fsync(folder, os.O_RDONLY | os.O_DIRECTORY)


@dataclass
class RunRecord:
    """Everything one run produces, held in memory until it is written."""

    experiment: str
    config: dict[str, Any]
    seed: int
    device: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    spikes: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    wall_s: float = 0.0  # seconds of work up to the last checkpoint, over resumed attempts
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    )

    @property
    def identity(self) -> tuple[str, dict[str, Any], int]:
        """``(experiment, config, seed)``: what makes two records the same run."""
        return self.experiment, self.config, self.seed


def _metric_columns(rows: list[dict[str, Any]]) -> dict[str, tuple[str, dict[str, list]]]:
    """Group logged rows by their axis key (the first key of each row) into columns."""
    axes: dict[str, dict[str, list]] = {}
    for row in rows:
        axis = next(iter(row))
        cols = axes.setdefault(axis, {axis: []})
        n = len(cols[axis])
        for key in row:
            if key not in cols:
                cols[key] = [np.nan] * n
        for key, col in cols.items():
            col.append(row.get(key, np.nan))
    owner: dict[str, str] = {}
    for axis, cols in axes.items():
        for key in cols:  # the axis itself included: an axis is no other axis's metric
            if owner.get(key, axis) != axis:
                raise ValueError(
                    f"metric {key!r} was logged against two axes ({owner[key]!r} and {axis!r}); "
                    "log each metric against one axis only"
                )
            owner[key] = axis
    return {axis: (axis, cols) for axis, cols in axes.items()}


def _metric_arrays(rows: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The logged rows as float64 columns (name → values) and each column's axis name."""
    columns, axes = {}, {}
    for axis, (_, cols) in _metric_columns(rows).items():
        for key, col in cols.items():
            columns[key] = np.asarray(col, dtype=np.float64)
            axes[key] = axis
    return columns, axes


def write_result(
    path: str | Path, record: RunRecord, status: str, error: str | None = None
) -> Path:
    """Write ``record`` to ``path`` atomically (temporary file, then rename)."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["experiment"] = record.experiment
        h5.attrs["config"] = json.dumps(record.config)
        h5.attrs["seed"] = int(record.seed)
        h5.attrs["device"] = record.device
        h5.attrs["plastix_version"] = plastix_version()
        h5.attrs["versions"] = json.dumps(library_versions())
        sha = git_sha()
        if sha:
            h5.attrs["git_sha"] = sha
        h5.attrs["created"] = record.created
        h5.attrs["status"] = status
        if error:
            h5.attrs["error"] = error
        summary = h5.create_group("summary")
        for key, value in record.summary.items():
            summary.attrs[key] = value
        metrics = h5.create_group("metrics")
        columns, axes = _metric_arrays(record.rows)
        for key, values in columns.items():
            metrics.create_dataset(key, data=values).attrs["axis"] = axes[key]
        for group, items in (("arrays", record.arrays), ("weights", record.weights)):
            if items:
                g = h5.create_group(group)
                for name, arr in items.items():
                    g.create_dataset(name, data=np.asarray(arr), compression="gzip")
        if record.spikes:
            g = h5.create_group("spikes")
            for name, (i, t) in record.spikes.items():
                sg = g.create_group(name)
                sg.create_dataset("i", data=np.asarray(i, dtype=np.int32), compression="gzip")
                sg.create_dataset("t", data=np.asarray(t, dtype=np.float64), compression="gzip")
    return path


@dataclass
class Result:
    """A result file read back: attrs, config, summary, metrics (name → array), and the rest."""

    path: Path
    attrs: dict[str, Any]
    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: dict[str, np.ndarray]
    metric_axes: dict[str, str]
    arrays: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]
    spikes: dict[str, tuple[np.ndarray, np.ndarray]]

    @property
    def status(self) -> str:
        return str(self.attrs.get("status"))

    @property
    def experiment(self) -> str:
        return str(self.attrs.get("experiment"))

    @property
    def identity(self) -> tuple[str, dict[str, Any], Any]:
        """``(experiment, config, seed)`` of the run that wrote this file."""
        return self.experiment, self.config, self.attrs.get("seed")


def run_differences(
    there: tuple[str, Mapping[str, Any], int], here: tuple[str, Mapping[str, Any], int]
) -> list[str]:
    """How two runs, each ``(experiment, config, seed)``, differ: one ``"key: A there, B here"``
    per differing item (configs compared as stored, i.e. after a JSON round trip); empty when
    they are the same run."""
    (exp_a, cfg_a, seed_a), (exp_b, cfg_b, seed_b) = there, here
    cfg_a, cfg_b = (json.loads(json.dumps(dict(c))) for c in (cfg_a, cfg_b))
    pairs = [("experiment", exp_a, exp_b), ("seed", seed_a, seed_b)]
    pairs += [(k, cfg_a.get(k), cfg_b.get(k)) for k in sorted(set(cfg_a) | set(cfg_b))]
    return [f"{key}: {a!r} there, {b!r} here" for key, a, b in pairs if a != b]


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_result(path: str | Path) -> Result:
    """Read a plastix HDF5 result; a file that is not one raises ValueError naming the path."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder; name a result file (.h5)")
    if not path.is_file():
        raise FileNotFoundError(f"result file {str(path)!r} does not exist")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{str(path)!r} is not an HDF5 file ({exc})") from None
    with h5:
        if "experiment" not in h5.attrs or "summary" not in h5:
            raise ValueError(
                f"{str(path)!r} is not a plastix result (no 'experiment' attribute or 'summary')"
            )
        try:
            attrs = {k: _plain(v) for k, v in h5.attrs.items()}
            config = json.loads(attrs.get("config", "{}"))
            summary = {k: _plain(v) for k, v in h5["summary"].attrs.items()}
            metrics, axes = {}, {}
            for name, ds in h5.get("metrics", {}).items():
                metrics[name] = ds[()]
                axes[name] = _plain(ds.attrs.get("axis", name))
            arrays = {k: v[()] for k, v in h5.get("arrays", {}).items()}
            weights = {k: v[()] for k, v in h5.get("weights", {}).items()}
            spikes = {k: (g["i"][()], g["t"][()]) for k, g in h5.get("spikes", {}).items()}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(
                f"{str(path)!r} does not follow the plastix result layout "
                f"({type(exc).__name__}: {exc}); it was not written by plastix, or was altered"
            ) from None
    return Result(path, attrs, config, summary, metrics, axes, arrays, weights, spikes)


def record_as_result(path: str | Path, record: RunRecord, status: str) -> Result:
    """What ``record`` (a run's data so far, e.g. from its checkpoint) would be as a result file
    at ``path`` with ``status``; attributes only the written file has (versions, git) are left
    out."""
    metrics, axes = _metric_arrays(record.rows)
    attrs = {"experiment": record.experiment, "seed": record.seed, "device": record.device}
    attrs |= {"created": record.created, "status": status}
    return Result(
        Path(path),
        attrs,
        record.config,
        dict(record.summary),
        metrics,
        axes,
        dict(record.arrays),
        dict(record.weights),
        dict(record.spikes),
    )


def runs_table(paths: Iterable[str | Path] | str | Path):
    """One row per result file (a folder is searched recursively for ``*.h5``): path,
    experiment, seed, device, status, created, every config key and every summary scalar."""
    import pandas as pd

    if isinstance(paths, str | Path) and Path(paths).is_dir():
        paths = sorted(Path(paths).rglob("*.h5"))
    elif isinstance(paths, str | Path):
        paths = [paths]
    rows = []
    for p in paths:
        try:
            res = read_result(p)
        except (ValueError, OSError):
            continue
        row = {
            "path": str(res.path),
            "experiment": res.experiment,
            "seed": res.attrs.get("seed"),
            "device": res.attrs.get("device"),
            "status": res.status,
            "created": res.attrs.get("created"),
        }
        for key, value in res.config.items():
            row[key] = tuple(value) if isinstance(value, list) else value
        row.update(res.summary)
        rows.append(row)
    return pd.DataFrame(rows)


# --- checkpoints -----------------------------------------------------------------------------


def checkpoint_path(result_path: str | Path) -> Path:
    """Where the checkpoint of the run whose final result goes to ``result_path`` lives."""
    return beside_result(result_path, ".ckpt")


def run_lock_path(result_path: str | Path) -> Path:
    """The lock file that the run writing ``result_path`` holds while it runs (it names the run's
    host and process; :func:`plastix.processes.hold_lock_file`)."""
    return beside_result(result_path, ".lock")


def beside_result(result_path: str | Path, suffix: str) -> Path:
    """``result_path`` with ``suffix`` added to its name (``r.h5`` → ``r.h5.ckpt``)."""
    result_path = Path(result_path)
    return result_path.with_name(result_path.name + suffix)


def save_checkpoint(result_path: str | Path, record: RunRecord, state: Any) -> Path:
    """Atomically save the run's state and everything logged so far next to the result path."""
    path = checkpoint_path(result_path)
    payload = {"record": record, "state": state}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def read_checkpoint(result_path: str | Path) -> tuple[RunRecord, Any] | None:
    """The (record, state) saved next to ``result_path``, or None when there is no checkpoint."""
    path = checkpoint_path(result_path)
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as fh:
            payload = pickle.load(fh)
        record, state = payload["record"], payload["state"]
    except Exception as exc:  # noqa: BLE001 - a damaged pickle can raise almost anything
        raise ValueError(
            f"checkpoint {str(path)!r} cannot be read ({type(exc).__name__}: {exc}); delete it "
            "to start afresh"
        ) from None
    if not isinstance(record, RunRecord):
        raise ValueError(f"checkpoint {str(path)!r} holds no plastix run; delete it")
    return record, state


def load_checkpoint(result_path: str | Path, record: RunRecord) -> tuple[RunRecord, Any] | None:
    """The saved (record, state) for this run, or None when there is none.

    A checkpoint left by a run with a different experiment, config or seed is not used: a
    ValueError names the differences, so the caller refuses rather than overwrite it.
    """
    saved = read_checkpoint(result_path)
    if saved is None:
        return None
    differences = run_differences(saved[0].identity, record.identity)
    if differences:
        raise ValueError(
            f"checkpoint {str(checkpoint_path(result_path))!r} belongs to a different run "
            f"({'; '.join(differences)}); use another --out, or delete the checkpoint to start "
            "afresh"
        )
    if saved[0].device != record.device:
        raise ValueError(
            f"checkpoint {str(checkpoint_path(result_path))!r} was written on --device "
            f"{saved[0].device}, not {record.device}; resume with --device {saved[0].device}, "
            "or use another --out"
        )
    return saved
