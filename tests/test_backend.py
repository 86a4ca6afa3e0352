"""Tests for plastix.circuits.backend: choosing, activating, building and re-running backends."""

import os
import time
from pathlib import Path

import numpy as np
import pytest
from backend_probes import cuda_probe, fake_probes

from plastix.circuits.backend import (
    BACKEND_CHOICES,
    BACKENDS,
    BackendStatus,
    StandaloneNetworkOperationError,
    activate_backend,
    backend_report,
    build_cache_dir,
    cached_projects,
    cuda_settings,
    device_name,
    format_backend_report,
    generated_code_hash,
    is_standalone,
    prune_project_cache,
    refuse_network_operations,
    resolve_backend,
    seed_from_project_cache,
    store_in_project_cache,
)

CXX_WORKS = next(s for s in backend_report() if s.name == "cpp_standalone").available
needs_cxx = pytest.mark.skipif(not CXX_WORKS, reason="no working C++ compiler + make here")


def tiny_lif_network(sim=None, tau_ms=10):
    """Deterministic LIF circuit: 5 regularly firing drivers -> 3 LIF neurons (membrane time
    constant ``tau_ms``, a literal of the generated code), run for 200 ms (through
    ``sim.run_network`` when a session is given).

    No random numbers, so every backend must produce the same spikes. ``gain`` is a
    ``(shared, constant)`` synaptic parameter that standalone re-runs can change by run_args.
    """
    from brian2 import Network as BrianNetwork
    from brian2 import NeuronGroup, SpikeMonitor, Synapses, ms

    drivers = NeuronGroup(
        5,
        "dv/dt = (drive - v) / (5*ms) : 1\ndrive : 1 (constant)",
        threshold="v > 1",
        reset="v = 0",
        method="exact",
        name="tiny_drivers",
    )
    drivers.drive = "1.2 + 0.3 * i"
    lif = NeuronGroup(
        3,
        f"dv/dt = -v / ({tau_ms}*ms) : 1",
        threshold="v > 1",
        reset="v = 0",
        method="exact",
        name="tiny_lif",
    )
    syn = Synapses(
        drivers,
        lif,
        "w : 1 (constant)\ngain : 1 (shared, constant)",
        on_pre="v_post += gain * w",
        name="tiny_syn",
    )
    syn.connect()
    syn.w = "0.05 + 0.03 * (i + j)"
    syn.gain = 1.0
    monitor = SpikeMonitor(lif, name="tiny_spikes")
    net = BrianNetwork(drivers, lif, syn, monitor, name="tiny_net")
    if sim is None:
        net.run(200 * ms)
    else:
        sim.run_network(net, 200 * ms)
    return net, syn, monitor


# ----------------------------------------------------------------------------- choosing


def test_resolve_backend_returns_concrete_names():
    for name in BACKENDS + ("numpy", "cython"):
        assert resolve_backend(name) == name
        assert resolve_backend(name.upper()) == name
    assert device_name("numpy") == device_name("cython") == "runtime"
    assert device_name("cpp_standalone") == "cpp_standalone"
    assert is_standalone("cuda_standalone") and not is_standalone("numpy")


def test_resolve_auto_follows_what_the_report_says_works():
    available = {s.name: s.available for s in backend_report()}
    if available["cuda_standalone"]:
        expected = "cuda_standalone"
    elif available["cpp_standalone"]:
        expected = "cpp_standalone"
    else:
        expected = "runtime"
    assert resolve_backend("auto") == expected


def test_resolve_backend_rejects_unknown_names():
    with pytest.raises(ValueError) as info:
        resolve_backend("gpu")
    message = str(info.value)
    assert "'gpu'" in message
    for choice in BACKEND_CHOICES:
        assert choice in message
    with pytest.raises(TypeError, match="backend"):
        resolve_backend(3)
    with pytest.raises(ValueError, match="auto"):
        device_name("auto")


def test_activate_backend_rejects_bad_arguments_before_any_work(tmp_path):
    from brian2 import get_device

    before = get_device()
    cases = [
        (dict(backend="tpu"), ValueError, "valid choices"),
        (dict(backend="cpp_standalone", openmp_threads=-1), ValueError, "openmp_threads"),
        (dict(backend="cpp_standalone", openmp_threads=1.5), TypeError, "openmp_threads"),
        (dict(backend="numpy", codegen_only=True), ValueError, "codegen_only"),
        (dict(backend="cpp_standalone", cache_key="x"), ValueError, "cache_root or project_"),
        (
            dict(backend="cpp_standalone", cache_root=tmp_path, project_cache=tmp_path),
            ValueError,
            "cache_root/project_cache",
        ),
        (dict(backend="cpp_standalone", project_cache=3), TypeError, "project_cache: expected"),
        (
            dict(backend="cpp_standalone", directory=tmp_path, cache_root=tmp_path),
            ValueError,
            "directory/cache_root",
        ),
        (dict(backend="cpp_standalone", compute_capability=2.0), ValueError, "compute_capab"),
    ]
    for kwargs, error, text in cases:
        with pytest.raises(error, match=text):
            with activate_backend(**kwargs):
                pytest.fail("the block must not run")
    assert get_device() is before


