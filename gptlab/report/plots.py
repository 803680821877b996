"""The report's charts as SVG text: the training curve, bpb per domain, the failure matrix.

    gptlab report runs/demo --db results.sqlite      (writes curve.svg, domains.svg, failures.svg)
    python -m pytest tests/test_report.py tests/test_report_browser.py

matplotlib's object API with the SVG canvas only (no pyplot, so no global backend or GUI is touched). Text
stays text (`svg.fonttype = none`: small files, selectable labels), and each chart gets its own
`svg.hashsalt` so element ids never collide when several charts are inlined into one HTML page. No dates are
written into the files, so the same results give byte-identical plots.
"""

from __future__ import annotations

import io

import matplotlib
import numpy as np
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from gptlab.report.blocks import human

COLORS = ["#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7d8c", "#6e7781",
          "#fb8500", "#3a0ca3"]
SMOOTH_MIN_POINTS = 40
LAW_COLOR = "#953800"           # the schedule-aware fit: a colour no domain line uses
CLASS_COLORS = {"low": "#1a7f37", "middle": "#9a6700", "high": "#cf222e"}


def _svg(fig: Figure, name: str) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"gptlab-{name}"}):
        FigureCanvasSVG(fig)
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "gptlab"})
    return buf.getvalue()


def _style(ax) -> None:
    ax.grid(True, color="#d1d9e0", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _x_axis(ax, unit: str) -> None:
    ax.set_xlabel("tokens seen" if unit == "tokens" else "training step")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: human(v) if v else "0"))


def _ema(values, alpha: float) -> np.ndarray:
    out, cur = [], None
    for v in values:
        cur = v if cur is None else alpha * v + (1 - alpha) * cur
        out.append(cur)
    return np.asarray(out)


def curve_svg(curve, fit, train: list[tuple[float, float]], checkpoints_x: list[float], law=None) -> str:
    """Left: val bpb overall and per domain, with the power-law fit run out to 2x, or (`law`, the
    schedule-aware fit) this run's fitted curve and a run 2x as long with the same schedule. Right: train loss."""
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    for i, (domain, ys) in enumerate(sorted(curve.domains.items())):
        pts = [(x, y) for x, y in zip(curve.x, ys) if y is not None]
        if pts:
            left.plot(*zip(*pts), color=COLORS[i % len(COLORS)], linewidth=1.2, alpha=0.85, marker=".",
                      label=domain)
    pts = [(x, y) for x, y in zip(curve.x, curve.overall) if y is not None]
    if pts:
        left.plot(*zip(*pts), color="#1f2328", linewidth=2.6, marker="o", markersize=4, label="overall")
    if law is not None and pts:
        _law_lines(left, law, curve)
    elif fit is not None:
        xs = np.geomspace(min(x for x, _ in pts if x > 0), 2 * fit.t_last, 80)
        left.plot(xs, fit(xs), color="#1f2328", linestyle="--", linewidth=1, label="power-law fit")
        left.plot([2 * fit.t_last], [fit.projected], marker="D", color="#1f2328", markersize=6)
        left.annotate(f"2x: {fit.projected:.3f}", (2 * fit.t_last, fit.projected), textcoords="offset points",
                      xytext=(-8, 8), ha="right", fontsize=9)
    left.set_ylabel("val bits per byte (lower is better)")
    left.set_title(f"val bpb ({curve.source})", fontsize=11, loc="left")
    _x_axis(left, curve.unit)
    _style(left)
    left.legend(fontsize=8, ncol=2, frameon=False, loc="upper right")
    if train:
        tx, ty = zip(*train)
        if len(ty) >= SMOOTH_MIN_POINTS:       # a noisy per-step log: show the trend over the noise
            alpha = min(0.3, 20 / len(ty))
            right.plot(tx, ty, color="#8c959f", linewidth=0.7, alpha=0.6, label="logged")
            right.plot(tx, _ema(ty, alpha), color="#0969da", linewidth=1.8, label=f"smoothed (EMA {alpha:.2g})")
        else:
            right.plot(tx, ty, color="#0969da", linewidth=1.6, marker=".", label="logged")
        for x in checkpoints_x:
            right.axvline(x, color="#d0d7de", linewidth=0.8, zorder=0)
        right.legend(fontsize=8, frameon=False)
    else:
        right.text(0.5, 0.5, "no training log imported", ha="center", va="center", transform=right.transAxes,
                   color="#59636e")
    right.set_ylabel("train loss (nats per token)")
    right.set_title("train loss", fontsize=11, loc="left")
    _x_axis(right, curve.unit)
    _style(right)
    fig.tight_layout()
    return _svg(fig, "curve")


