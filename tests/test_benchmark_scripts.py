"""Benchmark scripts: a smoke run (--quick) never overwrites recorded results; bad counts are
refused before any work."""

import argparse
import importlib
import sys
from pathlib import Path

import pytest

from plastix.sims.datasets import SYSTEM_FASHION_MNIST

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench_ib_rate(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module("bench_ib_rate")

    def refuse(name, markdown, *args, **kwargs):
        raise AssertionError(f"a --quick run recorded section {name!r}")

    monkeypatch.setattr(module, "record_section", refuse)
    return module


@pytest.mark.skipif(
    not (SYSTEM_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="apt-get install dataset-fashion-mnist",
)
def test_quick_probe_records_nothing(bench_ib_rate, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench_ib_rate.py", "--probe", "--quick"])
    bench_ib_rate.main()
    assert "| IB rule, reference setting |" in capsys.readouterr().out


def test_sweep_plot_is_written_whole(bench_ib_rate, tmp_path):
    target = tmp_path / "figures" / "sweep.png"
    bench_ib_rate.plot_sweep([(2, 0.5, 0.4, 1.0), (8, 0.6, 0.55, 2.0)], target)
    assert target.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in target.parent.iterdir()] == ["sweep.png"]


@pytest.fixture
def record(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("_record")


def test_results_contents_lists_sections_by_issue(record, tmp_path):
    path = tmp_path / "RESULTS.md"
    record.record_section("nte", "## NTE run (issue 7)\n\nnumbers", path)
    record.record_section("misc", "## A section without an issue\n\ntext", path)
    record.record_section("ib", "## IB run (rate networks, issue 3)\n\nnumbers", path)
    text = path.read_text()
    contents = text[text.index(record.CONTENTS_BEGIN) : text.index(record.CONTENTS_END)]
    assert contents.index("`ib`") < contents.index("`nte`") < contents.index("`misc`")
    assert text.index(record.CONTENTS_END) < text.index("<!-- begin nte -->")
    # re-recording a section replaces its line and its block, nothing else
    record.record_section("nte", "## NTE rerun (issue 7)\n\nnew numbers", path)
    text = path.read_text()
    assert text.count(record.CONTENTS_BEGIN) == 1
    assert "NTE rerun (issue 7)" in text and "NTE run (issue 7)" not in text
    assert "new numbers" in text and "\nnumbers" in text  # the ib section is untouched
    assert record.with_contents(text) == text


def test_nte_variant_sections_get_distinct_headings(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench_nte = importlib.import_module("bench_nte")
    default = {
        "standardize": False,
        "init": "torch",
        "nte_form": "batch",
        "nte_expansion": "origin",
    }
    assert bench_nte._variant_text(argparse.Namespace(**default)) == ""
    variant = argparse.Namespace(**{**default, "standardize": True, "init": "lecun"})
    assert bench_nte._variant_text(variant) == ", standardized inputs, LeCun init"


SCRIPTS = ["bench_ib_rate", "bench_ib_spiking", "bench_nte", "bench_pruning"]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(("option", "value"), [("--epochs", "0"), ("--seeds", "-1")])
def test_bad_counts_are_refused_before_any_work(script, option, value, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module(script)
    required = {"bench_ib_spiking": ["--part", "speed"]}.get(script, [])
    monkeypatch.setattr(sys, "argv", [f"{script}.py", option, value, "--no-record", *required])
    with pytest.raises(SystemExit) as stop:
        module.main()
    assert stop.value.code == 2
    assert f"argument {option}: {value}; give at least " in capsys.readouterr().err


def test_build_cache_benchmark_refuses_a_bad_repeat_count(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module("bench_build_cache")
    monkeypatch.setattr(sys, "argv", ["bench_build_cache.py", "--repeats", "0", "--no-record"])
    with pytest.raises(SystemExit) as stop:
        module.main()
    assert stop.value.code == 2
    assert "argument --repeats: 0; give at least 1" in capsys.readouterr().err
