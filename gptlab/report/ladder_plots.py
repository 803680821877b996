"""The "Capability by size" section's charts as SVG text: bpb per domain group against size (log axes, with the
fitted law and its 95 % band), and each probe's failure rate (or pass@1) against bpb with its logistic fit.

    gptlab report ladder-demo --db ladder_run/results.sqlite      (writes ladder_loss.svg, ladder_capability.svg)
    python -m pytest tests/test_ladder_analysis.py

Drawn like gptlab/report/plots.py (matplotlib's object API, the SVG canvas, no dates in the files).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from gptlab.report.blocks import human
from gptlab.report.plots import COLORS, _style, _svg

BAND_POINTS = 60


def loss_svg(analysis, max_factor: float) -> str:
    """bpb per group against non-embedding parameters, each rung with its document-bootstrap interval, the
    fitted law run out to `max_factor` x the largest rung with its band."""
    fig = Figure(figsize=(8, 4.4))
    ax = fig.subplots()
    x = analysis.ladder.sizes
    grid = np.geomspace(x.min() / 1.5, x.max() * max_factor, BAND_POINTS)
    for i, (group, fit) in enumerate(analysis.loss.items()):
        color = "#1f2328" if i == 0 else COLORS[(i - 1) % len(COLORS)]
        ivs = analysis.bpb[group]
        y = np.array([iv.value for iv in ivs])
        err = np.array([[iv.value - iv.low for iv in ivs], [iv.high - iv.value for iv in ivs]])
        ax.errorbar(x, y, yerr=np.clip(err, 0, None), fmt="o", color=color, markersize=4, capsize=2,
                    label=f"{group}: {fit.form}")
        lo, hi = np.nanpercentile(fit.curve_reps(grid[:, None]), [2.5, 97.5], axis=1)    # (grid, replicates)
        ax.plot(grid, fit(grid), color=color, linewidth=1.2, linestyle="--")
        ax.fill_between(grid, lo, hi, color=color, alpha=0.12, linewidth=0)
    ax.axvline(x.max(), color="#d0d7de", linewidth=0.8, zorder=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: human(v)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
    ax.set_xlabel("non-embedding parameters (log); the grey line is the largest rung")
    ax.set_ylabel("val bits per byte (log)")
    ax.set_title("bpb by size, with the fitted law and its 95 % band", fontsize=11, loc="left")
    ax.legend(fontsize=7, frameon=False, loc="lower left")
    _style(ax)
    fig.tight_layout()
    return _svg(fig, "ladder_loss")


def capability_svg(probes: list, bpb_of: dict) -> str:
    """One line per probe fit: its rate at each rung (points) against the rung's bpb of the probe's group,
    and the logistic fitted through them. `bpb_of`: group -> the rungs' bpb values."""
    kinds = sorted({p.metric for p in probes})
    fig = Figure(figsize=(5.2 * len(kinds), 4.2))
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    for ax, kind in zip(axes, kinds):
        shown = [p for p in probes if p.metric == kind]
        for i, p in enumerate(shown):
            color = COLORS[i % len(COLORS)]
            xs = np.asarray(bpb_of[p.group], dtype=float)
            ax.plot(xs, p.rates, "o", color=color, markersize=4, label=p.probe)
            grid = np.linspace(xs.min() - 0.1 * np.ptp(xs) - 0.05, xs.max() + 0.05, BAND_POINTS)
            ax.plot(grid, p.fit(grid), color=color, linewidth=1.0, alpha=0.8)
        ax.invert_xaxis()
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("bpb of the probe's domain group (lower: a bigger rung) ")
        ax.set_ylabel(kind)
        ax.set_title(f"{kind} by bpb, logistic fits", fontsize=11, loc="left")
        ax.legend(fontsize=6, frameon=False, ncol=2)
        _style(ax)
    fig.tight_layout()
    return _svg(fig, "ladder_capability")
