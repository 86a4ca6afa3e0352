"""Details of plastix.circuits.backend that need no compilation: probing the tools, CUDA
settings for code generation, the build cache's hashes, and the build decisions of a session
(cache key, clean CUDA rebuilds, locks), the latter checked against a stand-in Brian2 device."""

import importlib.metadata
import importlib.util
import os
import shutil
from pathlib import Path

import pytest
from backend_probes import WHEEL_CURAND, cuda_probe, fake_probes

from plastix.circuits import backend
from plastix.circuits.backend import (
    BackendSession,
    CurandLocation,
    activate_backend,
    build_cache_dir,
    cuda_settings,
    generated_code_hash,
    resolve_backend,
    seed_from_project_cache,
    store_in_project_cache,
)

CB = "devices.cuda_standalone.cuda_backend"
TOOLKIT_CURAND = CurandLocation(
    "/opt/cuda/include", "/opt/cuda/lib64", "/opt/cuda/lib64/libcurand.so", "toolkit"
)


def _script(path: Path, body: str) -> Path:
    """An executable shell script at ``path`` (a stand-in for a tool)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


NO_GPU = {"nvidia_smi": None, "gpus": [], "error": "nvidia-smi not found"}


# ----------------------------------------------------------------------------- choosing


def test_auto_needs_a_gpu_for_cuda_and_a_compiler_for_cpp(monkeypatch):
    """CUDA that compiles but has no GPU to run on: auto takes cpp_standalone, and the report
    says CUDA can generate and compile code but not run; without a working C++ compiler
    auto falls back to runtime."""
    fake_probes(monkeypatch, cuda_probe(gpu=NO_GPU))
    assert resolve_backend("auto") == "cpp_standalone"
    cuda = {s.name: s for s in backend.backend_report()}["cuda_standalone"]
    assert not cuda.available
    assert cuda.details == {"code_generation": True, "compilation": True}
    assert cuda.missing == ["gpu: no NVIDIA GPU visible (nvidia-smi not found)"]
    no_nvcc = cuda_probe(nvcc=None, nvcc_version=None, gpu=NO_GPU)
    fake_probes(monkeypatch, no_nvcc)  # brian2cuda alone generates code (codegen_only)
    cuda = {s.name: s for s in backend.backend_report()}["cuda_standalone"]
    assert cuda.details == {"code_generation": True, "compilation": False}
    fake_probes(monkeypatch, cuda_probe(gpu=NO_GPU, brian2cuda_matches=False), cxx_works=False)
    assert resolve_backend("auto") == "runtime"
    fake_probes(monkeypatch, cuda_probe())
    assert resolve_backend("auto") == "cuda_standalone"


def test_cython_counts_as_available_with_cython_and_a_compiler(monkeypatch):
    """backend_problems('cython') is empty where Cython is installed and C++ compiles."""
    pytest.importorskip("Cython")
    fake_probes(monkeypatch, cuda_probe(), cxx_works=True)
    assert backend.backend_problems("cython") == []


# ----------------------------------------------------------------------------- probing


def test_cxx_with_arguments_is_probed_as_make_runs_it(tmp_path, monkeypatch):
    """``$CXX`` may carry arguments (``ccache g++``): its program is resolved on PATH and the
    probe runs it with those arguments, as the makefile does; a program not on PATH means no
    compiler, and a blank ``$CXX`` falls back to make's default g++ (or c++)."""
    compiler = _script(
        tmp_path / "bin" / "mycxx",
        '[ "$1" = "--wrapped" ] || { echo "called without --wrapped" >&2; exit 1; }\n'
        'echo "mycxx 2.0"',
    )
    monkeypatch.setenv("PATH", f"{compiler.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CXX", "mycxx --wrapped -O2")
    assert backend._cxx_command() == [str(compiler), "--wrapped", "-O2"]
    info = backend._probe_cxx.__wrapped__()  # the uncached probe
    assert info["works"], info.get("error")
    assert info["version"] == "mycxx 2.0"
    assert info["compiler"] == f"{compiler} --wrapped -O2"
    monkeypatch.setenv("CXX", "no-such-compiler-here -O2")
    assert backend._cxx_command() is None
    monkeypatch.setenv("CXX", "   ")
    assert backend._cxx_command() == [shutil.which("g++") or shutil.which("c++")]


