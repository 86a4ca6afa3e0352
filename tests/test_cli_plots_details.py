"""Details of the ``plastix`` CLI (info, show, plot, interrupted runs) and of the figures drawn
from result files, checked through their artists (line data, images, texts, labels)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest

from plastix.sims import cli
from plastix.sims.experiments import RunContext, experiment, run_experiment
from plastix.sims.results import Result, read_result


@dataclass
class StepsConfig:
    epochs: int = field(default=2, metadata={"min": 1})
    empty: bool = False


INTERRUPT_AT: list[int] = []  # epochs at which the next run is interrupted (simulated Ctrl-C)


@experiment("test-cli-details", StepsConfig, description="logs a loss per epoch (test only)")
def _run_steps(cfg: StepsConfig, ctx: RunContext) -> None:
    if cfg.empty:  # logs and saves nothing: a file with nothing to plot
        return
    state = ctx.resume_state() or {"epoch": -1}
    for epoch in range(state["epoch"] + 1, cfg.epochs):
        if epoch in INTERRUPT_AT:
            INTERRUPT_AT.remove(epoch)
            raise KeyboardInterrupt
        ctx.log(epoch=epoch, loss=1.0 / (epoch + 1))
        ctx.checkpoint({"epoch": epoch})
    ctx.save_array("matrix", np.eye(2))


def _fake_result(experiment_name="test-cli-details", **parts):
    """A Result built in memory (no run, no file): only the parts a figure reads."""
    empty = ("config", "summary", "metrics", "metric_axes", "arrays", "weights", "spikes")
    fields = {name: parts.get(name, {}) for name in empty}
    attrs = {"experiment": experiment_name, "status": "complete"}
    return Result(path=Path("/x/r.h5"), attrs=attrs, **fields)


def _texts(ax):
    """{text: (x, y)} of the annotations of an axes."""
    return {t.get_text(): tuple(float(p) for p in t.get_position()) for t in ax.texts}


# --- plastix info ------------------------------------------------------------------------------


def test_info_says_which_libraries_are_not_installed(monkeypatch, capsys):
    """A library without an installed version is listed as 'not installed', not as None."""
    from plastix.sims import results

    monkeypatch.setattr(results, "library_versions", lambda: {"torch": "9.9", "snntorch": None})
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"  {'torch':<12} 9.9\n" in out
    assert f"  {'snntorch':<12} not installed\n" in out


def test_info_counts_no_projects_in_a_cache_folder_not_made_yet(tmp_path, monkeypatch, capsys):
    """$PLASTIX_BUILD_CACHE naming a folder that no run has made yet: kept there, nothing in
    it so far (plural 'projects' for zero)."""
    cache = tmp_path / "not-made-yet"
    monkeypatch.setenv("PLASTIX_BUILD_CACHE", str(cache))
    assert cli.main(["info"]) == 0
    assert f"Compiled circuits: kept in {cache} (0 projects, 0 MiB)" in capsys.readouterr().out


def test_info_counts_every_file_inside_the_projects_subfolders(tmp_path, monkeypatch, capsys):
    """A compiled project keeps its objects in subfolders (code_objects/, brianlib/): the size
    is that of every file of every project, 1 + 1 + 1 MiB over two cache keys."""
    cache = tmp_path / "cache"
    first = cache / "key-a" / "0123abcd"
    second = cache / "key-b" / "4567ef01"
    (first / "code_objects").mkdir(parents=True)
    (second / "brianlib").mkdir(parents=True)
    (first / "main").write_bytes(b"\0" * 2**20)
    (first / "code_objects" / "a.o").write_bytes(b"\0" * 2**20)
    (second / "brianlib" / "b.o").write_bytes(b"\0" * 2**20)
    monkeypatch.setenv("PLASTIX_BUILD_CACHE", str(cache))
    assert cli.main(["info"]) == 0
    assert f"Compiled circuits: kept in {cache} (2 projects, 3 MiB)" in capsys.readouterr().out


# --- plastix run / show ------------------------------------------------------------------------


def test_interrupted_run_with_out_says_the_same_command_resumes_it(tmp_path, capsys):
    """Ctrl-C (simulated) after a checkpoint of a run given --out: exit 130, and the same
    command (already naming the file) resumes from that checkpoint."""
    out = tmp_path / "r.h5"
    args = ["run", "test-cli-details", "--set", "epochs=3", "--out", str(out), "--no-progress"]
    INTERRUPT_AT[:] = [1]
    assert cli.main(args) == 130
    err = capsys.readouterr().err
    assert (
        "plastix: interrupted; no result written; run the same command again to resume from "
        "the last checkpoint.\n"
    ) in err
    assert cli.main(args) == 0
    np.testing.assert_array_equal(read_result(out).metrics["epoch"], [0, 1, 2])


def test_show_prints_the_versions_commit_and_arrays_of_a_result(tmp_path, capsys):
    """The second line names the plastix version and the source commit ('unknown' where none
    was recorded), then the library versions; saved arrays are listed with their shapes."""
    out = run_experiment("test-cli-details", {}, out=tmp_path / "r.h5")
    with h5py.File(out, "a") as h5:
        version = h5.attrs["plastix_version"]
        if "git_sha" in h5.attrs:
            del h5.attrs["git_sha"]
    assert cli.main(["show", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == f"  plastix {version}  git unknown"
    assert lines[2].startswith("  versions: {")
    assert "arrays: matrix(2, 2)" in lines


# --- plastix plot ------------------------------------------------------------------------------


def test_plot_refuses_an_out_dir_below_a_file_before_drawing(tmp_path, capsys):
    """--out-dir inside a path whose parent is a file: no folder can be made there; exit 2
    naming the option, and nothing written."""
    out = run_experiment("test-cli-details", {}, out=tmp_path / "r.h5")
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "figs"
    assert cli.main(["plot", str(out), "--out-dir", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"--out-dir {str(target)!r}: no folder can be made or written there" in err
    assert (tmp_path / "file").read_text() == "x"


def test_plot_succeeds_when_any_file_has_figures(tmp_path, capsys):
    """Several files, the last with nothing to plot: its line says so, the figures of the first
    are written, and the exit status is 0 (1 only when no figure at all was written)."""
    good = run_experiment("test-cli-details", {}, out=tmp_path / "good.h5")
    empty = run_experiment("test-cli-details", {"empty": True}, out=tmp_path / "empty.h5")
    figs = tmp_path / "figs"
    assert cli.main(["plot", str(good), str(empty), "--out-dir", str(figs)]) == 0
    out = capsys.readouterr().out
    assert f"{empty}: nothing to plot" in out
    assert f"wrote {figs / 'good_curves.png'}" in out
    assert cli.main(["plot", str(empty), "--out-dir", str(figs)]) == 1


# --- plots.py ----------------------------------------------------------------------------------


def test_figures_are_written_in_the_format_their_name_says(tmp_path):
    """fmt='pdf' writes PDF files and 'png' PNG files (not just the file names); save_figure
    follows the suffix of its path."""
    from plastix.sims.plots import plot_result, pyplot, save_figure

    res = _fake_result(weights={"w": np.arange(6.0)})
    [pdf] = plot_result(res, tmp_path / "a", fmt="pdf")
    [png] = plot_result(res, tmp_path / "b", fmt="png")
    assert pdf.read_bytes().startswith(b"%PDF") and png.read_bytes().startswith(b"\x89PNG")
    fig = pyplot().figure()
    save_figure(fig, tmp_path / "s.pdf")
    assert (tmp_path / "s.pdf").read_bytes().startswith(b"%PDF")


def test_learning_curves_of_a_result_that_logged_only_its_axis():
    """A run that logged only its axis values (e.g. ``log(epoch=e)``) still gets its (empty)
    curves panel labelled with the axis, with no legend, instead of failing."""
    from plastix.sims.plots import learning_curves

    res = _fake_result(metrics={"epoch": np.array([0.0, 1.0])}, metric_axes={"epoch": "epoch"})
    fig = learning_curves(res)
    [ax] = fig.axes
    assert ax.get_xlabel() == "epoch" and len(ax.lines) == 0 and ax.get_legend() is None


def test_learning_curves_give_a_legend_only_to_panels_with_curves():
    """A panel with no metric of its unit (milliseconds on the 'step' axis here) stays without
    a legend; panels with curves name them."""
    from plastix.sims.plots import learning_curves

    res = _fake_result(
        metrics={
            "epoch": np.array([0.0, 1.0]),
            "epoch_ms": np.array([3.0, 4.0]),
            "step": np.array([0.0]),
            "lr": np.array([0.1]),
        },
        metric_axes={"epoch": "epoch", "epoch_ms": "epoch", "step": "step", "lr": "step"},
    )
    fig = learning_curves(res)
    axs = np.array(fig.axes).reshape(2, 2)  # rows: "", milliseconds; columns: epoch, step
    assert axs[0, 0].get_legend() is None  # no plain-valued metric on the epoch axis
    assert [t.get_text() for t in axs[1, 0].get_legend().get_texts()] == ["epoch_ms"]
    assert [t.get_text() for t in axs[0, 1].get_legend().get_texts()] == ["lr"]
    assert axs[1, 1].get_legend() is None


def test_raster_draws_the_first_max_points_spikes():
    """At most ``max_points`` spikes are drawn per monitor, the earliest recorded; by default
    up to 200 000, so a monitor of exactly that many is drawn whole."""
    from plastix.sims.plots import raster

    i, t = np.arange(5), np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    fig = raster(_fake_result(spikes={"hidden": (i, t)}), max_points=2)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_xdata(), [0.1, 0.2])
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [0, 1])
    n = 200_000
    fig = raster(_fake_result(spikes={"big": (np.zeros(n + 1, int), np.linspace(0, 1, n + 1))}))
    assert len(fig.axes[0].lines[0].get_xdata()) == n


def test_array_heatmap_shows_rows_down_and_columns_across_with_a_colour_scale():
    """The image is the array itself (row r at y = r, column c at x = c, not transposed), each
    value written at its cell, with a colour bar for the arrays too big to annotate."""
    from plastix.sims.plots import array_heatmaps

    arr = np.array([[0.0, 0.1, 0.2], [0.3, 0.4, 0.5]])
    [(name, fig)] = array_heatmaps(_fake_result(arrays={"m": arr}))
    ax, colorbar = fig.axes
    np.testing.assert_array_equal(ax.images[0].get_array(), arr)
    texts = _texts(ax)
    assert texts["0.20"] == (2.0, 0.0) and texts["0.30"] == (0.0, 1.0)
    assert colorbar.get_ylim() == pytest.approx((0.0, 0.5))


# --- plots_ib.py -------------------------------------------------------------------------------


def test_bsweep_figure_needs_both_arrays_and_annotates_each_cell_at_its_place():
    """A result with the windows but no accuracy curves gets no figure (not a KeyError); each
    accuracy is written at (epoch column, window row); the line's x-axis is log base 2."""
    from plastix.sims.plots_ib import bsweep_heatmap

    windows = np.array([2, 4, 8])
    assert bsweep_heatmap(_fake_result("ib-bsweep", arrays={"windows": windows})) == []
    acc = np.array([[0.11, 0.12], [0.21, 0.22], [0.31, 0.32]])
    res = _fake_result("ib-bsweep", arrays={"windows": windows, "test_accuracy_curves": acc})
    [(_, fig)] = bsweep_heatmap(res)
    ax_map, ax_line = fig.axes[:2]
    texts = _texts(ax_map)
    assert texts["0.12"] == (1.0, 0.0) and texts["0.31"] == (0.0, 2.0)
    assert ax_line.xaxis.get_transform().base == 2


