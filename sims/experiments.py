"""Experiments registered by name, with typed configs, run into one HDF5 result each.

An experiment is a function ``fn(cfg, ctx)`` registered with :func:`experiment` in a module
``plastix/sims/exp_<topic>.py``; every such module is discovered by :func:`load_experiments`.
:func:`run_experiment` validates the configuration before any work, gives the function a
:class:`RunContext` to log into, and writes the result atomically; Ctrl-C or a crash leaves the
last checkpoint (``<out>.ckpt``), from which the same command resumes. While it runs, the run
holds ``<out>.lock``: a second run into the same ``--out`` is refused, naming the first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import importlib
import os
import pkgutil
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from plastix.processes import LockFileDenied, LockHeld, LockHolder, hold_lock_file
from plastix.scalars import is_integer
from plastix.sims.config import ConfigError, build_config, config_to_dict, read_config_file
from plastix.sims.results import (
    RunRecord,
    beside_result,
    checkpoint_path,
    load_checkpoint,
    read_result,
    run_differences,
    run_lock_path,
    save_checkpoint,
    write_result,
)

TORCH_DEVICES = ("cpu", "cuda")
BRIAN2_DEVICES = ("auto", "runtime", "cpp_standalone", "cuda_standalone")
#: Largest summary array: one HDF5 attribute holds just under 64 KiB.
MAX_SUMMARY_ARRAY_BYTES = 60 * 1024
#: Folder of compiled Brian2 projects reused by later runs ("off": compile every run afresh).
BUILD_CACHE_ENV_VAR = "PLASTIX_BUILD_CACHE"


def build_cache_folder() -> Path | None:
    """Where runs keep compiled standalone projects for later runs of the same circuit
    (:func:`plastix.circuits.backend.seed_from_project_cache`): ``$PLASTIX_BUILD_CACHE``, else
    ``$XDG_CACHE_HOME/plastix/brian-builds`` (``~/.cache/...``) when it can be written; None
    (no cache) for ``$PLASTIX_BUILD_CACHE=off`` (or blank) or an unwritable default."""
    value = os.environ.get(BUILD_CACHE_ENV_VAR)
    if value is not None:  # a blank value is refused before any run (check_build_cache_setting)
        off = value.strip().lower() in ("off", "")
        return None if off else Path(value).expanduser()
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except RuntimeError:  # no home folder
        return None
    folder = base / "plastix" / "brian-builds"
    return folder if can_write_under(folder / "probe") else None


def check_build_cache_setting() -> None:
    """Refuse a ``$PLASTIX_BUILD_CACHE`` that names no folder a run could write to."""
    value = os.environ.get(BUILD_CACHE_ENV_VAR)
    if value is None:
        return
    folder = build_cache_folder()  # None for "off" (and for a blank value, refused here)
    if not value.strip():
        problem = "is empty"
    elif folder is None:
        return
    elif folder.exists() and not folder.is_dir():
        problem = "is not a folder"
    elif not can_write_under(folder / "probe"):
        problem = "cannot be written"
    else:
        return
    raise ConfigError(
        f"${BUILD_CACHE_ENV_VAR} {value!r} {problem}; point it to a folder you can write "
        f"(compiled circuits are kept there for later runs), or set {BUILD_CACHE_ENV_VAR}=off "
        "to compile every run afresh"
    )


@dataclasses.dataclass(frozen=True)
class ExperimentSpec:
    name: str
    config_cls: type
    fn: Callable[[Any, RunContext], None]
    description: str
    devices: tuple[str, ...]
    default_device: str


_REGISTRY: dict[str, ExperimentSpec] = {}


def experiment(
    name: str,
    config_cls: type,
    *,
    description: str = "",
    devices: tuple[str, ...] = TORCH_DEVICES,
    default_device: str | None = None,
) -> Callable:
    """Register ``fn(cfg, ctx)`` as experiment ``name`` configured by dataclass ``config_cls``."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"experiment {name!r}: config_cls must be a dataclass")

    def register(fn: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"experiment {name!r} is registered twice")
        _REGISTRY[name] = ExperimentSpec(
            name, config_cls, fn, description, tuple(devices), default_device or devices[0]
        )
        return fn

    return register


