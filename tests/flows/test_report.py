"""The report: comparisons worked by hand on a made-up probe record, report.md numbers against
probe.json, several anonymized sets, charts, and refusals."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from flows.probe import PROBES, SCHEMA_VERSION, ProbeOutcome, ProbeRecord, SetRecord, load_record
from flows.report import (
    LEAKAGE_PNG,
    REPORT_JSON,
    REPORT_MD,
    TRADEOFF_PNG,
    combined,
    compare,
    fmt,
    make_report,
    pct,
    priv,
    removed_fraction,
)
from pipeline.errors import ConfigError
from pipeline.probes.leakage import leakage_removed
from stores.errors import SchemaVersionError
from tests.flows.test_probe import planted_probe_dir

PNG = b"\x89PNG\r\n\x1a\n"


def attack(attribute: str, attacker: str, cmap: float, chance: float) -> dict[str, Any]:
    return {
        "attribute": attribute,
        "attacker": attacker,
        "cmap": cmap,
        "macro_f1": cmap - 0.05,
        "chance": chance,
        "num_classes": round(1 / chance),
        "num_train_clips": 100,
        "num_test": 50,
        "aggregate": "video",
        "leakage": (cmap - chance) / (1 - chance),
    }


def made_up_set(name: str, kind: str, top1: float, motion: list[dict[str, Any]], delta: float) -> SetRecord:
    ok = {
        "action": {"top1": top1, "top_k": 1.0, "k": 5, "chance_top1": 0.125},
        "leakage_motion": {"attacks": motion, "skipped": {}},
        "reid": {"top1": 0.5 * top1, "map": 0.4, "chance_top1": 0.05, "chance_map": 0.1},
        "bias": {"accuracy": top1, "per_group": {"female": top1, "male": top1 - delta}, "delta": delta},
    }
    probes = {
        p: ProbeOutcome(status="ok", seconds=0.1, metrics=ok[p])
        if p in ok
        else ProbeOutcome(status="skipped", reason=f"no labels for {p}")
        for p in PROBES
    }
    counts = {"videos": 10, "motion_clips": 30, "static_clips": 0, "dim": 4}
    return SetRecord(name=name, kind=kind, source={}, counts=counts, probes=probes)  # type: ignore[arg-type]


def made_up_record() -> ProbeRecord:
    """gender (chance 0.5) and colour (chance 0.25); raw and two anonymized sets."""
    raw = made_up_set(
        "raw",
        "raw",
        0.90,
        [
            attack("gender", "linear", 0.80, 0.5),
            attack("gender", "mlp", 0.90, 0.5),
            attack("colour", "linear", 0.55, 0.25),
            attack("colour", "mlp", 0.40, 0.25),
        ],
        0.20,
    )
    good = made_up_set(
        "published:good",
        "published",
        0.88,
        [
            attack("gender", "linear", 0.50, 0.5),
            attack("gender", "mlp", 0.60, 0.5),
            attack("colour", "linear", 0.25, 0.25),
            attack("colour", "mlp", 0.20, 0.25),
        ],
        0.05,
    )
    worse = made_up_set(
        "published:worse",
        "published",
        0.70,
        [
            attack("gender", "linear", 0.85, 0.5),
            attack("gender", "mlp", 0.70, 0.5),
            attack("colour", "linear", 0.40, 0.25),
            attack("colour", "mlp", 0.40, 0.25),
        ],
        0.30,
    )
    store = {
        "url": "mem://store",
        "encoder_id": "enc",
        "counts": {"videos": 10, "motion_clips": 30, "static_clips": 0, "errors": 0},
    }
    tasks = {
        t: ProbeOutcome(status="ok") for t in ("action", "temporal", "anomaly", "leakage", "reid", "bias")
    }
    return ProbeRecord(
        schema_version=SCHEMA_VERSION,
        created_at="2026-01-01T00:00:00+00:00",
        config={"seed": 0},
        store=store,
        tasks=tasks,
        sets=[raw, good, worse],
        timings_s={"total": 1.0},
    )


def test_removed_fraction_matches_the_probe_package() -> None:
    for raw, anon, chance in [(0.8, 0.5, 0.5), (0.9, 0.6, 0.5), (0.55, 0.6, 0.25), (0.7, 0.7, 0.2)]:
        assert removed_fraction(raw, anon, chance) == pytest.approx(leakage_removed(raw, anon, chance))
    assert math.isnan(leakage_removed(0.5, 0.4, 0.5)) and removed_fraction(0.5, 0.4, 0.5) is None
    assert removed_fraction(None, 0.4, 0.5) is None


def test_comparison_worked_by_hand() -> None:
    record = made_up_record()
    report = compare(record)
    # priv: mean over attributes of the worst attacker's (cmap − chance) / (1 − chance), clipped at 0
    raw_priv = ((0.90 - 0.5) / 0.5 + (0.55 - 0.25) / 0.75) / 2  # (0.8 + 0.4) / 2
    good_priv = ((0.60 - 0.5) / 0.5 + 0.0) / 2  # colour at or below chance counts 0
    assert priv(record.set("raw")) == pytest.approx(raw_priv)
    assert priv(record.set("published:good")) == pytest.approx(good_priv)
    assert combined(record.set("published:good")) == pytest.approx((0.88 + 1 - good_priv) / 2)
    assert priv(record.set("raw"), "static") is None

    rows = {(r["attribute"], r["attacker"]): r for r in report["leakage"]}
    assert list(rows) == [("gender", "linear"), ("gender", "mlp"), ("colour", "linear"), ("colour", "mlp")]
    assert rows["gender", "linear"]["removed"]["published:good"] == pytest.approx(1.0)
    assert rows["gender", "mlp"]["removed"]["published:good"] == pytest.approx(0.75)
    assert rows["colour", "mlp"]["removed"]["published:good"] == pytest.approx(4 / 3)  # below chance
    assert rows["gender", "linear"]["removed"]["published:worse"] == pytest.approx(-1 / 6)
    worst = {w["attribute"]: w for w in report["leakage_worst"]}
    assert worst["gender"]["removed_worst"]["published:good"] == pytest.approx(0.75)
    # strongest attacker before (mlp 0.90) against strongest after (linear 0.85)
    assert worst["gender"]["removed_worst"]["published:worse"] == pytest.approx(0.125)
    assert worst["gender"]["removed_min"]["published:worse"] == pytest.approx(-1 / 6)
    assert worst["colour"]["worst_leakage"]["raw"] == pytest.approx(0.4)
    assert not worst["gender"]["near_chance"]

    metric = {m["key"]: m for m in report["metrics"]}
    assert metric["action_top1"]["deltas"]["published:worse"] == pytest.approx(-0.20)
    assert metric["action_top1"]["chance"] == 0.125
    assert metric["action_topk"]["label"] == "action top-5"
    assert metric["bias_delta"]["values"] == {"raw": 0.2, "published:good": 0.05, "published:worse": 0.3}
    assert metric["temporal_map"]["values"]["raw"] is None
    assert {(s["set"], s["probe"]) for s in report["skipped"]} >= {("raw", "temporal")}


def test_several_sets_written_side_by_side(tmp_path: Path) -> None:
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    (probe_dir / "probe.json").write_text(json.dumps(made_up_record().model_dump(mode="json")))
    result = make_report(probe_dir, tmp_path / "report")
    for name in (REPORT_JSON, REPORT_MD, TRADEOFF_PNG, LEAKAGE_PNG):
        assert (tmp_path / "report" / name).is_file()
    for png in (TRADEOFF_PNG, LEAKAGE_PNG):
        assert (tmp_path / "report" / png).read_bytes().startswith(PNG)
    md = (tmp_path / "report" / REPORT_MD).read_text()
    assert "`published:good` removed" in md and "`published:worse` removed" in md
    assert "| gender | mlp | 0.500 | 0.900 | 0.600 | 0.700 |" in md
    assert "75.0% | 50.0% |" in md  # gender/mlp removed: good (0.9 → 0.6), worse (0.9 → 0.7)
    saved = json.loads((tmp_path / "report" / REPORT_JSON).read_text())
    assert saved == json.loads(json.dumps(result.report))
    assert [s["name"] for s in saved["sets"]] == ["raw", "published:good", "published:worse"]


def _md_table(md: str, first_header: str) -> list[list[str]]:
    """Rows (cells) of the first Markdown table whose header starts with `first_header`."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_report_md_numbers_match_probe_json(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    probe_dir = planted_probe_dir(tmp_path_factory)
    record = load_record(probe_dir)
    make_report(probe_dir, tmp_path)
    md = (tmp_path / REPORT_MD).read_text()
    raw, clean = record.set("raw"), record.set("published:clean")

    summary = {r[0]: r for r in _md_table(md, "metric")}
    action = summary["action top-1"]
    assert action[1:] == [
        fmt(_m(raw, "action", "chance_top1")),
        _with_ci(raw, "action", "top1"),
        _with_ci(clean, "action", "top1"),
        fmt(_m(clean, "action", "top1") - _m(raw, "action", "top1"), signed=True),
    ]
    # every utility and re-ID figure with its interval over people
    assert summary["temporal detection mAP@tIoU 0.3:0.7"][2] == _with_ci(raw, "temporal", "map")
    assert summary["anomaly frame-level AUC"][3] == _with_ci(clean, "anomaly", "auc")
    assert summary["re-ID top-1 (↓)"][1:4] == [
        fmt(_m(raw, "reid", "chance_top1")),
        _with_ci(raw, "reid", "top1"),
        _with_ci(clean, "reid", "top1"),
    ]
    assert (
        "[" in summary["temporal detection mAP@tIoU 0.3:0.7"][2]
        and "[" in summary["anomaly frame-level AUC"][2]
    )
    assert summary["bias gap Δ (best − worst group) (↓)"][2] == fmt(_m(raw, "bias", "delta"))

    motion = _md_table(md, "attribute")  # the first: motion clips
    raw_attacks = _attacks(raw)
    clean_attacks = {(a["attribute"], a["attacker"]): a for a in _attacks(clean)}
    assert len(motion) == len(raw_attacks)
    for row, a in zip(motion, raw_attacks, strict=True):
        b = clean_attacks[a["attribute"], a["attacker"]]
        removed = (a["cmap"] - b["cmap"]) / (a["cmap"] - a["chance"])
        assert row == [
            a["attribute"],
            a["attacker"],
            fmt(a["chance"]),
            f"{fmt(a['cmap'])} [{fmt(a['cmap_low'])}, {fmt(a['cmap_high'])}]",
            f"{fmt(b['cmap'])} [{fmt(b['cmap_low'])}, {fmt(b['cmap_high'])}]",
            fmt(a["macro_f1"]),
            fmt(b["macro_f1"]),
            pct(removed),
        ]
        assert removed > 0.5  # the clean set is at chance
    assert "## Attribute leakage: static clips" in md
    assert "`published:clean` · leakage_static: published shards hold no static clips" in md


