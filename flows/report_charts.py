"""The report's two PNG charts, drawn from a `flows.report.compare` report: the privacy–utility
trade-off (x = priv, y = action top-1, one point per embedding set; labels placed by
flows/chart_labels.py) and the per-attribute worst-attacker leakage (grouped bars, one panel per view).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The order of views in the charts and in flows.report: motion clips (what is published) first.
VIEWS = ("motion", "static")


def plot_tradeoff(report: dict[str, Any], path: Path) -> Figure:
    """Privacy–utility scatter: x = priv (motion clips), y = action top-1, one point per set.

    Labels are placed clear of each other, of the markers and of the legend (flows/chart_labels.py).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from flows.chart_labels import place_labels

    fig = Figure(figsize=(7.2, 5.4), dpi=150)
    canvas = FigureCanvasAgg(fig)
    ax = fig.subplots()
    points = [(s["name"], s["priv"], s["action_top1"]) for s in report["sets"]]
    points = [(n, x, y) for n, x, y in points if x is not None and y is not None]
    for name, x, y in points:
        marker = "o" if name == report["baseline"] else "s"
        ax.scatter([x], [y], marker=marker, s=60, zorder=3)
    action = next(m for m in report["metrics"] if m["key"] == "action_top1")
    if action["chance"] is not None:
        ax.axhline(action["chance"], color="grey", linestyle=":", linewidth=1, label="action chance")
    if not points:
        ax.text(
            0.5,
            0.5,
            "no set has both action and motion leakage results",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    xmax = max([x for _, x, _ in points] + [0.05])
    ax.set_xlim(-0.02, min(1.0, xmax * 1.25 + 0.02))
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("priv: worst-attacker leakage on motion clips, mean over attributes (← more private)")
    ax.set_ylabel("action top-1 (↑ more useful)")
    ax.set_title("Privacy–utility trade-off (best: top left)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    obstacles = []
    if action["chance"] is not None:
        legend = ax.legend(loc="best", fontsize=9)
        obstacles.append(legend.get_window_extent(canvas.get_renderer()))
    marker_px = (60**0.5) / 2 * fig.dpi / 72.0  # s=60 is the marker's area in points²
    place_labels(ax, points, fontsize=9, marker_px=marker_px, obstacles=obstacles)
    fig.savefig(path)
    return fig


def plot_leakage(report: dict[str, Any], path: Path) -> Figure:
    """Grouped bars: worst-attacker leakage per attribute, one bar per set, one panel per view.

    The legend sits right of the panels, off the bars; attribute names turn when they would touch.
    """
    from itertools import pairwise

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    views = [v for v in VIEWS if any(w["view"] == v for w in report["leakage_worst"])]
    fig = Figure(figsize=(8.4, 3.4 * max(1, len(views))), dpi=150)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(max(1, len(views)), 1, squeeze=False)[:, 0]
    names = [s["name"] for s in report["sets"]]
    for ax, view in zip(axes, views, strict=False):
        worst = [w for w in report["leakage_worst"] if w["view"] == view]
        width = 0.8 / max(1, len(names))
        for i, name in enumerate(names):
            heights = [w["worst_leakage"][name] for w in worst]
            xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(worst))]
            kept = [(x, h) for x, h in zip(xs, heights, strict=True) if h is not None]
            if kept:
                ax.bar([x for x, _ in kept], [h for _, h in kept], width=width, label=name)
        ax.set_xticks(range(len(worst)), [w["attribute"] for w in worst], fontsize=9)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_ylabel("worst-attacker leakage")
        ax.set_title(f"{view} clips: (cMAP − chance) / (1 − chance), 0 = chance", fontsize=10)
        ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        ax.grid(axis="y", alpha=0.3)
    if not views:
        axes[0].set_axis_off()
        axes[0].text(0.5, 0.5, "no leakage results in this probe run", ha="center", va="center")
    fig.tight_layout()
    renderer = canvas.get_renderer()
    for ax in axes:
        ticks = [t for t in ax.get_xticklabels() if t.get_text()]
        boxes = [t.get_window_extent(renderer) for t in ticks]
        if any(a.x1 > b.x0 - 2 for a, b in pairwise(boxes)):
            for t in ticks:
                t.set_rotation(30)
                t.set_ha("right")
                t.set_rotation_mode("anchor")
    fig.tight_layout()
    fig.savefig(path)
    return fig
