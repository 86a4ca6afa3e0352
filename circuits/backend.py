"""Brian2 backends: choose, activate, build once, re-run, and report what each needs.

Three devices run the same circuit code (Stimberg, Brette & Goodman 2019, eLife 8:e47314):

- ``runtime``: Python drives every time step; generated code runs as ``numpy`` or ``cython``.
- ``cpp_standalone``: the whole run is generated as a C++ project, compiled, and executed.
- ``cuda_standalone``: the same for NVIDIA GPUs through brian2cuda (Alevi et al. 2022,
  Front. Neuroinform. 16:883700).

Standalone devices cannot call Python during a run: a ``NetworkOperation`` is silently skipped
there, so this module refuses it. Training that alternates simulation and Python work builds once
and re-runs the binary with ``run_args`` (Brian2 >= 2.6). brian2cuda on CUDA 13 needs C++17 flags,
an explicit CUDA path and the cuRAND headers and library (the PyPI ``nvidia-curand`` wheel
provides them); :func:`cuda_settings` collects them.

Typical use::

    with activate_backend("cpp_standalone", cache_root=".brian_builds") as sim:
        net = Network(...)
        net.run(1 * second)
        sim.build(run=False)                 # generate + compile once
        for eta in (0.1, 0.2):
            sim.run(run_args={syn.eta: eta})  # re-run the same binary
            counts = monitor.count[:]

brian2 is imported lazily: :func:`backend_report` never imports it, so it stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plastix.processes import file_name_part, process_has_ended, this_host
from plastix.scalars import is_integer, is_real

BACKENDS = ("runtime", "cpp_standalone", "cuda_standalone")
RUNTIME_TARGETS = ("numpy", "cython")
BACKEND_CHOICES = ("auto", *BACKENDS, *RUNTIME_TARGETS)
STANDALONE_BACKENDS = ("cpp_standalone", "cuda_standalone")

#: Compute capability assumed for CUDA code generation when no GPU is visible (H100/H200).
DEFAULT_COMPUTE_CAPABILITY = 9.0
#: brian2cuda's default ``extra_compile_args_nvcc`` (brian2cuda/cuda_prefs.py).
BRIAN2CUDA_DEFAULT_NVCC_ARGS = ("-w", "-use_fast_math")
#: Files of a generated project whose content decides the compiled binary.
_SOURCE_SUFFIXES = (".cpp", ".c", ".h", ".hpp", ".cu", ".cuh")
_HEADER_SUFFIXES = (".h", ".hpp", ".cuh")
_SOURCE_NAMES = ("makefile", "win_makefile")
_CURAND_LINK_DIR = "_curand_lib"
_CODE_HASH_FILE = ".plastix_code_hash"
#: Compiled projects kept per key in a ``project_cache`` (the most recently used ones).
PROJECTS_KEPT = 3
#: Keys (circuits) kept in a ``project_cache``: those whose projects were used most recently.
KEYS_KEPT = 64
#: Names of the folders a project cache holds: keys (:func:`build_cache_dir`) and projects
#: (:func:`store_in_project_cache`); pruning touches nothing else.
_KEY_FOLDER_NAME = re.compile(r".+-[0-9a-f]{10}")
_PROJECT_FOLDER_NAME = re.compile(r"[0-9a-f]{24}")
#: A ``.partial-*`` folder of a ``project_cache`` older than this was left by a store that was
#: killed (a store copies a few MB in seconds); the next store deletes it.
ABANDONED_PARTIAL_S = 3600.0
#: Files of a standalone project that ``make`` produces (by name or suffix).
_BINARY_NAMES = ("main", "main.exe")
_BUILD_PRODUCT_NAMES = (*_BINARY_NAMES, "make.deps")
_BUILD_PRODUCT_SUFFIXES = (".o", ".obj", ".d")
#: Present in a build folder while a project is being copied into it (a killed copy keeps it).
_SEEDING_MARKER = ".plastix_seeding"
_PROBE_TIMEOUT_S = 1.5

_CUDA_BACKEND_PREF = "devices.cuda_standalone.cuda_backend"
#: The standalone sessions of :func:`activate_backend` open in this process (at most one).
_OPEN_STANDALONE_SESSIONS: list[BackendSession] = []


# --------------------------------------------------------------------------- choosing


def _check_backend_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(
            f"backend: expected a string, got {type(name).__name__} {name!r}; "
            f"use one of {', '.join(BACKEND_CHOICES)}"
        )
    key = name.strip().lower()
    if key not in BACKEND_CHOICES:
        raise ValueError(
            f"backend: unknown backend {name!r}; valid choices are {', '.join(BACKEND_CHOICES)} "
            "('numpy'/'cython' select the runtime device with that code generation target)"
        )
    return key


def resolve_backend(name: str = "auto") -> str:
    """Return the concrete backend for ``name``.

    ``"auto"`` picks ``cuda_standalone`` when brian2cuda (matching the installed brian2), nvcc,
    the cuRAND headers and a GPU are all usable, else ``cpp_standalone`` when a C++ compiler
    and ``make`` work, else ``runtime``. Other names are validated and returned lower-cased;
    ``"numpy"``/``"cython"`` are runtime with that code generation target.
    """
    key = _check_backend_name(name)
    if key != "auto":
        return key
    if _cuda_ready(_probe_cuda(), require_gpu=True):
        return "cuda_standalone"
    if _probe_cxx()["works"]:
        return "cpp_standalone"
    return "runtime"


def device_name(backend: str) -> str:
    """Brian2 device name of a concrete backend (``numpy``/``cython`` run on ``runtime``)."""
    key = _check_backend_name(backend)
    if key == "auto":
        raise ValueError("backend: 'auto' is not concrete; call resolve_backend('auto') first")
    return "runtime" if key in RUNTIME_TARGETS else key


def is_standalone(backend: str) -> bool:
    """Whether ``backend`` generates a standalone project (no Python during the run)."""
    return device_name(resolve_backend(backend)) in STANDALONE_BACKENDS


# --------------------------------------------------------------------------- probing


def _run_quiet(cmd: list[str], timeout: float = _PROBE_TIMEOUT_S, stdin: str | None = None):
    """Run ``cmd``; return CompletedProcess, or None when it cannot start or times out."""
    try:
        return subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cxx_command() -> list[str] | None:
    """The compiler command Brian2's standalone makefile runs: ``$CXX`` with its arguments
    (e.g. ``ccache g++``), its program resolved on PATH, else make's default ``g++``."""
    value = os.environ.get("CXX", "")
    try:
        words = shlex.split(value)
    except ValueError:  # an unbalanced quote: the makefile's shell fails on it too
        words = value.split()
    if words:
        program = shutil.which(words[0])
        return None if program is None else [program, *words[1:]]
    program = shutil.which("g++") or shutil.which("c++")
    return None if program is None else [program]


