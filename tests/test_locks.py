"""Lock files: one run per result file, one sweep per folder, and ``plastix show`` of a run that
is still going (status running) or was interrupted."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from plastix import processes
from plastix.processes import (
    LockFileDenied,
    LockHeld,
    LockHolder,
    file_name_part,
    hold_lock_file,
    lock_holder,
    process_has_ended,
    this_host,
)
from plastix.sims import cli
from plastix.sims.config import ConfigError
from plastix.sims.results import checkpoint_path, read_result, run_lock_path

TESTS = str(Path(__file__).parent)
HOLD = (
    "import sys\n"
    "from plastix.processes import hold_lock_file\n"
    "with hold_lock_file(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.read()\n"
)
CLI = "import sys; from plastix.sims.cli import main; sys.exit(main())"


@pytest.fixture
def test_experiments(monkeypatch):
    """The experiments of tests/sweep_experiments.py, importable here and in child processes."""
    monkeypatch.setenv("PYTHONPATH", TESTS + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.syspath_prepend(TESTS)


@contextlib.contextmanager
def held_by_another_process(path: Path):
    """A child process that holds the lock file ``path`` until the block ends."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert child.stdout.readline().strip() == "held"
        yield child
    finally:
        child.stdin.close()
        child.wait(timeout=60)


def deny_opening(monkeypatch, path: Path, *, reading: bool) -> None:
    """Make this process's ``os.open`` of ``path`` fail as for another user's file that it may
    read but not write (``reading=False``) or not even read (``reading=True``); root, which the
    tests may run as, would open it whatever its mode."""
    real_open = os.open

    def open_as_another_user(file, flags, *args, **kwargs):
        if Path(file) == path and (reading or flags & (os.O_RDWR | os.O_WRONLY)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(processes.os, "open", open_as_another_user)


def wait_for(condition, child: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert child.poll() is None, child.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def start_a_waiting_run(folder: Path):
    """``plastix run test-waits --out folder/r.h5`` in a child process, past its checkpoint and
    waiting for ``folder/go``; returns the output, the go file, the CLI arguments and the child."""
    out, go = folder / "r.h5", folder / "go"
    args = ["run", "test-waits", "--import", "sweep_experiments", "--set", f"go_file={go}"]
    args += ["--out", str(out), "--no-progress"]
    child = subprocess.Popen([sys.executable, "-c", CLI, *args], stderr=subprocess.PIPE, text=True)
    wait_for(checkpoint_path(out).exists, child)
    return out, go, args, child


def test_a_lock_file_is_exclusive_names_its_holder_and_goes_with_it(tmp_path):
    path = tmp_path / "x.lock"
    assert lock_holder(path) is None
    with held_by_another_process(path) as child:
        with pytest.raises(LockHeld) as refused:
            with hold_lock_file(path):
                pytest.fail("two processes held one lock")
        holder = refused.value.holder
        assert (holder.host, holder.pid) == (this_host(), child.pid)
        assert f"process {child.pid} on {this_host()}, since " in str(refused.value)
        assert lock_holder(path) == holder and not holder.is_this_process
    assert not path.exists()  # deleted by its holder on release
    assert lock_holder(path) is None
    with hold_lock_file(path):
        assert json.loads(path.read_text())["pid"] == os.getpid()
        assert lock_holder(path).is_this_process
        with pytest.raises(LockHeld):  # a second open in the same process is refused too
            with hold_lock_file(path):
                pass
    assert not path.exists()


def test_the_lock_of_a_killed_holder_is_taken_over(tmp_path):
    path = tmp_path / "x.lock"
    with held_by_another_process(path) as child:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        assert path.exists()  # a killed holder cannot delete its file...
        assert lock_holder(path) is None  # ...but its lock went with its process
        with hold_lock_file(path):
            assert lock_holder(path).is_this_process
    assert not path.exists()


def test_a_lock_taken_on_a_file_deleted_meanwhile_is_taken_again_on_the_new_file(
    tmp_path, monkeypatch
):
    """The holder deletes its file on release: a process that opened the old file just before
    and locks it afterwards holds a lock nobody else sees, so it must take the new file's."""
    path = tmp_path / "x.lock"
    path.write_text("")
    real_open = os.open
    replaced = []

    def open_then_replace(name, flags, mode=0o777):
        fd = real_open(name, flags, mode)
        if not replaced:  # after this open another holder released (deleted) and a third
            replaced.append(True)  # process created a new file under the name
            (tmp_path / "new").write_text("")
            os.replace(tmp_path / "new", path)
        return fd

    monkeypatch.setattr(processes.os, "open", open_then_replace)
    with hold_lock_file(path):
        monkeypatch.setattr(processes.os, "open", real_open)
        fd = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):  # the file now under the name is the locked one
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        assert lock_holder(path).is_this_process
    assert replaced and not path.exists()


def test_where_the_file_system_has_no_locks_the_block_runs_unlocked(tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(processes.fcntl, "flock", no_locks)
    ran = []
    with hold_lock_file(tmp_path / "x.lock"):
        ran.append(True)
    assert ran and not (tmp_path / "x.lock").exists()
    assert lock_holder(tmp_path / "x.lock") is None


def test_file_name_part_replaces_each_run_of_other_characters_by_one_dash():
    assert file_name_part("my host/\u03b1: 1") == "my-host-1"
    assert file_name_part("node-07.lab_x") == "node-07.lab_x"


def test_a_process_of_another_user_counts_as_running(monkeypatch):
    """kill(pid, 0) refused (EPERM) means the process exists; only ESRCH means it has ended."""

    def kill(error):
        def raise_it(pid, sig):
            raise error

        return raise_it

    monkeypatch.setattr(processes.os, "kill", kill(PermissionError(errno.EPERM, "refused")))
    assert process_has_ended(12345) is False
    monkeypatch.setattr(processes.os, "kill", kill(ProcessLookupError(errno.ESRCH, "none")))
    assert process_has_ended(12345) is True
    monkeypatch.undo()
    assert process_has_ended(os.getpid()) is False


def test_a_lock_file_left_with_longer_content_is_rewritten_whole(tmp_path):
    """The holder's record replaces what an earlier holder left, not just its first bytes."""
    path = tmp_path / "x.lock"
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "x" * 200}))
    with hold_lock_file(path):
        assert json.loads(path.read_text())["pid"] == os.getpid()
        assert lock_holder(path).is_this_process


