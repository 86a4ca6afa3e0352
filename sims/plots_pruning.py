"""Figure for the ``pruning`` experiment: test accuracy against the share of passes saved.

One line per strategy (mean over the runs at each rate); the full-data accuracy is a dashed
horizontal line. Drawn from arrays or from a ``pruning`` result (never stored in the file).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from plastix.sims.plots import figure, pyplot
from plastix.sims.results import Result


def pruning_curves(res: Result) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], float | None]:
    """``({strategy: (saved_fraction, test_accuracy)}, full_accuracy)`` from a pruning result.

    Uses the per-run metrics (axis ``run``): ``strategy_index`` into ``arrays/strategies``,
    ``realized_rate`` and ``test_accuracy``.
    """
    if res.experiment != "pruning":
        raise ValueError(f"res: a {res.experiment!r} result; pruning_curves needs a pruning one")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in res.arrays["strategies"]]
    index = res.metrics["strategy_index"].astype(int)
    saved, accuracy = res.metrics["realized_rate"], res.metrics["test_accuracy"]
    curves, full = {}, None
    for i, name in enumerate(names):
        mask = index == i
        if not mask.any():
            continue
        if name == "full":
            full = float(accuracy[mask].mean())
            continue
        curves[name] = (saved[mask], accuracy[mask])
    return curves, full


def plot_accuracy_vs_saved(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    full_accuracy: float | None = None,
    ax=None,
    title: str = "dynamic data pruning",
):
    """Draw accuracy (%) against passes saved (%), one line per strategy; returns the Figure.

    ``curves`` maps a strategy to ``(saved_fraction, accuracy)`` arrays of equal length (values
    in [0, 1]); repeated rates (several seeds) are averaged and drawn with their min-max range.
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves: expected a non-empty mapping strategy -> (saved, accuracy)")
    plt = pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4))
    else:
        fig = ax.figure
    for name, (saved, accuracy) in curves.items():
        saved, accuracy = np.asarray(saved, float), np.asarray(accuracy, float)
        if saved.shape != accuracy.shape or saved.ndim != 1:
            raise ValueError(
                f"curves[{name!r}]: saved {saved.shape} and accuracy {accuracy.shape} must be "
                "1-D arrays of equal length"
            )
        rates = np.unique(np.round(saved, 4))
        groups = [accuracy[np.isclose(np.round(saved, 4), r)] for r in rates]
        mean = np.array([g.mean() for g in groups])
        low = mean - np.array([g.min() for g in groups])
        high = np.array([g.max() for g in groups]) - mean
        ax.errorbar(
            100 * rates,
            100 * mean,
            yerr=100 * np.stack([low, high]),
            marker="o",
            ms=4,
            capsize=3,
            label=name,
        )
    if full_accuracy is not None:
        ax.axhline(100 * full_accuracy, color="k", ls="--", lw=1, label="full data")
    ax.set_xlabel("per-sample passes saved (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@figure("pruning")
def pruning_figures(res: Result) -> list[tuple[str, object]]:
    curves, full = pruning_curves(res)
    if not curves:
        return []
    title = f"pruning on {res.config.get('dataset', '?')}"
    return [("accuracy_vs_saved", plot_accuracy_vs_saved(curves, full_accuracy=full, title=title))]
