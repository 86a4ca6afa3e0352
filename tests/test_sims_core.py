"""The experiment registry, typed configs, the HDF5 result contract, checkpoints and the CLI."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import pytest

from plastix.sims import cli
from plastix.sims.config import (
    ConfigError,
    build_config,
    config_fields,
    parse_set_options,
    read_config_file,
)
from plastix.sims.experiments import RunContext, experiment, run_experiment
from plastix.sims.results import checkpoint_path, read_result, runs_table


@dataclass
class CounterConfig:
    mode: Literal["fast", "slow"] = "fast"
    epochs: int = field(default=3, metadata={"min": 1, "help": "epochs"})
    lr: float = field(default=0.1, metadata={"min": 0.0, "min_exclusive": True})
    hidden: tuple[int, ...] = (4, 2)
    label: str | None = None
    fail_at: int = -1

    def validate(self) -> None:
        if self.fail_at >= self.epochs:
            raise ValueError("fail_at: must be below epochs")


CALLS: list[int] = []
INTERRUPT_AT: list[int] = []  # epochs at which the next run is interrupted (simulated Ctrl-C)
CRASH_AT: list[int] = []  # epochs at which the next run crashes (a fault outside the config)
CLOCK = [0.0]  # simulated seconds: each epoch takes 10 (read where a test patches perf_counter)


@experiment("test-counter", CounterConfig, description="counts epochs (test only)")
def _run_counter(cfg: CounterConfig, ctx: RunContext) -> None:
    state = ctx.resume_state() or {"epoch": -1}
    for epoch in range(state["epoch"] + 1, cfg.epochs):
        CALLS.append(epoch)
        CLOCK[0] += 10.0
        if epoch == cfg.fail_at:
            raise RuntimeError("boom")
        if epoch in INTERRUPT_AT:
            INTERRUPT_AT.remove(epoch)
            raise KeyboardInterrupt
        if epoch in CRASH_AT:
            CRASH_AT.remove(epoch)
            raise OSError("disk hiccup")
        ctx.log(epoch=epoch, loss=1.0 / (epoch + 1), accuracy=epoch * cfg.lr)
        ctx.checkpoint({"epoch": epoch})
    ctx.log(step=0, lr=cfg.lr)
    ctx.workdir.mkdir(exist_ok=True)
    (ctx.workdir / "scratch.txt").write_text("a build, say")  # removed once the run completes
    ctx.summary(test_accuracy=0.5, n_hidden=sum(cfg.hidden))
    weights, i, t, matrix = (
        np.arange(6.0).reshape(2, 3),
        np.array([0, 1, 1]),
        np.array([1e-3, 2e-3, 4e-3]),
        np.eye(2),
    )
    ctx.save_weights("w", weights)
    ctx.save_spikes("hidden", i, t)
    ctx.save_array("matrix", matrix)
    for saved in (weights, i, t, matrix):  # the result keeps what was saved, not later changes
        saved[...] = -1


experiment(
    "test-counter-devices",
    CounterConfig,
    description="test-counter on two named devices (test only)",
    devices=("alpha", "beta"),
)(_run_counter)

BAD_CALLS: dict = {}  # what test-bad-values passes to summary() and log()


@experiment("test-bad-values", CounterConfig, description="stores BAD_CALLS (test only)")
def _run_bad_values(cfg: CounterConfig, ctx: RunContext) -> None:
    ctx.log(epoch=0, accuracy=0.5)
    ctx.summary(**BAD_CALLS.get("summary", {}))
    if "log" in BAD_CALLS:
        ctx.log(**BAD_CALLS["log"])
    for row in BAD_CALLS.get("log2", ()):
        ctx.log(**row)
    for name, value in BAD_CALLS.get("weights", {}).items():
        ctx.save_weights(name, value)


def test_build_config_parses_types_and_choices():
    cfg = build_config(
        CounterConfig, {"mode": "slow", "epochs": "5", "lr": "0.5", "hidden": "8,4,2", "label": "x"}
    )
    assert (cfg.mode, cfg.epochs, cfg.lr, cfg.hidden, cfg.label) == ("slow", 5, 0.5, (8, 4, 2), "x")
    assert build_config(CounterConfig, {"hidden": [3], "label": "none"}).label is None
    assert build_config(CounterConfig, {"hidden": "[8, 4]"}).hidden == (8, 4)  # JSON list form
    assert build_config(CounterConfig, {"epochs": 2.0}).epochs == 2  # TOML float, whole


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"epoch": 3}, "unknown config key 'epoch'"),
        ({"mode": "medium"}, "valid choices: 'fast', 'slow'"),
        ({"epochs": "three"}, "epochs: expected an integer"),
        ({"epochs": 0}, "must be >= 1"),
        ({"lr": 0}, "must be > 0"),
        ({"hidden": "a,b"}, "hidden: expected an integer"),
        ({"fail_at": 7}, "fail_at: must be below epochs"),
        ({"lr": "nan"}, "lr: 'nan' is not a finite number"),
        ({"lr": float("inf")}, "lr: inf is not a finite number"),
        ({"hidden": ""}, "hidden: empty; give at least one value"),
        # past int64 it passed, and crashed (OverflowError) once the run had started
        ({"epochs": "100000000000000000000"}, "epochs: 100000000000000000000 is out of range"),
        ({"hidden": [4, 2**63]}, "integers must lie within"),
        ({"epochs": 2.5}, "epochs: expected an integer"),  # not truncated to 2
        ({"hidden": "[8, 4"}, "hidden: cannot read '\\[8, 4' as a list"),
    ],
)
def test_build_config_refuses_bad_values(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_config(CounterConfig, overrides)


def test_build_config_checks_the_defaults_an_experiment_declares():
    """A default outside its own bounds (an experiment author's slip) is refused like a bad
    --set value, before any work starts."""

    @dataclass
    class BadDefaults:
        epochs: int = field(default=0, metadata={"min": 1})

    @dataclass
    class EmptyDefault:
        hidden: tuple[int, ...] = ()

    with pytest.raises(ConfigError, match="epochs: 0 .*must be >= 1"):
        build_config(BadDefaults, {})
    with pytest.raises(ConfigError, match="hidden: empty"):
        build_config(EmptyDefault, {})


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as info:
        build_config(CounterConfig, {"nope": 1})
    for key in ("epochs", "hidden", "mode"):
        assert key in str(info.value)


def test_set_options_and_toml(tmp_path):
    assert parse_set_options(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_set_options(["novalue"])
    toml = tmp_path / "c.toml"
    toml.write_text('epochs = 2\nmode = "slow"\n')
    assert read_config_file(toml) == {"epochs": 2, "mode": "slow"}
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 2")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_config_file(bad)
    with pytest.raises(ConfigError, match="given twice"):
        parse_set_options(["epochs=abc", "epochs=1"])
    outside = tmp_path / "outside.toml"
    outside.write_text("bogus = 1\n[config]\nepochs = 2\n")
    with pytest.raises(ConfigError, match="'bogus' are outside its \\[config\\] table"):
        read_config_file(outside)
    with pytest.raises(ConfigError, match="is a folder"):
        read_config_file(tmp_path)


@dataclass
class ParseConfig:
    """Every kind of key build_config parses (for the checks below)."""

    width: Literal[1, 2, 4] = 1
    flag: bool = False
    count: int = 0
    scale: float = 1.0
    name: str = "a"
    maybe: int | None = None
    either: int | float = 0
    weights: list[float] = field(default_factory=lambda: [0.5])
    extras: tuple[int, ...] = field(default=(), metadata={"allow_empty": True})
    modes: tuple[Literal["x", "y"], ...] = ("x",)
    fraction: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0, "max_exclusive": True})
    level: int = field(default=1, metadata={"min": 1, "max": 5, "help": "how high"})


def test_build_config_parses_int_choices_given_as_strings():
    """A --set value is a string: '2' selects the int choice 2 of Literal[1, 2, 4]."""
    cfg = build_config(ParseConfig, {"width": "2"})
    assert cfg.width == 2 and isinstance(cfg.width, int)
    assert build_config(ParseConfig, {"width": 4}).width == 4  # TOML gives the int
    with pytest.raises(ConfigError, match="width: '3' is not a valid choice; valid choices: 1"):
        build_config(ParseConfig, {"width": "3"})
    with pytest.raises(ConfigError, match="width: True is not a valid choice"):
        build_config(ParseConfig, {"width": True})  # TOML true is not the choice 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("YES", True), ("On", True), ("1", True), (True, True)]
    + [("false", False), ("No", False), ("OFF", False), ("0", False), (False, False)],
)
def test_build_config_parses_bool_words(text, expected):
    assert build_config(ParseConfig, {"flag": text}).flag is expected


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"flag": "maybe"}, "flag: expected true or false, got 'maybe'"),
        ({"flag": 1}, "flag: expected true or false, got 1"),
        ({"count": True}, "count: expected an integer, got True"),  # bool is an int subclass
        ({"scale": False}, "scale: expected a number, got False"),
        ({"name": 3}, "name: expected a string, got 3"),
        ({"either": "none"}, "either: expected an integer"),  # no None in int | float
        ({"level": 6}, "level: 6 is out of range; it must be <= 5"),
        ({"fraction": 1.0}, "fraction: 1.0 is out of range; it must be < 1"),
        ({"level": 0}, "level: 0 is out of range; it must be >= 1"),
        ({"modes": ""}, "modes: empty; choose at least one of x, y"),
        ({"count": 2**63}, "count: 9223372036854775808 is out of range"),
        ({"count": -(2**63)}, "count: -9223372036854775808 is out of range"),
    ],
)
def test_build_config_refuses_wrong_types_and_bounds(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_config(ParseConfig, overrides)


def test_build_config_accepts_values_on_inclusive_bounds_and_none_words():
    """Inclusive bounds admit the bound itself; 'none', 'null', 'None' and '' give None for an
    optional key; allow_empty admits an empty sequence; list keys stay lists."""
    cfg = build_config(
        ParseConfig,
        {"level": 5, "fraction": 0.0, "count": 2**63 - 1, "extras": "", "weights": "1, 2.5"},
    )
    assert (cfg.level, cfg.fraction, cfg.count, cfg.extras) == (5, 0.0, 2**63 - 1, ())
    assert cfg.weights == [1.0, 2.5] and isinstance(cfg.weights, list)
    assert build_config(ParseConfig, {"level": "1"}).level == 1
    assert build_config(ParseConfig, {"count": -(2**63 - 1)}).count == -(2**63 - 1)
    assert build_config(CounterConfig, {"epochs": 1}).epochs == 1
    for word in ("none", "null", "None", "NULL", ""):
        assert build_config(ParseConfig, {"maybe": word}).maybe is None
    assert build_config(ParseConfig, {"maybe": "7"}).maybe == 7
    assert build_config(ParseConfig, {"either": "2.5"}).either == 2.5
    assert build_config(ParseConfig, {"extras": "  [3, 4]"}).extras == (3, 4)  # JSON, padded


def test_build_config_turns_a_post_init_value_error_into_a_config_error():
    @dataclass
    class Checked:
        lo: int = 0
        hi: int = 1

        def __post_init__(self) -> None:
            if self.lo > self.hi:
                raise ValueError("lo: must not exceed hi")

    with pytest.raises(ConfigError, match="lo: must not exceed hi"):
        build_config(Checked, {"lo": 3})


def test_build_config_unknown_key_says_where():
    with pytest.raises(ConfigError, match="unknown config key 'x' for experiment 'demo'; valid"):
        build_config(CounterConfig, {"x": 1}, where="experiment 'demo'")
    with pytest.raises(ConfigError, match="unknown config keys 'x', 'y'; valid keys: epochs"):
        build_config(CounterConfig, {"y": 1, "x": 2})


def test_config_fields_describe_defaults_help_and_choices():
    fields = {f.name: f for f in config_fields(ParseConfig)}
    assert fields["weights"].default == [0.5]  # from the default factory
    assert fields["width"].choices == (1, 2, 4) and fields["flag"].choices is None
    assert fields["width"].type_name == "one of 1, 2, 4"
    assert fields["level"].help == "how high" and fields["level"].default == 1


def test_set_options_refuse_an_empty_key_and_strip_keys():
    assert parse_set_options([" epochs =3", "mode= slow"]) == {"epochs": "3", "mode": " slow"}
    assert parse_set_options(None) == {}
    for item in ("=3", "  =3"):
        with pytest.raises(ConfigError, match="expected key=value"):
            parse_set_options([item])


def test_read_config_file_table_missing_and_binary_files(tmp_path):
    """Keys under [config] are returned without the table; a missing file and a file that is
    not text are ConfigErrors naming the file."""
    table = tmp_path / "t.toml"
    table.write_text('[config]\nepochs = 2\nmode = "slow"\n')
    assert read_config_file(table) == {"epochs": 2, "mode": "slow"}
    with pytest.raises(ConfigError, match="missing.toml' does not exist"):
        read_config_file(tmp_path / "missing.toml")
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"epochs = 2\n\xff\xfe\x00")
    with pytest.raises(ConfigError, match="b.toml' is not valid TOML"):
        read_config_file(binary)


def test_result_file_contract(tmp_path):
    out = run_experiment("test-counter", {"epochs": 3}, out=tmp_path / "r.h5", seed=4)
    with h5py.File(out) as h5:
        for attr in (
            "experiment",
            "config",
            "seed",
            "device",
            "plastix_version",
            "versions",
            "created",
            "status",
        ):
            assert attr in h5.attrs
        assert h5.attrs["status"] == "complete"
        assert json.loads(h5.attrs["config"])["hidden"] == [4, 2]
        versions = json.loads(h5.attrs["versions"])
        assert set(versions) >= {"brian2", "torch", "numpy", "snntorch"}
        assert (versions["numpy"], versions["h5py"]) == (np.__version__, h5py.__version__)
        assert h5["metrics/loss"].attrs["axis"] == "epoch"
    res = read_result(out)
    assert res.summary["test_accuracy"] == 0.5 and res.summary["n_hidden"] == 6
    assert res.summary["wall_s"] >= 0
    np.testing.assert_array_equal(res.metrics["epoch"], [0, 1, 2])
    np.testing.assert_allclose(res.metrics["loss"], [1, 1 / 2, 1 / 3])
    assert res.metric_axes["lr"] == "step"
    np.testing.assert_array_equal(res.weights["w"], np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(res.spikes["hidden"][0], [0, 1, 1])
    np.testing.assert_array_equal(res.spikes["hidden"][1], [1e-3, 2e-3, 4e-3])
    np.testing.assert_array_equal(res.arrays["matrix"], np.eye(2))
    assert not checkpoint_path(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]


def test_metric_first_logged_mid_run_is_padded_with_nan(tmp_path):
    """Columns of one axis stay aligned row by row: a metric that is missing from a row, also
    from the rows before it first appeared, reads NaN there."""
    from plastix.sims.results import RunRecord, write_result

    rows = [
        {"epoch": 0, "loss": 1.0},
        {"epoch": 1, "loss": 0.5, "val": 0.9},
        {"epoch": 2, "loss": 0.25},
        {"step": 0, "lr": 0.1},
    ]
    record = RunRecord("test-counter", {}, 0, "runtime", rows=rows)
    res = read_result(write_result(tmp_path / "r.h5", record, "complete"))
    np.testing.assert_array_equal(res.metrics["epoch"], [0, 1, 2])
    np.testing.assert_array_equal(res.metrics["loss"], [1.0, 0.5, 0.25])
    np.testing.assert_array_equal(res.metrics["val"], [np.nan, 0.9, np.nan])
    np.testing.assert_array_equal(res.metrics["lr"], [0.1])
    assert (res.metric_axes["val"], res.metric_axes["lr"]) == ("epoch", "step")


def test_a_metric_logged_against_two_axes_is_refused(tmp_path):
    """'loss' logged in an 'epoch' row and in a 'step' row: refused by name, nothing written."""
    from plastix.sims.results import RunRecord, record_as_result, write_result

    rows = [{"epoch": 0, "loss": 1.0}, {"step": 0, "loss": 2.0}]
    record = RunRecord("test-counter", {}, 0, "runtime", rows=rows)
    message = r"metric 'loss' was logged against two axes \('epoch' and 'step'\)"
    with pytest.raises(ValueError, match=message):
        write_result(tmp_path / "r.h5", record, "complete")
    with pytest.raises(ValueError, match=message):
        record_as_result(tmp_path / "r.h5", record, "running")
    # an axis logged as another axis's metric, in either order
    for rows in ([{"epoch": 0, "step": 5}, {"step": 7, "loss": 1.0}],
                 [{"step": 7, "loss": 1.0}, {"epoch": 0, "step": 5}]):  # fmt: skip
        record = RunRecord("test-counter", {}, 0, "runtime", rows=rows)
        with pytest.raises(ValueError, match=r"metric 'step' was logged against two axes"):
            write_result(tmp_path / "r.h5", record, "complete")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sha", ["0123abcd" * 5, None])
def test_result_records_the_source_commit_when_known(tmp_path, monkeypatch, sha):
    from plastix.sims import results

    monkeypatch.setattr(results, "git_sha", lambda: sha)
    out = run_experiment("test-counter", {"epochs": 1}, out=tmp_path / "r.h5")
    with h5py.File(out) as h5:
        assert h5.attrs.get("git_sha") == sha  # absent, not empty, when unknown


def test_interrupt_keeps_checkpoint_and_resume_completes(tmp_path):
    out = tmp_path / "r.h5"
    CALLS.clear()
    INTERRUPT_AT[:] = [2]
    with pytest.raises(KeyboardInterrupt):
        run_experiment("test-counter", {"epochs": 4}, out=out)
    assert CALLS == [0, 1, 2]
    assert not out.exists()
    assert checkpoint_path(out).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    with pytest.raises(ValueError, match="different run"):
        run_experiment("test-counter", {"epochs": 5}, out=out)
    with pytest.raises(ValueError, match="seed: 0 there, 1 here"):  # another seed's checkpoint
        run_experiment("test-counter", {"epochs": 4}, out=out, seed=1)
    assert CALLS == [0, 1, 2]
    CALLS.clear()
    run_experiment("test-counter", {"epochs": 4}, out=out)
    assert CALLS == [2, 3]  # resumed after the last checkpoint; epochs 0 and 1 not re-run
    res = read_result(out)
    np.testing.assert_array_equal(res.metrics["epoch"], [0, 1, 2, 3])
    assert not checkpoint_path(out).exists()


@dataclass
class SimulationConfig:
    duration_ms: float = 100.0


@experiment(
    "test-ctrl-c-in-simulation",
    SimulationConfig,
    description="a Brian2 run that receives Ctrl-C part-way (test only)",
    devices=("runtime",),
)
def _run_interrupted_simulation(cfg: SimulationConfig, ctx: RunContext) -> None:
    import os
    import signal

    from brian2 import Network, NeuronGroup, ms, network_operation

    group = NeuronGroup(1, "dv/dt = 1 / (10*ms) : 1", method="euler", name="ctrl_c_group")

    @network_operation(when="end", name="ctrl_c_press")
    def press_ctrl_c(t):
        if abs(t / ms - 5.0) < 1e-9:
            os.kill(os.getpid(), signal.SIGINT)

    net = Network(group, press_ctrl_c)
    net.run(cfg.duration_ms * ms, namespace={})
    ctx.summary(simulated_ms=float(net.t / ms))


def test_ctrl_c_in_a_brian2_simulation_interrupts_the_run(tmp_path):
    # Brian2's default turns Ctrl-C in Network.run into a quiet stop: the run went on with 5 of
    # 100 ms simulated and was written as complete.
    out = tmp_path / "r.h5"
    with pytest.raises(KeyboardInterrupt):
        run_experiment("test-ctrl-c-in-simulation", out=out)
    assert not out.exists()
    from brian2 import prefs

    assert prefs.core.stop_on_keyboard_interrupt  # Brian2's setting is back for other code


def test_failure_writes_failed_status(tmp_path):
    out = tmp_path / "r.h5"
    with pytest.raises(RuntimeError, match="boom"):
        run_experiment("test-counter", {"epochs": 3, "fail_at": 1}, out=out)
    res = read_result(out)
    assert res.status == "failed" and "boom" in res.attrs["error"]
    np.testing.assert_array_equal(res.metrics["epoch"], [0])


def test_wall_time_of_a_resumed_run_adds_the_work_up_to_its_checkpoint(tmp_path, monkeypatch):
    from plastix.sims import experiments

    monkeypatch.setattr(experiments.time, "perf_counter", lambda: CLOCK[0])
    out = tmp_path / "r.h5"
    INTERRUPT_AT[:] = [2]
    with pytest.raises(KeyboardInterrupt):
        run_experiment("test-counter", {"epochs": 4}, out=out)
    run_experiment("test-counter", {"epochs": 4}, out=out)
    # epochs 0-1 (checkpointed) + 2-3 after resuming; the interrupted epoch 2 is not counted
    assert read_result(out).summary["wall_s"] == pytest.approx(40.0)


@pytest.mark.parametrize(
    ("calls", "fragment"),
    [
        ({"summary": {"note": None}}, "summary\\(\\): note=None \\(NoneType\\) cannot be stored"),
        ({"summary": {"table": {"a": 1}}}, "summary\\(\\): table="),
        ({"summary": {"names": ["a", "b"]}}, "names holds <U1 values"),
        ({"log": {"epoch": 0, "loss": "high"}}, "loss='high' is not a number"),
        ({"log2": ({"epoch": 0, "loss": 1.0}, {"step": 0, "loss": 2.0})}, "metric 'loss' was"),
        # HDF5 reads '/' as a folder: the result was written complete, then unreadable
        ({"log": {"epoch": 1, "train/loss": 1.0}}, "log\\(\\): name 'train/loss' cannot name"),
        ({"weights": {"layer/w": np.eye(2)}}, "save_weights\\(\\): name 'layer/w'"),
        # an attribute over 64 KiB failed the write after all the work, at every resume
        ({"summary": {"big": np.zeros(10_000)}}, "big is 80000 bytes; an HDF5 attribute holds"),
    ],
)
def test_values_that_cannot_be_stored_fail_the_run_where_they_are_given(tmp_path, calls, fragment):
    BAD_CALLS.clear()
    BAD_CALLS.update(calls)
    out = tmp_path / "b.h5"
    with pytest.raises((TypeError, ValueError), match=fragment):
        run_experiment("test-bad-values", {}, out=out)
    res = read_result(out)  # the failure is recorded, with what was logged before it
    assert res.status == "failed" and res.metrics["accuracy"][0] == 0.5


def test_numeric_summary_values_and_arrays_are_stored(tmp_path):
    BAD_CALLS.clear()
    import torch

    BAD_CALLS["summary"] = {
        "n": np.int64(3), "ok": True, "name": "x", "curve": np.array([1.0, 2.0]), "t": (1, 2),
        "loss": torch.tensor(0.25),
    }  # fmt: skip
    res = read_result(run_experiment("test-bad-values", {}, out=tmp_path / "v.h5"))
    assert (res.summary["n"], res.summary["ok"], res.summary["name"]) == (3, True, "x")
    assert res.summary["loss"] == 0.25
    np.testing.assert_array_equal(res.summary["curve"], [1.0, 2.0])
    np.testing.assert_array_equal(res.summary["t"], [1, 2])


def test_torch_tensors_that_require_grad_are_stored(tmp_path):
    import torch

    BAD_CALLS.clear()
    weight = torch.nn.Parameter(torch.arange(6.0).reshape(2, 3))
    BAD_CALLS["summary"] = {"loss": (weight.sum() / 60), "norms": weight.norm(dim=1)}
    BAD_CALLS["weights"] = {"w": weight}
    res = read_result(run_experiment("test-bad-values", {}, out=tmp_path / "g.h5"))
    assert res.summary["loss"] == pytest.approx(0.25)
    np.testing.assert_allclose(res.summary["norms"], weight.detach().norm(dim=1).numpy())
    np.testing.assert_array_equal(res.weights["w"], np.arange(6.0).reshape(2, 3))


def test_cli_reports_a_failed_run_and_where_it_is_recorded(tmp_path, capsys):
    out = tmp_path / "r.h5"
    CRASH_AT[:] = [1]
    args = ["run", "test-counter", "--out", str(out), "--no-progress"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "OSError: disk hiccup" in err  # the traceback
    assert f"the run failed; {out} records it (status failed)" in err
    assert cli.main(args) == 0  # the same command resumes
    assert read_result(out).status == "complete"


def test_same_run_after_a_crash_resumes_and_replaces_its_failed_result(tmp_path):
    out = tmp_path / "r.h5"
    CALLS.clear()
    CRASH_AT[:] = [2]
    with pytest.raises(OSError, match="disk hiccup"):
        run_experiment("test-counter", {"epochs": 4}, out=out)
    assert read_result(out).status == "failed" and checkpoint_path(out).exists()
    failed = out.read_bytes()
    with pytest.raises(ConfigError, match=r"already exists \(status failed\)"):
        run_experiment("test-counter", {"epochs": 5}, out=out)  # another run's record is kept
    assert out.read_bytes() == failed
    CALLS.clear()
    run_experiment("test-counter", {"epochs": 4}, out=out)
    assert CALLS == [2, 3]  # resumed from the checkpoint of epoch 1
    res = read_result(out)
    assert res.status == "complete"
    np.testing.assert_array_equal(res.metrics["epoch"], [0, 1, 2, 3])
    assert not checkpoint_path(out).exists()


def test_cli_refuses_another_runs_checkpoint_before_any_work(tmp_path, capsys):
    out = tmp_path / "r.h5"
    INTERRUPT_AT[:] = [1]
    with pytest.raises(KeyboardInterrupt):
        run_experiment("test-counter", {"epochs": 3}, out=out)
    CALLS.clear()
    args = ["run", "test-counter", "--set", "epochs=4", "--out", str(out), "--no-progress"]
    assert cli.main(args) == 2
    assert CALLS == []
    assert "belongs to a different run (epochs: 3 there, 4 here)" in capsys.readouterr().err
    assert checkpoint_path(out).exists() and not out.exists()


def test_cli_interrupt_names_the_file_that_resumes_a_run_without_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    INTERRUPT_AT[:] = [2]
    assert cli.main(["run", "test-counter", "--set", "epochs=4", "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "run it again with --out plastix_runs/test-counter_seed0_" in err
    out = err.split("--out ")[1].split()[0].rstrip(".")
    assert checkpoint_path(out).exists()
    CALLS.clear()
    args = ["run", "test-counter", "--set", "epochs=4", "--out", out, "--no-progress"]
    assert cli.main(args) == 0
    assert CALLS == [2, 3]
    INTERRUPT_AT[:] = [0]
    fresh = ["run", "test-counter", "--out", "fresh.h5", "--no-progress"]
    assert cli.main(fresh) == 130
    assert "no checkpoint was reached" in capsys.readouterr().err


def test_existing_result_is_never_overwritten_without_force(tmp_path):
    out = run_experiment("test-counter", {"epochs": 1}, out=tmp_path / "r.h5")
    before = out.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        run_experiment("test-counter", {"epochs": 2}, out=out)
    assert out.read_bytes() == before
    run_experiment("test-counter", {"epochs": 2}, out=out, force=True)
    assert len(read_result(out).metrics["epoch"]) == 2


def test_resuming_on_another_device_is_refused(tmp_path):
    out = tmp_path / "r.h5"
    INTERRUPT_AT[:] = [1]
    with pytest.raises(KeyboardInterrupt):
        run_experiment("test-counter-devices", {"epochs": 3}, device="alpha", out=out)
    with pytest.raises(ConfigError, match="written on --device alpha, not beta; resume with"):
        run_experiment("test-counter-devices", {"epochs": 3}, device="beta", out=out)
    assert checkpoint_path(out).exists() and not out.exists()
    run_experiment("test-counter-devices", {"epochs": 3}, device="alpha", out=out)
    assert read_result(out).attrs["device"] == "alpha"


def test_a_failed_run_over_an_unreadable_file_kept_by_force_is_reported(tmp_path, capsys):
    out = tmp_path / "e.h5"
    out.write_bytes(b"not hdf5")
    args = ["run", "test-counter", "--set", "epochs=2", "--set", "fail_at=1", "--out", str(out)]
    assert cli.main([*args, "--force", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "boom" in err and "no result was written" in err and err.count("Traceback") == 1
    assert out.read_bytes() == b"not hdf5"


def test_default_result_names_differ_between_processes():
    from plastix.sims.experiments import default_out_path

    assert default_out_path("test-counter", 3).stem.endswith(f"-{os.getpid()}")


def test_runs_table(tmp_path):
    for seed in (0, 1):
        run_experiment("test-counter", {"epochs": 2}, out=tmp_path / f"s{seed}.h5", seed=seed)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    table = runs_table(tmp_path)
    assert len(table) == 2
    assert set(table["seed"]) == {0, 1}
    assert {"epochs", "test_accuracy", "status", "path"} <= set(table.columns)


def test_runs_table_searches_subfolders_and_gives_list_configs_as_tuples(tmp_path):
    """A folder is searched recursively; a list in the config (JSON) becomes a hashable tuple."""
    run_experiment("test-counter", {"epochs": 1}, out=tmp_path / "a" / "b" / "r.h5", seed=2)
    table = runs_table(tmp_path)
    assert list(table["seed"]) == [2]
    assert table["path"][0] == str(tmp_path / "a" / "b" / "r.h5")
    assert table["hidden"][0] == (4, 2)


def test_cli_run_show_and_errors(tmp_path, capsys):
    out = tmp_path / "c.h5"
    assert (
        cli.main(["run", "test-counter", "--set", "epochs=2", "--out", str(out), "--no-progress"])
        == 0
    )
    said = f"plastix: running test-counter into {out} (plastix show {out} shows its progress)"
    assert said in capsys.readouterr().err
    assert cli.main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "test-counter" in shown and "test_accuracy" in shown

    assert (
        cli.main(["run", "test-counter", "--set", "epochz=2", "--out", str(tmp_path / "x.h5")]) == 2
    )
    err = capsys.readouterr().err
    assert "unknown config key 'epochz'" in err and "epochs" in err
    assert cli.main(["run", "test-counter", "--set", "mode=warp"]) == 2
    assert "valid choices" in capsys.readouterr().err
    assert cli.main(["run", "no-such-experiment"]) == 2
    assert "available:" in capsys.readouterr().err
    assert cli.main(["run", "test-counter", "--device", "tpu"]) == 2
    assert cli.main(["run", "test-counter", "--out", str(tmp_path / "r.txt")]) == 2
    assert cli.main(["run", "test-counter", "--config", str(tmp_path / "missing.toml")]) == 2
    assert cli.main(["run", "test-counter", "--out", str(out)]) == 2  # exists: not overwritten
    assert cli.main(["show", str(tmp_path / "missing.h5")]) == 2
    assert not (tmp_path / "x.h5").exists()


def test_cli_list_and_info(capsys, tmp_path, monkeypatch):
    assert cli.main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "test-counter" in listed and "epochs" in listed
    project = tmp_path / "cache" / "ib-circuit-x" / "0123abcd"
    project.mkdir(parents=True)
    (project / "main").write_bytes(b"\0" * 2**21)
    monkeypatch.setenv("PLASTIX_BUILD_CACHE", str(tmp_path / "cache"))
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "brian2" in out
    assert f"Compiled circuits: kept in {tmp_path / 'cache'} (1 project, 2 MiB)" in out
    monkeypatch.setenv("PLASTIX_BUILD_CACHE", "off")
    assert cli.main(["info"]) == 0
    assert "Compiled circuits: not kept" in capsys.readouterr().out


def test_cli_plot_draws_what_the_file_holds(tmp_path, capsys):
    out = run_experiment("test-counter", {"epochs": 3}, out=tmp_path / "p.h5")
    assert cli.main(["plot", str(out), "--out-dir", str(tmp_path / "figs")]) == 0
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert names == ["p_curves.png", "p_matrix.png", "p_raster.png", "p_weights.png"]
    assert all((tmp_path / "figs" / n).stat().st_size > 1000 for n in names)
    assert cli.main(["plot", str(tmp_path / "nope.h5")]) == 2


@dataclass
class DataConfig:
    dataset: Literal["mnist", "digits"] = "mnist"
    n_train: int | None = None


@experiment("test-needs-data", DataConfig, description="needs a dataset (test only)")
def _run_needs_data(cfg: DataConfig, ctx: RunContext) -> None:
    raise AssertionError("must not start when the dataset is missing")


def test_missing_dataset_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PLASTIX_DATA", raising=False)
    out = tmp_path / "d.h5"
    code = cli.main(["run", "test-needs-data", "--out", str(out), "--data-root", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "dataset: mnist: dataset files not found" in err and str(tmp_path) in err
    assert not out.exists()


@experiment(
    "test-brian2-device",
    CounterConfig,
    description="needs a Brian2 backend (test only)",
    devices=("auto", "runtime", "cpp_standalone", "cuda_standalone"),
)
def _run_needs_backend(cfg: CounterConfig, ctx: RunContext) -> None:
    raise AssertionError("must not start on a backend that cannot run here")


def test_unusable_brian2_backend_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    from plastix.circuits import backend

    def report_without_cuda():
        return [
            backend.BackendStatus("runtime", True, {"codegen_targets": ["numpy"]}),
            backend.BackendStatus("cpp_standalone", True),
            backend.BackendStatus("cuda_standalone", False, {}, ["gpu: no NVIDIA GPU visible"]),
        ]

    monkeypatch.setattr(backend, "backend_report", report_without_cuda)
    assert backend.backend_problems("cpp_standalone") == []
    assert backend.backend_problems("auto") == []
    out = tmp_path / "b.h5"
    code = cli.main(["run", "test-brian2-device", "--device", "cuda_standalone", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "--device cuda_standalone: cannot run here" in err and "no NVIDIA GPU" in err
    assert "--device auto" in err
    assert not out.exists()


def test_unusable_build_cache_setting_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    (tmp_path / "a-file").write_text("x")
    out = tmp_path / "b.h5"
    for value, problem in [("", "is empty"), (str(tmp_path / "a-file"), "is not a folder")]:
        monkeypatch.setenv("PLASTIX_BUILD_CACHE", value)
        assert (
            cli.main(["run", "test-brian2-device", "--device", "runtime", "--out", str(out)]) == 2
        )
        err = capsys.readouterr().err
        assert (
            f"$PLASTIX_BUILD_CACHE {value!r} {problem}" in err and "PLASTIX_BUILD_CACHE=off" in err
        )
    assert not out.exists()
    # the setting only matters to Brian2 runs
    assert cli.main(["run", "test-counter", "--no-progress", "--out", str(out)]) == 0


def test_build_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    from plastix.sims.experiments import build_cache_folder

    monkeypatch.setenv("PLASTIX_BUILD_CACHE", str(tmp_path / "c"))
    assert build_cache_folder() == tmp_path / "c"
    monkeypatch.setenv("PLASTIX_BUILD_CACHE", " OFF ")
    assert build_cache_folder() is None
    monkeypatch.delenv("PLASTIX_BUILD_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert build_cache_folder() == tmp_path / "xdg" / "plastix" / "brian-builds"
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    assert build_cache_folder() is None  # an unusable default means no cache, not an error


def test_bsweep_result_gets_a_heatmap_over_window_size(tmp_path):
    out = run_experiment(
        "ib-bsweep",
        {"dataset": "xor", "windows": (2, 4), "epochs": 2, "n_train": 200, "n_test": 100},
        out=tmp_path / "b.h5",
    )
    assert cli.main(["plot", str(out), "--out-dir", str(tmp_path / "f"), "--format", "pdf"]) == 0
    assert (tmp_path / "f" / "b_bsweep.pdf").stat().st_size > 1000


def test_figure_interrupted_while_saving_keeps_the_previous_file(tmp_path):
    from plastix.sims.plots import pyplot, save_figure

    plt = pyplot()
    target = tmp_path / "curves.png"
    fig = plt.figure()
    save_figure(fig, target)
    before = target.read_bytes()
    assert before.startswith(b"\x89PNG")

    def interrupted(fname, **kwargs):
        with open(fname, "wb") as fh:
            fh.write(b"\x89PNG half")
        raise KeyboardInterrupt

    fig.savefig = interrupted
    with pytest.raises(KeyboardInterrupt):
        save_figure(fig, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]


def test_atomic_writes_get_the_permissions_of_a_plain_write(tmp_path):
    import os
    import stat

    from plastix.sims.results import atomic_path

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    with atomic_path(tmp_path / "atomic.txt") as tmp:
        tmp.write_text("x")
    mode = stat.S_IMODE(os.stat(tmp_path / "atomic.txt").st_mode)
    assert mode == stat.S_IMODE(os.stat(plain).st_mode)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name an fd")
def test_atomic_writes_reach_the_disk_before_and_after_the_rename(tmp_path, monkeypatch):
    """The whole new file is synced before it takes the final name, and the folder after, so a
    power cut cannot leave an empty or partial file under the final name."""
    from plastix.sims import results

    final = tmp_path / "result.txt"
    final.write_text("old")
    synced = []

    def record_fsync(fd):
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        synced.append((path, final.read_text(), path.read_text() if path.is_file() else None))

    monkeypatch.setattr(results.os, "fsync", record_fsync)
    with results.atomic_path(final) as tmp:
        tmp.write_text("new")
    assert len(synced) == 2
    (file_synced, final_then, content), (folder_synced, final_after, _) = synced
    assert file_synced.name.endswith(".partial") and file_synced.parent == tmp_path
    assert (final_then, content) == ("old", "new")  # the new data synced before the rename
    assert (folder_synced, final_after) == (tmp_path, "new")  # the rename synced after it


@pytest.mark.parametrize(
    ("code", "written"), [(errno.EINVAL, True), (errno.ENOTSUP, True), (errno.EIO, False)]
)
def test_atomic_writes_on_a_file_system_that_cannot_sync(tmp_path, monkeypatch, code, written):
    """A mount that does not support fsync (EINVAL) still gets the file; a failed write-back
    (EIO) is an error, and nothing is left under the final name."""
    from plastix.sims import results

    def failing_fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(results.os, "fsync", failing_fsync)
    final = tmp_path / "result.txt"
    if written:
        with results.atomic_path(final) as tmp:
            tmp.write_text("new")
        assert final.read_text() == "new"
    else:
        with pytest.raises(OSError), results.atomic_path(final) as tmp:
            tmp.write_text("new")
        assert not final.exists()
    assert [p.name for p in tmp_path.iterdir()] == (["result.txt"] if written else [])


def test_atomic_writes_delete_what_killed_writers_of_this_host_left(tmp_path):
    """A writer killed mid-write (SIGKILL, power cut) leaves its hidden partial file behind; the
    next write of the same file deletes it, and keeps the partial files of running writers,
    of writers on other hosts sharing the folder, and of other files."""
    import subprocess
    import sys

    from plastix.processes import this_host
    from plastix.sims.results import atomic_path

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid, live_pid, host = int(ended.stdout), os.getpid(), this_host()
    killed = tmp_path / f".result.h5.{host}-{dead_pid}.0123456789abcdef.partial"
    kept = [
        tmp_path / f".result.h5.{host}-{live_pid}.fedcba9876543210.partial",
        tmp_path / f".result.h5.{host}x-{dead_pid}.0123456789abcdef.partial",  # another host
        tmp_path / f".other.h5.{host}-{dead_pid}.0123456789abcdef.partial",  # another file
    ]
    for path in (killed, *kept):
        path.write_bytes(b"half")
    with atomic_path(tmp_path / "result.h5") as tmp:
        tmp.write_bytes(b"whole")
    assert not killed.exists()
    assert all(path.exists() for path in kept)
    assert (tmp_path / "result.h5").read_bytes() == b"whole"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--set", "dataset=digits", "--set", "n_train=5000"], "larger than the 1437 training"),
        (["--set", "dataset=mnist"], "is not an IDX file"),  # junk files under the names
    ],
)
def test_dataset_sizes_and_files_are_checked_before_any_work(tmp_path, capsys, args, fragment):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
    ):  # fmt: skip
        (folder / name).write_bytes(b"junk")
    out = tmp_path / "d.h5"
    argv = ["run", "test-needs-data", *args, "--out", str(out), "--data-root", str(tmp_path)]
    assert cli.main(argv) == 2
    assert fragment in capsys.readouterr().err
    assert not out.exists()


def test_cli_refuses_outputs_seeds_and_imports_that_cannot_work(tmp_path, monkeypatch, capsys):
    run = ["run", "test-counter", "--no-progress"]
    fresh = ["--out", str(tmp_path / "fresh.h5")]
    (tmp_path / "folder.h5").mkdir()
    (tmp_path / "file").write_text("x")
    cases = [
        ([*run, "--out", str(tmp_path / "folder.h5"), "--force"], "is a folder"),
        ([*run, "--out", str(tmp_path / "file" / "sub" / "r.h5")], "no file can be written"),
        ([*run, "--seed", str(2**32), *fresh], "--seed must be an integer from 0 to 2**32 - 1"),
        ([*run, "--data-root", "", *fresh], "--data-root '' is not a folder"),
        ([*run, "--device", "", *fresh], "--device: empty; choose one of cpu, cuda"),
        ([*run, "--import", "plastix_no_such_module", *fresh], "--import 'plastix_no_such_module'"),
    ]
    for argv, fragment in cases:
        assert cli.main(argv) == 2, argv
        assert fragment in capsys.readouterr().err, argv
    assert not (tmp_path / "fresh.h5").exists()
    # --import finds a module in the current folder, and reports one that raises
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    (tmp_path / "own_experiments.py").write_text(
        "from dataclasses import dataclass\n"
        "from plastix.sims.experiments import experiment\n"
        "@dataclass\nclass C:\n    n: int = 1\n"
        "@experiment('test-own-import', C)\n"
        "def run(cfg, ctx):\n    ctx.summary(n=cfg.n)\n"
    )
    (tmp_path / "broken_experiments.py").write_text("raise RuntimeError('broken on import')\n")
    assert cli.main(["list", "--import", "own_experiments"]) == 0
    assert "test-own-import" in capsys.readouterr().out
    argv = ["run", "test-own-import", "--import", "own_experiments", "--out", "o.h5"]
    assert cli.main([*argv, "--no-progress"]) == 0
    assert read_result(tmp_path / "o.h5").summary["n"] == 1
    assert cli.main(["run", "test-counter", "--import", "broken_experiments"]) == 2
    assert "RuntimeError: broken on import" in capsys.readouterr().err


def test_unreadable_checkpoint_is_refused_naming_the_fix(tmp_path, capsys):
    out = tmp_path / "r.h5"
    checkpoint_path(out).write_text("garbage\n")
    assert cli.main(["run", "test-counter", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot be read" in err and "delete it to start afresh" in err


def test_a_checkpoint_that_holds_no_run_record_is_refused(tmp_path):
    """A readable pickle whose 'record' is not a RunRecord is refused naming the file."""
    import pickle

    from plastix.sims.results import read_checkpoint

    out = tmp_path / "r.h5"
    checkpoint_path(out).write_bytes(pickle.dumps({"record": {"experiment": "x"}, "state": {}}))
    with pytest.raises(ValueError, match=r"r\.h5\.ckpt' holds no plastix run; delete it"):
        read_checkpoint(out)


def test_show_and_plot_refuse_files_that_break_the_layout(tmp_path, capsys):
    good = run_experiment("test-counter", {"epochs": 2}, out=tmp_path / "a" / "r.h5")
    other = run_experiment("test-counter", {"epochs": 2}, out=tmp_path / "b" / "r.h5")
    assert cli.main(["plot", str(good), str(other), "--out-dir", str(tmp_path / "f")]) == 2
    assert "several files are named r" in capsys.readouterr().err
    for damage in ("config", "metrics"):
        bad = tmp_path / f"{damage}.h5"
        bad.write_bytes(good.read_bytes())
        with h5py.File(bad, "a") as h5:
            if damage == "config":
                h5.attrs["config"] = "not json"
            else:
                h5["metrics"].create_group("nested")
        assert cli.main(["show", str(bad)]) == 2
        assert "does not follow the plastix result layout" in capsys.readouterr().err
    assert cli.main(["show", str(tmp_path)]) == 2
    assert "has no index.json: not a plastix sweep folder; name a result file (.h5) or" in (
        capsys.readouterr().err
    )


def test_plot_says_when_a_file_has_nothing_to_plot(tmp_path, capsys):
    BAD_CALLS.clear()
    empty = tmp_path / "empty.h5"
    with h5py.File(run_experiment("test-bad-values", {}, out=tmp_path / "v.h5"), "r") as src:
        with h5py.File(empty, "w") as h5:
            for key, value in src.attrs.items():
                h5.attrs[key] = value
            h5.create_group("summary")
    assert cli.main(["plot", str(empty), "--out-dir", str(tmp_path / "f")]) == 1
    assert "nothing to plot" in capsys.readouterr().out
    assert not (tmp_path / "f").exists()  # no empty folder left behind


def test_git_sha_is_the_source_trees_commit_and_says_when_it_was_changed(tmp_path):
    import subprocess

    from plastix.sims.results import git_sha

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    source = tmp_path / "module.py"
    source.write_text("x = 1\n")
    git("add", "module.py")
    git("commit", "-qm", "one")
    head = git("rev-parse", "HEAD")
    assert git_sha(source) == head
    (tmp_path / "result.h5").write_bytes(b"untracked")  # results and builds do not make it dirty
    assert git_sha(source) == head
    source.write_text("x = 2\n")
    assert git_sha(source) == f"{head}-dirty"
    (tmp_path / "venv").mkdir()  # an installed copy inside the repository, not tracked by it
    installed = tmp_path / "venv" / "module.py"
    installed.write_text("x = 1\n")
    assert git_sha(installed) is None
    assert git_sha(tmp_path.parent / "elsewhere" / "module.py") is None


def _sigint_after_cli_list(handler: str) -> str:
    """In a child process: give SIGINT the handler ``signal.<handler>``, run ``plastix list``,
    send itself SIGINT; returns what came of it ('interrupted', or 'ignored True/False')."""
    import subprocess
    import sys

    code = (
        "import os, signal\n"
        f"signal.signal(signal.SIGINT, signal.{handler})\n"
        "from plastix.sims import cli\n"
        "assert cli.main(['list']) == 0\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
        "else:\n"
        "    print('ignored', signal.getsignal(signal.SIGINT) is signal.SIG_IGN)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()[-1]


def test_cli_keeps_ignoring_sigint_where_the_shell_ignores_it():
    """A background job (``plastix run ... &`` in a script) starts with SIGINT ignored; Brian2's
    import would replace that with a handler that fails on the next SIGINT."""
    assert _sigint_after_cli_list("SIG_IGN") == "ignored True"


def test_cli_leaves_ctrl_c_working_where_sigint_is_not_ignored():
    """Where SIGINT has its default handler (a foreground command), the CLI keeps it: Ctrl-C
    still raises KeyboardInterrupt after a command. Run in a child process that sets the
    handler itself, since this suite may run as a background job with SIGINT ignored."""
    assert _sigint_after_cli_list("default_int_handler") == "interrupted"


def _fake_result(path, experiment="test-counter", **parts):
    """A Result built in memory (no run, no file): only the parts a figure reads."""
    from plastix.sims.results import Result

    empty = ("config", "summary", "metrics", "metric_axes", "arrays", "weights", "spikes")
    fields = {name: parts.get(name, {}) for name in empty}
    return Result(path=Path(path), attrs={"experiment": experiment, "status": "complete"}, **fields)


def _lines(ax):
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines}


def test_learning_curves_draw_each_metric_against_its_axis_with_timings_on_their_own_rows():
    """Columns: the axes (sorted); rows: plain values, milliseconds, seconds. The axis itself
    is never drawn as a curve; the title names the experiment and the file."""
    from plastix.sims.plots import learning_curves, pyplot

    res = _fake_result(
        "/x/run.h5",
        metrics={
            "epoch": np.array([0.0, 1.0, 2.0]),
            "loss": np.array([3.0, 2.0, 1.0]),
            "epoch_ms": np.array([5.0, 6.0, 7.0]),
            "epoch_s": np.array([0.1, 0.2, 0.3]),
            "step": np.array([0.0, 1.0]),
            "lr": np.array([0.1, 0.2]),
        },
        metric_axes={
            "epoch": "epoch",
            "loss": "epoch",
            "epoch_ms": "epoch",
            "epoch_s": "epoch",
            "step": "step",
            "lr": "step",
        },
    )
    fig = learning_curves(res)
    axs = np.array(fig.axes).reshape(3, 2)  # rows: "", milliseconds, seconds
    assert _lines(axs[0, 0]) == {"loss": ([0.0, 1.0, 2.0], [3.0, 2.0, 1.0])}
    assert _lines(axs[1, 0]) == {"epoch_ms": ([0.0, 1.0, 2.0], [5.0, 6.0, 7.0])}
    assert _lines(axs[2, 0]) == {"epoch_s": ([0.0, 1.0, 2.0], [0.1, 0.2, 0.3])}
    assert _lines(axs[0, 1]) == {"lr": ([0.0, 1.0], [0.1, 0.2])}
    assert _lines(axs[1, 1]) == {} and _lines(axs[2, 1]) == {}
    assert [ax.get_xlabel() for ax in axs[0]] == ["epoch", "step"]
    assert [ax.get_ylabel() for ax in axs[:, 0]] == ["", "milliseconds", "seconds"]
    assert fig._suptitle.get_text() == "test-counter — run.h5"
    pyplot().close(fig)


def test_raster_weight_histograms_and_heatmaps_draw_the_stored_data():
    """Raster: time on x, neuron index on y, one row per monitor; histograms: 50 bins of every
    weight; heat-maps: only 2-D arrays at least 2 x 2 and at most 10 000 values, annotated
    only up to 144 values."""
    from plastix.sims.plots import array_heatmaps, pyplot, raster, weight_histograms

    res = _fake_result(
        "/x/run.h5",
        spikes={
            "hidden": (np.array([0, 1, 1]), np.array([1e-3, 2e-3, 4e-3])),
            "out": (np.array([2]), np.array([3e-3])),
        },
        weights={"w": np.arange(12.0).reshape(3, 4)},
        arrays={
            "row": np.ones((1, 5)),
            "vector": np.ones(5),
            "cube": np.ones((2, 2, 2)),
            "too_big": np.zeros((101, 100)),
            "m12": np.arange(144.0).reshape(12, 12) / 144,
            "m13": np.zeros((13, 12)),
            "largest": np.zeros((100, 100)),
        },
    )
    plt = pyplot()
    fig = raster(res)
    top, bottom = fig.axes
    np.testing.assert_allclose(top.lines[0].get_xdata(), [1e-3, 2e-3, 4e-3])
    np.testing.assert_allclose(top.lines[0].get_ydata(), [0, 1, 1])
    assert [top.get_ylabel(), bottom.get_ylabel()] == ["hidden\nneuron", "out\nneuron"]
    assert bottom.get_xlabel() == "time (s)"
    plt.close(fig)

    fig = weight_histograms(res)
    (ax,) = fig.axes
    assert len(ax.patches) == 50 and ax.get_title() == "w"
    assert sum(p.get_height() for p in ax.patches) == 12
    plt.close(fig)

    maps = array_heatmaps(res)
    assert [name for name, _ in maps] == ["m12", "m13", "largest"]
    texts = {name: [t.get_text() for t in fig.axes[0].texts] for name, fig in maps}
    assert len(texts["m12"]) == 144 and texts["m12"][:2] == ["0.00", "0.01"]
    assert texts["m13"] == [] and texts["largest"] == []
    assert [fig.axes[0].get_title() for _, fig in maps] == ["m12", "m13", "largest"]
    for _, fig in maps:
        plt.close(fig)


def test_plot_result_closes_its_figures_and_refuses_other_formats(tmp_path):
    from plastix.sims.plots import plot_result, pyplot

    plt = pyplot()
    res = _fake_result(tmp_path / "r.h5", weights={"w": np.arange(6.0)})
    before = plt.get_fignums()
    assert plot_result(res, tmp_path / "f") == [tmp_path / "f" / "r_weights.png"]
    assert plt.get_fignums() == before
    with pytest.raises(ValueError, match="fmt must be 'png' or 'pdf', got 'svg'"):
        plot_result(res, tmp_path / "g", fmt="svg")
    assert not (tmp_path / "g").exists()


def test_bsweep_figure_labels_windows_and_epochs_and_draws_the_final_accuracy():
    """Heat-map rows are the windows B, columns the epochs counted from 1; the line is the
    last epoch's accuracy against B on a log-2 axis."""
    from plastix.sims.plots import pyplot
    from plastix.sims.plots_ib import bsweep_heatmap

    acc = np.array([[0.5, 0.6], [0.55, 0.7], [0.6, 0.9]])
    res = _fake_result(
        "/x/b.h5", "ib-bsweep", arrays={"windows": np.array([2, 4, 8]), "test_accuracy_curves": acc}
    )
    [(name, fig)] = bsweep_heatmap(res)
    assert name == "bsweep"
    ax_map, ax_line = fig.axes[:2]
    assert [t.get_text() for t in ax_map.get_xticklabels()] == ["1", "2"]
    assert [t.get_text() for t in ax_map.get_yticklabels()] == ["2", "4", "8"]
    np.testing.assert_allclose(ax_line.lines[0].get_xdata(), [2, 4, 8])
    np.testing.assert_allclose(ax_line.lines[0].get_ydata(), [0.6, 0.7, 0.9])
    assert ax_line.get_xscale() == "log" and ax_line.get_ylabel() == "final test accuracy"
    assert bsweep_heatmap(_fake_result("/x/b.h5", "ib-bsweep")) == []
    pyplot().close(fig)


@experiment(
    "test-context",
    CounterConfig,
    description="records what its run was given (test only)",
    devices=("alpha", "beta"),
)
def _run_records_context(cfg: CounterConfig, ctx: RunContext) -> None:
    for _ in ctx.progress(range(cfg.epochs), desc="test-context epochs"):
        pass
    ctx.summary(seed=ctx.seed, device=ctx.device, data_root=str(ctx.data_root))


def test_cli_run_hands_seed_device_config_file_and_data_root_to_the_run(tmp_path, capsys):
    """What `plastix run` is given reaches the run and its result, and the summary is printed
    after the path written."""
    config = tmp_path / "c.toml"
    config.write_text('epochs = 2\nmode = "slow"\n')
    out = tmp_path / "r.h5"
    argv = ["run", "test-context", "--seed", "7", "--device", "beta", "--config", str(config)]
    argv += ["--data-root", str(tmp_path), "--set", "lr=0.5", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    res = read_result(out)
    assert (res.attrs["seed"], res.attrs["device"]) == (7, "beta")
    assert (res.config["epochs"], res.config["mode"], res.config["lr"]) == (2, "slow", 0.5)
    assert res.summary["data_root"] == str(tmp_path)
    captured = capsys.readouterr()
    printed = captured.out.splitlines()
    assert printed[0] == f"wrote {out}"
    assert {"  seed: 7", "  device: beta", f"  data_root: {tmp_path}"} <= set(printed[1:])
    assert "test-context epochs" not in captured.err  # --no-progress: no progress bar


def test_cli_run_shows_progress_bars_unless_told_not_to(tmp_path, capsys):
    out = tmp_path / "r.h5"
    assert cli.main(["run", "test-context", "--set", "epochs=2", "--out", str(out)]) == 0
    assert "test-context epochs" in capsys.readouterr().err


def test_cli_list_gives_descriptions_devices_and_defaults_as_python_writes_them(capsys):
    assert cli.main(["list"]) == 0
    listed = capsys.readouterr().out
    assert f"  {'test-context':<16} records what its run was given (test only)\n" in listed
    assert f"  {'':<16} devices: alpha, beta (default alpha)\n" in listed
    assert "mode = 'fast'  (" in listed and "label = None  (" in listed
    assert "hidden = (4, 2)  (" in listed


def test_cli_show_prints_first_and_last_value_of_each_metric_but_not_the_axes(tmp_path, capsys):
    out = run_experiment("test-counter", {"epochs": 3}, out=tmp_path / "s.h5")
    assert cli.main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    lines = shown.splitlines()
    assert lines[0].startswith(f"{out}: test-counter  status=complete  seed=0  device=cpu")
    # loss = 1 / (epoch + 1) over epochs 0..2; accuracy = epoch * lr
    assert "  loss [epoch, n=3]: 1 → 0.3333" in lines
    assert "  accuracy [epoch, n=3]: 0 → 0.2" in lines
    assert "  lr [step, n=1]: 0.1 → 0.1" in lines
    assert not any(line.startswith(("  epoch [", "  step [")) for line in lines)
    assert "in progress" not in shown  # no run is writing it
    assert "weights: w(2, 3)" in lines and "spikes: hidden (3 spikes)" in lines


def test_cli_show_of_a_failed_run_gives_the_last_line_of_its_error(tmp_path, capsys):
    out = tmp_path / "f.h5"
    with pytest.raises(RuntimeError, match="boom"):
        run_experiment("test-counter", {"epochs": 2, "fail_at": 1}, out=out)
    assert cli.main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "status=failed" in shown and "  error: RuntimeError: boom\n" in shown


def test_cli_plot_refuses_an_out_dir_that_is_a_file(tmp_path, capsys):
    out = run_experiment("test-counter", {"epochs": 1}, out=tmp_path / "p.h5")
    (tmp_path / "figs").write_text("x")
    assert cli.main(["plot", str(out), "--out-dir", str(tmp_path / "figs")]) == 2
    err = capsys.readouterr().err
    assert f"--out-dir {str(tmp_path / 'figs')!r} exists and is not a folder" in err


def test_cli_sweep_hands_every_option_to_the_sweep(monkeypatch, tmp_path):
    from plastix.sims import sweep

    seen = {}

    def fake_run_sweep(*args, **kwargs):
        seen.update(args=args, **kwargs)
        return sweep.SweepSummary(tmp_path, [{"run_id": "r0", "status": "complete"}])

    monkeypatch.setattr(sweep, "run_sweep", fake_run_sweep)
    argv = ["sweep", "ib-rate", "--grid", "window=2,4", "--grid", "lr=0.1", "--seeds", "3"]
    argv += ["--out-dir", str(tmp_path), "--set", "epochs=2", "--config", "c.toml"]
    argv += ["--device", "cpu", "--scheduler", "tcp://h:8786", "--workers", "5"]
    argv += ["--data-root", "data", "--import", "mod_a", "--import", "mod_b"]
    assert cli.main(argv) == 0
    assert seen == {
        "args": ("ib-rate", {"window": ["2", "4"], "lr": ["0.1"]}),
        "seeds": 3,
        "out_dir": tmp_path,
        "base_overrides": {"epochs": "2"},
        "config_file": "c.toml",
        "device": "cpu",
        "scheduler": "tcp://h:8786",
        "n_workers": 5,
        "data_root": "data",
        "imports": ["mod_a", "mod_b"],
    }
    seen.clear()
    assert cli.main(["sweep", "ib-rate", "--out-dir", str(tmp_path)]) == 0
    defaults = (seen["seeds"], seen["n_workers"], seen["scheduler"], seen["imports"])
    assert defaults == (1, 2, None, ())  # --seeds 1, --workers 2, no scheduler, no imports