def import_modules(names: Iterable[str]) -> None:
    """Import the modules that register a user's own experiments (``--import``), searching the
    current folder first as ``python -m`` does; any failure is a ConfigError naming the module."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any error in the user's module is reported
            raise ConfigError(
                f"--import {name!r} failed: {type(exc).__name__}: {exc}; give a module name "
                "importable from this folder or the Python path (e.g. my_experiments for "
                "my_experiments.py), and fix the error it raises"
            ) from None


def load_experiments() -> dict[str, ExperimentSpec]:
    """Import every ``plastix.sims.exp_*`` module and return the registry."""
    import plastix.sims as sims_pkg

    for mod in pkgutil.iter_modules(sims_pkg.__path__):
        if mod.name.startswith("exp_"):
            importlib.import_module(f"plastix.sims.{mod.name}")
    return dict(sorted(_REGISTRY.items()))


def get_experiment(name: str) -> ExperimentSpec:
    registry = load_experiments()
    if name not in registry:
        raise ConfigError(
            f"unknown experiment {name!r}; available: {', '.join(registry) or '(none)'}"
        )
    return registry[name]


class RunContext:
    """What an experiment function logs into: metrics rows, summary scalars, arrays, checkpoints."""

    def __init__(
        self,
        record: RunRecord,
        out: Path,
        *,
        state: Any = None,
        data_root: str | None = None,
        progress: bool = True,
    ):
        self._record = record
        self._out = out
        self._state = state
        self._progress = progress
        self.data_root = data_root
        self.seed = record.seed
        self.device = record.device
        self.rng = np.random.default_rng(record.seed)
        self.workdir = beside_result(out, ".work")  # scratch (builds); gone once complete
        self.build_cache = build_cache_folder()  # compiled projects shared with later runs
        self._started = time.perf_counter()
        self._metric_axis = {key: next(iter(row)) for row in record.rows for key in row}

    def elapsed(self) -> float:
        """Seconds of work on this result: this attempt's, plus those up to the checkpoint it
        resumed from (work after an interrupted attempt's last checkpoint is redone, so it
        counts once)."""
        return self._record.wall_s + time.perf_counter() - self._started

    def dataset(self, name: str, **kwargs: Any):
        """``plastix.sims.datasets.load_dataset`` with this run's seed and data folder."""
        from plastix.sims.datasets import load_dataset

        kwargs.setdefault("seed", self.seed)
        kwargs.setdefault("root", self.data_root)
        return load_dataset(name, **kwargs)

    def progress(self, iterable: Iterable, desc: str = "", total: int | None = None) -> Iterable:
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, disable=not self._progress, leave=False)

    def log(self, **row: Any) -> None:
        """Append one metrics row of numbers; its first key is the axis (``epoch``, ``step``,
        ``task``...), and a metric stays on the axis it was first logged against."""
        if not row:
            raise ValueError("log() needs at least the axis value, e.g. log(epoch=0, loss=1.2)")
        axis = next(iter(row))
        values = {}
        for key, value in row.items():
            _check_name("log()", key)
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                raise TypeError(
                    f"log(): {key}={value!r} is not a number; log numbers only (arrays go to "
                    "save_array, text to summary)"
                ) from None
            if self._metric_axis.setdefault(key, axis) != axis:
                raise ValueError(
                    f"log(): metric {key!r} was logged against {self._metric_axis[key]!r} "
                    f"before and now against {axis!r}; log each metric against one axis only"
                )
        self._record.rows.append(values)

    def summary(self, **scalars: Any) -> None:
        """Set summary values: numbers, booleans, text, or numeric arrays (HDF5 attributes)."""
        for key, value in scalars.items():
            _check_name("summary()", key)
            if isinstance(value, list | tuple) or hasattr(value, "__array__"):  # numpy, torch
                array = _numpy_copy(value)
                if array.dtype.kind not in "biuf":
                    raise TypeError(
                        f"summary(): {key} holds {array.dtype} values; only numeric arrays fit "
                        "an HDF5 attribute (use save_array for other data)"
                    )
                if array.nbytes > MAX_SUMMARY_ARRAY_BYTES:
                    raise ValueError(
                        f"summary(): {key} is {array.nbytes} bytes; an HDF5 attribute holds at "
                        f"most {MAX_SUMMARY_ARRAY_BYTES} (use save_array for large arrays)"
                    )
                value = array.item() if array.ndim == 0 else array
            elif not isinstance(value, bool | int | float | str):
                raise TypeError(
                    f"summary(): {key}={value!r} ({type(value).__name__}) cannot be stored; "
                    "give a number, bool, str or numeric array"
                )
            self._record.summary[key] = value

    # The save_* methods keep copies: the result is written after the experiment returns, when
    # a torch parameter or Brian2 variable handed in may have changed, or (Brian2 >= 2.10
    # monitors and synapses) had its memory freed with its object.

    def save_array(self, name: str, array: Any) -> None:
        self._record.arrays[_check_name("save_array()", name)] = _numpy_copy(array)

    def save_weights(self, name: str, array: Any) -> None:
        self._record.weights[_check_name("save_weights()", name)] = _numpy_copy(array)

    def save_spikes(self, monitor: str, i: Any, t_seconds: Any) -> None:
        self._record.spikes[_check_name("save_spikes()", monitor)] = (
            _numpy_copy(i),
            _numpy_copy(t_seconds).astype(float),
        )

    def checkpoint(self, state: Any) -> None:
        """Save ``state`` and all logged data so an interrupted run resumes from here."""
        self._state = state
        self._record.wall_s = self.elapsed()
        self._started = time.perf_counter()
        save_checkpoint(self._out, self._record, state)

    def resume_state(self) -> Any:
        """The state passed to the last :meth:`checkpoint` of an interrupted run, or None."""
        return self._state


