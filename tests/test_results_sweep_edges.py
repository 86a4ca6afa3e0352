"""Edges of the results store, sweeps and lock files that a user meets: files that are almost
plastix results, damaged checkpoints and indexes, a sweep folder that was moved, option
precedence, run names near their length limit, lock files on odd file systems or in blocks
that raise, and how a sweep records runs whose task failed."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from sweep_parts import plan_steps_sweep

from plastix import processes
from plastix.processes import LockHolder, hold_lock_file, lock_holder, process_has_ended
from plastix.sims.config import ConfigError
from plastix.sims.results import (
    RunRecord,
    checkpoint_path,
    read_checkpoint,
    read_result,
    record_as_result,
    run_differences,
    runs_table,
    write_result,
)

# --- reading result files ----------------------------------------------------------------------


def test_an_hdf5_file_with_a_summary_but_no_experiment_is_not_a_plastix_result(tmp_path):
    """Both the ``experiment`` attribute and the ``summary`` group are required: a file with
    only the group is refused naming the file, not read as a result of experiment 'None'."""
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as h5:
        h5.create_group("summary").attrs["acc"] = 0.5
    with pytest.raises(ValueError, match=r"other\.h5' is not a plastix result"):
        read_result(path)


def test_metrics_that_are_not_a_group_break_the_layout(tmp_path):
    """A file whose ``metrics`` is a dataset instead of a group is refused with the layout
    error naming the file, not an AttributeError from deep inside the reader."""
    good = write_result(tmp_path / "good.h5", RunRecord("x", {}, 0, "cpu"), "complete")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(good.read_bytes())
    with h5py.File(bad, "a") as h5:
        del h5["metrics"]
        h5["metrics"] = np.arange(3.0)
    with pytest.raises(ValueError, match=r"bad\.h5' does not follow the plastix result layout"):
        read_result(bad)


def test_runs_table_takes_a_single_result_file(tmp_path):
    """``runs_table`` of one file (a str or a Path) gives that file's row, as the docstring's
    "one row per result file" promises for a list of one."""
    path = write_result(tmp_path / "r.h5", RunRecord("x", {"a": 1}, 7, "cpu"), "complete")
    for given in (path, str(path)):
        table = runs_table(given)
        assert list(table["path"]) == [str(path)]
        assert list(table["seed"]) == [7] and list(table["a"]) == [1]


def test_record_as_result_matches_the_file_the_record_would_be_written_to(tmp_path):
    """What ``plastix show`` prints for a run not written yet comes from ``record_as_result``:
    its attributes, summary and metrics are those of the file the record becomes, with the
    status given (e.g. 'interrupted', which no written file has)."""
    rows = [{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}, {"step": 0, "lr": 0.1}]
    record = RunRecord("x", {"a": 1}, 3, "cuda", rows=rows, summary={"acc": 0.75})
    written = read_result(write_result(tmp_path / "r.h5", record, "complete"))
    shown = record_as_result(tmp_path / "r.h5", record, "interrupted")
    assert shown.status == "interrupted"
    for key in ("experiment", "seed", "device", "created"):
        assert shown.attrs[key] == written.attrs[key], key
    assert shown.identity == written.identity
    assert shown.summary == written.summary
    assert shown.metric_axes == written.metric_axes
    assert set(shown.metrics) == set(written.metrics)
    for name, values in written.metrics.items():
        np.testing.assert_array_equal(shown.metrics[name], values)


def test_run_differences_names_another_experiment():
    """Two runs of different experiments with the same config and seed are not the same run:
    the experiment is named as the difference."""
    assert run_differences(("a", {"k": 1}, 0), ("b", {"k": 1}, 0)) == [
        "experiment: 'a' there, 'b' here"
    ]


# --- damaged checkpoints -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", pickle.dumps(["record", "state"]), pickle.dumps({"state": {}})],
    ids=["empty", "a-list", "no-record"],
)
def test_a_damaged_checkpoint_is_refused_naming_the_fix(tmp_path, content):
    """An empty checkpoint (cut off before its data reached the disk) or a pickle of some other
    shape is refused with the ValueError that says to delete it, not an EOFError, TypeError or
    KeyError that names no file."""
    out = tmp_path / "r.h5"
    checkpoint_path(out).write_bytes(content)
    with pytest.raises(ValueError, match=r"r\.h5\.ckpt' cannot be read .*delete it to start"):
        read_checkpoint(out)


# --- planning a sweep --------------------------------------------------------------------------


def test_a_grid_item_without_a_key_is_refused():
    """``--grid =1,2`` names no config key: refused with the usage hint, not planned as a key
    ''."""
    from plastix.sims.sweep import parse_grid

    with pytest.raises(ConfigError, match="expected key=v1,v2"):
        parse_grid(["=1,2"])


@pytest.mark.parametrize("seeds", [0, [-1], [0, -2]])
def test_no_seeds_or_negative_seeds_are_refused(sweep_experiments, tmp_path, seeds):
    """``seeds=0`` plans no run and a negative seed is no valid seed: both are refused with a
    ConfigError before any work, and nothing is created."""
    with pytest.raises(ConfigError, match="--seeds must be a positive count"):
        plan_steps_sweep({}, tmp_path / "s", seeds=seeds)
    assert not (tmp_path / "s").exists()


def test_set_values_override_the_config_file(sweep_experiments, tmp_path):
    """A key both in ``--config`` and ``--set`` takes the ``--set`` value (the command line
    overrides the file), as it does for a single run."""
    config = tmp_path / "c.toml"
    config.write_text("epochs = 3\n")
    overrides = {"epochs": "2"}
    (run,) = plan_steps_sweep({}, tmp_path / "s", config_file=config, base_overrides=overrides)
    assert run.overrides["epochs"] == "2"


def test_a_result_an_earlier_attempt_left_unreadable_does_not_block_theplan_steps_sweep(
    sweep_experiments, tmp_path
):
    """A run file that cannot be read (its worker died while writing) belongs to no other
    sweep: the sweep is planned again as before, and the run will be redone."""
    out = tmp_path / "s"
    (run,) = plan_steps_sweep({"scale": ["1.0"]}, out)
    Path(run.path).parent.mkdir(parents=True)
    Path(run.path).write_bytes(b"not hdf5")
    assert [r.path for r in plan_steps_sweep({"scale": ["1.0"]}, out)] == [run.path]


def test_run_names_just_over_the_limit_are_shortened(sweep_experiments, tmp_path):
    """A run name of 121 to 150 characters is also shortened to at most 120 (with a hash), not
    only much longer ones."""
    runs = plan_steps_sweep({"label": ["y" * 110]}, tmp_path / "s")  # "label=yyy...__seed=0": 124
    (name,) = [Path(r.path).stem for r in runs]
    assert len(name) <= 120 and name.startswith("label=yyy")


@pytest.mark.parametrize(
    "content", ["[]", '{"runs": []}', '{"experiment": "test-sweep-steps"}', '{"runs": [{}]}']
)
def test_an_index_that_is_not_a_sweep_index_is_refused(sweep_experiments, tmp_path, content):
    """An ``index.json`` that is valid JSON of another shape (a list, no experiment, no runs,
    a run without its path) is refused as not a sweep index, naming the fix."""
    out = tmp_path / "s"
    out.mkdir()
    (out / "index.json").write_text(content)
    with pytest.raises(ConfigError, match="index.json is not a plastix sweep index"):
        plan_steps_sweep({}, out)


# --- running, listing and showing a sweep's runs -----------------------------------------------


def test_a_sweep_folder_moved_elsewhere_still_finds_its_runs(sweep_experiments, tmp_path):
    """``index.json`` holds run paths relative to the sweep folder, so the folder can be moved
    or copied to another machine and still be loaded and shown."""
    from plastix.sims import sweep
    from plastix.sims.experiments import run_experiment

    out = tmp_path / "s"
    (run,) = plan_steps_sweep({"epochs": ["1"]}, out)
    run_experiment("test-sweep-steps", {"epochs": 1}, out=run.path)
    entry = {"run_id": run.run_id, "overrides": run.overrides, "seed": 0, "path": run.path}
    sweep._write_index(out, "test-sweep-steps", [{**entry, "status": "complete"}])
    stored = json.loads((out / "index.json").read_text())["runs"][0]["path"]
    assert not Path(stored).is_absolute()
    moved = tmp_path / "moved"
    shutil.move(out, moved)
    table = sweep.load_sweep(moved)
    assert list(table["path"]) == [str((moved / "runs" / f"{run.run_id}.h5").resolve())]
    assert [r["status"] for r in sweep.sweep_status(moved).runs] == ["complete"]


def test_a_failed_runs_index_error_is_the_last_line_its_result_file_records(
    sweep_experiments, tmp_path
):
    """``run_one`` records a failure as ``Type: message``, the same line ``plastix show`` of
    the sweep gives from the failed run's file, so the index and the show agree."""
    from plastix.sims import sweep

    out = tmp_path / "s"
    (run,) = plan_steps_sweep({"fail": ["true"]}, out)
    entry = sweep.run_one("test-sweep-steps", run, None, None, ("sweep_experiments",))
    assert entry["status"] == "failed"
    recorded = str(read_result(run.path).attrs["error"]).strip().splitlines()[-1]
    assert entry["error"] == recorded == "RuntimeError: this configuration fails on purpose"
    sweep._write_index(out, "test-sweep-steps", [entry])
    assert sweep.sweep_status(out).runs[0]["error"] == entry["error"]


