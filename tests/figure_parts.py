"""Readers of matplotlib artists shared by the figure tests."""


def errorbars(ax):
    """{label: (x, y, half-height of each error bar or None)} of an axes' errorbar plots."""
    out = {}
    for c in ax.containers:
        line, _, bars = c.lines
        half = None
        if bars:
            segments = bars[0].get_segments()
            half = [float(s[1, 1] - s[0, 1]) / 2 for s in segments]
        out[c.get_label()] = (list(line.get_xdata()), list(line.get_ydata()), half)
    return out