# --- plots_nte.py ------------------------------------------------------------------------------


def test_accuracy_matrix_axes_scale_and_task_names():
    """Columns are the task tested on, rows the task trained last; tasks numbered from 1 by
    default; the colour scale is the accuracy range 0..1 whatever the values; entries not
    measured (NaN) are left blank; dark cells get white text, light ones black."""
    from plastix.sims.plots_nte import plot_accuracy_matrix

    r = np.array([[0.9, np.nan], [0.3, 0.5]])
    fig = plot_accuracy_matrix(r)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "tested on task" and ax.get_ylabel() == "after training task"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "2"]
    assert ax.images[0].get_clim() == (0.0, 1.0)
    colours = {t.get_text(): t.get_color() for t in ax.texts}
    assert colours == {"0.90": "black", "0.30": "white", "0.50": "white"}
    assert _texts(ax)["0.30"] == (0.0, 1.0)  # row 1 (after task 2), column 0 (task 1)


def test_accuracy_matrix_annotates_up_to_twelve_tasks_and_refuses_an_empty_one():
    from plastix.sims.plots_nte import plot_accuracy_matrix

    assert len(plot_accuracy_matrix(np.full((12, 12), 0.5)).axes[0].texts) == 144
    assert len(plot_accuracy_matrix(np.full((13, 13), 0.5)).axes[0].texts) == 0
    with pytest.raises(ValueError, match=r"matrix must be square \(T, T\), got shape \(0, 0\)"):
        plot_accuracy_matrix(np.zeros((0, 0)))


