"""Figures for continual learning (experiment ``nte-continual``): accuracy-matrix heat-map,
task-1 retention / forgetting against width per optimizer, forgetting against momentum.

The drawing functions take arrays and return a matplotlib Figure (Agg backend), saving it when
given a ``path`` ending in .png or .pdf. :func:`nte_continual_figures` draws them all from a
result file and is registered for ``plastix plot``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plastix.sims.plots import figure, pyplot, save_figure
from plastix.sims.results import Result


def plot_accuracy_matrix(
    matrix: Any,
    path: str | Path | None = None,
    *,
    title: str = "accuracy matrix",
    task_names: Sequence[str] | None = None,
):
    """Heat-map of ``R[i, j]``: test accuracy on task j (columns) after training task i (rows)."""
    r = np.asarray(matrix, dtype=float)
    if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] == 0:
        raise ValueError(f"matrix must be square (T, T), got shape {r.shape}")
    names = list(task_names) if task_names is not None else [str(i + 1) for i in range(len(r))]
    if len(names) != len(r):
        raise ValueError(f"task_names has {len(names)} names for {len(r)} tasks")
    plt = pyplot()
    size = 2.0 + 0.55 * len(r)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    im = ax.imshow(r, vmin=0.0, vmax=1.0, cmap="viridis")
    fig.colorbar(im, ax=ax, label="test accuracy")
    if len(r) <= 12:
        for (i, j), v in np.ndenumerate(r):
            if np.isfinite(v):
                ax.text(
                    j,
                    i,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if v > 0.6 else "white",
                )
    ax.set_xticks(range(len(r)), names)
    ax.set_yticks(range(len(r)), names)
    ax.set_xlabel("tested on task")
    ax.set_ylabel("after training task")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def _series(values: Any, n: int, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean and (for 2-D input: one row per seed) standard error of one curve."""
    v = np.asarray(values, dtype=float)
    if v.ndim == 1 and v.shape[0] == n:
        return v, None
    if v.ndim == 2 and v.shape[1] == n:
        err = v.std(axis=0, ddof=1) / np.sqrt(v.shape[0]) if v.shape[0] > 1 else None
        return v.mean(axis=0), err
    raise ValueError(f"{what}: expected shape ({n},) or (n_seeds, {n}), got {v.shape}")


def plot_forgetting_curves(
    x: Sequence[float],
    values: Mapping[str, Any],
    path: str | Path | None = None,
    *,
    xlabel: str,
    log_x: bool = False,
    ylabel: str = "task-1 forgetting (accuracy lost)",
    title: str | None = None,
):
    """One line per series (e.g. optimizer): ``values[name]`` against ``x`` (hidden width,
    momentum, ...), per x or one row per seed (mean ± standard error)."""
    xs = np.asarray(x, dtype=float)
    if xs.ndim != 1 or len(xs) == 0:
        raise ValueError(f"x must be a non-empty 1-D sequence, got {x!r}")
    if not values:
        raise ValueError("values is empty; pass {series name: values per x}")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    order = np.argsort(xs)
    for name, vals in values.items():
        mean, err = _series(vals, len(xs), f"values[{name!r}]")
        ax.errorbar(
            xs[order],
            mean[order],
            yerr=None if err is None else err[order],
            marker="o",
            capsize=3,
            label=name,
        )
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title if title is not None else f"forgetting against {xlabel}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    return fig


@figure("nte-continual")
def nte_continual_figures(res: Result) -> list[tuple[str, Any]]:
    """Accuracy matrix of every run, forgetting against width (one line per optimizer, at the
    first momentum) and against momentum (one line per SGD-based optimizer and width)."""
    arrays = res.arrays
    if "accuracy_matrices" not in arrays:
        return []
    names = list(res.config.get("optimizers", []))
    matrices = arrays["accuracy_matrices"]
    opt_idx = arrays["run_optimizer"].astype(int)
    widths = arrays["run_width"].astype(int)
    momenta = arrays["run_momentum"].astype(float)
    forgetting = arrays["task1_forgetting"]
    out = []
    for r, matrix in enumerate(matrices):
        name = names[opt_idx[r]]
        label = f"{name}_w{widths[r]}" + (f"_m{momenta[r]:g}" if name in ("sgd", "ewc") else "")
        out.append((f"accuracy_{label}", plot_accuracy_matrix(matrix, title=label)))
    unique_widths = sorted(set(widths.tolist()))
    if len(unique_widths) > 1:
        base_m = momenta.min()
        by_opt = {}
        for k, name in enumerate(names):
            sel = [
                (w, f)
                for w, f, o, m in zip(widths, forgetting, opt_idx, momenta, strict=True)
                if o == k and m == base_m
            ]
            if len(sel) == len(unique_widths):
                by_opt[name] = [f for _, f in sorted(sel)]
        if by_opt:
            by_width = plot_forgetting_curves(
                unique_widths, by_opt, xlabel="hidden width", log_x=True
            )
            out.append(("forgetting_vs_width", by_width))
    unique_m = sorted(set(momenta.tolist()))
    if len(unique_m) > 1:
        series = {}
        for k, name in enumerate(names):
            for w in unique_widths:
                sel = [
                    (m, f)
                    for m, f, o, ww in zip(momenta, forgetting, opt_idx, widths, strict=True)
                    if o == k and ww == w
                ]
                if len(sel) == len(unique_m):
                    series[f"{name} w{w}"] = [f for _, f in sorted(sel)]
        if series:
            out.append(
                (
                    "forgetting_vs_momentum",
                    plot_forgetting_curves(unique_m, series, xlabel="momentum"),
                )
            )
    return out
