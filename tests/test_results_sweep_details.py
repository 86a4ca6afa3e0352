"""Details of the results store, sweeps and lock files: atomic writes next to other writers,
what a result file says, how runs are compared, planned, skipped, listed and shown."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import h5py
import numpy as np
import pytest
from sweep_parts import plan_steps_sweep

from plastix import processes
from plastix.processes import hold_lock_file, lock_holder, this_host
from plastix.sims.config import ConfigError
from plastix.sims.results import (
    RunRecord,
    atomic_path,
    checkpoint_path,
    read_result,
    run_differences,
    run_lock_path,
    runs_table,
    save_checkpoint,
    write_result,
)

# --- atomic writes ---------------------------------------------------------------------------


def test_partial_files_of_a_host_whose_name_extends_this_hosts_are_kept(tmp_path):
    """Host ``H-7`` writing into a shared folder leaves ``.r.h5.H-7-PID.X.partial``, which
    starts with this host's prefix ``.r.h5.H-``: it is not this host's, so it is kept and the
    write goes on (its "pid" ``7-PID`` is no process id here)."""
    other = tmp_path / f".r.h5.{this_host()}-7-{os.getpid()}.0123456789abcdef.partial"
    other.write_bytes(b"half")
    with atomic_path(tmp_path / "r.h5") as tmp:
        tmp.write_bytes(b"whole")
    assert other.exists()
    assert (tmp_path / "r.h5").read_bytes() == b"whole"


def test_partial_files_of_killed_writers_are_deleted_whatever_the_result_is_named(tmp_path):
    """A result name with glob characters (``r[1].h5``) still finds its own stale partials."""
    import subprocess
    import sys

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    final = tmp_path / "r[1].h5"
    killed = tmp_path / f".r[1].h5.{this_host()}-{int(ended.stdout)}.0123456789abcdef.partial"
    killed.write_bytes(b"half")
    with atomic_path(final) as tmp:
        tmp.write_bytes(b"whole")
    assert not killed.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r[1].h5"]


def test_two_writes_of_one_file_in_one_process_use_their_own_temporary_files(tmp_path):
    """Two threads of one process (Dask runs tasks in threads) may write the same file at once:
    each gets its own temporary file, and the last to finish leaves its whole content."""
    final = tmp_path / "index.json"
    with atomic_path(final) as first, atomic_path(final) as second:
        assert first != second
        first.write_text("first")
        second.write_text("second")
    assert final.read_text() == "first"  # the outer write finished last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]


# --- what a result file says ------------------------------------------------------------------


def test_versions_of_libraries_not_installed_are_null(monkeypatch):
    """``versions`` holds None (JSON null) for a library that is not installed, not a string
    that could be mistaken for a version."""
    from importlib import metadata

    from plastix.sims import results

    real = metadata.version

    def version(name):
        if name == "brian2cuda":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(results.metadata, "version", version)
    versions = results.library_versions()
    assert versions["brian2cuda"] is None
    assert versions["numpy"] == np.__version__


def test_a_result_with_an_unknown_status_is_refused_and_nothing_is_written(tmp_path):
    """``status`` is one of running, complete, failed; anything else writes no file."""
    record = RunRecord("test-sweep-steps", {}, 0, "cpu")
    with pytest.raises(ValueError, match=r"status must be one of \('running', 'complete'"):
        write_result(tmp_path / "r.h5", record, "done")
    assert list(tmp_path.iterdir()) == []


def test_spike_indices_are_stored_as_integers_and_times_as_float64(tmp_path):
    """``spikes/<monitor>/i`` are neuron indices (integers, usable to index arrays), ``t``
    seconds in float64."""
    record = RunRecord("x", {}, 0, "cpu", spikes={"out": ([2, 0], [1e-3, 2.5e-3])})
    i, t = read_result(write_result(tmp_path / "r.h5", record, "complete")).spikes["out"]
    assert i.dtype.kind == "i" and t.dtype == np.float64
    np.testing.assert_array_equal(i, [2, 0])
    np.testing.assert_array_equal(t, [1e-3, 2.5e-3])


def test_files_that_lack_the_summary_or_spike_times_are_not_plastix_results(tmp_path):
    """An HDF5 file with an ``experiment`` attribute but no ``summary`` group, or whose spikes
    lack ``t``, is refused with a ValueError naming the file, never read half."""
    record = RunRecord("x", {}, 0, "cpu", spikes={"out": ([0], [1e-3])})
    good = write_result(tmp_path / "good.h5", record, "complete")
    for damage in ("summary", "spikes/out/t"):
        bad = tmp_path / "bad.h5"
        bad.write_bytes(good.read_bytes())
        with h5py.File(bad, "a") as h5:
            del h5[damage]
        with pytest.raises(ValueError, match="bad.h5"):
            read_result(bad)
    with pytest.raises(ValueError, match="is a folder; name a result file"):
        read_result(tmp_path)


def test_runs_table_leaves_out_listed_files_that_do_not_exist(tmp_path):
    """A list of paths may name files since deleted: they are left out like unreadable ones."""
    path = write_result(tmp_path / "r.h5", RunRecord("x", {"a": 1}, 3, "cpu"), "complete")
    table = runs_table([tmp_path / "gone.h5", path])
    assert list(table["path"]) == [str(path)] and list(table["seed"]) == [3]


# --- comparing runs ---------------------------------------------------------------------------


def test_run_differences_compares_configs_as_stored_and_names_one_sided_keys():
    """A tuple and the list it becomes in JSON are the same value; a key that only one run
    has is a difference (None on the other side)."""
    assert run_differences(("e", {"hidden": (4, 2)}, 0), ("e", {"hidden": [4, 2]}, 0)) == []
    assert run_differences(("e", {"a": 1}, 0), ("e", {"a": 1, "b": 2}, 0)) == [
        "b: None there, 2 here"
    ]


# --- planning a sweep -------------------------------------------------------------------------


def test_grid_keys_and_values_are_stripped(sweep_experiments):
    from plastix.sims.sweep import parse_grid

    assert parse_grid([" scale = 1.0 , 2.0 ", "epochs=2,"]) == {
        "scale": ["1.0", "2.0"],
        "epochs": ["2"],
    }


def test_run_files_do_not_depend_on_the_order_of_the_grid_keys(sweep_experiments, tmp_path):
    """``--grid scale=... --grid epochs=...`` and the keys the other way round name the same
    run files, so a sweep run again with its options reordered finds its runs."""
    one = plan_steps_sweep({"scale": ["1.0"], "epochs": ["2"]}, tmp_path / "s")
    other = plan_steps_sweep({"epochs": ["2"], "scale": ["1.0"]}, tmp_path / "s")
    assert [r.path for r in one] == [r.path for r in other]


def test_long_run_names_stay_short_and_distinct(sweep_experiments, tmp_path):
    """Values that differ only past the first 100 characters of the run name still give two
    run files (the name's hash covers all of it), each name at most 120 characters."""
    long = "x" * 150
    runs = plan_steps_sweep({"label": [long + "a", long + "b"]}, tmp_path / "s")
    names = [Path(r.path).stem for r in runs]
    assert len(set(names)) == 2 and all(len(n) <= 120 for n in names)


def test_planned_runs_carry_the_config_file_set_values_and_grid_values(sweep_experiments, tmp_path):
    """Each run gets the config file's values, then ``--set`` ones, then its grid values: a
    grid key also in the config file takes the grid's value."""
    config = tmp_path / "c.toml"
    config.write_text("epochs = 3\nscale = 5.0\n")
    runs = plan_steps_sweep({"epochs": ["1", "2"]}, tmp_path / "s", config_file=config,
                 base_overrides={"label": "b"})  # fmt: skip
    assert [(r.overrides["epochs"], r.overrides["scale"], r.overrides["label"]) for r in runs] == [
        ("1", 5.0, "b"),
        ("2", 5.0, "b"),
    ]


def test_a_checkpoint_left_by_another_sweep_is_refused(sweep_experiments, tmp_path):
    """An interrupted run of another sweep (other ``--set`` values) left its checkpoint under a
    planned run's name: refused naming the difference, never resumed from."""
    out = tmp_path / "s"
    (run,) = plan_steps_sweep({"scale": ["1.0"]}, out)
    other = {"epochs": 3, "scale": 1.0, "fail": False, "label": ""}
    save_checkpoint(run.path, RunRecord("test-sweep-steps", other, 0, "cpu"), {"epoch": 0})
    with pytest.raises(ConfigError, match=r"from a different sweep \(epochs: 3 there, 4 here\)"):
        plan_steps_sweep({"scale": ["1.0"]}, out)
    checkpoint_path(run.path).write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="cannot be read .*delete it to start afresh"):
        plan_steps_sweep({"scale": ["1.0"]}, out)