def test_forgetting_curves_of_a_single_seed_row_have_no_error_bars():
    """A (1, n) series is one seed: its mean is that row and there is no standard error to
    draw (not a NaN bar)."""
    from plastix.sims.plots_nte import plot_forgetting_curves

    fig = plot_forgetting_curves([1, 2], {"nte": np.array([[0.2, 0.4]])}, xlabel="width")
    [container] = fig.axes[0].containers
    line, _, bars = container.lines
    np.testing.assert_allclose(line.get_ydata(), [0.2, 0.4])
    assert bars == ()


def _nte_result(optimizers, opt_idx, widths, momenta):
    n = len(opt_idx)
    arrays = {
        "accuracy_matrices": np.tile(np.eye(2), (n, 1, 1)),
        "run_optimizer": np.array(opt_idx),
        "run_width": np.array(widths),
        "run_momentum": np.array(momenta, dtype=float),
        "task1_forgetting": np.linspace(0.1, 0.1 * n, n),
    }
    return _fake_result("nte-continual", config={"optimizers": optimizers}, arrays=arrays)


def test_nte_figures_leave_out_optimizers_missing_a_width_and_single_widths():
    """Forgetting against width has one line per optimizer run at every width (an optimizer
    run at one width only is left out, not drawn short); with one width there is no such
    figure. EWC, like SGD, has its momentum in the accuracy-matrix names."""
    from plastix.sims.plots_nte import nte_continual_figures

    res = _nte_result(["nte", "ewc"], [0, 0, 1], [16, 32, 16], [0.0, 0.0, 0.0])
    figures = dict(nte_continual_figures(res))
    assert list(figures) == [
        "accuracy_nte_w16",
        "accuracy_nte_w32",
        "accuracy_ewc_w16_m0",
        "forgetting_vs_width",
    ]
    [nte] = figures["forgetting_vs_width"].axes[0].containers
    assert nte.get_label() == "nte"
    single = _nte_result(["nte", "sgd"], [0, 1], [16, 16], [0.0, 0.0])
    assert [name for name, _ in nte_continual_figures(single)] == [
        "accuracy_nte_w16",
        "accuracy_sgd_w16_m0",
    ]


