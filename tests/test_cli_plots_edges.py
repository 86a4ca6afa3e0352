"""Edges of the ``plastix`` CLI (cache sizes, a result being replaced, plot's refusals) and of
the figures drawn from result files: several figure hooks, unsorted or reordered inputs, empty
inputs refused, checked through the matplotlib artists (lines, images, texts, labels)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from figure_parts import errorbars

from plastix.sims import cli
from plastix.sims.experiments import RunContext, experiment
from plastix.sims.results import Result


@dataclass
class EdgesConfig:
    epochs: int = field(default=2, metadata={"min": 1})
    empty: bool = False


@experiment("test-cli-edges", EdgesConfig, description="logs a loss per epoch (test only)")
def _run_edges(cfg: EdgesConfig, ctx: RunContext) -> None:
    if cfg.empty:  # logs nothing: a file with nothing to plot
        return
    for epoch in range(cfg.epochs):
        ctx.log(epoch=epoch, loss=1.0 / (epoch + 1))


def _fake_result(experiment_name="test-cli-edges", path="/x/r.h5", **parts):
    """A Result built in memory (no run, no file): only the parts a figure reads."""
    empty = ("config", "summary", "metrics", "metric_axes", "arrays", "weights", "spikes")
    fields = {name: parts.get(name, {}) for name in empty}
    attrs = {"experiment": experiment_name, "status": "complete"}
    return Result(path=Path(path), attrs=attrs, **fields)


# --- plastix info ------------------------------------------------------------------------------


def test_info_gives_the_cache_size_in_mebibytes(tmp_path, monkeypatch, capsys):
    """MiB is 2**20 bytes: a project of 13 * 2**20 bytes (13.6 million) is 13 MiB, not 14."""
    project = tmp_path / "cache" / "key" / "0123abcd"
    project.mkdir(parents=True)
    with open(project / "main", "wb") as fh:
        fh.truncate(13 * 2**20)  # a sparse file: no disk space used
    monkeypatch.setenv("PLASTIX_BUILD_CACHE", str(tmp_path / "cache"))
    assert cli.main(["info"]) == 0
    assert "(1 project, 13 MiB)" in capsys.readouterr().out


# --- plastix show / list / plot ----------------------------------------------------------------


def test_show_of_a_result_that_a_run_is_replacing_says_so(tmp_path, monkeypatch, capsys):
    """A complete result whose lock a run holds (a --force rerun into it): the file is shown,
    then a line naming the run that replaces it when done."""
    from plastix import processes
    from plastix.sims.experiments import run_experiment

    out = run_experiment("test-cli-edges", {}, out=tmp_path / "r.h5")
    holder = processes.LockHolder("elsewhere", 4321, "noon")
    monkeypatch.setattr(processes, "lock_holder", lambda path: holder)
    assert cli.main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"{out}: test-cli-edges  status=complete")
    assert shown.endswith(
        "a run into this file is in progress (process 4321 on elsewhere, since noon); it "
        "replaces this file when done\n"
    )


def test_show_of_an_unreadable_checkpoint_exits_2_naming_the_fix(tmp_path, capsys):
    """No result yet and a checkpoint that cannot be read: exit 2 saying to delete it, not a
    traceback."""
    from plastix.sims.results import checkpoint_path

    out = tmp_path / "r.h5"
    checkpoint_path(out).write_bytes(b"garbage")
    assert cli.main(["show", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("plastix: error: checkpoint ") and "delete it to start afresh" in err


def test_list_with_a_module_that_cannot_be_imported_exits_2_naming_it(capsys):
    from plastix.sims.experiments import load_experiments  # noqa: F401 - registry loaded first

    assert cli.main(["list", "--import", "plastix_no_such_module_edges"]) == 2
    captured = capsys.readouterr()
    assert "--import 'plastix_no_such_module_edges' failed" in captured.err
    assert "Experiments" not in captured.out  # refused before listing anything


def test_plot_refuses_a_file_that_is_not_a_result_before_drawing_any(tmp_path, capsys):
    """A good file and one that is not HDF5: exit 2 naming the bad one, and no figure of the
    good one written (every file is read before any is drawn)."""
    from plastix.sims.experiments import run_experiment

    good = run_experiment("test-cli-edges", {}, out=tmp_path / "good.h5")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    figs = tmp_path / "figs"
    assert cli.main(["plot", str(good), str(bad), "--out-dir", str(figs)]) == 2
    err = capsys.readouterr().err
    assert f"plastix: error: {str(bad)!r} is not an HDF5 file" in err
    assert not figs.exists()


def test_plot_without_files_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["plot", "--out-dir", "figs"])
    assert exited.value.code == 2
    assert "the following arguments are required: files" in capsys.readouterr().err


def test_plot_names_every_repeated_file_name_once(tmp_path, capsys):
    """Two pairs of files with the same names: both names are given, sorted, each once."""
    from plastix.sims.experiments import run_experiment

    files = [
        run_experiment("test-cli-edges", {}, out=tmp_path / folder / f"{stem}.h5")
        for folder in ("a", "b")
        for stem in ("y", "x")
    ]
    assert cli.main(["plot", *map(str, files), "--out-dir", str(tmp_path / "f")]) == 2
    assert "several files are named x, y; their figures would overwrite" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()


def test_plot_succeeds_when_one_of_many_files_has_a_figure(tmp_path, capsys):
    """Exit status 0 once any figure is written, however many files had nothing to plot: one
    file with its learning curves and two empty ones."""
    from plastix.sims.experiments import run_experiment

    good = run_experiment("test-cli-edges", {}, out=tmp_path / "good.h5")
    empty = [
        run_experiment("test-cli-edges", {"empty": True}, out=tmp_path / f"empty{k}.h5")
        for k in (1, 2)
    ]
    figs = tmp_path / "figs"
    assert cli.main(["plot", str(good), *map(str, empty), "--out-dir", str(figs)]) == 0
    assert sorted(p.name for p in figs.iterdir()) == ["good_curves.png"]
    assert capsys.readouterr().out.count("nothing to plot") == 2


def test_sweep_writes_into_its_documented_default_folder(monkeypatch, tmp_path):
    """Without --out-dir a sweep goes to plastix_sweeps/sweep (relative to the current folder),
    as its help says."""
    from plastix.sims import sweep

    seen = {}

    def fake_run_sweep(*args, **kwargs):
        seen.update(kwargs)
        return sweep.SweepSummary(tmp_path, [{"run_id": "r0", "status": "complete"}])

    monkeypatch.setattr(sweep, "run_sweep", fake_run_sweep)
    assert cli.main(["sweep", "ib-rate", "--grid", "window=2,4"]) == 0
    assert seen["out_dir"] == Path("plastix_sweeps/sweep")


# --- plots.py ----------------------------------------------------------------------------------


def test_every_figure_hook_registered_for_an_experiment_is_drawn(tmp_path, monkeypatch):
    """``figure`` may register several functions for one experiment (e.g. one per module):
    plot_result writes the figures of each, in the order registered."""
    from plastix.sims import plots

    monkeypatch.setitem(plots._EXTRA_FIGURES, "test-cli-edges-hooks", [])
    for name in ("first", "second"):

        @plots.figure("test-cli-edges-hooks")
        def _draw(res, name=name):
            return [(name, plots.pyplot().figure())]

    res = _fake_result("test-cli-edges-hooks", path=tmp_path / "r.h5")
    written = plots.plot_result(res, tmp_path / "f")
    assert [p.name for p in written] == ["r_first.png", "r_second.png"]


def test_a_column_of_values_gets_no_heatmap():
    """A (5, 1) array is a vector stored upright, like a (1, 5) row: neither is a 2-D map."""
    from plastix.sims.plots import array_heatmaps

    res = _fake_result(arrays={"column": np.ones((5, 1)), "row": np.ones((1, 5))})
    assert array_heatmaps(res) == []


def test_learning_curve_columns_follow_the_axis_names_sorted():
    """Columns are the axes in name order whatever order the metrics were logged in."""
    from plastix.sims.plots import learning_curves

    res = _fake_result(
        metrics={
            "step": np.array([0.0, 1.0]),
            "lr": np.array([0.1, 0.2]),
            "epoch": np.array([0.0]),
            "loss": np.array([1.0]),
        },
        metric_axes={"step": "step", "lr": "step", "epoch": "epoch", "loss": "epoch"},
    )
    fig = learning_curves(res)
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch", "step"]
    assert [ln.get_label() for ln in fig.axes[1].lines] == ["lr"]


# --- plots_ib.py -------------------------------------------------------------------------------


def test_bsweep_colour_scale_says_it_is_test_accuracy():
    """The heat-map's colour bar is labelled with what the colours measure."""
    from plastix.sims.plots_ib import bsweep_heatmap

    acc = np.array([[0.5, 0.6], [0.7, 0.8]])
    arrays = {"windows": np.array([2, 4]), "test_accuracy_curves": acc}
    [(_, fig)] = bsweep_heatmap(_fake_result("ib-bsweep", arrays=arrays))
    _, _, colorbar = fig.axes
    assert colorbar.get_ylabel() == "test accuracy"


