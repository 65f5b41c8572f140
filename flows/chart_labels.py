"""Chart labels that never sit on each other: an offset search on the renderer's text extents.

Used by the report charts (flows/report_charts.py). Each label is tried at growing distances and
several angles around its point; the first spot inside the axes that is clear of every marker, every
placed label and the given obstacles (a legend) wins. A label placed far from its point gets a thin
leader line.
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
STEP_PX = 7.0  # ring spacing of the offset search
NEAR_PX = 120.0  # past this distance a label may have a leader line pass under it rather than go farther
_ANGLES = (45, 135, -45, -135, 0, 180, 90, -90, 22, 158, -22, -158, 68, 112, -68, -112)


Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) in display pixels


def _leader(cx: float, cy: float, x0: float, y0: float, w: float, h: float) -> Box | None:
    """The segment from the marker to the nearest point of a label box, or None when the label is close."""
    nx, ny = min(max(cx, x0), x0 + w), min(max(cy, y0), y0 + h)
    return (cx, cy, nx, ny) if math.hypot(nx - cx, ny - cy) > LEADER_PX else None


def _crosses(seg: Box, box: Box, samples: int = 24) -> bool:
    """Whether the segment (x0, y0, x1, y1) passes through the inside of `box` (sampled along its length)."""
    for i in range(1, samples):
        t = i / samples
        px, py = seg[0] + t * (seg[2] - seg[0]), seg[1] + t * (seg[3] - seg[1])
        if box[0] < px < box[2] and box[1] < py < box[3]:
            return True
    return False


def _box(x0: float, y0: float, w: float, h: float) -> Box:
    return (x0 - PAD_PX, y0 - PAD_PX, x0 + w + PAD_PX, y0 + h + PAD_PX)


def _overlap(a: Box, b: Box) -> float:
    """Area shared by two (x0, y0, x1, y1) boxes, 0 when apart."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def _inside(a: Box, frame: Box) -> bool:
    return a[0] >= frame[0] and a[1] >= frame[1] and a[2] <= frame[2] and a[3] <= frame[3]


def _spot(
    cx: float,
    cy: float,
    w: float,
    h: float,
    start: float,
    frame: Box,
    taken: list[Box],
    placed: list[Box],
    leaders: list[Box],
) -> tuple[tuple[float, int], float, float]:
    """The least-bad (cost, x0, y0) for a w x h label of the marker at (cx, cy); cost = (covered area,
    leader crossings): the nearest spot of cost (0, 0) within NEAR_PX, else the least crossed clear one."""
    best: tuple[tuple[float, int], float, float] | None = None
    r = start
    reach = math.hypot(frame[2] - frame[0], frame[3] - frame[1])
    while r < reach and (best is None or best[0] != (0, 0)):
        if r > NEAR_PX and best is not None and best[0][0] == 0:
            break  # clear of everything but a leader line: better than a label far from its point
        for angle in _ANGLES:
            dx, dy = r * math.cos(math.radians(angle)), r * math.sin(math.radians(angle))
            # the box corner nearest the point sits on the ring: the label grows away from it
            x0 = cx + dx - (w if dx < -0.5 else w / 2 if abs(dx) <= 0.5 else 0.0)
            y0 = cy + dy - (h if dy < -0.5 else h / 2 if abs(dy) <= 0.5 else 0.0)
            box = _box(x0, y0, w, h)
            if not _inside(box, frame):
                continue
            covered = sum(_overlap(box, t) for t in taken)
            leader = _leader(cx, cy, x0, y0, w, h)
            crossings = sum(_crosses(leader, b) for b in placed) if leader else 0
            crossings += sum(_crosses(seg, box) for seg in leaders)
            cost = (covered, crossings)  # covering comes first: a crossed label is still readable
            if best is None or cost < best[0]:
                best = (cost, x0, y0)
            if cost == (0, 0):
                break
        r += STEP_PX
    return best if best is not None else ((0.0, 0), cx, cy)  # nothing fits inside: next to its point


def _layout(
    start: float,
    centres: list[tuple[float, float]],
    sizes: list[tuple[float, float]],
    order: list[int],
    frame: Box,
    fixed: list[Box],
) -> tuple[tuple[float, int], dict[int, tuple[float, float]]]:
    """Greedy placement in `order`: the total cost and each label's box corner (x0, y0)."""
    taken = list(fixed)
    placed: list[Box] = []
    leaders: list[Box] = []
    corners: dict[int, tuple[float, float]] = {}
    covered, crossings = 0.0, 0
    for i in order:
        (cx, cy), (w, h) = centres[i], sizes[i]
        (c, k), x0, y0 = _spot(cx, cy, w, h, start, frame, taken, placed, leaders)
        covered, crossings = covered + c, crossings + k
        corners[i] = (x0, y0)
        taken.append(_box(x0, y0, w, h))
        placed.append(_box(x0, y0, w, h))
        if (leader := _leader(cx, cy, x0, y0, w, h)) is not None:
            leaders.append(leader)
    return (covered, crossings), corners


def place_labels(
    ax: Axes,
    points: Sequence[tuple[str, float, float]],
    *,
    fontsize: float,
    marker_px: float,
    obstacles: Sequence[Bbox] = (),
) -> list[Annotation]:
    """Annotate each (label, x, y) data point so that no label box overlaps another, a marker or an obstacle.

    Greedy placement tried in a few orders (given, top first, bottom first, left first, right first); the
    order with the least covered area, then the fewest leader lines through other labels, wins. Call after
    the axes' limits and layout are final: positions are searched in display pixels.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    a = ax.get_window_extent(renderer)
    frame = (a.x0, a.y0, a.x1, a.y1)
    px_per_pt = fig.dpi / 72.0
    centres = [(float(u), float(v)) for u, v in (ax.transData.transform((x, y)) for _, x, y in points)]
    fixed = [(cx - marker_px, cy - marker_px, cx + marker_px, cy + marker_px) for cx, cy in centres]
    fixed += [(b.x0, b.y0, b.x1, b.y1) for b in obstacles]
    labels = [
        ax.annotate(
            name,
            (x, y),
            xytext=(0, 0),
            textcoords="offset points",
            fontsize=fontsize,
            ha="left",
            va="bottom",
            zorder=5,
            # a leader line that cannot avoid a label passes under it, not through its letters
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
        )
        for name, x, y in points
    ]
    sizes = [(e.width, e.height) for e in (t.get_window_extent(renderer) for t in labels)]
    n = range(len(points))
    orders = [
        list(n),
        sorted(n, key=lambda i: -centres[i][1]),
        sorted(n, key=lambda i: centres[i][1]),
        sorted(n, key=lambda i: centres[i][0]),
        sorted(n, key=lambda i: -centres[i][0]),
    ]
    _, corners = min(
        (_layout(marker_px + PAD_PX, centres, sizes, o, frame, fixed) for o in orders), key=lambda r: r[0]
    )
    for i, (ann, (_, x, y)) in enumerate(zip(labels, points, strict=True)):
        (cx, cy), (w, h), (x0, y0) = centres[i], sizes[i], corners[i]
        ann.set_position(((x0 - cx) / px_per_pt, (y0 - cy) / px_per_pt))
        if (leader := _leader(cx, cy, x0, y0, w, h)) is not None:
            ax.annotate(
                "",
                (x, y),
                xytext=((leader[2] - cx) / px_per_pt, (leader[3] - cy) / px_per_pt),
                textcoords="offset points",
                arrowprops={"arrowstyle": "-", "color": "grey", "linewidth": 0.6, "shrinkA": 0, "shrinkB": 3},
                zorder=4,
            )
    return labels
