"""Figures for ``ib-bsweep`` results: test accuracy over window size B and epochs."""

from __future__ import annotations

import numpy as np

from plastix.sims.plots import figure
from plastix.sims.results import Result


@figure("ib-bsweep")
def bsweep_heatmap(res: Result) -> list[tuple[str, object]]:
    """Heat-map of accuracy (rows: B, columns: epoch) and final accuracy against B."""
    import matplotlib.pyplot as plt

    if "windows" not in res.arrays or "test_accuracy_curves" not in res.arrays:
        return []
    windows = np.asarray(res.arrays["windows"])
    acc = np.asarray(res.arrays["test_accuracy_curves"])
    fig, (ax_map, ax_line) = plt.subplots(1, 2, figsize=(10, 3.8))
    im = ax_map.imshow(acc, aspect="auto", cmap="viridis", origin="lower")
    ax_map.set_yticks(range(len(windows)), [str(int(b)) for b in windows])
    ax_map.set_xticks(range(acc.shape[1]), [str(e + 1) for e in range(acc.shape[1])])
    ax_map.set_xlabel("epoch")
    ax_map.set_ylabel("working memory B")
    for (r, c), v in np.ndenumerate(acc):
        ax_map.text(c, r, f"{v:.2f}", ha="center", va="center", color="w", fontsize=7)
    fig.colorbar(im, ax=ax_map, label="test accuracy")
    ax_line.plot(windows, acc[:, -1], marker="o")
    ax_line.set_xscale("log", base=2)
    ax_line.set_xlabel("working memory B")
    ax_line.set_ylabel("final test accuracy")
    ax_line.grid(alpha=0.3)
    fig.suptitle(f"IB rule: accuracy against B — {res.path.name}")
    fig.tight_layout()
    return [("bsweep", fig)]