def _check_name(method: str, name: Any) -> str:
    """A name for a dataset or attribute of the result file: HDF5 reads '/' as a folder."""
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ValueError(
            f"{method}: name {name!r} cannot name a dataset of the result file; use a non-empty "
            "name without '/' (e.g. 'train_loss' for 'train/loss')"
        )
    return name


def _numpy_copy(value: Any) -> np.ndarray:
    """A numpy copy of ``value``; torch tensors may require grad or live on a GPU."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.array(value)


def default_out_path(name: str, seed: int) -> Path:
    """``plastix_runs/<name>_seed<seed>_<date-time>-<process id>.h5``: two runs started in the
    same second never share a result (or checkpoint)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("plastix_runs") / f"{name}_seed{seed}_{stamp}-{os.getpid()}.h5"


class PreparedRun(NamedTuple):
    """What :func:`prepare_run` checked: ``start`` is the (record, state) to start from (a
    fresh record and None, or the checkpoint to resume); ``replaceable`` says whether a failed
    result may be written at ``out_path`` (nothing is there, or the failed result of this same
    run)."""

    spec: ExperimentSpec
    cfg: Any
    out_path: Path
    start: tuple[RunRecord, Any]
    replaceable: bool


def prepare_run(
    name: str,
    *,
    overrides: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    device: str | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    force: bool = False,
    data_root: str | None = None,
) -> PreparedRun:
    """Check everything a run needs before any work: experiment, config, device, output path,
    checkpoint, and (for configs with a ``dataset`` key) that the dataset loads at the asked
    sizes and passes the config's ``check_data(dataset)``, where it has one."""
    spec = get_experiment(name)
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(read_config_file(config_file))
    values.update(overrides or {})
    cfg = build_config(spec.config_cls, values, where=f"experiment {name!r}")
    if data_root is not None and not (str(data_root) and Path(data_root).is_dir()):
        raise ConfigError(f"--data-root {data_root!r} is not a folder; name the data folder")
    if not is_integer(seed) or not 0 <= seed < 2**32:
        raise ConfigError(f"--seed must be an integer from 0 to 2**32 - 1, got {seed!r}")
    seed = int(seed)
    dataset = getattr(cfg, "dataset", None)
    if isinstance(dataset, str):  # loaded (and cached) now, so that sizes and files are checked
        from plastix.sims.datasets import DatasetError, load_dataset

        try:
            data = load_dataset(
                dataset,
                data_root,
                n_train=getattr(cfg, "n_train", None),
                n_test=getattr(cfg, "n_test", None),
                seed=seed,
            )
        except DatasetError as exc:
            raise ConfigError(f"dataset: {exc}") from None
        if hasattr(cfg, "check_data"):  # what the config needs of the data, e.g. enough samples
            try:
                cfg.check_data(data)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
    if device == "":
        raise ConfigError(f"--device: empty; choose one of {', '.join(spec.devices)}")
    device = device or spec.default_device
    if device not in spec.devices:
        raise ConfigError(
            f"--device {device!r} is not valid for {name!r}; choices: {', '.join(spec.devices)}"
        )
    if device in BRIAN2_DEVICES:
        from plastix.circuits.backend import backend_problems

        check_build_cache_setting()
        problems = backend_problems(device)
        if problems:
            raise ConfigError(
                f"--device {device}: cannot run here: {'; '.join(problems)}. Fix that, or use "
                "--device auto (the best backend that works here)"
            )
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: torch sees no CUDA GPU here; use --device cpu")
    out_path = Path(out) if out is not None else default_out_path(name, seed)
    if out_path.suffix not in (".h5", ".hdf5"):
        raise ConfigError(f"--out {str(out_path)!r}: the result file name must end in .h5")
    if out_path.is_dir():
        raise ConfigError(f"--out {str(out_path)!r} is a folder; name a result file in it")
    if not can_write_under(out_path):
        raise ConfigError(
            f"--out {str(out_path)!r}: no file can be written there (a parent is not a folder, "
            "or is not writable); choose another --out"
        )
    record = RunRecord(name, config_to_dict(cfg), seed, device)
    replaceable = not out_path.exists() or is_failed_attempt(out_path, record.identity)
    if not (replaceable or force):
        try:
            status = read_result(out_path).status
        except (ValueError, OSError):
            status = "unreadable"
        raise ConfigError(
            f"--out {str(out_path)!r} already exists (status {status}); choose another --out "
            "or pass --force to replace it"
        )
    try:
        resume = load_checkpoint(out_path, record)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return PreparedRun(spec, cfg, out_path, resume or (record, None), replaceable)


