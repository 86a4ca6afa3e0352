"""Figures drawn from a result file (never stored in it): chosen from what the file holds.

``plot_result`` draws, where the data exist: learning curves (every metric against its axis),
a spike raster per monitor, weight histograms, and heat-maps of 2-D arrays (e.g. the
continual-learning accuracy matrix or a B-sweep). Experiment-specific figures register a
function with :func:`figure` keyed by experiment name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from plastix.sims.results import Result, atomic_path

_EXTRA_FIGURES: dict[str, list[Callable]] = {}


def figure(experiment_name: str) -> Callable:
    """Register ``fn(result) -> list[(name, Figure)]`` as extra figures for one experiment."""

    def register(fn: Callable) -> Callable:
        _EXTRA_FIGURES.setdefault(experiment_name, []).append(fn)
        return fn

    return register


def _load_figure_modules() -> None:
    """Import every ``plastix.sims.plots_*`` module so their :func:`figure` hooks register."""
    import importlib
    import pkgutil

    import plastix.sims as sims_pkg

    for mod in pkgutil.iter_modules(sims_pkg.__path__):
        if mod.name.startswith("plots_"):
            importlib.import_module(f"plastix.sims.{mod.name}")


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path | None) -> None:
    """Save ``fig`` to ``path`` (.png or .pdf, folders created); do nothing for None."""
    if path is None:
        return
    path = Path(path)
    if path.suffix not in (".png", ".pdf"):
        raise ValueError(f"path {str(path)!r} must end in .png or .pdf")
    write_figure(fig, path, dpi=150)


def write_figure(fig, path: Path, dpi: int) -> None:
    """``fig.savefig`` under a temporary name, renamed onto ``path`` only once it is whole."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix[1:])


def _unit_group(metric: str) -> str:
    """Metrics that share a y-axis: timings by their unit suffix, everything else together."""
    if metric.endswith("_ms"):
        return "milliseconds"
    if metric.endswith("_s"):
        return "seconds"
    return ""


def learning_curves(res: Result):
    """One column per axis and one row per unit (values, seconds, milliseconds), so timings do
    not share a y-axis with accuracies and losses; each metric drawn against its axis."""
    plt = pyplot()
    axes_names = sorted(set(res.metric_axes.values()))
    if not axes_names:
        return None
    plotted = {n: a for n, a in res.metric_axes.items() if n != a}
    units = sorted({_unit_group(n) for n in plotted}) or [""]
    fig, axs = plt.subplots(
        len(units),
        len(axes_names),
        figsize=(5 * len(axes_names), 3.2 * len(units)),
        squeeze=False,
    )
    for col, axis in enumerate(axes_names):
        for row, unit in enumerate(units):
            ax = axs[row, col]
            for name, metric_axis in plotted.items():
                if metric_axis == axis and _unit_group(name) == unit:
                    ax.plot(res.metrics[axis], res.metrics[name], marker="o", ms=3, label=name)
            ax.set_xlabel(axis)
            if unit:
                ax.set_ylabel(unit)
            if ax.has_data():
                ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
    fig.suptitle(f"{res.experiment} — {res.path.name}")
    fig.tight_layout()
    return fig


def raster(res: Result, max_points: int = 200_000):
    plt = pyplot()
    if not res.spikes:
        return None
    fig, axs = plt.subplots(len(res.spikes), 1, figsize=(8, 2.2 * len(res.spikes)), squeeze=False)
    for ax, (name, (i, t)) in zip(axs[:, 0], res.spikes.items(), strict=True):
        ax.plot(t[:max_points], i[:max_points], ",k")
        ax.set_ylabel(f"{name}\nneuron")
    axs[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    return fig


def weight_histograms(res: Result):
    plt = pyplot()
    if not res.weights:
        return None
    n = len(res.weights)
    fig, axs = plt.subplots(1, n, figsize=(3.5 * n, 3), squeeze=False)
    for ax, (name, w) in zip(axs[0], res.weights.items(), strict=True):
        ax.hist(np.ravel(w), bins=50, color="C0")
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    return fig


def array_heatmaps(res: Result) -> list[tuple[str, object]]:
    plt = pyplot()
    out = []
    for name, arr in res.arrays.items():
        if arr.ndim != 2 or min(arr.shape) < 2 or arr.size > 10_000:
            continue
        fig, ax = plt.subplots(figsize=(4.5, 4))
        im = ax.imshow(arr, cmap="viridis", aspect="auto")
        fig.colorbar(im, ax=ax)
        if arr.size <= 144:
            for (r, c), v in np.ndenumerate(arr):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", color="w", fontsize=7)
        ax.set_title(name)
        fig.tight_layout()
        out.append((name, fig))
    return out


def plot_result(res: Result, out_dir: str | Path, fmt: str = "png") -> list[Path]:
    """Draw every figure ``res`` supports into ``out_dir`` as ``<stem>_<figure>.<fmt>``;
    returns the written paths. A figure whose name another took first (an array named
    ``curves``) gets ``_2``, ``_3``, ... rather than overwriting it."""
    if fmt not in ("png", "pdf"):
        raise ValueError(f"fmt must be 'png' or 'pdf', got {fmt!r}")
    plt = pyplot()
    out_dir = Path(out_dir)
    stem = res.path.stem
    figures = [
        ("curves", learning_curves(res)),
        ("raster", raster(res)),
        ("weights", weight_histograms(res)),
        *array_heatmaps(res),
    ]
    _load_figure_modules()
    for fn in _EXTRA_FIGURES.get(res.experiment, []):
        figures.extend(fn(res))
    written, taken = [], set()
    for name, fig in figures:
        if fig is None:
            continue
        unique, k = name, 2
        while unique in taken:  # e.g. an array named "curves": its heat-map is curves_2
            unique, k = f"{name}_{k}", k + 1
        taken.add(unique)
        path = out_dir / f"{stem}_{unique}.{fmt}"
        out_dir.mkdir(parents=True, exist_ok=True)  # only once there is a figure to write
        write_figure(fig, path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
