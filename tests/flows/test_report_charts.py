"""The report charts: every label clear of the others, legible at the size the PNG is written."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from flows.report_charts import plot_leakage, plot_tradeoff

PNG = b"\x89PNG\r\n\x1a\n"
MIN_FONT_PX = 12.0  # ≈ 9 pt on a 100-dpi screen


def close_points_report(n: int = 7) -> dict[str, Any]:
    """raw plus n adapter sets whose points lie within 0.01 of each other (their labels would collide)."""
    sets = [{"name": "raw", "priv": 0.62, "action_top1": 0.71}]
    for i in range(n):
        sets.append(
            {"name": f"published:adapter-v{i}", "priv": 0.10 + 0.002 * i, "action_top1": 0.55 + 0.003 * i}
        )
    attributes = ["gender", "colour", "age", "skin", "height", "clothing"]
    worst = [
        {
            "view": view,
            "attribute": a,
            "worst_leakage": {s["name"]: 0.1 + 0.05 * j for j, s in enumerate(sets)},
        }
        for view in ("motion", "static")
        for a in attributes
    ]
    return {
        "baseline": "raw",
        "sets": sets,
        "metrics": [{"key": "action_top1", "chance": 0.125}],
        "leakage_worst": worst,
    }


def _boxes(texts: list[Any]) -> list[Any]:
    renderer = texts[0].figure.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in texts]


def _assert_apart(boxes: list[Any], what: str) -> None:
    for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
        assert not a.overlaps(b), f"{what} {i} and {j} overlap: {a} / {b}"


def test_tradeoff_labels_of_close_points_do_not_overlap(tmp_path: Path) -> None:
    report = close_points_report()
    fig = plot_tradeoff(report, tmp_path / "tradeoff.png")
    assert (tmp_path / "tradeoff.png").read_bytes().startswith(PNG)
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_text()]
    assert sorted(t.get_text() for t in labels) == sorted(s["name"] for s in report["sets"])
    boxes = _boxes(labels)
    _assert_apart(boxes, "labels")
    frame = ax.get_window_extent(fig.canvas.get_renderer())
    legend = ax.get_legend().get_window_extent(fig.canvas.get_renderer())
    for t, box in zip(labels, boxes, strict=True):
        assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), t.get_text()
        assert not box.overlaps(legend), t.get_text()
        assert t.get_fontsize() * fig.dpi / 72.0 >= MIN_FONT_PX


def test_the_naive_placement_would_have_overlapped(tmp_path: Path) -> None:
    """The case is hard: labels at the old fixed offset (6, 6) points do overlap."""
    fig = plot_tradeoff(close_points_report(), tmp_path / "tradeoff.png")
    ax = fig.axes[0]
    naive = [
        ax.annotate(t.get_text(), t.xy, xytext=(6, 6), textcoords="offset points", fontsize=9)
        for t in ax.texts
        if t.get_text()
    ]
    boxes = _boxes(naive)
    assert any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))


def test_leakage_tick_labels_and_legend_are_clear(tmp_path: Path) -> None:
    report = close_points_report()
    fig = plot_leakage(report, tmp_path / "leakage.png")
    assert (tmp_path / "leakage.png").read_bytes().startswith(PNG)
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        _assert_apart(_boxes([t for t in ax.get_xticklabels() if t.get_text()]), "attribute names")
        legend = ax.get_legend()
        entries = _boxes(legend.get_texts())
        _assert_apart(entries, "legend entries")
        assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
        assert min(t.get_fontsize() for t in legend.get_texts()) * fig.dpi / 72.0 >= MIN_FONT_PX


def _leader_crossings(fig: Any) -> int:
    """How many (leader line, other label) pairs cross, from the drawn artists."""
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_text()]
    boxes = _boxes(labels)
    px_per_pt = fig.dpi / 72.0
    crossings = 0
    for leader in (t for t in ax.texts if not t.get_text()):
        x0, y0 = ax.transData.transform(leader.xy)
        dx, dy = leader.get_position()
        x1, y1 = x0 + dx * px_per_pt, y0 + dy * px_per_pt
        for t, box in zip(labels, boxes, strict=True):
            if tuple(t.xy) == tuple(leader.xy):
                continue  # its own label
            steps = [(x0 + (x1 - x0) * k / 50, y0 + (y1 - y0) * k / 50) for k in range(1, 50)]
            crossings += any(box.x0 < x < box.x1 and box.y0 < y < box.y1 for x, y in steps)
    return crossings


def test_tradeoff_labels_stay_near_their_points_with_leaders_under_labels(tmp_path: Path) -> None:
    fig = plot_tradeoff(close_points_report(4), tmp_path / "four.png")
    assert _leader_crossings(fig) == 0  # room enough: no leader line crosses another label
    fig = plot_tradeoff(close_points_report(), tmp_path / "seven.png")
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_text()]
    leaders = [t for t in ax.texts if not t.get_text()]
    assert leaders  # seven labels around one spot cannot all sit next to it
    for t, box in zip(labels, _boxes(labels), strict=True):
        px, py = ax.transData.transform(t.xy)
        nx, ny = min(max(px, box.x0), box.x1), min(max(py, box.y0), box.y1)
        assert ((nx - px) ** 2 + (ny - py) ** 2) ** 0.5 < 150, f"{t.get_text()} is far from its point"
        # a leader that has to pass a label goes under it, behind its white background
        assert t.get_zorder() > max(leader.get_zorder() for leader in leaders)
        assert t.get_bbox_patch() is not None and t.get_bbox_patch().get_facecolor()[:3] == (1.0, 1.0, 1.0)


def test_the_demo_points_get_clear_labels(tmp_path: Path) -> None:
    """The demo's own figures (one run): two points on the very same spot, two others nearly so."""
    demo = [
        ("raw", 0.4861, 0.91),
        ("adapter:adapter", 0.0918, 0.925),
        ("adapter:adapter-paper", 0.4856, 0.89),
        ("adapter:adapter-no-anomaly", 0.0843, 0.91),
        ("published:sha-94d7b3c6c14b", 0.0918, 0.925),
    ]
    report = close_points_report(0)
    report["sets"] = [{"name": n, "priv": x, "action_top1": y} for n, x, y in demo]
    fig = plot_tradeoff(report, tmp_path / "tradeoff.png")
    labels = [t for t in fig.axes[0].texts if t.get_text()]
    assert len(labels) == len(demo)
    _assert_apart(_boxes(labels), "labels")