def test_activate_backend_restores_device_and_preferences(tmp_path):
    from brian2 import get_device, prefs

    device_before = get_device()
    target_before = prefs["codegen.target"]
    threads_before = prefs["devices.cpp_standalone.openmp_threads"]
    with activate_backend("numpy") as sim:
        assert prefs["codegen.target"] == "numpy"
        assert sim.device == "runtime" and not sim.standalone
    assert prefs["codegen.target"] == target_before
    with activate_backend("cpp_standalone", tmp_path / "b", openmp_threads=2) as sim:
        assert get_device().__class__.__name__ == "CPPStandaloneDevice"
        assert prefs["devices.cpp_standalone.openmp_threads"] == 2
        assert sim.standalone and sim.directory == tmp_path / "b"
    assert prefs["devices.cpp_standalone.openmp_threads"] == threads_before
    assert get_device() is device_before
    prefs["devices.cpp_standalone.openmp_threads"] = 3  # set the usual Brian2 way
    try:
        with activate_backend("cpp_standalone", tmp_path / "c"):
            assert prefs["devices.cpp_standalone.openmp_threads"] == 3  # kept, not reset to 0
    finally:
        prefs["devices.cpp_standalone.openmp_threads"] = threads_before


def test_a_second_standalone_session_is_refused_while_one_is_open(tmp_path):
    from brian2 import get_device

    with activate_backend("cpp_standalone", tmp_path / "a") as outer:
        device = get_device()
        with pytest.raises(RuntimeError, match="a cpp_standalone session is already open"):
            with activate_backend("cpp_standalone", tmp_path / "b"):
                pytest.fail("the block must not run")
        assert get_device() is device and outer.directory == tmp_path / "a"
    assert not (tmp_path / "b").exists()  # refused before any work
    with activate_backend("cpp_standalone", tmp_path / "c") as after:  # one after another
        assert after.standalone


@needs_cxx
def test_standalone_build_runs_make_with_one_job_per_cpu_unless_the_user_chose(
    brian_build_cache, tmp_path, monkeypatch
):
    """Brian2's default ``make -j`` (up to 2.10) starts a compiler per generated file at once;
    the build runs ``make -j N`` (N usable CPUs) instead, and keeps a value the user set."""
    import shutil

    from brian2 import prefs

    calls = tmp_path / "make-calls.txt"
    wrapper = tmp_path / "bin" / "make"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {shutil.which("make")} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    default = list(prefs["devices.cpp_standalone.extra_make_args_unix"])
    simulate_tiny("cpp_standalone", cache_root=brian_build_cache)
    # plastix's bound where Brian2's default is unbounded (<= 2.10), else Brian2 2.11's own
    bounded = ["-j", str(len(os.sched_getaffinity(0)))] if default == ["-j"] else default
    assert calls.read_text().split() == bounded and bounded != ["-j"]
    assert list(prefs["devices.cpp_standalone.extra_make_args_unix"]) == default  # restored

    calls.unlink()
    monkeypatch.setitem(prefs, "devices.cpp_standalone.extra_make_args_unix", ["-j", "1"])
    simulate_tiny("cpp_standalone", cache_root=brian_build_cache)
    assert calls.read_text().split() == ["-j", "1"]


# ----------------------------------------------------------------------------- running


def simulate_tiny(backend, gains=(None,), tau_ms=10, **activate_kwargs):
    """Build the tiny network on ``backend`` and return per-neuron spike counts per run.

    Standalone: one build, then one re-run per entry of ``gains`` (None = the built-in value).
    Returns (counts list, build folder, binary stamps before/after the re-runs). No Brian object
    outlives the call, so the next build generates the same code names (cache hits).
    """
    counts = []
    with activate_backend(backend, **activate_kwargs) as sim:
        _, syn, monitor = tiny_lif_network(tau_ms=tau_ms)
        directory = sim.build(run=not sim.standalone)
        if directory is None:
            counts.append(np.asarray(monitor.count[:]).copy())
            return counts, None, None
        binary = directory / "main"
        stamp_before = _stamp(directory)
        for gain in gains:
            sim.run(run_args=None if gain is None else {syn.gain: gain})
            counts.append(np.asarray(monitor.count[:]).copy())
        assert binary.is_file()
        return counts, directory, (stamp_before, _stamp(directory))


def _stamp(directory):
    """(path, mtime, inode) of every compiled file: changes if anything is rebuilt."""
    files = sorted(directory.rglob("*.o")) + [directory / "main"]
    return [(p, os.stat(p).st_mtime_ns, os.stat(p).st_ino) for p in files]


@needs_cxx
def test_runtime_and_cpp_standalone_give_identical_spikes(brian_build_cache):
    (runtime_counts,), _, _ = simulate_tiny("numpy")
    (cpp_counts,), _, _ = simulate_tiny("cpp_standalone", cache_root=brian_build_cache)
    assert runtime_counts.sum() > 0
    np.testing.assert_array_equal(cpp_counts, runtime_counts)


@needs_cxx
def test_build_on_run_builds_and_runs_at_once(brian_build_cache):
    (runtime_counts,), _, _ = simulate_tiny("numpy")
    with activate_backend("cpp_standalone", cache_root=brian_build_cache, build_on_run=True) as sim:
        _, _, monitor = tiny_lif_network(sim)
        assert sim.built
        counts = np.asarray(monitor.count[:]).copy()
    np.testing.assert_array_equal(counts, runtime_counts)


