"""Chart labels that never sit on each other: an offset search on the renderer's text extents.

Used by the report charts (flows/report.py). Each label is tried at growing distances and several angles
around its point; the first spot inside the axes that is clear of every marker, every placed label and
the given obstacles (a legend) wins. A label placed far from its point gets a thin leader line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.text import Annotation
    from matplotlib.transforms import Bbox

PAD_PX = 2.0  # clear space kept around every label box
LEADER_PX = 14.0  # labels farther than this from their point get a leader line
_ANGLES = (45, 135, -45, -135, 0, 180, 90, -90, 22, 158, -22, -158, 68, 112, -68, -112)


def _box(x0: float, y0: float, w: float, h: float) -> tuple[float, float, float, float]:
    return (x0 - PAD_PX, y0 - PAD_PX, x0 + w + PAD_PX, y0 + h + PAD_PX)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Area shared by two (x0, y0, x1, y1) boxes, 0 when apart."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def _inside(a: tuple[float, float, float, float], frame: tuple[float, float, float, float]) -> bool:
    return a[0] >= frame[0] and a[1] >= frame[1] and a[2] <= frame[2] and a[3] <= frame[3]


def place_labels(
    ax: Axes,
    points: Sequence[tuple[str, float, float]],
    *,
    fontsize: float,
    marker_px: float,
    obstacles: Sequence[Bbox] = (),
) -> list[Annotation]:
    """Annotate each (label, x, y) data point so that no label box overlaps another, a marker or an obstacle.

    Call after the axes' limits and layout are final: positions are searched in display pixels.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    a = ax.get_window_extent(renderer)
    frame = (a.x0, a.y0, a.x1, a.y1)
    px_per_pt = fig.dpi / 72.0
    centres = [tuple(ax.transData.transform((x, y))) for _, x, y in points]
    taken = [(cx - marker_px, cy - marker_px, cx + marker_px, cy + marker_px) for cx, cy in centres]
    taken += [(b.x0, b.y0, b.x1, b.y1) for b in obstacles]
    step = max(4.0, fontsize * px_per_pt * 0.6)
    reach = math.hypot(a.width, a.height)
    labels = []
    for (name, x, y), (cx, cy) in zip(points, centres, strict=True):
        ann = ax.annotate(
            name, (x, y), xytext=(0, 0), textcoords="offset points", fontsize=fontsize, ha="left", va="bottom"
        )
        ext = ann.get_window_extent(renderer)
        w, h = ext.width, ext.height
        best: tuple[float, float, float] | None = None  # (overlap, x0, y0) of the least-bad spot
        r = marker_px + PAD_PX
        while r < reach and (best is None or best[0] > 0):
            for angle in _ANGLES:
                dx, dy = r * math.cos(math.radians(angle)), r * math.sin(math.radians(angle))
                # the box corner nearest the point sits on the ring: the label grows away from it
                x0 = cx + dx - (w if dx < -0.5 else w / 2 if abs(dx) <= 0.5 else 0.0)
                y0 = cy + dy - (h if dy < -0.5 else h / 2 if abs(dy) <= 0.5 else 0.0)
                box = _box(x0, y0, w, h)
                if not _inside(box, frame):
                    continue
                cost = sum(_overlap(box, t) for t in taken)
                if best is None or cost < best[0]:
                    best = (cost, x0, y0)
                if cost == 0:
                    break
            r += step
        if best is None:  # nothing fits inside the axes: keep it next to its point
            best = (0.0, cx + marker_px, cy + marker_px)
        _, x0, y0 = best
        ann.set_position(((x0 - cx) / px_per_pt, (y0 - cy) / px_per_pt))
        taken.append(_box(x0, y0, w, h))
        nx, ny = min(max(cx, x0), x0 + w), min(max(cy, y0), y0 + h)  # the box point nearest the marker
        if math.hypot(nx - cx, ny - cy) > LEADER_PX:
            ax.annotate(
                "",
                (x, y),
                xytext=((nx - cx) / px_per_pt, (ny - cy) / px_per_pt),
                textcoords="offset points",
                arrowprops={"arrowstyle": "-", "color": "grey", "linewidth": 0.6, "shrinkA": 0, "shrinkB": 3},
            )
        labels.append(ann)
    return labels