def test_a_task_that_raises_is_recorded_failed_under_its_own_run(
    sweep_experiments, tmp_path, monkeypatch
):
    """A task whose run raised past ``run_one`` (e.g. a KilledWorker after repeated crashes)
    is recorded as failed under its run id, saying why; the other runs go on. The index written
    before the runs start already marks runs complete from an earlier sweep as complete."""
    from dask.distributed import Client, LocalCluster

    from plastix.sims import sweep
    from plastix.sims.experiments import run_experiment

    out = tmp_path / "s"
    planned = plan_steps_sweep({"scale": ["1.0", "2.0", "3.0"]}, out)
    done, crashing, fresh = planned
    run_experiment("test-sweep-steps", dict(done.overrides), out=done.path)
    seen = tmp_path / "seen.txt"  # the task runs a copy of this function: a file collects

    def fake_run_one(experiment, run, device, data_root, imports=()):
        index = json.loads((out / "index.json").read_text())
        status = {r["run_id"]: r["status"] for r in index["runs"]}[run.run_id]
        with seen.open("a") as fh:
            fh.write(f"{run.run_id} {status}\n")
        if run.run_id == crashing.run_id:
            raise RuntimeError("worker lost")
        entry = {"run_id": run.run_id, "overrides": run.overrides, "seed": run.seed}
        return {**entry, "path": run.path, "status": "complete", "skipped": False}

    monkeypatch.setattr(sweep, "run_one", fake_run_one)
    with (
        LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=":0")
        as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        status = sweep._run_planned("test-sweep-steps", planned, out, client, None, None, ())
    assert dict(line.split() for line in seen.read_text().splitlines()) == {
        done.run_id: "complete",
        crashing.run_id: "pending",
        fresh.run_id: "pending",
    }
    assert set(status) == {r.run_id for r in planned}
    assert status[crashing.run_id]["status"] == "failed"
    assert status[crashing.run_id]["error"] == "RuntimeError: worker lost"
    assert status[crashing.run_id]["path"] == crashing.path
    assert status[fresh.run_id]["status"] == "complete"
    index = sweep.read_index(out)
    assert {r["run_id"]: r["status"] for r in index["runs"]} == {
        done.run_id: "complete",
        crashing.run_id: "failed",
        fresh.run_id: "complete",
    }


