"""Sweeps on a Dask LocalCluster: grid × seeds, failures recorded, killed runs resumed."""

from __future__ import annotations

import collections
import gc
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from plastix.sims import cli
from plastix.sims.config import ConfigError
from plastix.sims.results import read_result
from plastix.sims.sweep import aggregate, load_sweep, parse_grid, plan_sweep, run_sweep


def _journal(journal: Path) -> collections.Counter:
    return collections.Counter(journal.read_text().splitlines())


def test_parse_grid_and_validation(sweep_env, tmp_path):
    assert parse_grid(["B=2,4", "lr=0.1"]) == {"B": ["2", "4"], "lr": ["0.1"]}
    assert parse_grid(["hidden=128,64; 256"]) == {"hidden": ["128,64", "256"]}
    for bad in (["B"], ["B="], ["B=1", "B=2"]):
        with pytest.raises(ConfigError):
            parse_grid(bad)
    with pytest.raises(ConfigError, match="epochs: expected an integer"):
        plan_sweep(
            "test-sweep-steps",
            {"epochs": ["2", "x"]},
            out_dir=tmp_path,
            imports=["sweep_experiments"],
        )
    with pytest.raises(ConfigError, match="are the same config; list each value once"):
        plan_sweep(
            "test-sweep-steps",
            {"epochs": ["4", "04"]},
            out_dir=tmp_path,
            imports=["sweep_experiments"],
        )
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        plan_sweep(
            "test-sweep-steps", {}, out_dir=tmp_path / "a-file", imports=["sweep_experiments"]
        )
    # values that differ only in characters a file name cannot hold would share one run file
    with pytest.raises(ConfigError, match="give runs the same file name"):
        plan_sweep(
            "test-sweep-steps", {"label": ["a b", "a_b"]}, out_dir=tmp_path / "names",
            imports=["sweep_experiments"],
        )  # fmt: skip
    with pytest.raises(ConfigError, match="--set and --grid both give epochs"):
        plan_sweep(
            "test-sweep-steps", {"epochs": ["2"]}, out_dir=tmp_path / "both",
            base_overrides={"epochs": "3"}, imports=["sweep_experiments"],
        )  # fmt: skip
    with pytest.raises(ConfigError, match="--out-dir '/proc/plastix': no folder can be created"):
        plan_sweep("test-sweep-steps", {}, out_dir="/proc/plastix", imports=["sweep_experiments"])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "index.json").write_text("{not json")
    with pytest.raises(ConfigError, match="index.json is not a plastix sweep index"):
        plan_sweep(
            "test-sweep-steps", {}, out_dir=tmp_path / "broken", imports=["sweep_experiments"]
        )
    with pytest.raises(ConfigError, match="unknown config key 'nope'"):
        plan_sweep(
            "test-sweep-steps", {"nope": ["1"]}, out_dir=tmp_path, imports=["sweep_experiments"]
        )


def test_a_refused_scheduler_leaves_nothing_that_blocks_the_next_cluster(sweep_env, tmp_path):
    # Refused before any work, with no thread left running. CI failed twice on the next sweep:
    # the refused Client stayed in a reference cycle with its IO-loop thread running; the cyclic
    # collector then ran inside the next LocalCluster's IO-loop thread, whose start holds
    # distributed's class-wide LoopRunner lock that the Client's finaliser waits for, and the
    # cluster failed after distributed's 10 s start-up limit.
    from dask.distributed import LocalCluster

    threads_before = set(threading.enumerate())
    with pytest.raises(ConfigError, match="--scheduler 'not a url': cannot connect"):
        run_sweep(
            "test-sweep-steps", {}, out_dir=tmp_path / "s", scheduler="not a url",
            imports=["sweep_experiments"],
        )  # fmt: skip
    assert not (tmp_path / "s").exists()
    assert [t.name for t in set(threading.enumerate()) - threads_before] == []

    def collect_on_thread_start(frame, event, arg):  # what an allocation may trigger there
        sys.settrace(None)  # once per thread, at its first call
        gc.collect()

    threading.settrace(collect_on_thread_start)
    try:
        cluster = LocalCluster(n_workers=1, processes=False, dashboard_address=":0")
    finally:
        threading.settrace(None)
    cluster.close()


