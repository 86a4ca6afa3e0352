"""Figure for the ``compare`` experiment: test accuracy against training wall-clock time and
against samples seen, one line per arm (read from the ``<arm>_*`` metrics on axis ``step``)."""

from __future__ import annotations

import numpy as np

from plastix.sims.plots import figure
from plastix.sims.results import Result

ARM_PREFIXES = ("spiking_ib", "rate_ib", "snntorch_bptt", "backprop")


def compare_curves(res: Result) -> dict[str, dict[str, np.ndarray]]:
    """``{arm: {"wall_s", "samples_seen", "test_accuracy"}}`` for the arms in ``res``."""
    if res.experiment != "compare":
        raise ValueError(f"res: a {res.experiment!r} result; compare_curves needs a compare one")
    curves = {}
    for arm in ARM_PREFIXES:
        key = f"{arm}_test_accuracy"
        if key not in res.metrics:
            continue
        keep = ~np.isnan(res.metrics[key])
        curves[arm] = {
            name: res.metrics[f"{arm}_{name}"][keep]
            for name in ("wall_s", "samples_seen", "test_accuracy")
        }
    return curves


@figure("compare")
def compare_figure(res: Result) -> list[tuple[str, object]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = compare_curves(res)
    if not curves:
        return []
    fig, (ax_time, ax_samples) = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for arm, c in curves.items():
        label = arm.replace("_", "-")
        ax_time.plot(c["wall_s"], c["test_accuracy"], marker="o", ms=3, label=label)
        ax_samples.plot(c["samples_seen"], c["test_accuracy"], marker="o", ms=3, label=label)
    ax_time.set_xlabel("training wall-clock (s)")
    ax_samples.set_xlabel("training samples seen")
    ax_time.set_ylabel("test accuracy")
    for ax in (ax_time, ax_samples):
        ax.grid(alpha=0.3)
    ax_samples.legend(fontsize=8)
    fig.suptitle(f"compare — {res.path.name}")
    fig.tight_layout()
    return [("compare", fig)]