def test_cxx_probe_needs_make_and_a_compiler_that_succeeds(tmp_path, monkeypatch):
    """A compiler that compiles is not enough: without ``make`` standalone projects cannot be
    built, and the probe says so; a compiler that fails is reported with its error."""
    probe = backend._probe_cxx.__wrapped__  # the uncached probe
    tools = tmp_path / "bin"
    good = _script(tools / "goodcxx", "echo 'goodcxx 1.0'; exit 0")
    bad = _script(tools / "badcxx", "echo 'cannot find <vector>' >&2; exit 1")
    monkeypatch.setenv("PATH", str(tools))  # no make here
    monkeypatch.setenv("CXX", str(good))
    info = probe()
    assert info["make"] is None and not info["works"]
    assert "'make' not found" in info["error"]
    assert info["version"] == "goodcxx 1.0"
    (tools / "make").symlink_to(good)
    info = probe()
    assert info["works"] and info["make"] == str(tools / "make")
    monkeypatch.setenv("CXX", str(bad))
    info = probe()
    assert not info["works"] and "cannot find <vector>" in info["error"]


def _fake_toolkit(root: Path, *, header: bool = True) -> Path:
    _script(root / "bin" / "nvcc", "echo 'Cuda compilation tools, release 13.0, V13.0.88'")
    if header:
        (root / "include").mkdir(parents=True)
        (root / "include" / "cuda_runtime.h").write_text("// runtime")
    return root


def test_cuda_path_needs_both_nvcc_and_the_runtime_header(tmp_path, monkeypatch):
    """A folder with bin/nvcc but no include/cuda_runtime.h is not a toolkit: the next
    candidate ($CUDA_HOME after $CUDA_PATH) that has both is taken."""
    half = _fake_toolkit(tmp_path / "half", header=False)
    full = _fake_toolkit(tmp_path / "full")
    monkeypatch.setenv("CUDA_PATH", str(half))
    monkeypatch.setenv("CUDA_HOME", str(full))
    assert backend._find_cuda_path() == os.path.realpath(full)


def test_cuda_path_follows_an_nvcc_link_to_its_toolkit(tmp_path, monkeypatch):
    """nvcc found on $PATH as a link (e.g. in /usr/local/bin): the toolkit is the folder of
    the real nvcc, not the folder above the link."""
    toolkit = _fake_toolkit(tmp_path / "cuda-13.0")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvcc").symlink_to(toolkit / "bin" / "nvcc")
    monkeypatch.setenv("CUDA_PATH", "")
    monkeypatch.setenv("CUDA_HOME", "")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert backend._find_cuda_path() == os.path.realpath(toolkit)


def test_nvcc_version_reads_major_and_minor(tmp_path):
    """``nvcc --version`` says "release 12.4": version 12.4; an nvcc that fails gives None."""
    nvcc = _script(tmp_path / "nvcc", "echo 'Cuda compilation tools, release 12.4, V12.4.131'")
    assert backend._nvcc_version(str(nvcc)) == pytest.approx(12.4)
    broken = _script(tmp_path / "broken", "echo 'release 13.0'; exit 1")
    assert backend._nvcc_version(str(broken)) is None


