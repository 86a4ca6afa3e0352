"""docs/your-own-experiment.md, run as written: its module, its commands, its analysis."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from plastix.sims import cli, experiments
from plastix.sims.experiments import run_experiment
from plastix.sims.results import read_result

DOC = Path(__file__).resolve().parents[1] / "docs" / "your-own-experiment.md"


@pytest.fixture
def doc_blocks(tmp_path, monkeypatch):
    """The guide's (python module, shell commands, python analysis), the module written to an
    empty working folder; the registry, sys.path and sys.modules are restored afterwards."""
    module, commands, analysis = re.findall(r"```(?:python|bash)\n(.*?)```", DOC.read_text(), re.S)
    (tmp_path / "my_experiments.py").write_text(module)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(experiments, "_REGISTRY", dict(experiments._REGISTRY))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "my_experiments", raising=False)
    yield module, commands, analysis
    sys.modules.pop("my_experiments", None)


def test_the_guide_runs_as_written(doc_blocks, tmp_path, capsys):
    _, commands, analysis = doc_blocks
    lines = [line for line in commands.splitlines() if line.strip()]
    assert len(lines) == 5
    for line in lines:
        program, *args = shlex.split(line)
        assert program == "plastix"
        assert cli.main(args) == 0, line
    assert "sweep in sweeps/noise: 6 runs (6 complete)" in capsys.readouterr().out
    assert read_result("noisy.h5").config["noise"] == 0.5
    figures = sorted(p.name for p in Path("plots").iterdir())
    assert figures == ["noisy_curves.png", "noisy_weights.png"]

    namespace: dict = {}
    exec(compile(analysis, str(DOC), "exec", dont_inherit=True), namespace)
    assert list(namespace["result"].metrics["epoch"]) == [0, 1, 2]
    means = namespace["means"].set_index("noise")
    assert list(means.index) == [0.0, 0.5, 1.0]
    assert (means["test_accuracy_n"] == 2).all()
    # chance is 10 %; noise of the size of the pixel range must cost accuracy
    assert means.loc[0.0, "test_accuracy_mean"] > 0.8
    assert means.loc[0.0, "test_accuracy_mean"] > means.loc[1.0, "test_accuracy_mean"] + 0.3


def test_the_guides_experiment_resumes_to_the_same_result(doc_blocks, tmp_path, monkeypatch):
    """A crash in the second epoch, then the same call again: it goes on from the checkpoint
    and ends where an uninterrupted run ends."""
    cli.main(["list", "--import", "my_experiments"])
    from plastix.bridges.ib_training import IBTrainer

    settings = {"noise": 0.3, "epochs": 3}
    run_experiment("ib-noisy-inputs", settings, out=tmp_path / "whole.h5")
    whole = read_result(tmp_path / "whole.h5")

    train_epoch, calls = IBTrainer.train_epoch, []

    def crash_in_epoch_two(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return train_epoch(self, *args, **kwargs)

    monkeypatch.setattr(IBTrainer, "train_epoch", crash_in_epoch_two)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_experiment("ib-noisy-inputs", settings, out=tmp_path / "resumed.h5")
    assert read_result(tmp_path / "resumed.h5").status == "failed"
    run_experiment("ib-noisy-inputs", settings, out=tmp_path / "resumed.h5")
    resumed = read_result(tmp_path / "resumed.h5")
    assert len(calls) == 4  # epochs 1, 2 (crashed), then 2 and 3 after resuming
    assert resumed.status == "complete"
    assert list(resumed.metrics["epoch"]) == [0, 1, 2]
    assert resumed.summary["test_accuracy"] == whole.summary["test_accuracy"]
    assert list(resumed.metrics["test_loss"]) == list(whole.metrics["test_loss"])