def test_a_held_lock_file_without_a_name_yet_reports_an_unnamed_holder(tmp_path):
    """Locked but still empty (its holder has not written yet): an unnamed LockHolder."""
    path = tmp_path / "x.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert lock_holder(path) == LockHolder()
        with pytest.raises(LockHeld, match=r"held by another process \(it has not written"):
            with hold_lock_file(path):
                pytest.fail("two opens held one lock")
    finally:
        os.close(fd)
    assert str(LockHolder()) == "another process (it has not written its name yet)"


def test_a_holder_with_this_pid_on_another_host_is_not_this_process():
    assert LockHolder(this_host(), os.getpid(), "now").is_this_process
    assert not LockHolder(this_host() + "-other", os.getpid(), "now").is_this_process
    assert not LockHolder(this_host(), os.getpid() + 1, "now").is_this_process


def test_a_run_in_progress_is_shown_as_running_and_its_out_is_refused(
    tmp_path, test_experiments, capsys
):
    out, go, args, child = start_a_waiting_run(tmp_path)
    try:
        ckpt = checkpoint_path(out).read_bytes()
        assert cli.main(args) == 2  # refused before any work, naming the run that writes it
        err = capsys.readouterr().err
        assert f"is being written by another run (process {child.pid} on {this_host()}" in err
        assert f"plastix show {out} shows its progress" in err
        assert checkpoint_path(out).read_bytes() == ckpt and not out.exists()

        assert cli.main(["show", str(out)]) == 0
        shown = capsys.readouterr().out
        assert "test-waits  status=running  seed=0" in shown
        assert f"running (process {child.pid} on {this_host()}" in shown
        assert "value [epoch, n=1]: 1 → 1" in shown  # what it logged up to its checkpoint
    finally:
        go.touch()
        assert child.wait(timeout=120) == 0, child.communicate()[1][-3000:]
    assert cli.main(["show", str(out)]) == 0
    assert "status=complete" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "r.h5"]  # no lock left