@contextlib.contextmanager
def _ctrl_c_interrupts_simulations(device: str):
    """On a Brian2 device, Ctrl-C raises KeyboardInterrupt inside ``Network.run`` too.

    Brian2 by default turns Ctrl-C during a run into a quiet stop at the current time step
    (``prefs.core.stop_on_keyboard_interrupt``): the experiment would go on with a cut-short
    simulation and write it as complete, instead of stopping at its last checkpoint.
    """
    if device not in BRIAN2_DEVICES:
        yield
        return
    from brian2 import prefs

    before = prefs.core.stop_on_keyboard_interrupt
    prefs.core.stop_on_keyboard_interrupt = False
    try:
        yield
    finally:
        prefs.core.stop_on_keyboard_interrupt = before


def can_write_under(path: Path) -> bool:
    """Whether a file can be created in the deepest existing folder above ``path`` (probed with
    a temporary file, which permission bits alone do not tell, e.g. on /proc or as root)."""
    folder = next(p for p in path.absolute().parents if p.exists())
    if not folder.is_dir():
        return False
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def is_failed_attempt(path: Path, identity: tuple[str, dict[str, Any], int]) -> bool:
    """Whether ``path`` holds the failed result of the run ``identity`` (experiment, config,
    seed), which a new attempt replaces without ``--force``, resuming from its checkpoint."""
    try:
        result = read_result(path)
    except (ValueError, OSError):
        return False
    return result.status == "failed" and not run_differences(result.identity, identity)


def run_experiment(
    name: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    config_file: str | Path | None = None,
    device: str | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    data_root: str | None = None,
    progress: bool = False,
    force: bool = False,
) -> Path:
    """Validate, run and write experiment ``name``; returns the path of the complete result.

    Resumes from ``<out>.ckpt`` when an earlier run with the same config and seed was
    interrupted or failed (a failed result of that same run is replaced without ``force``). On
    an exception the result is written with status ``failed`` (only where no other earlier file
    would be replaced) and the exception is re-raised; on Ctrl-C nothing is written under the
    final name and the checkpoint stays. An ``out`` that another run is writing (it holds
    ``<out>.lock``) is refused with a ConfigError that names that run; so is one whose lock file
    this process may not open (another user's).
    """
    checks = {"overrides": overrides, "config_file": config_file, "device": device, "seed": seed}
    checks |= {"force": force, "data_root": data_root}
    out_path = prepare_run(name, out=out, **checks).out_path
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(hold_lock_file(run_lock_path(out_path)))
        except LockHeld as exc:
            raise _another_run_writes(out_path, exc.holder) from None
        except LockFileDenied as exc:
            raise ConfigError(f"--out {str(out_path)!r}: {exc}") from None
        # checked again under the lock: the result and checkpoint as they are now
        prepared = prepare_run(name, out=out_path, **checks)
        return _run_prepared(prepared, data_root=data_root, progress=progress)


def _another_run_writes(out_path: Path, holder: LockHolder) -> ConfigError:
    return ConfigError(
        f"--out {str(out_path)!r} is being written by another run ({holder}); wait for it to "
        f"finish (plastix show {out_path} shows its progress), or choose another --out"
    )


def _run_prepared(prepared: PreparedRun, *, data_root: str | None, progress: bool) -> Path:
    """Run a checked run (holding its lock) and write its result."""
    spec, cfg, out_path, (record, state), replaceable = prepared
    ctx = RunContext(record, out_path, state=state, data_root=data_root, progress=progress)
    try:
        with _ctrl_c_interrupts_simulations(record.device):
            spec.fn(cfg, ctx)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        record.summary.setdefault("wall_s", ctx.elapsed())
        if replaceable:
            write_result(out_path, record, "failed", error="".join(traceback.format_exception(exc)))
        raise
    record.summary.setdefault("wall_s", ctx.elapsed())
    write_result(out_path, record, "complete")
    ckpt = checkpoint_path(out_path)
    if ckpt.exists():
        ckpt.unlink()
    shutil.rmtree(ctx.workdir, ignore_errors=True)
    return out_path
