"""Benchmark scripts: a smoke run (--quick) never overwrites recorded results."""

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