# --- plots_compare.py --------------------------------------------------------------------------


def _arm_metrics(arms):
    metrics = {"step": np.array([0.0, 1.0])}
    for k, arm in enumerate(arms):
        metrics[f"{arm}_test_accuracy"] = np.array([0.1, 0.5 + 0.1 * k])
        metrics[f"{arm}_wall_s"] = np.array([0.0, 1.0 + k])
        metrics[f"{arm}_samples_seen"] = np.array([0.0, 10.0])
    return metrics


def test_compare_figure_draws_all_four_arms_and_none_without_arms():
    """Every arm of the compare experiment gets its line, in the order spiking-ib, rate-ib,
    snntorch-bptt, backprop, with the legend on the samples panel; a compare result with no
    arm evaluated (e.g. one that failed early) gets no figure rather than an empty one."""
    from plastix.sims.plots_compare import compare_figure

    arms = ["backprop", "snntorch_bptt", "rate_ib", "spiking_ib"]
    [(_, fig)] = compare_figure(_fake_result("compare", metrics=_arm_metrics(arms)))
    ax_time, ax_samples = fig.axes
    labels = ["spiking-ib", "rate-ib", "snntorch-bptt", "backprop"]
    assert [ln.get_label() for ln in ax_time.lines] == labels
    assert [t.get_text() for t in ax_samples.get_legend().get_texts()] == labels
    np.testing.assert_allclose(ax_time.lines[2].get_xdata(), [0.0, 2.0])  # snntorch: k = 1
    assert compare_figure(_fake_result("compare", metrics={"step": np.array([0.0])})) == []