def test_a_seed_named_twice_is_refused(sweep_experiments, tmp_path):
    """``seeds=[0, 0]`` would plan two runs writing one file: refused, naming the seeds."""
    with pytest.raises(ConfigError, match=r"seeds \[1, 0, 1\] name a seed twice"):
        plan_steps_sweep({}, tmp_path / "s", seeds=[1, 0, 1])
    assert [r.seed for r in plan_steps_sweep({}, tmp_path / "s", seeds=[1, 0])] == [1, 0]


def test_a_sweep_needs_at_least_one_worker(sweep_experiments, tmp_path, monkeypatch):
    """``n_workers=0`` is refused before any cluster is started (a cluster without workers
    would wait for ever)."""
    import dask.distributed

    from plastix.sims.sweep import run_sweep

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(dask.distributed, "LocalCluster", no_cluster)
    with pytest.raises(ConfigError, match="--workers must be at least 1, got 0"):
        run_sweep("test-sweep-steps", {}, out_dir=tmp_path / "s", n_workers=0,
                  imports=["sweep_experiments"])  # fmt: skip
    assert not (tmp_path / "s").exists()


# --- running, listing and showing a sweep's runs -----------------------------------------------


def test_run_one_replaces_an_unreadable_file_and_then_skips_the_complete_run(
    sweep_experiments, tmp_path
):
    """A file an earlier attempt left unreadable is replaced by the run; once complete, the
    run is skipped (not run again) and says so."""
    from plastix.sims.sweep import run_one

    journal = sweep_experiments
    (run,) = plan_steps_sweep({"epochs": ["2"]}, tmp_path / "s")
    Path(run.path).parent.mkdir(parents=True)
    Path(run.path).write_bytes(b"not hdf5")
    entry = run_one("test-sweep-steps", run, None, None, ("sweep_experiments",))
    assert (entry["status"], entry["skipped"]) == ("complete", False)
    assert read_result(run.path).status == "complete"
    assert len(journal.read_text().splitlines()) == 2
    again = run_one("test-sweep-steps", run, None, None, ("sweep_experiments",))
    assert (again["status"], again["skipped"]) == ("complete", True)
    assert len(journal.read_text().splitlines()) == 2