@needs_cxx
def test_rerun_with_run_args_changes_result_without_recompiling(brian_build_cache):
    (base, stronger, again), _, (before, after) = simulate_tiny(
        "cpp_standalone", gains=(None, 3.0, 1.0), cache_root=brian_build_cache
    )
    assert after == before  # the re-runs did not rebuild anything
    assert stronger.sum() > base.sum()
    assert np.all(stronger >= base)
    np.testing.assert_array_equal(again, base)  # gain 1.0 is the built-in value


@needs_cxx
def test_reruns_with_array_run_args_leave_no_files_behind(brian_build_cache):
    with activate_backend("cpp_standalone", cache_root=brian_build_cache) as sim:
        _, syn, monitor = tiny_lif_network()
        directory = sim.build(run=False)
        counts = []
        for weight in (0.2, 0.05, 0.2):
            sim.run(run_args={syn.w: np.full(15, weight)})
            counts.append(np.asarray(monitor.count[:]).copy())
    assert counts[0].sum() > counts[1].sum()  # the arrays were applied...
    np.testing.assert_array_equal(counts[2], counts[0])  # ...also one deleted and written again
    assert list((directory / "static_arrays").glob("init_*")) == []  # ...and not kept


@needs_cxx
def test_a_shared_build_folder_drops_the_results_of_ended_processes(brian_build_cache):
    import shutil
    import subprocess
    import sys

    with activate_backend("cpp_standalone", cache_root=brian_build_cache) as sim:
        tiny_lif_network()
        directory = sim.build(run=True)
        own = sim.results_directory
    prefix = own.rpartition("-")[0]  # results-<this host>
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    gone = directory / f"{prefix}-{ended.pid}"
    kept = [directory / f"{prefix}-{os.getppid()}", directory / f"results-elsewhere-{ended.pid}"]
    for folder in (gone, *kept):
        folder.mkdir()
    with activate_backend("cpp_standalone", cache_root=brian_build_cache) as sim:
        _, _, monitor = tiny_lif_network()
        sim.build(run=True)
        counts = np.asarray(monitor.count[:]).copy()
    try:
        assert not gone.exists()
        assert all(folder.is_dir() for folder in kept)  # a live process's, another host's
        assert (directory / own).is_dir() and counts.sum() > 0
    finally:
        for folder in kept:
            shutil.rmtree(folder, ignore_errors=True)