# --- plots_nte.py ------------------------------------------------------------------------------


def test_accuracy_matrix_labels_its_tasks_and_takes_its_title():
    from plastix.sims.plots_nte import plot_accuracy_matrix

    fig = plot_accuracy_matrix(np.eye(2), title="sgd_w16", task_names=["even", "odd"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["even", "odd"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["even", "odd"]
    assert ax.get_title() == "sgd_w16"


def test_forgetting_error_bars_follow_their_points_when_x_is_sorted():
    """x given in descending order: each standard error stays with its own x after sorting
    (seeds at x=100 spread by sd 0.1, at x=10 by sd 0.3)."""
    from plastix.sims.plots_nte import plot_forgetting_curves

    seeds = np.array([[0.4, 0.1], [0.5, 0.4], [0.6, 0.7]])  # columns: x=100, x=10
    fig = plot_forgetting_curves([100, 10], {"sgd": seeds}, xlabel="hidden width")
    x, y, half = errorbars(fig.axes[0])["sgd"]
    assert x == [10.0, 100.0]
    np.testing.assert_allclose(y, [0.4, 0.5])
    np.testing.assert_allclose(half, [0.3 / np.sqrt(3), 0.1 / np.sqrt(3)])


def test_forgetting_curves_refuse_empty_x_and_empty_values():
    from plastix.sims.plots_nte import plot_forgetting_curves

    with pytest.raises(ValueError, match="x must be a non-empty 1-D sequence"):
        plot_forgetting_curves([], {"nte": []}, xlabel="width")
    with pytest.raises(ValueError, match="values is empty"):
        plot_forgetting_curves([1, 2], {}, xlabel="width")


def _nte_result(optimizers, opt_idx, widths, momenta, forgetting):
    arrays = {
        "accuracy_matrices": np.tile(np.eye(2), (len(opt_idx), 1, 1)),
        "run_optimizer": np.array(opt_idx),
        "run_width": np.array(widths),
        "run_momentum": np.array(momenta, dtype=float),
        "task1_forgetting": np.array(forgetting),
    }
    return _fake_result("nte-continual", config={"optimizers": optimizers}, arrays=arrays)


def test_nte_curves_pair_each_forgetting_with_its_width_and_momentum_in_any_run_order():
    """Runs stored widest and highest-momentum first: each forgetting is still drawn at its own
    width and momentum; widths on a log axis."""
    from plastix.sims.plots_nte import nte_continual_figures

    res = _nte_result(
        ["sgd"], [0, 0, 0, 0], [64, 64, 16, 16], [0.9, 0.0, 0.9, 0.0], [0.4, 0.3, 0.2, 0.1]
    )
    figures = dict(nte_continual_figures(res))
    by_width = figures["forgetting_vs_width"].axes[0]
    assert errorbars(by_width) == {"sgd": ([16.0, 64.0], [0.1, 0.3], None)}
    assert by_width.get_xscale() == "log"
    by_momentum = errorbars(figures["forgetting_vs_momentum"].axes[0])
    assert by_momentum == {
        "sgd w16": ([0.0, 0.9], [0.1, 0.2], None),
        "sgd w64": ([0.0, 0.9], [0.3, 0.4], None),
    }
    assert figures["accuracy_sgd_w64_m0.9"].axes[0].get_title() == "sgd_w64_m0.9"


def test_nte_result_without_accuracy_matrices_has_no_figures():
    """A result holding no accuracy matrices (a run that failed before its first task) gets
    no continual figures, not a KeyError."""
    from plastix.sims.plots_nte import nte_continual_figures

    res = _fake_result("nte-continual", config={"optimizers": ["sgd"]})
    assert nte_continual_figures(res) == []


# --- plots_pruning.py --------------------------------------------------------------------------


def test_pruning_plot_refuses_empty_and_2d_curves_and_other_results():
    from plastix.sims.plots_pruning import plot_accuracy_vs_saved, pruning_curves

    with pytest.raises(ValueError, match="expected a non-empty mapping"):
        plot_accuracy_vs_saved({})
    two_d = np.array([[0.1, 0.2]])
    with pytest.raises(ValueError, match="must be 1-D arrays of equal length"):
        plot_accuracy_vs_saved({"uniform": (two_d, two_d)})
    with pytest.raises(ValueError, match="a 'compare' result; pruning_curves needs a pruning"):
        pruning_curves(_fake_result("compare"))


def test_pruning_plot_draws_a_full_data_accuracy_of_zero():
    """A full-data accuracy of 0 (a run that learned nothing) is still drawn, at 0 %."""
    from plastix.sims.plots_pruning import plot_accuracy_vs_saved

    fig = plot_accuracy_vs_saved({"uniform": ([0.5], [0.4])}, full_accuracy=0.0)
    [full] = [ln for ln in fig.axes[0].lines if ln.get_label() == "full data"]
    np.testing.assert_allclose(full.get_ydata(), [0.0, 0.0])


# --- plots_reservoir.py ------------------------------------------------------------------------


def test_reservoir_plots_refuse_empty_or_misshapen_input():
    """Empty delays, curves or accuracies, an r^2 curve of another shape than the delays (a
    column of the same length too) and an xi map given transposed are refused."""
    from plastix.sims.plots_reservoir import plot_loop_curves, plot_memory_curves, plot_xi_heatmap

    with pytest.raises(ValueError, match="delays must be a non-empty 1-D array"):
        plot_memory_curves([], {"esn": []})
    with pytest.raises(ValueError, match="curves: give at least one"):
        plot_memory_curves([1, 2], {})
    with pytest.raises(ValueError, match=r"curves\['esn'\] has shape \(2, 1\), delays \(2,\)"):
        plot_memory_curves([1, 2], {"esn": [[0.9], [0.5]]})
    with pytest.raises(ValueError, match=r"values has shape \(3, 2\); expected"):
        plot_xi_heatmap([2, 4], [10, 20, 30], np.zeros((3, 2)))
    with pytest.raises(ValueError, match="accuracies: give at least one curve"):
        plot_loop_curves([0, 1], {})


def test_memory_curves_keep_the_r2_range_whatever_the_values():
    """The y-axis is r^2's range (0 to 1, with a margin), so small capacities look small."""
    from plastix.sims.plots_reservoir import plot_memory_curves

    fig = plot_memory_curves([1, 2, 3], {"esn": [0.1, 0.05, 0.0]})
    assert fig.axes[0].get_ylim() == pytest.approx((-0.02, 1.02))


def test_reservoir_figures_need_both_grid_axes_and_the_epochs():
    """xi maps need both the windows and the sizes; learning curves need the epoch axis; a
    result with only one of each gets none of these figures (not a KeyError)."""
    from plastix.sims.plots_reservoir import reservoir_wm_figures

    res = _fake_result(
        "reservoir-wm",
        metrics={"test_accuracy_exact": np.array([0.5, 0.6])},
        arrays={"xi_windows": np.array([2, 4]), "xi_cosine": np.ones((2, 1))},
    )
    assert reservoir_wm_figures(res) == []


def test_an_array_named_like_a_figure_does_not_overwrite_it(tmp_path):
    """An array saved as ``curves`` gets a heat-map of its own (``r_curves_2``) beside the
    learning curves (``r_curves``): every figure lands in its own file, none is lost."""
    from plastix.sims.plots import plot_result

    res = _fake_result(
        "x",
        tmp_path / "r.h5",
        metrics={"epoch": np.array([0.0, 1.0]), "loss": np.array([1.0, 0.5])},
        metric_axes={"epoch": "epoch", "loss": "epoch"},
        arrays={"curves": np.eye(3)},
    )
    written = plot_result(res, tmp_path / "figures")
    assert [p.name for p in written] == ["r_curves.png", "r_curves_2.png"]
    assert all(p.is_file() for p in written)