def _attacks(s: SetRecord) -> list[dict[str, Any]]:
    metrics = s.probes["leakage_motion"].metrics
    assert metrics is not None
    return list(metrics["attacks"])


def _with_ci(s: SetRecord, probe: str, field: str) -> str:
    """A summary cell: the figure and, when probe.json has one, its [low, high] interval."""
    metrics = s.probes[probe].metrics
    assert metrics is not None
    low, high = metrics.get(f"{field}_low"), metrics.get(f"{field}_high")
    interval = "" if low is None or high is None else f" [{fmt(low)}, {fmt(high)}]"
    return fmt(_m(s, probe, field)) + interval


def _m(s: SetRecord, probe: str, field: str) -> float:
    metrics = s.probes[probe].metrics
    assert metrics is not None
    return float(metrics[field])


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such folder"):
        make_report(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "probe").mkdir()
    with pytest.raises(ConfigError, match=r"no probe\.json"):
        make_report(tmp_path / "probe", tmp_path / "out")
    record = made_up_record().model_dump(mode="json") | {"schema_version": SCHEMA_VERSION + 1}
    (tmp_path / "probe" / "probe.json").write_text(json.dumps(record))
    with pytest.raises(SchemaVersionError, match="newer"):
        make_report(tmp_path / "probe", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_near_chance_raw_leakage_is_flagged(tmp_path: Path) -> None:
    """Raw barely above chance: the removed fraction is huge noise (here −400%) and is marked †."""
    raw = made_up_set("raw", "raw", 0.9, [attack("hat", "linear", 0.51, 0.5)], 0.1)
    anon = made_up_set("published:a", "published", 0.9, [attack("hat", "linear", 0.55, 0.5)], 0.1)
    record = made_up_record().model_copy(update={"sets": [raw, anon]})
    report = compare(record)
    assert report["leakage"][0]["near_chance"] and report["leakage_worst"][0]["near_chance"]
    assert report["leakage"][0]["removed"]["published:a"] == pytest.approx(-4.0)
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    (probe_dir / "probe.json").write_text(json.dumps(record.model_dump(mode="json")))
    make_report(probe_dir, tmp_path / "report")
    md = (tmp_path / "report" / REPORT_MD).read_text()
    assert "| hat | linear | 0.500 | 0.510 | 0.550 | 0.460 | 0.500 | -400.0% † |" in md
    assert "†: raw leakage under 0.05" in md


def test_report_says_which_reid_protocol_and_attacker() -> None:
    from flows.report import _reid_lines

    lines = _reid_lines(
        {
            "raw": {
                "protocol": "cross-split",
                "attacker": "lda",
                "skipped_attackers": {},
                "top1": 0.25,
                "top1_interval": [0.125, 0.5],
            },
            "published:x": {
                "protocol": "within-split",
                "attacker": "cosine",
                "skipped_attackers": {"lda": "no training videos of people other than the queried ones"},
            },
        }
    )
    assert "* `raw`: top-1 0.250 [0.125, 0.500], cross-split protocol, won by `lda`" in lines
    assert any(
        line.startswith("* `published:x`: top-1 —, within-split") and "`lda` not run: no training" in line
        for line in lines
    )
    assert _reid_lines({}) == []


def test_report_names_the_winning_attacker_and_intervals() -> None:
    """The probe's worst-over-the-panel entry: the worst-case cell says which attacker won, with the
    95% interval; per-attacker cMAP cells carry theirs."""
    from flows.report import markdown

    linear = attack("hat", "linear", 0.70, 0.5) | {"cmap_low": 0.6, "cmap_high": 0.8}
    knn = attack("hat", "knn_cosine", 0.90, 0.5) | {"cmap_low": 0.85, "cmap_high": 0.95}
    raw = made_up_set("raw", "raw", 0.9, [linear, knn], 0.1)
    worst = {
        "attribute": "hat",
        "attacker": "knn_cosine",
        "leakage": 0.8,
        "leakage_low": 0.7,
        "leakage_high": 0.9,
    }
    metrics = dict(raw.probes["leakage_motion"].metrics or {}) | {"worst": [worst]}
    probes = raw.probes | {"leakage_motion": ProbeOutcome(status="ok", seconds=0.1, metrics=metrics)}
    raw = raw.model_copy(update={"probes": probes})
    anon = made_up_set("published:a", "published", 0.9, [attack("hat", "linear", 0.55, 0.5)], 0.1)
    report = compare(made_up_record().model_copy(update={"sets": [raw, anon]}))
    (w,) = report["leakage_worst"]
    assert w["winner"] == {"raw": "knn_cosine", "published:a": None}
    assert w["leakage_interval"]["raw"] == [0.7, 0.9] and w["leakage_interval"]["published:a"] is None
    md = markdown(report)
    assert "0.800 [0.700, 0.900] (knn_cosine)" in md
    assert "0.900 [0.850, 0.950]" in md and "0.700 [0.600, 0.800]" in md