def test_curand_of_the_toolkit_is_found_in_lib64(tmp_path):
    """A toolkit with include/curand.h and lib64/libcurand.so: cuRAND from the toolkit."""
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "curand.h").write_text("// curand")
    (tmp_path / "lib64").mkdir()
    (tmp_path / "lib64" / "libcurand.so").write_bytes(b"")
    found = backend._find_curand(str(tmp_path))
    assert found == CurandLocation(
        str(tmp_path / "include"),
        str(tmp_path / "lib64"),
        str(tmp_path / "lib64" / "libcurand.so"),
        "toolkit",
    )


def test_gpus_are_read_from_nvidia_smi(tmp_path, monkeypatch):
    """Each line of ``nvidia-smi --query-gpu=name,compute_cap`` is one GPU (blanks trimmed);
    a failing nvidia-smi is reported with its message."""
    listing = "printf 'NVIDIA H100 80GB HBM3, 9.0\\nTesla T4, 7.5\\n'"
    _script(tmp_path / "ok" / "nvidia-smi", listing)
    monkeypatch.setenv("PATH", str(tmp_path / "ok"))
    assert backend._probe_gpus()["gpus"] == [
        {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"},
        {"name": "Tesla T4", "compute_capability": "7.5"},
    ]
    _script(tmp_path / "bad" / "nvidia-smi", "echo 'driver not loaded' >&2; exit 9")
    monkeypatch.setenv("PATH", str(tmp_path / "bad"))
    probe = backend._probe_gpus()
    assert probe["gpus"] == [] and "driver not loaded" in probe["error"]


def test_brian2cuda_pin_is_the_brian2_requirement_not_another_package(monkeypatch):
    """Of brian2cuda's requirements, the pin is the one on brian2 itself (not brian2tools, not
    an extra), with blanks and environment markers removed."""
    requires = [
        "brian2tools>=0.3",
        "brian2>=2.0; extra == 'docs'",
        "brian2 == 2.10.1 ; python_version >= '3.12'",
    ]
    monkeypatch.setattr(backend, "_dist_version", lambda dist: "1.0b1")
    monkeypatch.setattr(importlib.metadata, "requires", lambda dist: requires)
    assert backend._brian2cuda_requirement() == ("1.0b1", "brian2==2.10.1")


# ----------------------------------------------------------------------------- CUDA settings


def test_cuda_settings_move_every_standard_to_cpp17():
    """Host-compiler arguments: c++14 becomes c++17 too, and C++17 is added where no standard
    is given; nvcc arguments you pass keep everything but their own -std."""
    settings = cuda_settings(gcc_args=["-O2", "-std=c++14"], nvcc_args=["-G", "-std=c++14"])
    assert settings["codegen.cpp.extra_compile_args_gcc"] == ["-O2", "-std=c++17"]
    assert settings[f"{CB}.extra_compile_args_nvcc"] == ["-G", "-std=c++17"]
    settings = cuda_settings(gcc_args=["-O2"], nvcc_args=[])
    assert settings["codegen.cpp.extra_compile_args_gcc"] == ["-O2", "-std=c++17"]
    assert settings[f"{CB}.extra_compile_args_nvcc"] == ["-std=c++17"]


def test_cuda_settings_pass_on_the_gpu_and_compute_capability_you_choose():
    """With or without a GPU, an explicit gpu_id and compute_capability are used as given."""
    with_gpu = cuda_settings(gcc_args=[], gpu_available=True, gpu_id=1, compute_capability=8)
    assert with_gpu[f"{CB}.detect_gpus"] is True
    assert with_gpu[f"{CB}.gpu_id"] == 1
    assert with_gpu[f"{CB}.compute_capability"] == 8.0
    without = cuda_settings(gcc_args=[], gpu_id=2, compute_capability=8.6)
    assert without[f"{CB}.detect_gpus"] is False
    assert without[f"{CB}.gpu_id"] == 2
    assert without[f"{CB}.compute_capability"] == pytest.approx(8.6)


def test_cuda_settings_add_folders_only_for_a_curand_wheel(monkeypatch):
    """cuRAND of the toolkit needs no extra folders; a wheel's folders are added once (not
    again when already set), linked from its own folder when no link folder is given; a
    wheel with headers alone adds only the include folder."""
    from brian2 import prefs

    toolkit = cuda_settings(gcc_args=[], curand=TOOLKIT_CURAND)
    assert not [name for name in toolkit if name.startswith("codegen.cpp.") and "dirs" in name]
    monkeypatch.setitem(prefs, "codegen.cpp.include_dirs", ["/mine", "/w/include"])
    monkeypatch.setitem(prefs, "codegen.cpp.library_dirs", ["/mine"])
    monkeypatch.setitem(prefs, "codegen.cpp.runtime_library_dirs", [])
    wheel = cuda_settings(gcc_args=[], curand=WHEEL_CURAND)
    assert wheel["codegen.cpp.include_dirs"] == ["/mine", "/w/include"]
    assert wheel["codegen.cpp.library_dirs"] == ["/mine", "/w/lib"]
    assert wheel["codegen.cpp.runtime_library_dirs"] == ["/w/lib"]
    headers = CurandLocation("/h/include", None, None, "pip wheel")
    only_headers = cuda_settings(gcc_args=[], curand=headers)
    assert only_headers["codegen.cpp.include_dirs"] == ["/mine", "/w/include", "/h/include"]
    assert "codegen.cpp.library_dirs" not in only_headers


def test_curand_link_follows_a_new_library(tmp_path):
    """The ``libcurand.so`` link points at the wheel's library, also after the wheel changed;
    a cuRAND without a library file gets no link."""
    old, new = tmp_path / "libcurand.so.10", tmp_path / "libcurand.so.11"
    old.write_bytes(b"old")
    new.write_bytes(b"new")
    link_dir = tmp_path / "_curand_lib"
    backend._link_curand(CurandLocation("/i", str(tmp_path), str(old), "pip wheel"), link_dir)
    assert (link_dir / "libcurand.so").read_bytes() == b"old"
    backend._link_curand(CurandLocation("/i", str(tmp_path), str(new), "pip wheel"), link_dir)
    assert os.readlink(link_dir / "libcurand.so") == str(new)
    backend._link_curand(CurandLocation("/i", None, None, "pip wheel"), tmp_path / "none")
    assert not (tmp_path / "none").exists()


def _activation(monkeypatch, probe, **kwargs):
    monkeypatch.setattr(backend, "_probe_cuda", lambda: probe)
    args = dict(codegen_only=False, link_base=None, cuda_path=None, gpu_id=None)
    args |= dict(compute_capability=None, cuda_runtime_version=None)
    return backend._cuda_activation_settings(**(args | kwargs))


def test_cuda_activation_without_nvcc_refuses_to_compile_and_generates_for_cuda_13(monkeypatch):
    """No nvcc: compiling is refused with the fix (codegen_only=True); code generation alone
    assumes CUDA 13.0."""
    probe = cuda_probe(nvcc=None, nvcc_version=None, curand=TOOLKIT_CURAND)
    with pytest.raises(RuntimeError, match=r"nvcc not found.*codegen_only=True"):
        _activation(monkeypatch, probe)
    settings = _activation(monkeypatch, probe, codegen_only=True)
    assert settings[f"{CB}.cuda_runtime_version"] == 13.0


def test_cuda_activation_prefers_your_toolkit_version_and_ignores_the_gpu_for_codegen(
    monkeypatch, tmp_path
):
    """An explicit cuda_path and cuda_runtime_version win over what the probe found; code
    generation alone never asks brian2cuda to detect the GPU, even where one is visible."""
    probe = cuda_probe(curand=TOOLKIT_CURAND)
    settings = _activation(monkeypatch, probe, cuda_path="/mine", cuda_runtime_version=12.8)
    assert settings[f"{CB}.cuda_path"] == "/mine"
    assert settings[f"{CB}.cuda_runtime_version"] == 12.8
    assert settings[f"{CB}.detect_gpus"] is True  # compiling to run: the GPU is used
    generated = _activation(monkeypatch, probe, codegen_only=True)
    assert generated[f"{CB}.detect_gpus"] is False
    assert generated[f"{CB}.compute_capability"] == 9.0


def test_cuda_activation_links_curand_only_from_a_wheel(monkeypatch, tmp_path):
    """A wheel's cuRAND is linked through ``<build base>/_curand_lib``; the toolkit's is used
    where it is, with no link folder."""
    wheel = _activation(monkeypatch, cuda_probe(), link_base=tmp_path)
    assert wheel["_curand_link"] == (WHEEL_CURAND, tmp_path / "_curand_lib")
    assert wheel["codegen.cpp.library_dirs"][-1] == str(tmp_path / "_curand_lib")
    toolkit = _activation(monkeypatch, cuda_probe(curand=TOOLKIT_CURAND), link_base=tmp_path)
    assert "_curand_link" not in toolkit


# ----------------------------------------------------------------------------- build cache


def test_code_hash_covers_file_names_results_readers_and_the_makefile(tmp_path):
    """The hash changes when a source is renamed (same content), when a source named
    ``results*`` below the top changes, and (headers_only, which decides clean CUDA rebuilds)
    when the makefile changes; top-level results folders do not count."""
    (tmp_path / "code_objects").mkdir()
    (tmp_path / "code_objects" / "a.cpp").write_text("int a;")
    (tmp_path / "code_objects" / "results_reader.cpp").write_text("// reader")
    (tmp_path / "makefile").write_text("all:\n")
    full, headers = generated_code_hash(tmp_path), generated_code_hash(tmp_path, headers_only=True)
    (tmp_path / "results-host-1").mkdir()
    (tmp_path / "results-host-1" / "out.cpp").write_text("// written by a run")
    assert generated_code_hash(tmp_path) == full
    (tmp_path / "code_objects" / "a.cpp").rename(tmp_path / "code_objects" / "b.cpp")
    renamed = generated_code_hash(tmp_path)
    assert renamed != full
    (tmp_path / "code_objects" / "results_reader.cpp").write_text("// another reader")
    assert generated_code_hash(tmp_path) != renamed
    (tmp_path / "makefile").write_text("all:\n\tnvcc -O3\n")
    assert generated_code_hash(tmp_path, headers_only=True) != headers


def _stored_project(tmp_path, cache):
    project = tmp_path / "project"
    (project / "code_objects").mkdir(parents=True)
    (project / "main.cpp").write_text("int main() { return 0; }")
    (project / "main.o").write_bytes(b"object")
    (project / "main").write_bytes(b"binary")
    return store_in_project_cache(project, cache)


def test_clearing_a_killed_seed_keeps_the_curand_link(tmp_path):
    """A build folder that a killed copy left is cleared before seeding, but its cuRAND link
    folder stays (it is not part of any project)."""
    cache = tmp_path / "cache"
    assert _stored_project(tmp_path, cache) is not None
    target = tmp_path / "build"
    (target / "_curand_lib").mkdir(parents=True)
    (target / "_curand_lib" / "libcurand.so").write_bytes(b"lib")
    (target / ".plastix_seeding").touch()
    (target / "main").write_bytes(b"trunc")
    assert seed_from_project_cache(cache, target)
    assert (target / "main").read_bytes() == b"binary"
    assert (target / "_curand_lib" / "libcurand.so").read_bytes() == b"lib"


def test_a_project_that_cannot_be_stored_returns_none(tmp_path):
    """Storing into a cache folder that cannot be created reports None (nothing stored)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.cpp").write_text("int main() { return 0; }")
    assert store_in_project_cache(project, blocker / "key") is None


# ----------------------------------------------------------------------------- build decisions


class FakeDevice:
    """Stands in for Brian2's standalone device: ``build`` writes ``files`` into the folder,
    ``compile_source`` records its ``clean`` flag and writes a binary (or fails)."""

    def __init__(self, files, network_names=()):
        self.files = dict(files)
        self.networks = [type("Net", (), {"name": name})() for name in network_names]
        self.cleans = []
        self.fail = False

    def build(self, directory, results_directory, compile, run, with_output):
        assert not compile and not run
        for rel, text in self.files.items():
            path = Path(directory) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def compile_source(self, directory, compiler, debug, clean):
        self.cleans.append(clean)
        if self.fail:
            raise RuntimeError("Project compilation failed (simulated)")
        (Path(directory) / "main").write_bytes(b"binary")


CUDA_FILES = {"main.cu": "int main() {}", "objects.h": "#define N 3", "makefile": "all:\n"}


def _session(device, kind="cuda_standalone", **kwargs):
    session = BackendSession(backend=kind, device=kind, **kwargs)
    session._brian_device = lambda: device
    session._check_networks = lambda extra=None: None
    return session


def _build(device, directory, kind="cuda_standalone"):
    _session(device, kind, directory=directory).build(run=False)
    return device.cleans[-1]


def test_cuda_rebuilds_from_clean_only_when_headers_or_makefile_changed(tmp_path):
    """brian2cuda's makefile tracks neither headers nor itself: a CUDA build is clean the first
    time, after a header or makefile changed, and after a failed compile; a changed .cu file
    alone is compiled incrementally. cpp_standalone is never forced clean."""
    directory = tmp_path / "build"
    device = FakeDevice(CUDA_FILES)
    assert _build(device, directory) is True  # nothing compiled here yet
    assert _build(device, directory) is False  # the same code
    device.files["main.cu"] = "int main() { return 1; }"
    assert _build(device, directory) is False  # make tracks .cu files itself
    device.files["objects.h"] = "#define N 4"
    assert _build(device, directory) is True
    assert _build(device, directory) is False
    device.files["makefile"] = "all:\n\tnvcc -O3\n"
    assert _build(device, directory) is True
    device.fail = True
    with pytest.raises(RuntimeError, match="simulated"):
        _build(device, directory)
    assert not (directory / "main").exists()
    device.fail = False
    assert _build(device, directory) is True  # an interrupted compile is not up to date
    cpp = FakeDevice({"main.cpp": "int main() {}", "objects.h": "#define N 3"})
    assert _build(cpp, tmp_path / "cpp", "cpp_standalone") is False


def test_build_folder_is_keyed_on_the_sorted_network_names_or_your_key(tmp_path):
    """Without cache_key, the folder under cache_root is named after the networks that ran,
    in sorted order (so the order they were created in does not matter); a cache_key wins."""
    device = FakeDevice({"main.cpp": "int main() {}"}, network_names=("b_net", "a_net"))
    session = _session(
        device, "cpp_standalone", directory=None, cache_root=tmp_path, codegen_only=True
    )
    try:
        assert session.build() == build_cache_dir(tmp_path, "a_net+b_net")
    finally:
        session.release()
    keyed = _session(
        device,
        "cpp_standalone",
        directory=None,
        cache_root=tmp_path,
        codegen_only=True,
        cache_key="mine",
    )
    try:
        assert keyed.build() == build_cache_dir(tmp_path, "mine")
    finally:
        keyed.release()


def test_code_generation_alone_neither_seeds_nor_runs_nor_builds_twice(tmp_path):
    """codegen_only with a project_cache generates into an empty folder (no compiled project is
    copied in); the session then counts as built but refuses to run."""
    cache = tmp_path / "cache"
    _stored_project(tmp_path, build_cache_dir(cache, "k"))
    device = FakeDevice({"main.cpp": "int main() { return 2; }"})
    directory = tmp_path / "gen"
    session = _session(
        device,
        "cpp_standalone",
        directory=directory,
        project_cache=cache,
        cache_key="k",
        codegen_only=True,
    )
    assert session.build() == directory
    assert not (directory / "main").exists() and not (directory / "main.o").exists()
    assert device.cleans == []  # nothing compiled
    with pytest.raises(RuntimeError, match="nothing compiled yet"):
        session.run()
    with pytest.raises(RuntimeError, match="already built"):
        session.build()


def test_a_cache_root_build_folder_is_locked_until_the_session_ends(tmp_path):
    """Runs write into a shared cache_root folder: it is locked from the build to the end of
    the ``with`` block (another process waits), and free again afterwards."""
    from brian2 import Network as BrianNetwork
    from brian2 import NeuronGroup, ms
    from brian2.utils.filelock import FileLock, Timeout

    with activate_backend("cpp_standalone", cache_root=tmp_path, codegen_only=True) as sim:
        group = NeuronGroup(1, "dv/dt = -v / (10*ms) : 1", name="locked_group")
        sim.run_network(BrianNetwork(group, name="locked_net"), 1 * ms)
        directory = sim.build()
        assert directory == build_cache_dir(tmp_path, "locked_net")
        other = FileLock(str(directory) + ".lock")
        with pytest.raises(Timeout):
            other.acquire(timeout=0.05)
    other.acquire(timeout=0.05)
    other.release()


# ----------------------------------------------------------------------------- activation


def test_a_runtime_session_may_open_inside_a_standalone_one(tmp_path):
    """The refusal of a second standalone session names backend='runtime' as the fix, so a
    runtime session inside an open standalone one is allowed."""
    with activate_backend("cpp_standalone", tmp_path / "a"):
        with activate_backend("numpy") as inner:
            assert not inner.standalone


def test_activate_backend_accepts_the_documented_limits():
    """openmp_threads=0 (no OpenMP) and compute_capability=3.5 (the lowest accepted) pass; a
    codegen_only or build_on_run that is not a bool is refused."""
    with activate_backend("numpy", openmp_threads=0, compute_capability=3.5) as sim:
        assert sim.backend == "numpy"
    for kwargs, text in (
        (dict(codegen_only="yes"), "codegen_only"),
        (dict(build_on_run=1), "build_on_run"),
    ):
        with pytest.raises(TypeError, match=text):
            with activate_backend("numpy", **kwargs):
                pytest.fail("the block must not run")


def test_a_standalone_session_without_a_folder_builds_in_a_fresh_one():
    """Neither directory nor cache_root: a new empty temporary build folder."""
    with activate_backend("cpp_standalone") as sim:
        folder = sim.directory
        assert folder is not None and folder.is_dir() and list(folder.iterdir()) == []
        assert folder.name.startswith("plastix_build_")
    shutil.rmtree(folder)


@pytest.mark.skipif(
    importlib.util.find_spec("brian2cuda") is not None, reason="brian2cuda is importable here"
)
def test_cuda_without_brian2cuda_is_refused_with_the_fix(tmp_path):
    """Where brian2cuda cannot be imported, activating cuda_standalone raises a RuntimeError
    that names the fixes (install brian2cuda, or use cpp_standalone)."""
    with pytest.raises(RuntimeError) as info:
        with activate_backend("cuda_standalone", tmp_path / "p", codegen_only=True):
            pytest.fail("the block must not run")
    message = str(info.value)
    assert "pip install brian2cuda" in message and "backend='cpp_standalone'" in message
    with activate_backend("cpp_standalone", tmp_path / "q"):  # no session was left open
        pass


def test_compile_commands_report_their_exit_status_and_os_system_is_restored():
    """Inside the compile step a failing shell command still reports failure (Brian2 checks
    it), a succeeding one 0; os.system is Python's own again afterwards."""
    original = os.system
    with backend._interruptible_shell_commands():
        assert os.system("exit 3") != 0
        assert os.system("true") == 0
    assert os.system is original