@needs_cxx
def test_ctrl_c_during_the_compile_interrupts_the_build(tmp_path, monkeypatch):
    """Brian2 compiles through os.system, which ignores SIGINT in the caller: Ctrl-C reached
    only make and came back as a failed compile (or, sent to this process alone, was lost)."""
    import signal
    import threading

    pid_file = tmp_path / "make.pid"
    fake_make = tmp_path / "bin" / "make"
    fake_make.parent.mkdir()
    fake_make.write_text(f"#!/bin/sh\necho $$ > {pid_file}.tmp\nmv {pid_file}.tmp {pid_file}\n"
                         "exec sleep 60\n")  # fmt: skip
    fake_make.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_make.parent}{os.pathsep}{os.environ['PATH']}")

    def interrupt_once_make_runs():
        while not pid_file.exists():
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    with activate_backend("cpp_standalone", tmp_path / "build") as sim:
        tiny_lif_network()
        threading.Thread(target=interrupt_once_make_runs, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            sim.build(run=False)
        assert not sim.built and not (tmp_path / "build" / "main").exists()
    stat = Path(f"/proc/{int(pid_file.read_text())}/stat")

    def make_runs():  # it may take a moment to act on its SIGTERM (seen: state R, exiting)
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 30  # make's sleep would go on for 60 s
    while make_runs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not make_runs()  # make was stopped, not left running


@needs_cxx
def test_a_failed_compile_leaves_no_binary_to_run_and_can_be_retried(
    brian_build_cache, monkeypatch
):
    (expected,), _, _ = simulate_tiny("numpy")
    simulate_tiny("cpp_standalone", cache_root=brian_build_cache)  # the folder holds a binary
    with activate_backend("cpp_standalone", cache_root=brian_build_cache) as sim:
        _, _, monitor = tiny_lif_network()
        device = sim._brian_device()
        with monkeypatch.context() as patch:

            def compiler_killed(*args, **kwargs):
                raise RuntimeError("Project compilation failed (simulated)")

            patch.setattr(device, "compile_source", compiler_killed)
            with pytest.raises(RuntimeError, match="simulated"):
                sim.build(run=False)
        assert not (sim.directory / "main").exists()  # the earlier build's binary is gone
        with pytest.raises(RuntimeError, match="nothing compiled yet"):
            sim.run()
        sim.build(run=False)  # a retry is allowed
        sim.run()
        np.testing.assert_array_equal(monitor.count[:], expected)


@needs_cxx
def test_run_seed_gives_each_rerun_new_reproducible_random_numbers(brian_build_cache):
    from brian2 import Hz, Network, PoissonGroup, SpikeMonitor, ms

    with activate_backend("cpp_standalone", cache_root=brian_build_cache) as sim:
        net = Network()
        poisson = PoissonGroup(50, rates=200 * Hz, name="seeded_poisson")
        monitor = SpikeMonitor(poisson, name="seeded_monitor")
        net.add(poisson, monitor)
        seed = sim.add_run_seed(net)
        sim.run_network(net, 20 * ms, namespace={})
        sim.build(run=False)
        trains = []
        for value in (1, 2, 1):
            sim.run(run_args={seed.run_seed: value})
            trains.append((np.asarray(monitor.i[:]).copy(), np.asarray(monitor.t[:]).copy()))
    (i1, t1), (i2, t2), (i1_again, t1_again) = trains
    assert len(i1) > 50
    np.testing.assert_array_equal(i1_again, i1)  # same seed: the same draw
    np.testing.assert_array_equal(t1_again, t1)
    assert len(i1) != len(i2) or not np.array_equal(i1, i2)  # another seed: another draw


def test_rebuilt_network_gets_the_same_names_while_the_old_one_awaits_collection():
    """Brian2 names a group's clock after the clocks alive at the time (NAME_clock, then
    NAME_clock_1 while another is alive), and the generated code, so every cache key, carries
    those names. A dead network that only a reference cycle still holds is collected when a
    backend is activated, so building it again gives the same names whether or not Python's
    collector ran in between."""
    import gc

    from brian2 import Network, NeuronGroup, ms

    def clock_name_of_a_network_left_in_a_cycle() -> str:
        with activate_backend("numpy") as sim:
            group = NeuronGroup(1, "v : 1", dt=1 * ms, name="cycle_held")
            sim.run_network(Network(group), 1 * ms)
            cycle = [group]
            cycle.append(cycle)  # garbage that only the cycle collector frees
            return group.clock.name

    collector_was_on = gc.isenabled()
    gc.disable()
    try:
        names = [clock_name_of_a_network_left_in_a_cycle() for _ in range(2)]
    finally:
        if collector_was_on:
            gc.enable()
    assert names == ["cycle_held_clock", "cycle_held_clock"]


@needs_cxx
def test_cached_build_is_reused_not_recompiled(brian_build_cache):
    first_counts, first_dir, (_, first_stamp) = simulate_tiny(
        "cpp_standalone", cache_root=brian_build_cache
    )
    second_counts, second_dir, (second_stamp, _) = simulate_tiny(
        "cpp_standalone", cache_root=brian_build_cache
    )
    assert first_dir == second_dir  # same generated code -> same cache folder
    assert second_stamp == first_stamp  # the second build compiled and linked nothing
    np.testing.assert_array_equal(first_counts[0], second_counts[0])


@needs_cxx
def test_project_cache_starts_a_private_build_from_the_last_compiled_project(tmp_path):
    cache = tmp_path / "compiled"
    first, first_dir, _ = simulate_tiny(
        "cpp_standalone", directory=tmp_path / "run1", project_cache=cache, cache_key="tiny"
    )
    [stored] = list(build_cache_dir(cache, "tiny").iterdir())
    assert (stored / "main").is_file()
    assert not (stored / "static_arrays").exists()  # data and results stay with their run
    assert not any(path.name.startswith("results") for path in stored.iterdir())
    second, second_dir, (stamps, _) = simulate_tiny(
        "cpp_standalone", directory=tmp_path / "run2", project_cache=cache, cache_key="tiny"
    )
    assert (first_dir, second_dir) == (tmp_path / "run1", tmp_path / "run2")
    assert len({mtime for _, mtime, _ in stamps}) == 1  # all dated by the copy: none rebuilt
    np.testing.assert_array_equal(second[0], first[0])
    assert list(build_cache_dir(cache, "tiny").iterdir()) == [stored]  # same code, same entry


@needs_cxx
def test_project_cache_recompiles_what_differs_from_the_cached_project(tmp_path):
    """A build seeded from the project of another network (same key, another time constant)
    must behave as that network, not as the cached one."""
    cache = tmp_path / "compiled"
    (short,), _, _ = simulate_tiny("numpy", tau_ms=10)
    (long,), _, _ = simulate_tiny("numpy", tau_ms=40)
    assert not np.array_equal(short, long)
    kwargs = dict(project_cache=cache, cache_key="tiny")
    (cached,), _, _ = simulate_tiny("cpp_standalone", directory=tmp_path / "a", **kwargs)
    np.testing.assert_array_equal(cached, short)
    an_hour_ahead = time.time() + 3600  # as stored by a host whose clock is fast
    for path in build_cache_dir(cache, "tiny").rglob("*"):
        os.utime(path, (an_hour_ahead, an_hour_ahead))
    (seeded,), _, _ = simulate_tiny("cpp_standalone", directory=tmp_path / "b", tau_ms=40, **kwargs)
    np.testing.assert_array_equal(seeded, long)
    assert len(list(build_cache_dir(cache, "tiny").iterdir())) == 2  # both projects kept


def _fake_project(folder, source):
    (folder / "static_arrays").mkdir(parents=True)
    (folder / "static_arrays" / "_static_array_w").write_bytes(b"\x00" * 8)
    (folder / "results-7").mkdir()
    (folder / "code_objects").mkdir()
    (folder / "code_objects" / "results_reader.cpp").write_text("// a source, not a result")
    (folder / "main.cpp").write_text(source)
    (folder / "main.o").write_bytes(source.encode())
    (folder / "main").write_bytes(b"binary")
    return folder


def test_project_cache_stores_whole_projects_and_keeps_the_most_recent(tmp_path):
    cache = tmp_path / "cache"
    stored = []
    for k in range(3):
        project = _fake_project(tmp_path / f"p{k}", f"int main() {{ return {k}; }}")
        stored.append(store_in_project_cache(project, cache, keep=2))
        os.utime(stored[-1], ns=(k * 10**9, k * 10**9))  # p2 the most recently used
    assert sorted(cache.iterdir()) == sorted(stored[1:])  # the oldest one was pruned
    assert {p.name for p in stored[2].iterdir()} == {"main.cpp", "main.o", "main", "code_objects"}
    assert (stored[2] / "code_objects" / "results_reader.cpp").is_file()
    again = store_in_project_cache(_fake_project(tmp_path / "q", "int main() { return 1; }"), cache)
    assert again == stored[1] and again.stat().st_mtime_ns > 2 * 10**9  # marked as used
    assert len(list(cache.iterdir())) == 2
    # a new build folder starts from the most recently used one, its build products newer
    # than its sources (whatever times they were stored with), so make rebuilds exactly what
    # Brian2 rewrites
    target = tmp_path / "build"
    target.mkdir()
    assert seed_from_project_cache(cache, target)
    assert (target / "main.cpp").read_text() == "int main() { return 1; }"
    o_file = target / "main.o"
    sources = [target / "main.cpp", target / "code_objects" / "results_reader.cpp"]
    products = [o_file, target / "main"]
    assert max(p.stat().st_mtime_ns for p in sources) < min(p.stat().st_mtime_ns for p in products)
    # only into an empty folder, and only from a cache that holds something
    o_file.write_bytes(b"own build")
    assert not seed_from_project_cache(cache, target)
    assert o_file.read_bytes() == b"own build"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not seed_from_project_cache(tmp_path / "no-cache", empty)
    assert list(empty.iterdir()) == []
    # a copy killed part-way left its marker: the next seeding clears the folder first
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / ".plastix_seeding").touch()
    (killed / "main").write_bytes(b"trunc")
    assert seed_from_project_cache(cache, killed)
    assert (killed / "main").read_bytes() == b"binary"
    assert not (killed / ".plastix_seeding").exists()