def test_aggregate_uses_the_confidence_it_is_given():
    """``confidence=0.99`` widens the interval to t_{0.995, n-1} · s / √n (t_{0.995,2} =
    9.924843 for three seeds)."""
    import pandas as pd

    from plastix.sims.sweep import aggregate

    table = pd.DataFrame({"B": [2, 2, 2], "acc": [0.8, 0.9, 1.0]})
    row = aggregate(table, by=["B"], metrics=["acc"], confidence=0.99).iloc[0]
    assert row["acc_ci"] == pytest.approx(9.924843 * 0.1 / np.sqrt(3), rel=1e-5)


# --- lock files --------------------------------------------------------------------------------


def test_a_lock_file_is_released_and_deleted_when_its_block_raises(tmp_path):
    """A run that fails inside the block (the usual way a run ends badly) must not leave its
    lock file: the next run would otherwise see a stale record, and the lock is free again."""
    path = tmp_path / "x.lock"
    with pytest.raises(RuntimeError, match="boom"), hold_lock_file(path):
        raise RuntimeError("boom")
    assert not path.exists()
    assert lock_holder(path) is None
    with hold_lock_file(path):
        assert lock_holder(path).is_this_process


def test_a_lock_file_left_on_a_file_system_without_locks_has_no_holder(tmp_path, monkeypatch):
    """Where flock is not supported nobody can hold the lock, so a file that names some
    process (left there by a holder on a host whose mount had locks) is no holder."""
    path = tmp_path / "x.lock"
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "earlier"}))

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(processes.fcntl, "flock", no_locks)
    assert lock_holder(path) is None


def test_a_lock_held_while_its_holder_writes_its_name_reports_an_unnamed_holder(tmp_path):
    """The holder truncates, then writes its record: a reader in between may see half of the
    JSON. That is a holder not named yet, not a crash of ``plastix show``."""
    import fcntl

    path = tmp_path / "x.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b'{"host": "node-1", "pi')
        assert lock_holder(path) == LockHolder()
    finally:
        os.close(fd)


def test_a_lock_error_other_than_no_locks_is_raised_not_run_unlocked(tmp_path, monkeypatch):
    """Only "this file system has no locks" errors run the block unlocked; another flock
    failure (EIO) is raised, so two runs are never let through by a broken mount silently."""

    def broken(fd, operation):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(processes.fcntl, "flock", broken)
    ran = []
    with pytest.raises(OSError, match="Input/output error"), hold_lock_file(tmp_path / "x.lock"):
        ran.append(True)
    assert ran == []


def test_on_windows_every_process_counts_as_running(monkeypatch):
    """Signal 0 would stop a process on Windows instead of probing it: there no process is
    probed, and every one counts as running (its partial files are kept)."""

    def no_kill(pid, sig):
        raise AssertionError("a process was signalled")

    monkeypatch.setattr(processes.os, "kill", no_kill)
    with monkeypatch.context() as windows:  # undone before pytest reports (it needs os.name)
        windows.setattr(processes.os, "name", "nt")
        ended = process_has_ended(12345)
    assert ended is False