def test_an_interrupted_run_is_shown_with_how_to_resume_and_resumes(
    tmp_path, test_experiments, capsys
):
    out, go, args, child = start_a_waiting_run(tmp_path)
    child.kill()  # SIGKILL: its lock file stays, its lock does not
    child.communicate(timeout=60)
    assert run_lock_path(out).exists()

    assert cli.main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "test-waits  status=interrupted" in shown
    assert f"run the same command, with --out {out}, to resume from its checkpoint" in shown
    assert "value [epoch, n=1]: 1 → 1" in shown

    go.touch()
    assert cli.main(args) == 0  # the killed run's lock is taken over; the run resumes
    said = f"plastix: running test-waits into {out}, resuming from its checkpoint (plastix show"
    assert said in capsys.readouterr().err
    np.testing.assert_array_equal(read_result(out).metrics["epoch"], [0, 1])
    assert not run_lock_path(out).exists() and not checkpoint_path(out).exists()
    assert cli.main(["show", str(tmp_path / "never.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_second_sweep_into_a_folder_is_refused_naming_the_first(
    tmp_path, test_experiments, monkeypatch
):
    from plastix.sims import sweep

    out = tmp_path / "s"
    out.mkdir()
    plan = {"out_dir": out, "imports": ["sweep_experiments"], "n_workers": 1}
    with held_by_another_process(out / sweep.LOCK_NAME) as child:
        with pytest.raises(
            ConfigError, match=f"another sweep is running into it \\(process {child.pid} on"
        ):
            sweep.run_sweep("test-waits", {"go_file": [str(tmp_path / "go")]}, **plan)
        # refused before any cluster started or file was written
        assert list(out.iterdir()) == [out / sweep.LOCK_NAME]
        # and where it started between this sweep's checks and its lock
        monkeypatch.setattr(sweep, "lock_holder", lambda path: None)
        with pytest.raises(
            ConfigError, match=f"another sweep is running into it \\(process {child.pid} on"
        ):
            sweep.run_sweep("test-waits", {"go_file": [str(tmp_path / "go")]}, **plan)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["runs"]
    (tmp_path / "go").touch()
    done = sweep.run_sweep("test-waits", {"go_file": [str(tmp_path / "go")]}, **plan)
    assert [r["status"] for r in done.runs] == ["complete"]
    assert not (out / sweep.LOCK_NAME).exists()


def test_show_of_a_sweep_folder_gives_each_runs_status_as_it_is_now(
    tmp_path, test_experiments, monkeypatch, capsys
):
    from plastix.sims import sweep
    from plastix.sims.experiments import import_modules, run_experiment
    from plastix.sims.results import RunRecord, save_checkpoint

    import_modules(["sweep_experiments"])
    monkeypatch.setenv("PLASTIX_TEST_JOURNAL", str(tmp_path / "journal"))
    monkeypatch.setenv("PLASTIX_TEST_KILL", str(tmp_path / "no-kill"))
    out = tmp_path / "s"
    runs = out / "runs"
    runs.mkdir(parents=True)
    ids = ["complete", "failed", "running", "interrupted", "pending"]
    index = [{"run_id": i, "overrides": {}, "seed": 0, "path": str(runs.resolve() / f"{i}.h5")}
             for i in ids]  # fmt: skip
    sweep._write_index(out, "test-sweep-steps", [{**r, "status": "pending"} for r in index])
    run_experiment("test-sweep-steps", {"epochs": 1}, out=runs / "complete.h5")
    with pytest.raises(RuntimeError, match="fails on purpose"):
        run_experiment("test-sweep-steps", {"fail": True}, out=runs / "failed.h5")
    save_checkpoint(runs / "interrupted.h5", RunRecord("test-sweep-steps", {}, 0, "cpu"), {})
    with held_by_another_process(run_lock_path(runs / "running.h5")) as child:
        assert cli.main(["show", str(out)]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == (
        f"sweep in {out}: 5 runs (1 complete, 1 failed, 1 interrupted, 1 pending, 1 running)"
    )
    assert shown[1:4] == [
        "  failed: failed: RuntimeError: this configuration fails on purpose",
        f"  running: running: process {child.pid} on {this_host()}, since "
        + shown[2].rpartition("since ")[2],
        "  interrupted: interrupted",
    ]
    assert shown[4:] == [f"index: {out / 'index.json'}"]
    with held_by_another_process(out / sweep.LOCK_NAME) as child:
        assert cli.main(["show", str(out)]) == 0
    assert f"a sweep is running into it (process {child.pid} on" in capsys.readouterr().out


def test_sweep_status_drops_errors_of_earlier_attempts_and_fails_an_unreadable_result(tmp_path):
    """The index's recorded error belongs to an earlier attempt: a run now interrupted or
    pending shows none. A result file that cannot be read makes its run failed, saying why."""
    from plastix.sims import sweep
    from plastix.sims.results import RunRecord, save_checkpoint

    out = tmp_path / "s"
    runs = out / "runs"
    runs.mkdir(parents=True)
    ids = ["interrupted", "pending", "unreadable"]
    index = [{"run_id": i, "overrides": {}, "seed": 0, "path": str(runs.resolve() / f"{i}.h5"),
              "status": "failed", "error": "old boom"} for i in ids]  # fmt: skip
    sweep._write_index(out, "test-counter", index)
    save_checkpoint(runs / "interrupted.h5", RunRecord("test-counter", {}, 0, "cpu"), {})
    (runs / "unreadable.h5").write_bytes(b"not hdf5")
    summary = sweep.sweep_status(out)
    status = {r["run_id"]: (r["status"], r.get("error")) for r in summary.runs}
    assert status["interrupted"] == ("interrupted", None)
    assert status["pending"] == ("pending", None)
    assert status["unreadable"][0] == "failed"
    assert status["unreadable"][1].startswith("unreadable result: ")
    assert "is not an HDF5 file" in status["unreadable"][1]
    assert summary.n_failed == 1
    shown = summary.describe().splitlines()
    assert shown[0] == f"sweep in {out}: 3 runs (1 failed, 1 interrupted, 1 pending)"
    assert shown[1] == "  interrupted: interrupted"
    assert shown[2].startswith("  failed: unreadable: unreadable result: ")


def test_a_lock_file_this_process_may_not_open_names_its_holder_or_is_refused_and_kept(
    tmp_path, monkeypatch
):
    """Another user's lock file in a shared folder: while their run holds it, LockHeld names
    that run; a stale one (their run was killed) is refused with a LockFileDenied saying what to
    do, and never deleted (its owner might be taking it at that moment); one this process
    cannot even read leaves who holds it unknown, also a LockFileDenied."""
    path = tmp_path / "x.lock"
    path.touch()
    deny_opening(monkeypatch, path, reading=False)
    with held_by_another_process(path) as child:
        with pytest.raises(LockHeld) as refused:
            with hold_lock_file(path):
                pass
        assert refused.value.holder.pid == child.pid
    path.write_text(json.dumps({"host": this_host(), "pid": 1, "since": "earlier"}))
    message = (
        f"the lock file {path} cannot be opened (Permission denied): it belongs to another "
        "user, or its folder is not writable; if no run is writing there, its owner can delete "
        "it, else choose another folder"
    )
    with pytest.raises(LockFileDenied) as denied:
        with hold_lock_file(path):
            pytest.fail("the block ran without the lock")
    assert str(denied.value) == message
    assert denied.value.path == path
    assert path.exists()
    assert lock_holder(path) is None  # readable: nobody holds it
    deny_opening(monkeypatch, path, reading=True)
    with pytest.raises(LockFileDenied, match="cannot be opened"):
        lock_holder(path)
    with pytest.raises(LockFileDenied, match="cannot be opened"):
        with hold_lock_file(path):
            pytest.fail("the block ran without the lock")
    assert path.exists()


def test_a_run_whose_lock_file_may_not_be_opened_exits_2_and_show_warns(
    tmp_path, test_experiments, monkeypatch, capsys
):
    """``plastix run`` into an --out whose lock file is another user's: exit 2 naming the lock
    file, before anything is written; ``plastix show`` of the result still shows it and warns
    that whether a run writes it is unknown."""
    out, go = tmp_path / "r.h5", tmp_path / "go"
    go.touch()
    args = ["run", "test-waits", "--import", "sweep_experiments", "--set", f"go_file={go}"]
    args += ["--out", str(out), "--no-progress"]
    assert cli.main(args) == 0
    capsys.readouterr()
    lock = run_lock_path(out)
    lock.write_text("{}")
    deny_opening(monkeypatch, lock, reading=False)
    before = out.read_bytes()
    assert cli.main([*args, "--force"]) == 2
    err = capsys.readouterr().err
    assert f"plastix: error: --out {str(out)!r}: the lock file {lock} cannot be opened" in err
    assert out.read_bytes() == before and lock.exists()
    assert not checkpoint_path(out).exists()
    deny_opening(monkeypatch, lock, reading=True)
    assert cli.main(["show", str(out)]) == 0
    shown = capsys.readouterr()
    assert shown.out.startswith(f"{out}: test-waits  status=complete")
    assert "in progress" not in shown.out
    assert shown.err == (
        f"plastix: warning: the lock file {lock} cannot be opened (Permission denied): it "
        "belongs to another user, or its folder is not writable; if no run is writing there, "
        "its owner can delete it, else choose another folder; whether a run is writing is "
        "unknown\n"
    )


def test_a_sweep_whose_lock_files_may_not_be_read_is_refused_and_shown_as_unknown(
    tmp_path, test_experiments, monkeypatch, capsys
):
    """A sweep folder whose sweep.lock is another user's: a new sweep into it exits 2 naming
    the file, and ``plastix show`` of the folder warns; a run whose lock file cannot be read
    is listed as unknown, saying why, not as pending or complete."""
    from plastix.sims import sweep

    out = tmp_path / "s"
    runs = out / "runs"
    runs.mkdir(parents=True)
    index = [{"run_id": i, "overrides": {}, "seed": 0, "path": str(runs.resolve() / f"{i}.h5"),
              "status": "pending"} for i in ("denied", "pending")]  # fmt: skip
    sweep._write_index(out, "test-waits", index)
    run_lock = run_lock_path(runs / "denied.h5")
    run_lock.touch()
    deny_opening(monkeypatch, run_lock, reading=True)
    summary = sweep.sweep_status(out)
    assert [(r["run_id"], r["status"]) for r in summary.runs] == [
        ("denied", "unknown"),
        ("pending", "pending"),
    ]
    assert summary.describe().splitlines()[:2] == [
        f"sweep in {out}: 2 runs (1 pending, 1 unknown)",
        f"  unknown: denied: the lock file {run_lock} cannot be opened (Permission denied): it "
        "belongs to another user, or its folder is not writable; if no run is writing there, "
        "its owner can delete it, else choose another folder",
    ]
    sweep_lock = out / sweep.LOCK_NAME
    sweep_lock.touch()
    deny_opening(monkeypatch, sweep_lock, reading=True)
    grid = ["--grid", f"go_file={tmp_path}", "--import", "sweep_experiments"]
    assert cli.main(["sweep", "test-waits", *grid, "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out-dir {str(out)!r}: the lock file {sweep_lock} cannot be opened" in err
    assert sorted(p.name for p in runs.iterdir()) == [run_lock.name]
    assert cli.main(["show", str(out)]) == 0
    shown = capsys.readouterr()
    assert shown.out.startswith(f"sweep in {out}: 2 runs")
    assert f"plastix: warning: the lock file {sweep_lock} cannot be opened" in shown.err


def test_show_of_a_run_that_has_reached_no_checkpoint_yet_names_its_process(tmp_path, capsys):
    """A run holds the lock of its result but has neither result nor checkpoint yet: shown as
    running, naming its process, with nothing logged to show; exit status 0."""
    out = tmp_path / "r.h5"
    with held_by_another_process(run_lock_path(out)) as child:
        assert cli.main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"{out}: status=running (process {child.pid} on {this_host()}, since ")
    assert shown.endswith("); not written yet; no checkpoint reached yet\n")