def test_project_cache_deletes_what_a_killed_store_left_behind(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    abandoned, in_progress = cache / ".partial-killed", cache / ".partial-now"
    killed_deletion = cache / ".deleting-0123-42"  # a pruned project, renamed out of the way
    for partial in (abandoned, in_progress, killed_deletion):
        (partial / "code_objects").mkdir(parents=True)
        (partial / "main.cpp").write_text("int main() { return 0; }")
    two_hours_ago = time.time() - 7200
    os.utime(abandoned, (two_hours_ago, two_hours_ago))
    project = _fake_project(tmp_path / "p", "int main() { return 2; }")
    stored = store_in_project_cache(project, cache)
    assert sorted(cache.iterdir()) == sorted([stored, in_progress])  # a live store is younger
    assert cached_projects(cache) == [stored]


def test_project_cache_keeps_the_most_recently_used_keys_and_nothing_else_is_touched(tmp_path):
    root = tmp_path / "cache"
    keys = [build_cache_dir(root, f"circuit {k}") for k in range(4)]
    last_use = (10, 2, 5, 20)  # circuit 3 used last, then 0, 2, 1
    for k, key in enumerate(keys):
        for j, project in enumerate((f"{k}" * 24, f"{k}f" * 12)):
            (key / project / "code_objects").mkdir(parents=True)
            used = last_use[k] * 10**9 - j  # a key's last use is its newest project's
            os.utime(key / project, ns=(used, used))
    (keys[1] / "notes.txt").write_text("not the cache's")  # a pruned key keeps what is not
    own = [root / "papers" / "draft", root / "x-0123456789abcdef", keys[2] / "results"]
    for folder in own:  # folders named otherwise than plastix names keys and projects
        folder.mkdir(parents=True)
    prune_project_cache(root, keep=2)
    assert [p.name for p in keys[1].iterdir()] == ["notes.txt"]
    assert [p.name for p in keys[2].iterdir()] == ["results"]
    assert len(cached_projects(keys[0])) == len(cached_projects(keys[3])) == 2
    assert all(folder.is_dir() for folder in own)
    keys[2].joinpath("results").rmdir()
    prune_project_cache(root, keep=2)
    assert not keys[2].exists()  # a pruned key's folder goes once nothing else is in it
    # storing a project prunes the cache above its key
    project = _fake_project(tmp_path / "p", "int main() { return 3; }")
    stored = store_in_project_cache(project, build_cache_dir(root, "new"), keys_kept=1)
    assert not keys[0].exists() and not keys[3].exists()
    names = [keys[1].name, stored.parent.name, "papers", "x-0123456789abcdef"]
    assert sorted(p.name for p in root.iterdir()) == sorted(names)


def test_build_cache_dir_and_code_hash(tmp_path, monkeypatch):
    from plastix.circuits import backend

    assert build_cache_dir(tmp_path, "net a") == build_cache_dir(tmp_path, "net a")
    assert build_cache_dir(tmp_path, "net a") != build_cache_dir(tmp_path, "net-a")
    assert build_cache_dir(tmp_path, "net a").parent == tmp_path
    here = build_cache_dir(tmp_path, "net a")
    if os.path.exists("/proc/cpuinfo"):
        assert len(backend.host_cpu_signature().split()) > 10  # the machine and its flags
    monkeypatch.setattr(backend, "host_cpu_signature", lambda: "x86_64 sse2")
    assert build_cache_dir(tmp_path, "net a") != here  # -march=native code of another CPU
    with pytest.raises(ValueError, match="cache_key"):
        build_cache_dir(tmp_path, " ")
    project = tmp_path / "project"
    (project / "static_arrays").mkdir(parents=True)
    (project / "main.cpp").write_text("int main() { return 0; }")
    (project / "makefile").write_text("all:\n")
    first = generated_code_hash(project)
    (project / "static_arrays" / "_static_array_w").write_bytes(b"\x00" * 8)
    (project / "main.o").write_bytes(b"object code")
    assert generated_code_hash(project) == first  # data and build products do not count
    headers = generated_code_hash(project, headers_only=True)
    (project / "main.cpp").write_text("int main() { return 1; }")
    assert generated_code_hash(project) != first
    assert generated_code_hash(project, headers_only=True) == headers
    (project / "objects.h").write_text("#define N 3")
    assert generated_code_hash(project, headers_only=True) != headers


# ----------------------------------------------------------------------------- refusing


def _network_with_operation():
    from brian2 import Network, NeuronGroup, ms, network_operation

    group = NeuronGroup(2, "dv/dt = -v / (10*ms) : 1", name="netop_group")

    @network_operation(dt=1 * ms, name="reward_update")
    def apply_reward():
        group.v += 0.1

    return Network(group, apply_reward, name="netop_net"), group


def test_network_operation_refused_under_cpp_standalone(tmp_path):
    from brian2 import ms

    with activate_backend("cpp_standalone", directory=tmp_path / "b") as sim:
        net, _ = _network_with_operation()
        with pytest.raises(StandaloneNetworkOperationError) as info:
            sim.run_network(net, 5 * ms)
        message = str(info.value)
        assert "reward_update" in message and "apply_reward" in message
        assert "silently" in message and "ignore" in message
        for fix in ("equations", "run_regularly", "run_args", "runtime"):
            assert fix in message
        # Going around run_network does not help: build checks every network that ran.
        net.run(5 * ms)
        with pytest.raises(StandaloneNetworkOperationError, match="reward_update"):
            sim.build()
    assert not (tmp_path / "b" / "main").exists()
    with pytest.raises(StandaloneNetworkOperationError):
        refuse_network_operations([[net]], "cuda_standalone")


def test_network_operation_refused_with_magic_run(tmp_path):
    from brian2 import NeuronGroup, ms, network_operation, run

    with activate_backend("cpp_standalone", directory=tmp_path / "magic") as sim:
        group = NeuronGroup(2, "dv/dt = -v / (10*ms) : 1", name="magic_group")

        @network_operation(dt=1 * ms, name="magic_update")
        def nudge():
            group.v += 0.1

        run(2 * ms)  # Brian2's magic network forgets its objects after the run
        with pytest.raises(StandaloneNetworkOperationError, match="magic_update"):
            sim.build()


def test_network_operation_allowed_on_runtime():
    from brian2 import ms

    with activate_backend("numpy") as sim:
        net, group = _network_with_operation()
        refuse_network_operations(net, "runtime")
        sim.run_network(net, 5 * ms)
        assert np.all(group.v[:] > 0)  # the operation really ran


# ----------------------------------------------------------------------------- report


def test_backend_report_reports_runtime_and_every_requirement():
    report = backend_report()
    assert all(isinstance(s, BackendStatus) for s in report)
    by_name = {s.name: s for s in report}
    expected = {
        "brian2",
        "runtime",
        "cpp_standalone",
        "nvcc",
        "curand",
        "gpu",
        "brian2cuda",
        "cuda_standalone",
    }
    assert expected <= set(by_name)
    assert by_name["runtime"].available
    assert "numpy" in by_name["runtime"].details["codegen_targets"]
    assert by_name["brian2"].details["version"]
    for status in report:
        assert status.available or status.missing, f"{status.name}: unavailable without a fix"
    text = format_backend_report(report)
    assert "runtime" in text and "cuda_standalone" in text
    if not by_name["cuda_standalone"].available:
        assert "missing:" in text


def test_cuda_settings_use_cpp17_and_no_gpu_code_generation(tmp_path):
    from plastix.circuits.backend import CurandLocation

    curand = CurandLocation(
        include_dir="/site/nvidia/cu13/include",
        library_dir="/site/nvidia/cu13/lib",
        library_file="/site/nvidia/cu13/lib/libcurand.so.10",
        source="pip wheel nvidia-curand",
    )
    settings = cuda_settings(
        gcc_args=["-w", "-O3", "-std=c++11"],
        cuda_path="/usr/local/cuda-13.0",
        cuda_runtime_version=13.0,
        curand=curand,
        curand_link_dir=tmp_path / "link",
    )
    cb = "devices.cuda_standalone.cuda_backend"
    assert settings["codegen.cpp.extra_compile_args_gcc"] == ["-w", "-O3", "-std=c++17"]
    nvcc = settings[f"{cb}.extra_compile_args_nvcc"]
    assert nvcc[-1] == "-std=c++17" and "-use_fast_math" in nvcc
    assert settings[f"{cb}.cuda_path"] == "/usr/local/cuda-13.0"
    assert settings[f"{cb}.cuda_runtime_version"] == 13.0
    assert settings[f"{cb}.detect_gpus"] is False
    assert settings[f"{cb}.gpu_id"] == 0
    assert settings[f"{cb}.compute_capability"] == 9.0
    from brian2 import prefs

    for name, added in (  # appended to the folders already set, not replacing them
        ("include_dirs", "/site/nvidia/cu13/include"),
        ("library_dirs", str(tmp_path / "link")),
        ("runtime_library_dirs", "/site/nvidia/cu13/lib"),
    ):
        assert settings[f"codegen.cpp.{name}"] == [*prefs[f"codegen.cpp.{name}"], added]
    with_gpu = cuda_settings(gcc_args=["-std=c++11"], gpu_available=True)
    assert with_gpu[f"{cb}.detect_gpus"] is True and f"{cb}.gpu_id" not in with_gpu
    assert with_gpu[f"{cb}.detect_cuda"] is False  # no toolkit given: do not insist on one


# ------------------------------------------- names, probes, reports, run_args and the build cache


def test_backend_names_are_trimmed_and_lower_cased():
    """Names with surrounding blanks (e.g. typed on a command line) resolve like the bare name."""
    assert resolve_backend("  CPP_Standalone \n") == "cpp_standalone"
    assert device_name(" cython ") == "runtime"
    assert is_standalone(" cuda_standalone ")


def test_brian2cuda_pin_is_checked_against_the_installed_brian2():
    """An exact ``brian2==X`` pin matches only X; no pin always matches; a missing brian2 never
    does; a range that is not parsed is left to the import."""
    from plastix.circuits.backend import _requirement_met

    assert _requirement_met("brian2==2.10.1", "2.10.1")
    assert not _requirement_met("brian2==2.10.1", "2.9.0")
    assert not _requirement_met("brian2==2.10.1", None)
    assert _requirement_met(None, "2.9.0")
    assert _requirement_met("brian2>=2.6", "2.9.0")


def test_cuda_is_ready_only_with_every_requirement():
    """cuda_standalone needs a matching brian2cuda, nvcc, cuRAND and (to run) a GPU."""
    from plastix.circuits.backend import _cuda_ready

    assert _cuda_ready(cuda_probe(), require_gpu=True)
    no_gpu = cuda_probe(gpu={"nvidia_smi": None, "gpus": []})
    assert not _cuda_ready(no_gpu, require_gpu=True)
    assert _cuda_ready(no_gpu, require_gpu=False)
    for missing in ({"curand": None}, {"nvcc_version": None}, {"brian2cuda_matches": False}):
        assert not _cuda_ready(cuda_probe(**missing), require_gpu=False), missing


def test_report_without_cuda_lists_every_missing_requirement_under_cuda_standalone(monkeypatch):
    """With nothing for CUDA, cuda_standalone's fixes are those of nvcc, curand, gpu and
    brian2cuda, each prefixed with its name; cython needs a working C++ compiler."""
    from plastix.circuits.backend import backend_problems

    nothing = cuda_probe(
        cuda_path=None,
        nvcc=None,
        nvcc_version=None,
        curand=None,
        gpu={"nvidia_smi": None, "gpus": [], "error": "nvidia-smi not found"},
        brian2cuda=None,
        brian2cuda_requires=None,
        brian2cuda_matches=False,
    )
    fake_probes(monkeypatch, nothing, cxx_works=False)
    by_name = {s.name: s for s in backend_report()}
    assert by_name["runtime"].details["codegen_targets"] == ["numpy"]
    assert backend_problems("cython") and backend_problems("numpy") == []
    assert not by_name["cpp_standalone"].available
    assert "g++ failed on a test program" in by_name["cpp_standalone"].missing[0]
    cuda = by_name["cuda_standalone"]
    assert not cuda.available
    assert cuda.details == {"code_generation": False, "compilation": False}
    assert [m.split(":")[0] for m in cuda.missing] == ["nvcc", "curand", "gpu", "brian2cuda"]
    assert backend_problems("cuda_standalone") == cuda.missing


def test_curand_headers_without_the_library_do_not_count(monkeypatch):
    """cuRAND headers alone (no libcurand.so) leave curand unavailable, with the fix, and so
    cuda_standalone too (brian2cuda links -lcurand): auto picks cpp_standalone, and activating
    CUDA to compile is refused; generating code alone needs only the headers."""
    from plastix.circuits import backend
    from plastix.circuits.backend import CurandLocation

    headers_only = CurandLocation("/w/include", None, None, "pip wheel nvidia-curand 10")
    fake_probes(monkeypatch, cuda_probe(curand=headers_only))
    by_name = {s.name: s for s in backend_report()}
    fix = "cuRAND headers found but no libcurand.so: pip install nvidia-curand"
    assert not by_name["curand"].available
    assert by_name["curand"].missing == [fix]
    assert by_name["curand"].details["include_dir"] == "/w/include"
    assert not by_name["cuda_standalone"].available
    assert backend.backend_problems("cuda_standalone") == [f"curand: {fix}"]
    assert resolve_backend("auto") == "cpp_standalone"
    settings = {"link_base": None, "cuda_path": None, "gpu_id": None}
    settings |= {"compute_capability": None, "cuda_runtime_version": None}
    with pytest.raises(RuntimeError, match="cuRAND headers found but no libcurand.so"):
        backend._cuda_activation_settings(codegen_only=False, **settings)
    generated = backend._cuda_activation_settings(codegen_only=True, **settings)
    assert generated  # code generation goes ahead with the headers alone


def test_backend_problems_pass_on_a_failed_report(monkeypatch):
    """When the report itself failed, every backend's problems are the report's own."""
    from plastix.circuits import backend

    failed = [BackendStatus("report", False, {"error": "boom"}, ["report this as a bug"])]
    monkeypatch.setattr(backend, "backend_report", lambda: failed)
    assert backend.backend_problems("cpp_standalone") == ["report this as a bug"]
    assert backend.backend_problems("runtime") == ["report this as a bug"]


def test_format_backend_report_hides_empty_details_and_lists_fixes():
    """Details that are None, empty lists or empty strings are not shown; each missing
    requirement gets its own indented line."""
    report = [
        BackendStatus("gpu", True, {"a": None, "b": [], "c": "", "d": 1, "e": ["x", "y"]}),
        BackendStatus("nvcc", False, {"path": None}, ["install it"]),
    ]
    assert format_backend_report(report) == (
        "ok gpu   d=1, e=x,y\n-- nvcc\n         missing: install it"
    )


def test_build_cache_dir_names_long_keys_by_their_first_60_characters(tmp_path):
    """A key's folder is its file-name-safe first 60 characters, a dash and 10 hex digits."""
    name = build_cache_dir(tmp_path, "a" * 100).name
    slug, _, digest = name.rpartition("-")
    assert slug == "a" * 60
    assert len(digest) == 10 and int(digest, 16) >= 0
    assert build_cache_dir(tmp_path, "...").name.startswith("build-")


def test_network_operations_inside_a_mapping_are_refused():
    """Operations held as the values of a dict are found too (not only in lists)."""
    from brian2 import ms, network_operation

    @network_operation(dt=1 * ms, name="mapped_update")
    def mapped():
        pass

    with pytest.raises(StandaloneNetworkOperationError, match="mapped_update"):
        refuse_network_operations({"ops": {"update": mapped}}, "cpp_standalone")
    refuse_network_operations({"update": mapped}, "numpy")


def test_activate_backend_rejects_bad_gpu_id_and_cuda_version():
    """A negative or fractional gpu_id and a non-numeric cuda_runtime_version are refused."""
    cases = [
        (dict(gpu_id=-1), "gpu_id"),
        (dict(gpu_id=1.5), "gpu_id"),
        (dict(cuda_runtime_version="13.0"), "cuda_runtime_version"),
    ]
    for kwargs, text in cases:
        with pytest.raises(ValueError, match=text):
            with activate_backend("cpp_standalone", **kwargs):
                pytest.fail("the block must not run")


def test_run_args_are_refused_on_runtime_and_must_be_a_mapping(tmp_path):
    """Runtime sessions take no run_args; a standalone re-run refuses run_args that are not a
    mapping before starting the binary."""
    from plastix.circuits.backend import BackendSession

    runtime = BackendSession(backend="numpy", device="runtime", directory=None)
    with pytest.raises(ValueError, match="only standalone backends take run_args"):
        runtime.build(run_args={"gain": 2.0})
    assert not runtime.built
    built = BackendSession(
        backend="cpp_standalone", device="cpp_standalone", directory=tmp_path, built=True
    )
    built._check_networks = lambda extra=None: None  # no Brian2 device behind this session
    with pytest.raises(TypeError, match="run_args: expected a mapping"):
        built.run(run_args=[("gain", 2.0)])


def test_mark_regenerated_sources_dates_only_changed_sources_after_every_product(tmp_path):
    """A source whose content differs from the seeded copy gets a time 1 s after the newest
    build product and the binary is deleted; unchanged sources and objects keep their times."""
    from plastix.circuits.backend import mark_regenerated_sources, source_digests

    project = _fake_project(tmp_path / "p", "int main() { return 0; }")
    times = {"main.cpp": 500, "code_objects/results_reader.cpp": 1000, "main.o": 2000, "main": 1500}
    for rel, seconds in times.items():
        os.utime(project / rel, ns=(seconds * 10**9, seconds * 10**9))
    seeded = source_digests(project)
    mark_regenerated_sources(project, seeded)  # nothing regenerated differently
    assert (project / "main").read_bytes() == b"binary"
    assert (project / "main.cpp").stat().st_mtime_ns == 500 * 10**9
    (project / "main.cpp").write_text("int main() { return 5; }")
    os.utime(project / "main.cpp", ns=(500 * 10**9, 500 * 10**9))  # a clock behind the objects
    mark_regenerated_sources(project, seeded)
    assert (project / "main.cpp").stat().st_mtime_ns == 2001 * 10**9
    assert (project / "code_objects" / "results_reader.cpp").stat().st_mtime_ns == 1000 * 10**9
    assert (project / "main.o").stat().st_mtime_ns == 2000 * 10**9
    assert not (project / "main").exists()


def test_a_build_folder_holding_only_the_curand_link_is_seeded(tmp_path):
    """The cuRAND link folder does not make a build folder count as used: it is seeded, and
    the link folder is kept."""
    cache = tmp_path / "cache"
    store_in_project_cache(_fake_project(tmp_path / "p", "int main() { return 4; }"), cache)
    target = tmp_path / "build"
    (target / "_curand_lib").mkdir(parents=True)
    assert seed_from_project_cache(cache, target)
    assert (target / "main.cpp").read_text() == "int main() { return 4; }"
    assert (target / "_curand_lib").is_dir()