# --- plots_pruning.py --------------------------------------------------------------------------


def test_pruning_plot_draws_into_a_given_axes_and_groups_rates_to_four_decimals():
    """Given ``ax``, the curves go into it and its figure is returned; rates 0.25 and 0.3 are
    different points, 0.30001 and 0.3 the same one (rounded to 4 decimals)."""
    from plastix.sims.plots import pyplot
    from plastix.sims.plots_pruning import plot_accuracy_vs_saved

    fig, ax = pyplot().subplots()
    saved, acc = np.array([0.25, 0.3, 0.30001]), np.array([0.8, 0.7, 0.9])
    assert plot_accuracy_vs_saved({"uniform": (saved, acc)}, ax=ax) is fig
    [container] = ax.containers
    np.testing.assert_allclose(container.lines[0].get_xdata(), [25.0, 30.0])
    np.testing.assert_allclose(container.lines[0].get_ydata(), [80.0, 80.0])


def test_pruning_result_with_only_full_data_runs_has_no_figure():
    """Only the 'full' strategy ran: nothing to compare against passes saved, so no figure
    (rather than the refusal of an empty set of curves)."""
    from plastix.sims.plots_pruning import pruning_figures

    metrics = {
        "strategy_index": np.array([0, 0]),
        "realized_rate": np.array([0.0, 0.0]),
        "test_accuracy": np.array([0.9, 0.92]),
    }
    arrays = {"strategies": np.array([b"full", b"uniform"])}
    assert pruning_figures(_fake_result("pruning", metrics=metrics, arrays=arrays)) == []


