"""Figures for the reservoir working memory (experiment ``reservoir-wm``): the memory
function r^2 against delay (Jaeger 2002), heat-maps of xi-modulator agreement over window B x
reservoir size N, and the in-the-loop learning curves of each xi source.

The drawing functions take arrays and return a matplotlib Figure (Agg backend), saving it when
given a ``path`` ending in .png or .pdf. :func:`reservoir_wm_figures` draws them all from a
result file and is registered for ``plastix plot``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plastix.sims.plots import figure, pyplot, save_figure
from plastix.sims.results import Result


def plot_memory_curves(
    delays: Any,
    curves: Mapping[str, Any],
    path: str | Path | None = None,
    *,
    capacities: Mapping[str, float] | None = None,
):
    """r^2 of the best linear reconstruction of ``u_{t-k}`` against delay ``k``, one line per
    reservoir (``curves[label]`` aligned with ``delays``); the legend gives each MC."""
    k = np.asarray(delays, dtype=float)
    if k.ndim != 1 or k.size == 0:
        raise ValueError(f"delays must be a non-empty 1-D array, got shape {k.shape}")
    if not curves:
        raise ValueError("curves: give at least one r^2 curve")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for label, r2 in curves.items():
        r2 = np.asarray(r2, dtype=float)
        if r2.shape != k.shape:
            raise ValueError(f"curves[{label!r}] has shape {r2.shape}, delays {k.shape}")
        mc = np.nansum(r2) if capacities is None else capacities[label]
        ax.plot(k, r2, label=f"{label} (MC {mc:.1f})")
    ax.set_xlabel("delay k (steps)")
    ax.set_ylabel("r² of u(t-k) from x(t)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("memory function (Jaeger 2002)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def plot_xi_heatmap(
    windows: Sequence[int],
    units: Sequence[int],
    values: Any,
    path: str | Path | None = None,
    *,
    label: str = "effective cosine",
    vmin: float = 0.0,
    vmax: float = 1.0,
):
    """Heat-map of an agreement measure ``values[i, j]`` at window ``windows[i]`` (rows) and
    reservoir size ``units[j]`` (columns), annotated with the values."""
    v = np.asarray(values, dtype=float)
    if v.shape != (len(windows), len(units)):
        raise ValueError(
            f"values has shape {v.shape}; expected (len(windows), len(units)) = "
            f"{(len(windows), len(units))}"
        )
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.6 + 1.0 * len(units), 1.4 + 0.7 * len(windows)))
    im = ax.imshow(v, vmin=vmin, vmax=vmax, cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax, label=label)
    for (i, j), value in np.ndenumerate(v):
        if np.isfinite(value):
            shade = "white" if value < vmin + 0.5 * (vmax - vmin) else "black"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", color=shade, fontsize=9)
    ax.set_xticks(range(len(units)), [str(u) for u in units])
    ax.set_yticks(range(len(windows)), [str(w) for w in windows])
    ax.set_xlabel("reservoir size N")
    ax.set_ylabel("window B")
    ax.set_title(f"xi-modulator: {label}")
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def plot_loop_curves(epochs: Any, accuracies: Mapping[str, Any], path: str | Path | None = None):
    """Test accuracy against epoch for every xi source (exact / reservoir / zero)."""
    e = np.asarray(epochs, dtype=float)
    if not accuracies:
        raise ValueError("accuracies: give at least one curve")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for source, acc in accuracies.items():
        acc = np.asarray(acc, dtype=float)
        keep = np.isfinite(acc)
        ax.plot(e[keep] + 1, 100 * acc[keep], marker="o", ms=3, label=f"xi: {source}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("IB rule with xi from each source")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


@figure("reservoir-wm")
def reservoir_wm_figures(res: Result) -> list[tuple[str, Any]]:
    """Every figure the result holds data for."""
    figs: list[tuple[str, Any]] = []
    curves = {k[3:]: v for k, v in res.metrics.items() if k.startswith("r2_")}
    if curves and "delay" in res.metrics:
        figs.append(("memory_function", plot_memory_curves(res.metrics["delay"], curves)))
    arrays = res.arrays
    if {"xi_windows", "xi_units"} <= arrays.keys():
        w, u = arrays["xi_windows"].tolist(), arrays["xi_units"].tolist()
        for key, label, lo, hi in (
            ("xi_effective_cosine", "effective cosine", 0.0, 1.0),
            ("xi_cosine", "cosine", 0.0, 1.0),
            ("xi_nrmse", "NRMSE", 0.0, 1.5),
        ):
            if key in arrays:
                fig = plot_xi_heatmap(w, u, arrays[key], label=label, vmin=lo, vmax=hi)
                figs.append((f"{key}_by_window_and_size", fig))
    accs = {
        k[len("test_accuracy_") :]: v
        for k, v in res.metrics.items()
        if k.startswith("test_accuracy_")
    }
    if accs and "epoch" in res.metrics:
        figs.append(("loop_accuracy", plot_loop_curves(res.metrics["epoch"], accs)))
    return figs