def _law_lines(ax, law, curve) -> None:
    """The schedule-aware law on this run's schedule and on a run `law.factor` x as long, x scaled from steps."""
    per_step = next((x / s for x, s in zip(reversed(curve.x), reversed(curve.steps)) if x and s), 1.0)
    first = min(law.steps)
    longer = law.schedule.longer(law.factor)
    for sch, style, label in ((law.schedule, "-", "schedule-aware fit"),
                              (longer, ":", f"same schedule, {law.factor:g}x steps")):
        steps = np.arange(first, sch.steps + 1)
        ax.plot(steps * per_step, law(steps, sch), color=LAW_COLOR, linestyle=style, linewidth=1.4, label=label)
    end = longer.steps * per_step
    ax.plot([end], [law.longer], marker="D", color=LAW_COLOR, markersize=6)
    ax.annotate(f"{law.factor:g}x: {law.longer:.3f}", (end, law.longer), textcoords="offset points",
                xytext=(-8, 8), ha="right", fontsize=9)


def domains_svg(rows: list[tuple[str, float, str]]) -> str:
    """rows: (domain, bpb, entropy class low|middle|high), drawn lowest bpb on top."""
    rows = sorted(rows, key=lambda r: r[1], reverse=True)
    fig = Figure(figsize=(8, 0.45 * len(rows) + 1.2))
    ax = fig.subplots()
    names, values, classes = zip(*rows)
    bars = ax.barh(names, values, color=[CLASS_COLORS.get(c, "#6e7781") for c in classes], height=0.6)
    for bar, v in zip(bars, values):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f"  {v:.3f} bpb = {2 ** v:.2f} per byte",
                va="center", fontsize=9)
    ax.set_xlim(0, max(values) * 1.45)
    ax.set_xlabel("val bits per byte at the latest checkpoint (perplexity per byte = 2^bpb)")
    handles = [Patch(color=c, label=f"{k} entropy") for k, c in CLASS_COLORS.items()
               if k in classes]
    ax.legend(handles=handles, fontsize=8, frameon=False, loc="upper right")
    _style(ax)
    ax.grid(False, axis="y")
    fig.tight_layout()
    return _svg(fig, "domains")


def failures_svg(probes: list[str], modes: list[str], rates: list[list[float | None]]) -> str:
    """Heatmap of failure rates, probes down, modes across; blank where a mode does not apply."""
    data = np.array([[np.nan if r is None else r for r in row] for row in rates], dtype=float)
    fig = Figure(figsize=(1.0 + 0.62 * len(modes) + 1.6, 0.34 * len(probes) + 1.9))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["Reds"].with_extremes(bad="#f6f8fa")
    im = ax.imshow(data, cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(modes)), [m.replace("_", " ") for m in modes], rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(probes)), probes, fontsize=8)
    for i in range(len(probes)):
        for j in range(len(modes)):
            if not np.isnan(data[i, j]) and data[i, j] > 0:
                ax.text(j, i, f"{data[i, j]:.0%}", ha="center", va="center", fontsize=7,
                        color="white" if data[i, j] > 0.6 else "#1f2328")
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02, label="share of samples")
    ax.set_title("failure modes per probe", fontsize=11, loc="left")
    fig.tight_layout()
    return _svg(fig, "failures")