@functools.cache
def _probe_cxx() -> dict[str, Any]:
    """Compile and link a tiny C++11 program once per process (the test Brian's makefile needs)."""
    info: dict[str, Any] = {"works": False, "compiler": None, "version": None, "make": None}
    info["make"] = shutil.which("make")
    command = _cxx_command()
    if command is None:
        info["error"] = "no C++ compiler found ($CXX, g++ or c++)"
        return info
    compiler = shlex.join(command)
    info["compiler"] = compiler
    ver = _run_quiet([*command, "--version"])
    if ver is not None and ver.returncode == 0 and ver.stdout:
        info["version"] = ver.stdout.splitlines()[0].strip()
    with tempfile.TemporaryDirectory(prefix="plastix_cxx_probe_") as tmp:
        exe = os.path.join(tmp, "probe")
        program = "#include <vector>\nint main(){std::vector<int> v(3);return (int)v.size()-3;}\n"
        res = _run_quiet(
            [*command, "-std=c++11", "-x", "c++", "-", "-o", exe], timeout=20.0, stdin=program
        )
        if res is None:
            info["error"] = f"{compiler} did not finish compiling a test program"
        elif res.returncode != 0:
            info["error"] = f"{compiler} failed on a test program: {res.stderr.strip()[:300]}"
        else:
            info["works"] = True
    if info["make"] is None:
        info["works"] = False
        info["error"] = "'make' not found (Brian2 standalone projects are built with make)"
    return info