# --- plots_reservoir.py ------------------------------------------------------------------------


def test_memory_curves_label_the_capacities_given():
    """Capacities passed in (e.g. computed over more delays than drawn) label the lines, in
    place of the sum of the r^2 drawn."""
    from plastix.sims.plots_reservoir import plot_memory_curves

    fig = plot_memory_curves([1, 2], {"esn": [0.9, 0.5]}, capacities={"esn": 3.3})
    assert [ln.get_label() for ln in fig.axes[0].lines] == ["esn (MC 3.3)"]


def test_xi_heatmap_ticks_and_text_shade_follow_its_range():
    """Rows are the windows, columns the sizes (tick labels); text is white on the darker
    lower half of the colour range [vmin, vmax] and black above, NaN cells left blank."""
    from plastix.sims.plots_reservoir import plot_xi_heatmap

    values = np.array([[0.8, 1.2], [np.nan, 1.4]])
    fig = plot_xi_heatmap([2, 4], [10, 20], values, vmin=0.5, vmax=1.5)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["2", "4"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10", "20"]
    shades = {t.get_text(): t.get_color() for t in ax.texts}
    assert shades == {"0.80": "white", "1.20": "black", "1.40": "black"}


def test_reservoir_figures_need_the_delays_for_memory_curves():
    """r2_* metrics without the 'delay' axis give no memory-function figure (not a KeyError)."""
    from plastix.sims.plots_reservoir import reservoir_wm_figures

    res = _fake_result("reservoir-wm", metrics={"r2_linear": np.array([0.9, 0.5])})
    assert reservoir_wm_figures(res) == []


# --- plots_compare.py --------------------------------------------------------------------------


def test_compare_panels_share_the_accuracy_axis():
    """Both panels show test accuracy on one shared y-axis, labelled on the left one."""
    from plastix.sims.plots_compare import compare_figure

    metrics = {
        "step": np.array([0.0, 1.0]),
        "backprop_test_accuracy": np.array([0.2, 0.9]),
        "backprop_wall_s": np.array([0.0, 1.0]),
        "backprop_samples_seen": np.array([0.0, 10.0]),
    }
    [(_, fig)] = compare_figure(_fake_result("compare", metrics=metrics))
    ax_time, ax_samples = fig.axes
    assert ax_time.get_shared_y_axes().joined(ax_time, ax_samples)
    assert ax_time.get_ylabel() == "test accuracy"