def test_sweep_survives_a_killed_run_and_resumes_without_loss_or_duplication(
    sweep_env, tmp_path, monkeypatch
):
    journal, marker = sweep_env
    marker.touch()
    monkeypatch.chdir(tmp_path)
    out = Path("sweep")  # relative, as typed on a command line
    summary = run_sweep(
        "test-sweep-steps",
        {"scale": ["1.0", "2.0"], "fail": ["false", "true"]},
        seeds=2,
        out_dir=out,
        n_workers=2,
        imports=["sweep_experiments"],
    )
    assert not marker.exists()  # the kill happened
    by_status = collections.Counter(r["status"] for r in summary.runs)
    assert by_status == {"complete": 4, "failed": 4}
    assert all("fails on purpose" in r["error"] for r in summary.runs if r["status"] == "failed")
    # every complete run has each epoch exactly once in its result...
    for r in summary.runs:
        if r["status"] == "complete":
            np.testing.assert_array_equal(read_result(r["path"]).metrics["epoch"], [0, 1, 2, 3])
    # ...and the killed run (scale 2, seed 1) executed epochs 0 and 1 once, before the kill
    counts = _journal(journal)
    assert all(n == 1 for n in counts.values()), counts
    assert len(counts) == 16

    monkeypatch.chdir(journal.parent.parent)  # the sweep is read from another folder
    table = load_sweep(tmp_path / out)
    assert len(table) == 8 and set(table["status"]) == {"complete", "failed"}
    monkeypatch.chdir(tmp_path)
    agg = aggregate(table[table["status"] == "complete"], by=["scale"], metrics=["final"])
    assert list(agg["final_mean"]) == [3.0, 6.0] and list(agg["final_n"]) == [2, 2]

    # running the same sweep again skips the complete runs and retries only the failed ones
    journal.write_text("")
    again = run_sweep(
        "test-sweep-steps",
        {"scale": ["1.0", "2.0"], "fail": ["false", "true"]},
        seeds=2,
        out_dir=out,
        n_workers=1,
        imports=["sweep_experiments"],
    )
    assert sum(r.get("skipped", False) for r in again.runs) == 4
    assert journal.read_text() == ""

    # another grid into the same folder adds its runs; the earlier ones stay in the index
    more = run_sweep(
        "test-sweep-steps", {"scale": ["3.0"], "fail": ["false"]}, seeds=1, out_dir=out,
        n_workers=1, imports=["sweep_experiments"],
    )  # fmt: skip
    assert len(more.runs) == 9 and len(load_sweep(out)) == 9
    assert len(journal.read_text().splitlines()) == 4  # only the new run's four epochs ran
    journal.write_text("")

    # a sweep with another config or experiment into the same folder is refused before any
    # work, and the earlier sweep's files stay as they were
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    with pytest.raises(ConfigError, match=r"from a different sweep \(epochs: 4 there, 3 here\)"):
        run_sweep(
            "test-sweep-steps",
            {"scale": ["1.0", "2.0"], "fail": ["false", "true"]},
            seeds=2,
            out_dir=out,
            base_overrides={"epochs": "3"},
            imports=["sweep_experiments"],
        )
    with pytest.raises(ConfigError, match="holds a sweep of experiment 'test-sweep-steps'"):
        plan_sweep("test-sweep-other", {}, out_dir=out, imports=["sweep_experiments"])
    assert journal.read_text() == ""
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before

    # a complete run whose file was lost is reported, not silently left out
    next(p for p in (out / "runs").glob("*.h5") if read_result(p).status == "complete").unlink()
    with pytest.raises(FileNotFoundError, match="1 complete run\\(s\\) whose files are missing"):
        load_sweep(out)


def test_aggregate_confidence_interval():
    import pandas as pd

    table = pd.DataFrame({"B": [2, 2, 2, 4], "acc": [0.8, 0.9, 1.0, 0.5]})
    agg = aggregate(table, by=["B"], metrics=["acc"]).set_index("B")
    assert agg.loc[2, "acc_mean"] == pytest.approx(0.9)
    assert agg.loc[2, "acc_ci"] == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-5)
    assert np.isnan(agg.loc[4, "acc_ci"])
    with pytest.raises(KeyError, match="not in the table"):
        aggregate(table, by=["width"], metrics=["acc"])


def test_aggregate_leaves_out_runs_without_the_metric():
    """A run that lacks a summary value (NaN in the table: it failed, or diverged) is left out
    of that metric's mean, count and interval instead of making them NaN."""
    import pandas as pd

    table = pd.DataFrame({"B": [2, 2, 2], "acc": [0.8, np.nan, 1.0]})
    row = aggregate(table, by=["B"], metrics=["acc"]).iloc[0]
    assert row["acc_n"] == 2
    assert row["acc_mean"] == pytest.approx(0.9)
    assert row["acc_ci"] == pytest.approx(12.706205 * np.std([0.8, 1.0], ddof=1) / np.sqrt(2))


@pytest.mark.parametrize(
    ("statuses", "exit_status"), [(["complete"] * 2, 0), (["complete", "failed"], 1)]
)
def test_cli_sweep_exit_status_says_whether_every_run_completed(
    monkeypatch, tmp_path, capsys, statuses, exit_status
):
    from plastix.sims import sweep

    runs = [{"run_id": f"r{k}", "status": s, "error": "boom"} for k, s in enumerate(statuses)]
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **kw: sweep.SweepSummary(tmp_path, runs))
    assert (
        cli.main(["sweep", "ib-rate", "--grid", "window=2,4", "--out-dir", str(tmp_path)])
        == exit_status
    )
    assert ("failed: r1: boom" in capsys.readouterr().out) == bool(exit_status)


def test_cli_sweep_refuses_bad_grid(sweep_env, tmp_path, capsys):
    assert (
        cli.main(
            [
                "sweep",
                "test-sweep-steps",
                "--import",
                "sweep_experiments",
                "--grid",
                "epochs=2,zz",
                "--out-dir",
                str(tmp_path / "s"),
            ]
        )
        == 2
    )
    assert "epochs: expected an integer" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    assert sys.modules.get("sweep_experiments") is not None