def _find_cuda_path() -> str | None:
    """CUDA toolkit root: $CUDA_PATH/$CUDA_HOME, the real location of nvcc, /usr/local/cuda.

    A ``/usr/local/bin/nvcc`` wrapper script would make brian2cuda guess ``/usr/local``; a root
    only counts when it holds both ``bin/nvcc`` and ``include/cuda_runtime.h``.
    """
    candidates = [os.environ.get("CUDA_PATH", ""), os.environ.get("CUDA_HOME", "")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += ["/usr/local/cuda", "/opt/cuda"]
    for root in candidates:
        if (
            root
            and os.path.isfile(os.path.join(root, "bin", "nvcc"))
            and os.path.isfile(os.path.join(root, "include", "cuda_runtime.h"))
        ):
            return os.path.realpath(root)
    return None


def _nvcc_version(nvcc: str) -> float | None:
    res = _run_quiet([nvcc, "--version"])
    if res is None or res.returncode != 0:
        return None
    match = re.search(r"release (\d+)\.(\d+)", res.stdout)
    return float(f"{match.group(1)}.{match.group(2)}") if match else None


@dataclass(frozen=True)
class CurandLocation:
    """Where the cuRAND headers and shared library are (toolkit or ``nvidia-curand`` wheel)."""

    include_dir: str
    library_dir: str | None
    library_file: str | None
    source: str


def _find_curand(cuda_path: str | None) -> CurandLocation | None:
    if cuda_path and os.path.isfile(os.path.join(cuda_path, "include", "curand.h")):
        for libdir in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib")):
            lib = os.path.join(cuda_path, libdir, "libcurand.so")
            if os.path.exists(lib):
                return CurandLocation(
                    os.path.join(cuda_path, "include"), os.path.dirname(lib), lib, "toolkit"
                )
    for dist_name in ("nvidia-curand", "nvidia-curand-cu13", "nvidia-curand-cu12"):
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            continue
        header = library = None
        for entry in dist.files or ():
            if entry.name == "curand.h" and header is None:
                header = Path(dist.locate_file(entry))
            elif entry.name.startswith("libcurand.so") and library is None:
                library = Path(dist.locate_file(entry))
        if header is not None and header.is_file():
            lib_ok = library is not None and library.exists()
            return CurandLocation(
                str(header.parent),
                str(library.parent) if lib_ok else None,
                str(library) if lib_ok else None,
                f"pip wheel {dist_name} {dist.version}",
            )
    return None


def _probe_gpus() -> dict[str, Any]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return {"nvidia_smi": None, "gpus": [], "error": "nvidia-smi not found"}
    res = _run_quiet([smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"])
    if res is None or res.returncode != 0:
        why = "timed out" if res is None else res.stderr.strip()[:200] or res.stdout.strip()[:200]
        return {"nvidia_smi": smi, "gpus": [], "error": f"nvidia-smi failed: {why}"}
    gpus = []
    for line in res.stdout.strip().splitlines():
        name, _, cap = line.rpartition(",")
        gpus.append({"name": name.strip(), "compute_capability": cap.strip()})
    return {"nvidia_smi": smi, "gpus": gpus}


def _brian2cuda_requirement() -> tuple[str | None, str | None]:
    """(installed brian2cuda version, the brian2 requirement it declares)."""
    version = _dist_version("brian2cuda")
    if version is None:
        return None, None
    requires = importlib.metadata.requires("brian2cuda") or []
    for req in requires:
        if re.match(r"^brian2\s*[=<>!~]", req) and "extra" not in req:
            return version, req.split(";")[0].replace(" ", "")
    return version, None


def _requirement_met(requirement: str | None, installed: str | None) -> bool:
    """Check a ``brian2==X`` style pin (the form brian2cuda uses) against ``installed``."""
    if requirement is None:
        return True
    if installed is None:
        return False
    pinned = re.fullmatch(r"brian2==([\w.]+)", requirement)
    if pinned is None:
        return True  # a range we do not parse: let the import decide
    return pinned.group(1) == installed


def _probe_cuda() -> dict[str, Any]:
    cuda_path = _find_cuda_path()
    nvcc = os.path.join(cuda_path, "bin", "nvcc") if cuda_path else shutil.which("nvcc")
    b2c_version, b2c_requires = _brian2cuda_requirement()
    brian2_version = _dist_version("brian2")
    return {
        "cuda_path": cuda_path,
        "nvcc": nvcc,
        "nvcc_version": _nvcc_version(nvcc) if nvcc else None,
        "curand": _find_curand(cuda_path),
        "gpu": _probe_gpus(),
        "brian2cuda": b2c_version,
        "brian2cuda_requires": b2c_requires,
        "brian2cuda_matches": b2c_version is not None
        and importlib.util.find_spec("brian2cuda") is not None
        and _requirement_met(b2c_requires, brian2_version),
        "brian2": brian2_version,
    }


def _curand_links(curand: CurandLocation | None) -> bool:
    """Whether brian2cuda can compile and link against this cuRAND: it includes curand.h and
    links -lcurand, so both the headers and libcurand.so must have been found."""
    return curand is not None and curand.library_file is not None


def _cuda_ready(cuda: Mapping[str, Any], *, require_gpu: bool) -> bool:
    compile_ready = (
        cuda["brian2cuda_matches"]
        and cuda["nvcc_version"] is not None
        and _curand_links(cuda["curand"])
    )
    return bool(compile_ready and (cuda["gpu"]["gpus"] or not require_gpu))


# --------------------------------------------------------------------------- report


@dataclass
class BackendStatus:
    """One line of ``plastix info``: a backend or one thing a backend needs."""

    name: str
    available: bool
    details: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def backend_report() -> list[BackendStatus]:
    """Say which backends work here and what is missing. Never imports brian2; never raises."""
    try:
        return _backend_report()
    except Exception as err:  # a report must not take the CLI down
        return [BackendStatus("report", False, {"error": repr(err)}, ["report this as a bug"])]


def _backend_report() -> list[BackendStatus]:
    brian2_version = _dist_version("brian2")
    cxx = _probe_cxx()
    cuda = _probe_cuda()
    report: list[BackendStatus] = []

    report.append(
        BackendStatus(
            "brian2",
            brian2_version is not None,
            {"version": brian2_version},
            [] if brian2_version else ["pip install brian2"],
        )
    )
    cython = importlib.util.find_spec("Cython") is not None
    targets = ["numpy"] + (["cython"] if cython and cxx["works"] else [])
    report.append(
        BackendStatus(
            "runtime",
            brian2_version is not None,
            {"codegen_targets": targets},
            [] if brian2_version else ["pip install brian2"],
        )
    )
    cxx_missing = []
    if not cxx["works"]:
        cxx_missing.append(
            f"{cxx.get('error', 'C++ compiler unusable')}; fix: apt-get install g++ make "
            "(or set $CXX to a working C++ compiler)"
        )
    report.append(
        BackendStatus(
            "cpp_standalone",
            bool(cxx["works"] and brian2_version),
            {"compiler": cxx["compiler"], "compiler_version": cxx["version"], "make": cxx["make"]},
            cxx_missing,
        )
    )

    nvcc_ok = cuda["nvcc_version"] is not None
    report.append(
        BackendStatus(
            "nvcc",
            nvcc_ok,
            {"path": cuda["nvcc"], "version": cuda["nvcc_version"], "cuda_path": cuda["cuda_path"]},
            []
            if nvcc_ok
            else [
                "install the CUDA toolkit (nvcc) and/or set $CUDA_PATH to its root "
                "(the folder holding bin/nvcc and include/cuda_runtime.h)"
            ],
        )
    )
    curand: CurandLocation | None = cuda["curand"]
    curand_missing = []
    if curand is None:
        curand_missing.append("pip install nvidia-curand (headers + libcurand for CUDA 13)")
    elif curand.library_file is None:
        curand_missing.append("cuRAND headers found but no libcurand.so: pip install nvidia-curand")
    report.append(
        BackendStatus(
            "curand",
            _curand_links(curand),
            {
                "include_dir": curand.include_dir if curand else None,
                "library": curand.library_file if curand else None,
                "source": curand.source if curand else None,
            },
            curand_missing,
        )
    )
    gpu = cuda["gpu"]
    report.append(
        BackendStatus(
            "gpu",
            bool(gpu["gpus"]),
            {"nvidia_smi": gpu["nvidia_smi"], "gpus": gpu["gpus"]},
            []
            if gpu["gpus"]
            else [f"no NVIDIA GPU visible ({gpu.get('error', 'nvidia-smi lists none')})"],
        )
    )
    b2c_missing = []
    if cuda["brian2cuda"] is None:
        b2c_missing.append(
            "pip install brian2cuda (1.0b1 pins brian2==2.10.1 and needs Python >= 3.12; "
            "use a separate environment)"
        )
    elif not cuda["brian2cuda_matches"]:
        b2c_missing.append(
            f"brian2cuda {cuda['brian2cuda']} requires {cuda['brian2cuda_requires']} but "
            f"brian2 {brian2_version} is installed; use a separate environment with that brian2"
        )
    report.append(
        BackendStatus(
            "brian2cuda",
            bool(cuda["brian2cuda_matches"]),
            {"version": cuda["brian2cuda"], "requires": cuda["brian2cuda_requires"]},
            b2c_missing,
        )
    )
    cuda_missing = []
    for status in report[-4:]:
        cuda_missing.extend(f"{status.name}: {m}" for m in status.missing)
    can_generate = bool(cuda["brian2cuda_matches"])
    can_compile = _cuda_ready(cuda, require_gpu=False) and bool(cxx["works"])
    report.append(
        BackendStatus(
            "cuda_standalone",
            _cuda_ready(cuda, require_gpu=True) and bool(cxx["works"]),
            {"code_generation": can_generate, "compilation": can_compile},
            cuda_missing,
        )
    )
    return report


def backend_problems(backend: str) -> list[str]:
    """What stops ``backend`` from running here, each with its fix (empty when it can run).

    ``auto`` always runs (it falls back to ``runtime``). Never imports brian2, so a command
    can refuse an unusable backend before any work starts.
    """
    key = _check_backend_name(backend)
    if key == "auto":
        return []
    status = {s.name: s for s in backend_report()}
    if key == "cython":
        if "cython" in status["runtime"].details.get("codegen_targets", []):
            return []
        return ["cython code generation needs Cython and a C++ compiler: pip install cython"]
    entry = status.get(device_name(key))
    if entry is None:  # the report itself failed; it says why
        return [m for s in status.values() for m in s.missing]
    return [] if entry.available else list(entry.missing)


def format_backend_report(report: Iterable[BackendStatus] | None = None) -> str:
    """Plain-text form of :func:`backend_report` for ``plastix info``."""
    statuses = list(backend_report() if report is None else report)
    width = max((len(s.name) for s in statuses), default=8)
    lines = []
    for status in statuses:
        mark = "ok " if status.available else "-- "
        shown = ", ".join(
            f"{k}={_short(v)}" for k, v in status.details.items() if v not in (None, [], "")
        )
        lines.append(f"{mark}{status.name.ljust(width)}  {shown}".rstrip())
        lines.extend(f"{' ' * (width + 5)}missing: {m}" for m in status.missing)
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return "; ".join(" ".join(str(v) for v in item.values()) for item in value)
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


# --------------------------------------------------------------------------- CUDA settings


def cuda_settings(
    *,
    gcc_args: Iterable[str] | None = None,
    nvcc_args: Iterable[str] | None = None,
    cuda_path: str | None = None,
    cuda_runtime_version: float | None = None,
    curand: CurandLocation | None = None,
    curand_link_dir: str | os.PathLike[str] | None = None,
    gpu_available: bool = False,
    gpu_id: int | None = None,
    compute_capability: float | None = None,
) -> dict[str, Any]:
    """Brian2 preference values (full dotted names) for brian2cuda on CUDA 13.

    - C++17: CUDA 13's Thrust/CUB reject older standards, but brian2cuda's makefile passes
      ``-std=c++11``; a later ``-std=c++17`` in the nvcc arguments wins, and the host-compiler
      arguments get c++11 replaced by c++17.
    - ``cuda_path`` explicit: auto-detection from a ``/usr/local/bin/nvcc`` wrapper gives
      ``/usr/local``.
    - cuRAND from a wheel: its include folder, and a link folder holding ``libcurand.so``
      (``curand_link_dir``; the wheel ships only ``libcurand.so.10``) plus an rpath to the wheel,
      added to the folders already in the preferences.
    - Compiler arguments not given start from the current preferences (yours, where set).
    - Without a GPU (code generation only): ``detect_gpus=False`` with ``gpu_id`` (default 0;
      brian2cuda raises without it) and ``compute_capability`` (default 9.0).
    """
    gcc = list(gcc_args) if gcc_args is not None else _default_gcc_args()
    gcc = [arg.replace("c++11", "c++17").replace("c++14", "c++17") for arg in gcc]
    if not any(arg.startswith("-std=") for arg in gcc):
        gcc.append("-std=c++17")
    if nvcc_args is None:
        nvcc_args = _pref_or(f"{_CUDA_BACKEND_PREF}.extra_compile_args_nvcc", None)
    nvcc = list(nvcc_args if nvcc_args is not None else BRIAN2CUDA_DEFAULT_NVCC_ARGS)
    nvcc = [arg for arg in nvcc if not arg.startswith("-std=")] + ["-std=c++17"]
    cb = _CUDA_BACKEND_PREF
    settings: dict[str, Any] = {
        "codegen.cpp.extra_compile_args_gcc": gcc,
        f"{cb}.extra_compile_args_nvcc": nvcc,
    }
    if cuda_path is not None:
        settings[f"{cb}.cuda_path"] = str(cuda_path)
    else:
        settings[f"{cb}.detect_cuda"] = False
    if cuda_runtime_version is not None:
        settings[f"{cb}.cuda_runtime_version"] = float(cuda_runtime_version)
    if gpu_available:
        settings[f"{cb}.detect_gpus"] = True
        if gpu_id is not None:
            settings[f"{cb}.gpu_id"] = int(gpu_id)
        if compute_capability is not None:
            settings[f"{cb}.compute_capability"] = float(compute_capability)
    else:
        settings[f"{cb}.detect_gpus"] = False
        settings[f"{cb}.gpu_id"] = 0 if gpu_id is None else int(gpu_id)
        settings[f"{cb}.compute_capability"] = float(
            DEFAULT_COMPUTE_CAPABILITY if compute_capability is None else compute_capability
        )
    if curand is not None and curand.source != "toolkit":
        added = {"codegen.cpp.include_dirs": curand.include_dir}
        if curand.library_dir is not None:
            added["codegen.cpp.runtime_library_dirs"] = curand.library_dir
            added["codegen.cpp.library_dirs"] = (
                str(curand_link_dir) if curand_link_dir is not None else curand.library_dir
            )
        for name, folder in added.items():
            folders = list(_pref_or(name, []))
            settings[name] = folders if folder in folders else [*folders, folder]
    return settings


def _default_gcc_args() -> list[str]:
    return list(_pref_or("codegen.cpp.extra_compile_args_gcc", []))


def _pref_or(name: str, default: Any) -> Any:
    """Brian2 preference ``name``, or ``default`` where it is not registered (brian2cuda's own
    preferences exist only once brian2cuda is imported)."""
    from brian2 import prefs

    try:
        return prefs[name]
    except KeyError:
        return default


def _link_curand(curand: CurandLocation, link_dir: Path) -> None:
    """Make ``link_dir/libcurand.so`` point at the wheel's versioned library (for ``-lcurand``)."""
    if curand.library_file is None:
        return
    link_dir.mkdir(parents=True, exist_ok=True)
    link = link_dir / "libcurand.so"
    if link.is_symlink() and os.readlink(link) == curand.library_file:
        return
    tmp = link_dir / f".libcurand.so.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(curand.library_file)
    os.replace(tmp, link)


# --------------------------------------------------------------------------- network operations


class StandaloneNetworkOperationError(ValueError):
    """A ``NetworkOperation`` was found under a standalone device, where it would never run."""


def _walk_objects(item: Any, seen: set[int]) -> Iterator[Any]:
    from brian2 import BrianObject, Network

    if id(item) in seen:
        return
    seen.add(id(item))
    if isinstance(item, Network):
        for obj in item.objects:
            yield from _walk_objects(obj, seen)
    elif isinstance(item, BrianObject):
        yield item
        for obj in item.contained_objects:
            yield from _walk_objects(obj, seen)
    elif isinstance(item, Mapping):
        for obj in item.values():
            yield from _walk_objects(obj, seen)
    elif isinstance(item, Iterable) and not isinstance(item, (str, bytes)):
        for obj in item:
            yield from _walk_objects(obj, seen)


def refuse_network_operations(net_or_objects: Any, backend: str) -> None:
    """Raise :class:`StandaloneNetworkOperationError` if a NetworkOperation would be ignored.

    ``net_or_objects`` is a ``Network``, a Brian object, or any (nested) collection of them.
    Runtime backends accept network operations; standalone ones drop them without a word
    (the generated run loop only contains code objects), which would silently remove e.g. a
    weight update from a learning rule.
    """
    key = resolve_backend(backend)
    if device_name(key) not in STANDALONE_BACKENDS:
        return
    from brian2 import NetworkOperation

    ops = [obj for obj in _walk_objects(net_or_objects, set()) if isinstance(obj, NetworkOperation)]
    if not ops:
        return
    named = ", ".join(
        f"{op.name!r} (function {getattr(op.function, '__name__', repr(op.function))!r})"
        for op in ops
    )
    raise StandaloneNetworkOperationError(
        f"backend={key!r}: found NetworkOperation {named}. Standalone devices "
        "(cpp_standalone, cuda_standalone) generate the whole run as compiled code and silently "
        "ignore Python network operations, so this code would never run. Fix: express it in the "
        "model equations (e.g. a TimedArray, a modulator group with Synapses targeting the "
        "Synapses, or `group.run_regularly(...)`), or split the simulation and pass new values "
        "between runs with `run_args` (BackendSession.run), or use backend='runtime'."
    )


# --------------------------------------------------------------------------- build cache


def build_cache_dir(cache_root: str | os.PathLike[str], key: str) -> Path:
    """Folder for the standalone build called ``key`` under ``cache_root`` on this kind of CPU.

    Brian2 only rewrites generated files whose content changed and ``make`` only recompiles
    what changed, so building the same network into the same folder again (also in a new
    process) only regenerates code and leaves the binary as it is. Brian2 compiles with
    ``-march=native``, so the folder also depends on :func:`host_cpu_signature`: a cache shared
    by machines with different CPUs never hands one a binary built for another's instructions.
    """
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"cache_key: expected a non-empty string, got {key!r}")
    slug = file_name_part(key.strip()).strip(".-")[:60] or "build"
    digest = hashlib.sha256(f"{key}\0{host_cpu_signature()}".encode()).hexdigest()[:10]
    return Path(cache_root) / f"{slug}-{digest}"


@functools.lru_cache(maxsize=1)
def host_cpu_signature() -> str:
    """The machine type and the CPU's instruction-set flags (``/proc/cpuinfo``, where there is
    one): what code compiled with ``-march=native`` may use."""
    import platform

    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                name, sep, value = line.partition(":")
                if sep and name.strip().lower() in ("flags", "features"):
                    flags = " ".join(sorted(value.split()))
                    break
    except OSError:  # not Linux
        flags = platform.processor()
    return f"{platform.machine()} {flags}"


def generated_code_hash(directory: str | os.PathLike[str], *, headers_only: bool = False) -> str:
    """SHA-256 over the generated sources and makefile of a standalone project.

    Data files (``static_arrays/``, results) and build products are left out: they do not
    decide what is compiled. ``headers_only`` hashes only headers and the makefile, the files
    brian2cuda's makefile does not track (its objects depend on their ``.cu`` file alone).
    """
    digest = hashlib.sha256()
    for rel, path in _generated_sources(Path(directory), headers_only=headers_only):
        digest.update(rel.encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _generated_sources(root: Path, *, headers_only: bool = False) -> list[tuple[str, Path]]:
    """(relative path, path) of the sources, headers and makefiles of a project, sorted."""
    suffixes = _HEADER_SUFFIXES if headers_only else _SOURCE_SUFFIXES
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or rel.parts[0] in ("static_arrays", _CURAND_LINK_DIR):
            continue
        if rel.parts[0].startswith("results"):
            continue
        if path.suffix.lower() in suffixes or path.name in _SOURCE_NAMES:
            found.append((rel.as_posix(), path))
    return found


def source_digests(directory: Path) -> dict[str, str]:
    """SHA-256 of each generated source, header and makefile of a project, by relative path."""
    return {
        rel: hashlib.sha256(path.read_bytes()).hexdigest()
        for rel, path in _generated_sources(directory)
    }


def _run_files(root: Path):
    """``copytree`` ignore function: what one build must not pass on at the top of its folder
    (data, results, the cuRAND link)."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        if Path(folder) != root:
            return set()
        return {n for n in names if n in ("static_arrays", _CURAND_LINK_DIR) or n[:7] == "results"}

    return ignore


def _clear_build_folder(directory: Path) -> None:
    for path in directory.iterdir():
        if path.name == _CURAND_LINK_DIR:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def cached_projects(folder: Path) -> list[Path]:
    """The complete projects stored in ``folder`` (one key's folder of a ``project_cache``),
    most recently used first."""
    found = []
    try:
        entries = list(folder.iterdir())
    except OSError:  # no folder yet
        return []
    for path in entries:
        try:
            if path.is_dir() and not path.name.startswith("."):
                found.append((path.stat().st_mtime_ns, path))
        except OSError:  # pruned by another process meanwhile
            continue
    return [path for _, path in sorted(found, reverse=True)]


def seed_from_project_cache(folder: Path, directory: Path) -> bool:
    """Start the empty build folder ``directory`` as a copy of the most recently used compiled
    project in ``folder``; returns whether one was copied.

    The copy's build products get the time of the copy and its sources a second earlier,
    whatever times the stored files carried (a host with a fast clock, a cache copied with its
    times): ``make`` rebuilds nothing of it as it is. After code generation
    :func:`mark_regenerated_sources` dates what differs after every product, so ``make``
    recompiles exactly that, as in an incremental build in place. A copy that fails part-way
    (a project pruned while being read) is cleared and the build starts from nothing; one
    killed part-way leaves a marker, and the next build into that folder clears it first.
    """
    if (directory / _SEEDING_MARKER).exists():
        _clear_build_folder(directory)
    if any(p.name != _CURAND_LINK_DIR for p in directory.iterdir()):
        return False
    projects = cached_projects(folder)
    if not projects:
        return False
    marker = directory / _SEEDING_MARKER
    marker.touch()
    try:
        shutil.copytree(projects[0], directory, dirs_exist_ok=True)
        _set_seeded_times(directory)
    except (OSError, shutil.Error):
        _clear_build_folder(directory)
        return False
    marker.unlink()
    return True


def _set_seeded_times(directory: Path) -> None:
    now = time.time_ns()
    for path in directory.rglob("*"):
        if path.is_symlink() or not path.is_file() or path.name == _SEEDING_MARKER:
            continue
        stamp = now if _is_build_product(path) else now - 10**9
        os.utime(path, ns=(stamp, stamp))


def _is_build_product(path: Path) -> bool:
    return path.name in _BUILD_PRODUCT_NAMES or path.suffix in _BUILD_PRODUCT_SUFFIXES


def mark_regenerated_sources(directory: Path, seeded: Mapping[str, str]) -> None:
    """After code generation into a seeded build folder: give each source, header or makefile
    whose content differs from ``seeded`` (:func:`source_digests` of the copy) a time after
    every build product, and delete the binary if any does, so that ``make`` recompiles and
    relinks what changed without trusting any clock (Brian2's own write times included)."""
    changed = [
        rel for rel, digest in source_digests(directory).items() if seeded.get(rel) != digest
    ]
    if not changed:
        return
    products = [p for p in directory.rglob("*") if p.is_file() and _is_build_product(p)]
    stamp = max((p.stat().st_mtime_ns for p in products), default=time.time_ns()) + 10**9
    for rel in changed:
        os.utime(directory / rel, ns=(stamp, stamp))
    _remove_binary(directory)


def _remove_binary(directory: Path) -> None:
    for name in _BINARY_NAMES:
        (directory / name).unlink(missing_ok=True)


def store_in_project_cache(
    directory: Path, folder: Path, keep: int = PROJECTS_KEPT, keys_kept: int = KEYS_KEPT
) -> Path | None:
    """Keep the compiled project in ``directory`` (sources, objects, binary; no data or results)
    under ``folder/<hash of its sources>`` for later builds, prune ``folder`` (one key's) to
    the ``keep`` most recently used projects and the cache above it to the ``keys_kept`` most
    recently used keys (:func:`prune_project_cache`). A stored project is never changed: it
    appears whole, by an atomic rename, and a project already stored is only marked as used;
    what a killed store left behind is deleted after an hour. Returns where it is stored, or
    None where it could not be (the build itself is unaffected)."""
    stored = folder / generated_code_hash(directory)[:24]
    partial = None
    try:
        if stored.is_dir():
            os.utime(stored)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder))
            shutil.copytree(directory, partial, ignore=_run_files(directory), dirs_exist_ok=True)
            os.rename(partial, stored)  # fails if another process stored it first
    except (OSError, shutil.Error):  # a full disk or a lost race costs the cache, not the run
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
        return None
    for old in cached_projects(folder)[keep:]:
        _delete_project(old)
    _remove_abandoned_partials(folder)
    prune_project_cache(folder.parent, keys_kept)
    return stored


def prune_project_cache(root: Path, keep: int = KEYS_KEPT) -> None:
    """Keep the ``keep`` most recently used keys of the project cache ``root`` (a key's last use
    is that of its most recently used project), delete the others' projects, and remove the
    folders of keys left without projects where nothing else is in them. Only folders named as
    plastix names keys and projects are touched, so a cache pointed at a folder that holds
    other things keeps them."""
    keys = []
    try:
        folders = [f for f in root.iterdir() if _KEY_FOLDER_NAME.fullmatch(f.name) and f.is_dir()]
    except OSError:  # no cache folder (yet)
        return
    for folder in folders:
        projects = [p for p in cached_projects(folder) if _PROJECT_FOLDER_NAME.fullmatch(p.name)]
        try:
            last_use = projects[0].stat().st_mtime_ns if projects else None
        except OSError:  # pruned by another process meanwhile
            continue
        if last_use is not None:
            keys.append((last_use, folder, projects))
        else:
            with contextlib.suppress(OSError):  # not empty: a store going on, or other files
                folder.rmdir()
    for _, folder, projects in sorted(keys, key=lambda key: key[0], reverse=True)[keep:]:
        for project in projects:
            _delete_project(project)
        with contextlib.suppress(OSError):  # something else in it, or a store going on now
            folder.rmdir()


def _delete_project(project: Path) -> None:
    """Take ``project`` out of the cache at once (a rename), then delete it: a deletion killed
    part-way never leaves a project without its objects under a name builds are seeded from."""
    doomed = project.with_name(f".deleting-{project.name}-{os.getpid()}")
    try:
        os.rename(project, doomed)
    except OSError:  # deleted or renamed by another process meanwhile
        return
    shutil.rmtree(doomed, ignore_errors=True)


def _remove_abandoned_partials(folder: Path) -> None:
    """Delete what killed stores and deletions left: ``.partial-*`` folders older than
    :data:`ABANDONED_PARTIAL_S` (a store going on now is younger and is left alone) and
    ``.deleting-*`` folders (nothing reads them)."""
    cutoff = time.time() - ABANDONED_PARTIAL_S
    for path in folder.glob(".partial-*"):
        try:
            abandoned = path.stat().st_mtime < cutoff
        except OSError:  # renamed or deleted meanwhile
            continue
        if abandoned:
            shutil.rmtree(path, ignore_errors=True)
    for path in folder.glob(".deleting-*"):
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- activation


@dataclass
class BackendSession:
    """Handle returned by :func:`activate_backend` for one network build.

    ``build`` refuses network operations, generates the project (standalone), compiles it and
    optionally runs it; ``run`` re-runs the compiled binary with ``run_args``.
    """

    backend: str
    device: str
    directory: Path | None
    build_on_run: bool = False
    codegen_only: bool = False
    cache_root: Path | None = None
    cache_key: str | None = None
    project_cache: Path | None = None
    results_directory: str = "results"
    curand_link_dir: Path | None = None
    built: bool = False
    _lock: Any = field(default=None, repr=False)

    @property
    def standalone(self) -> bool:
        return self.device in STANDALONE_BACKENDS

    def _brian_device(self):
        from brian2 import get_device

        return get_device()

    def _check_networks(self, extra: Any = None) -> None:
        objects = [extra] if extra is not None else []
        if self.standalone:
            from brian2 import MagicNetwork, NetworkOperation

            for net in self._brian_device().networks:
                objects.append(net)
                if isinstance(net, MagicNetwork):
                    # run() forgets its objects after each run: check every live operation.
                    objects.extend(ref() for ref in NetworkOperation.__instances__())
        refuse_network_operations([obj for obj in objects if obj is not None], self.backend)

    def add_run_seed(self, net: Any) -> Any:
        """Apply ``run_args`` at this point of the coming run and add a one-value group whose
        shared integer ``run_seed`` each re-run sets through ``run_args``.

        On cpp_standalone the generators are then reseeded from it (``seed * 7919 + thread``),
        so every re-run of one build draws new, reproducible random numbers; without it each
        re-run would repeat the build's stream. Call before ``run_network``; returns the
        group (pass ``{group.run_seed: seed}`` in ``run_args``).
        """
        from brian2 import NeuronGroup, prefs

        group = NeuronGroup(1, "run_seed : integer (shared, constant)", name="run_seed_holder")
        net.add(group)
        if not self.standalone:
            return group
        device = self._brian_device()
        device.apply_run_args()
        if self.device == "cpp_standalone":
            array = device.get_array_name(group.variables["run_seed"])
            threads = max(1, int(prefs.devices.cpp_standalone.openmp_threads))
            device.insert_code(
                "main",
                f"for (int _i = 0; _i < {threads}; _i++) brian::_random_generators[_i]"
                f".seed((unsigned long) brian::{array}[0] * 7919UL + _i);",
            )
        return group

    def run_network(self, net: Any, duration: Any, **run_kwargs: Any) -> None:
        """``net.run(duration, ...)`` after refusing network operations; with
        ``build_on_run=True`` a standalone session then builds and runs at once."""
        self._check_networks(net)
        net.run(duration, **run_kwargs)
        if self.build_on_run and self.standalone:
            self.build(run=True)

    def build(
        self,
        *,
        run: bool = True,
        run_args: Mapping[Any, Any] | None = None,
        clean: bool = False,
        with_output: bool = False,
    ) -> Path | None:
        """Generate and compile the standalone project (and run it once unless ``run=False``).

        Returns the build folder (None on runtime, where ``net.run`` already simulated).
        Compilation is incremental: Brian2 rewrites only generated files whose content changed
        and ``make`` recompiles only those. brian2cuda's makefile tracks neither headers nor
        itself, so a CUDA build whose headers or makefile differ from the last build in that
        folder (``generated_code_hash(..., headers_only=True)``, kept in
        ``.plastix_code_hash``) is rebuilt from clean.
        """
        self._check_networks()
        if not self.standalone:
            if run_args:
                raise ValueError(
                    "run_args: only standalone backends take run_args; on runtime set the "
                    "values on the objects and call net.run again"
                )
            self.built = True
            return None
        if self.built:
            raise RuntimeError(
                "build: this session has already built its project; re-run it with "
                "session.run(run_args=...) or open a new activate_backend(...) for a new network"
            )
        device = self._brian_device()
        key = self.cache_key or "+".join(sorted(net.name for net in device.networks)) or "empty"
        if self.directory is None:
            assert self.cache_root is not None
            self.directory = build_cache_dir(self.cache_root, key)
            self._acquire_lock()
            _remove_results_of_ended_processes(self.directory)
        projects = seeded = None
        if self.project_cache is not None and not self.codegen_only:
            projects = build_cache_dir(self.project_cache, key)
            self.directory.mkdir(parents=True, exist_ok=True)
            if seed_from_project_cache(projects, self.directory):
                seeded = source_digests(self.directory)
        marker = self.directory / _CODE_HASH_FILE
        previous = marker.read_text().strip() if marker.is_file() else None
        device.build(
            directory=str(self.directory),
            results_directory=self.results_directory,
            compile=False,
            run=False,
            with_output=with_output,
        )
        if self.codegen_only:
            self.built = True
            return self.directory
        if seeded is not None:
            mark_regenerated_sources(self.directory, seeded)
        code_hash = generated_code_hash(self.directory, headers_only=True)
        if self.device == "cuda_standalone" and previous != code_hash:
            clean = True
        marker.unlink(missing_ok=True)  # an interrupted compile must not look up to date
        from brian2.codegen.cpp_prefs import get_compiler_and_args

        try:
            with _interruptible_shell_commands():
                device.compile_source(str(self.directory), get_compiler_and_args()[0], False, clean)
        except BaseException:
            # The binary of the last build in this folder (another network, or a cached one)
            # must not be run as if it were this one's.
            _remove_binary(self.directory)
            raise
        marker.write_text(code_hash + "\n")
        self.built = True
        if projects is not None:
            store_in_project_cache(self.directory, projects)
        if run:
            self.run(run_args=run_args, with_output=with_output)
        return self.directory

    def _acquire_lock(self) -> None:
        """Hold ``<build folder>.lock`` until the session ends: another process building or
        running the same cached folder would overwrite its static arrays."""
        from brian2.utils.filelock import FileLock  # vendored py-filelock, cross-platform

        assert self.directory is not None
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.directory) + ".lock")
        self._lock.acquire()

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def run(
        self,
        run_args: Mapping[Any, Any] | None = None,
        *,
        with_output: bool = False,
    ) -> None:
        """Re-run the compiled binary; ``run_args`` maps ``group.var`` / ``TimedArray`` to new
        values (Brian2 >= 2.6): initial values, ``(shared, constant)`` parameters, stimuli."""
        self._check_networks()
        if not self.standalone:
            raise ValueError(
                f"run: backend {self.backend!r} simulates in net.run(); re-running a build with "
                "run_args needs cpp_standalone or cuda_standalone"
            )
        if not self.built or self.codegen_only:
            raise RuntimeError(
                "run: nothing compiled yet; call session.build(run=False) first "
                "(and do not use codegen_only=True)"
            )
        if run_args is not None and not isinstance(run_args, Mapping):
            raise TypeError(
                f"run_args: expected a mapping {{group.var or TimedArray: value}}, got "
                f"{type(run_args).__name__}"
            )
        device = self._brian_device()
        try:
            device.run(
                directory=str(self.directory),
                results_directory=self.results_directory,
                with_output=with_output,
                run_args=run_args,
            )
        finally:
            # Brian2 writes each array of run_args to static_arrays/init_<hash>.dat and never
            # deletes it: a training loop of re-runs would fill the disk. The binary has read
            # them; Brian2 writes them again when a later run needs the same values.
            for name in getattr(device, "run_args_arrays", ()):
                array = self.directory / "static_arrays" / name
                array.unlink(missing_ok=True)
                array.with_name(array.name + ".lock").unlink(missing_ok=True)


@contextlib.contextmanager
def _interruptible_shell_commands() -> Iterator[None]:
    """``os.system`` that Ctrl-C interrupts, for Brian2's compile step (``make`` through
    ``os.system``, which ignores SIGINT in the caller while the command runs).

    Without it Ctrl-C reached only ``make``, and came back as "Project compilation failed", a
    failed run instead of an interrupted one (and a SIGINT sent to this process alone was
    lost). Here the command runs in its own session: SIGINT raises KeyboardInterrupt in this
    process, which stops the command's whole process group (SIGTERM) and re-raises.
    """

    def system(command: str) -> int:
        with subprocess.Popen(command, shell=True, start_new_session=True) as proc:
            try:
                return proc.wait()
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
                raise

    if os.name != "posix":  # sessions and process groups are POSIX's
        yield
        return
    original = os.system
    os.system = system
    try:
        yield
    finally:
        os.system = original


def _own_results_folder() -> str:
    """Results folder of this process in a shared ``cache_root`` build folder."""
    return f"results-{this_host()}-{os.getpid()}"


def _remove_results_of_ended_processes(directory: Path) -> None:
    """Delete the results folders that ended processes of this host left in a shared build
    folder (one per process that ran it). A live process's folder is kept: its monitors are
    read from it, also after its session ended."""
    prefix = _own_results_folder().rpartition("-")[0] + "-"
    for path in directory.glob(f"{prefix}*"):
        pid = path.name[len(prefix) :]
        if pid.isdigit() and int(pid) != os.getpid() and process_has_ended(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _check_activate_args(
    backend: str,
    directory: Any,
    openmp_threads: Any,
    cache_root: Any,
    cache_key: Any,
    project_cache: Any,
    codegen_only: Any,
    compute_capability: Any,
    gpu_id: Any,
    cuda_runtime_version: Any,
) -> None:
    for name, value in (
        ("directory", directory),
        ("cache_root", cache_root),
        ("project_cache", project_cache),
    ):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{name}: expected a path, got {type(value).__name__}")
    if directory is not None and cache_root is not None:
        raise ValueError("directory/cache_root: give one of them, not both")
    if cache_root is not None and project_cache is not None:
        raise ValueError(
            "cache_root/project_cache: give one of them, not both (cache_root builds in the "
            "shared folder; project_cache builds in a private copy)"
        )
    if cache_key is not None and cache_root is None and project_cache is None:
        raise ValueError(
            "cache_key: needs cache_root or project_cache (the folder that holds cached builds)"
        )
    if openmp_threads is None:
        pass
    elif not is_integer(openmp_threads):
        raise TypeError(f"openmp_threads: expected an int >= 0, got {openmp_threads!r}")
    elif openmp_threads < 0:
        raise ValueError(f"openmp_threads: must be >= 0 (0 = no OpenMP), got {openmp_threads}")
    if not isinstance(codegen_only, bool):
        raise TypeError(f"codegen_only: expected a bool, got {codegen_only!r}")
    if codegen_only and device_name(backend) not in STANDALONE_BACKENDS:
        raise ValueError(
            f"codegen_only: only standalone backends generate code, got backend={backend!r}"
        )
    if compute_capability is not None and (
        not is_real(compute_capability) or compute_capability < 3.5
    ):
        raise ValueError(
            f"compute_capability: expected a number >= 3.5 such as 9.0, got {compute_capability!r}"
        )
    if gpu_id is not None and (not is_integer(gpu_id) or gpu_id < 0):
        raise ValueError(f"gpu_id: expected an int >= 0, got {gpu_id!r}")
    if cuda_runtime_version is not None and not is_real(cuda_runtime_version):
        raise ValueError(
            f"cuda_runtime_version: expected a number such as 13.0, got {cuda_runtime_version!r}"
        )


#: Brian2's default ``make`` arguments on Linux and macOS up to 2.10: ``-j`` without a limit,
#: which starts a compiler for every generated file at once (36 for the IB circuit, about 3 GB).
#: Brian2 2.11 defaults to ``-j<CPU count>`` itself.
UNBOUNDED_MAKE_ARGS = ["-j"]


def bounded_make_args() -> list[str]:
    """``make -j N``, N the CPUs this process may run on: as fast as unbounded ``-j`` on a
    machine with few cores, without a compiler per file competing for memory and CPU."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity call
        cpus = os.cpu_count() or 1
    return ["-j", str(cpus)]


@contextlib.contextmanager
def activate_backend(
    backend: str = "auto",
    directory: str | os.PathLike[str] | None = None,
    *,
    build_on_run: bool = False,
    openmp_threads: int | None = None,
    codegen_only: bool = False,
    cache_root: str | os.PathLike[str] | None = None,
    cache_key: str | None = None,
    project_cache: str | os.PathLike[str] | None = None,
    cuda_path: str | None = None,
    gpu_id: int | None = None,
    compute_capability: float | None = None,
    cuda_runtime_version: float | None = None,
) -> Iterator[BackendSession]:
    """Make ``backend`` Brian2's device for the ``with`` block and yield a :class:`BackendSession`.

    The device is reset first (``device.reinit(); set_device(..., build_on_run=False)``) so a
    new network can be built in a process that already built one; preferences changed here
    (codegen target, OpenMP threads, CUDA settings) and the previous device are restored on
    exit. ``openmp_threads=None`` keeps ``prefs.devices.cpp_standalone.openmp_threads`` as it
    is (Brian2's default 0: no OpenMP). Brian2 has one standalone device per process, so a
    standalone session is refused while another is open: opening it would reset the device
    under the open one. Brian2's (<= 2.10) default ``make -j`` without a limit becomes
    :func:`bounded_make_args` (a value you set in
    ``prefs.devices.cpp_standalone.extra_make_args_unix`` is kept). Brian2's own
    ``build_on_run`` is always off, so no build happens without the
    network-operation check: with ``build_on_run=True``, ``session.run_network(net, T)`` builds
    and runs at once; otherwise call ``session.build()``.

    The build folder is ``directory``, or under ``cache_root`` the folder for ``cache_key``
    (default: the name(s) of the network(s) that ran; see :func:`build_cache_dir`), or a fresh
    temporary folder. Building the same network into the same folder again recompiles nothing.
    Generated names follow the Brian2 objects alive at build time, so name your ``Network``
    and drop references to earlier networks to get cache hits (garbage cycles are collected on
    entry, so a dropped network no longer counts). The ``cache_root`` folder is
    locked for the whole session, since runs write into it.

    ``project_cache`` instead keeps the build folder private — so that runs of one network can
    go on side by side — and starts it as a copy of the most recently compiled project for
    ``cache_key`` under ``project_cache`` (:func:`seed_from_project_cache`); once compiled, the
    project is stored there in turn (:func:`store_in_project_cache`). Only what changed is
    recompiled, as in an incremental build in place.
    """
    concrete = resolve_backend(backend)
    dev_name = device_name(concrete)
    _check_activate_args(
        concrete,
        directory,
        openmp_threads,
        cache_root,
        cache_key,
        project_cache,
        codegen_only,
        compute_capability,
        gpu_id,
        cuda_runtime_version,
    )
    openmp_threads = None if openmp_threads is None else int(openmp_threads)
    gpu_id = None if gpu_id is None else int(gpu_id)
    if not isinstance(build_on_run, bool):
        raise TypeError(f"build_on_run: expected a bool, got {build_on_run!r}")

    if dev_name in STANDALONE_BACKENDS and _OPEN_STANDALONE_SESSIONS:
        open_session = _OPEN_STANDALONE_SESSIONS[-1]
        raise RuntimeError(
            f"activate_backend({concrete!r}): a {open_session.device} session is already open "
            f"in this process (build folder {open_session.directory or 'not chosen yet'}); "
            "Brian2 has one standalone device per process and a new session would reset it "
            "under the open one. Fix: finish the open `with activate_backend(...)` block before "
            "opening the next, or run the inner network with backend='runtime'"
        )
    if dev_name == "cuda_standalone":
        _import_brian2cuda()
    from brian2 import prefs, set_device
    from brian2.devices.device import all_devices, reset_device

    build_dir: Path | None = None
    root = Path(cache_root) if cache_root is not None else None
    if dev_name in STANDALONE_BACKENDS:
        if directory is not None:
            build_dir = Path(directory)
        elif root is None:
            build_dir = Path(tempfile.mkdtemp(prefix="plastix_build_"))
    settings: dict[str, Any] = {}
    link_dir: Path | None = None
    if concrete in RUNTIME_TARGETS:
        settings["codegen.target"] = concrete
    if dev_name in STANDALONE_BACKENDS:
        if openmp_threads is not None:
            settings["devices.cpp_standalone.openmp_threads"] = openmp_threads
        if list(prefs["devices.cpp_standalone.extra_make_args_unix"]) == UNBOUNDED_MAKE_ARGS:
            settings["devices.cpp_standalone.extra_make_args_unix"] = bounded_make_args()
    if dev_name == "cuda_standalone":
        settings.update(
            _cuda_activation_settings(
                codegen_only=codegen_only,
                link_base=root if root is not None else build_dir,
                cuda_path=cuda_path,
                gpu_id=gpu_id,
                compute_capability=compute_capability,
                cuda_runtime_version=cuda_runtime_version,
            )
        )
        link = settings.pop("_curand_link", None)
        link_dir = link[1] if link else None
        if link:
            _link_curand(*link)

    saved = {name: prefs[name] for name in settings}
    if dev_name in STANDALONE_BACKENDS:
        all_devices[dev_name].reinit()
    # Brian2 names clocks and generated code objects after the live ones ("..._clock_1",
    # "..._codeobject_1" while an old network is alive, also one only held by a reference cycle
    # that the collector has not reached yet); collecting those cycles before the network is
    # built keeps the generated code, and so the standalone build cache and the Cython cache,
    # the same from one build to the next.
    gc.collect()
    set_device(dev_name, build_on_run=False)
    session = BackendSession(
        backend=concrete,
        device=dev_name,
        directory=build_dir,
        build_on_run=build_on_run,
        codegen_only=codegen_only,
        cache_root=root,
        cache_key=cache_key,
        project_cache=Path(project_cache) if project_cache is not None else None,
        results_directory="results" if root is None else _own_results_folder(),
        curand_link_dir=link_dir,
    )
    if session.standalone:
        _OPEN_STANDALONE_SESSIONS.append(session)
    try:
        for name, value in settings.items():
            prefs[name] = value
        yield session
    finally:
        if session.standalone:
            _OPEN_STANDALONE_SESSIONS.remove(session)
        session.release()
        for name, value in saved.items():
            prefs[name] = value
        reset_device()


def _import_brian2cuda() -> None:
    version, requires = _brian2cuda_requirement()
    try:
        importlib.import_module("brian2cuda")
    except ImportError as err:
        hint = (
            f"brian2cuda {version} requires {requires}, installed brian2 is "
            f"{_dist_version('brian2')}; "
            if version
            else ""
        )
        raise RuntimeError(
            f"backend='cuda_standalone': brian2cuda cannot be imported ({err}). {hint}Fix: "
            "pip install brian2cuda with the brian2 version it pins (1.0b1: brian2==2.10.1, "
            "Python >= 3.12) in a separate environment, or use backend='cpp_standalone'"
        ) from err


def _cuda_activation_settings(
    *,
    codegen_only: bool,
    link_base: Path | None,
    cuda_path: str | None,
    gpu_id: int | None,
    compute_capability: float | None,
    cuda_runtime_version: float | None,
) -> dict[str, Any]:
    cuda = _probe_cuda()
    if cuda_path is None:  # yours in the preferences, else what the probe found
        cuda_path = _pref_or(f"{_CUDA_BACKEND_PREF}.cuda_path", None)
    path = cuda_path if cuda_path is not None else cuda["cuda_path"]
    version = cuda_runtime_version if cuda_runtime_version is not None else cuda["nvcc_version"]
    if version is None:
        if not codegen_only:
            raise RuntimeError(
                "backend='cuda_standalone': nvcc not found, so the CUDA code cannot be "
                "compiled. Fix: install the CUDA toolkit and set $CUDA_PATH, or pass "
                "codegen_only=True (with cuda_runtime_version=13.0) to only generate code"
            )
        version = 13.0
    curand: CurandLocation | None = cuda["curand"]
    if not _curand_links(curand) and not codegen_only:
        found = "headers not found" if curand is None else "headers found but no libcurand.so"
        raise RuntimeError(
            f"backend='cuda_standalone': cuRAND {found} (brian2cuda includes curand.h and "
            "links -lcurand). Fix: pip install nvidia-curand, or pass codegen_only=True to "
            "only generate code"
        )
    gpu_available = bool(cuda["gpu"]["gpus"]) and not codegen_only
    link_dir = None
    if curand is not None and curand.source != "toolkit" and curand.library_file is not None:
        assert link_base is not None
        link_dir = link_base / _CURAND_LINK_DIR
    settings = cuda_settings(
        cuda_path=path,
        cuda_runtime_version=version,
        curand=curand,
        curand_link_dir=link_dir,
        gpu_available=gpu_available,
        gpu_id=gpu_id,
        compute_capability=compute_capability,
    )
    if link_dir is not None:
        settings["_curand_link"] = (curand, link_dir)
    return settings