def _index(out: Path, ids: list[str], status: str = "pending") -> list[dict]:
    from plastix.sims import sweep

    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    entries = [{"run_id": i, "overrides": {}, "seed": 0, "path": str(runs.resolve() / f"{i}.h5"),
                "status": status} for i in ids]  # fmt: skip
    sweep._write_index(out, "test-sweep-steps", entries)
    return entries


def test_load_sweep_leaves_out_failed_runs_that_wrote_no_file(sweep_experiments, tmp_path):
    """A run whose worker died for good (KilledWorker) is failed with no file: the table
    holds the other runs; only a complete run whose file is missing is an error."""
    from plastix.sims import sweep
    from plastix.sims.experiments import run_experiment

    out = tmp_path / "s"
    done, lost = _index(out, ["done", "lost"])
    run_experiment("test-sweep-steps", {"epochs": 1}, out=done["path"])
    sweep._write_index(out, "test-sweep-steps",
                       [{**done, "status": "complete"}, {**lost, "status": "failed"}])  # fmt: skip
    table = sweep.load_sweep(out)
    assert list(table["path"]) == [done["path"]]


def test_sweep_status_shows_a_run_holding_its_lock_as_running_over_its_old_file(tmp_path):
    """A run that holds its lock is running, even where an earlier complete result is still
    under its name (a run with --force replaces it only at its end)."""
    from plastix.sims import sweep

    out = tmp_path / "s"
    (entry,) = _index(out, ["again"])
    write_result(entry["path"], RunRecord("test-sweep-steps", {}, 0, "cpu"), "complete")
    with hold_lock_file(run_lock_path(entry["path"])):
        (shown,) = sweep.sweep_status(out).runs
    assert shown["status"] == "running" and f"process {os.getpid()} on" in shown["holder"]
    assert sweep.sweep_status(out).runs[0]["status"] == "complete"


def test_aggregate_keeps_runs_whose_group_key_is_missing():
    """Runs whose grouping value is NaN/None (a config key some runs lack) form their own
    group instead of being dropped."""
    import pandas as pd

    from plastix.sims.sweep import aggregate

    table = pd.DataFrame({"label": ["a", None, None], "acc": [0.5, 0.75, 0.25]})
    agg = aggregate(table, by=["label"], metrics=["acc"])
    assert sorted(agg["acc_n"]) == [1, 2]
    assert agg["acc_mean"].sum() == pytest.approx(1.0)


# --- lock files --------------------------------------------------------------------------------


def test_a_lock_file_is_deleted_while_it_is_still_locked(tmp_path, monkeypatch):
    """Release deletes the file before unlocking it: a process that takes the lock in between
    would otherwise hold a file that is then deleted under it."""
    path = tmp_path / "x.lock"
    still_locked = []
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if self == path:
            still_locked.append(lock_holder(path) is not None)
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(processes.Path, "unlink", unlink)
    with hold_lock_file(path):
        pass
    assert still_locked == [True] and not path.exists()


def test_a_lock_file_can_be_read_by_other_users(tmp_path):
    """Others (another user's ``plastix show``) can read who holds it: mode 0644 under the
    usual umask 022."""
    path = tmp_path / "x.lock"
    umask = os.umask(0o022)
    try:
        with hold_lock_file(path):
            assert stat.S_IMODE(path.stat().st_mode) == 0o644
    finally:
        os.umask(umask)


def test_this_host_is_usable_in_a_file_name(monkeypatch):
    monkeypatch.setattr(processes.socket, "gethostname", lambda: "my laptop/α")
    assert this_host() == "my-laptop-"
    monkeypatch.setattr(processes.socket, "gethostname", lambda: "")
    assert this_host() == "host"
