"""`report`: the probe results of raw and anonymized embeddings side by side.

Reads PROBE_DIR/probe.json (`flows.probe`) and writes REPORT_DIR/report.json, report.md (Markdown
tables) and two PNG charts: the privacy–utility trade-off (x = priv, y = action top-1, one point per
embedding set) and the per-attribute worst-attacker leakage. Every embedding set is compared with the
raw one. Definitions (also written into report.json): `DEFINITIONS`; reading guide: docs/probes.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flows.probe import PROBES, ProbeRecord, SetRecord, load_record
from flows.report_charts import VIEWS, plot_leakage, plot_tradeoff
from pipeline.errors import ConfigError

KIND = "aam-pipeline/report"
SCHEMA_VERSION = 1
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
TRADEOFF_PNG = "tradeoff.png"
LEAKAGE_PNG = "leakage.png"
BASELINE = "raw"
NEAR_CHANCE = 0.05  # raw leakage (normalised) under this: the removed fraction is mostly noise

DEFINITIONS = {
    "cmap": "mean one-vs-rest average precision of an attacker over the classes of an attribute, scored "
    "on held-out (test-split) videos; chance = its exact expectation under a random ranking of those "
    "videos (a little above the mean positive rate 1 / classes on small test sets)",
    "leakage": "(cMAP − chance) / (1 − chance) for one attacker on one attribute: 0 = chance, 1 = perfect",
    "removed": "(raw cMAP − anonymized cMAP) / (raw cMAP − chance) per attribute, attacker and view: "
    "1 = down to chance, 0 = unchanged, < 0 = more leakage; n/a when raw is not above chance",
    "removed_worst": "the worst case over attackers: the strongest attacker on raw against the strongest "
    "on the anonymized set, (max raw cMAP − max anon cMAP) / (max raw cMAP − chance), maxima over "
    "attackers",
    "removed_min": "(report.json only) the smallest per-attacker `removed` of an attribute",
    "near_chance": f"† marks raw leakage under {NEAR_CHANCE} (cMAP within {NEAR_CHANCE:.0%} of the way "
    "from chance to perfect): there is little to remove and the fraction is mostly noise",
    "priv": "mean over attributes of the worst-attacker leakage max(0, max over attackers of leakage) "
    "on motion-clip embeddings (what is published): 0 = every attribute at chance, 1 = all perfect",
    "combined": "(action top-1 + (1 − priv)) / 2: higher is better; 1 = perfect actions, nothing leaked",
}

# (key, label, probe, metric field, chance field or None, lower is better)
METRICS: tuple[tuple[str, str, str, str, str | None, bool], ...] = (
    ("action_top1", "action top-1", "action", "top1", "chance_top1", False),
    ("action_topk", "action top-k", "action", "top_k", None, False),
    ("temporal_map", "temporal detection mAP@tIoU 0.3:0.7", "temporal", "map", None, False),
    ("anomaly_auc", "anomaly frame-level AUC", "anomaly", "auc", "chance", False),
    ("reid_top1", "re-ID top-1", "reid", "top1", "chance_top1", True),
    ("reid_map", "re-ID mAP", "reid", "map", "chance_map", True),
    ("bias_accuracy", "bias split: balanced top-1", "bias", "accuracy", None, False),
    ("bias_delta", "bias gap Δ (best − worst group)", "bias", "delta", None, True),
)


@dataclass(frozen=True)
class ReportResult:
    out: Path
    files: list[Path]
    report: dict[str, Any]


# --- comparing -----------------------------------------------------------------------------------------


def _metric(s: SetRecord, probe: str, field: str) -> float | None:
    outcome = s.probes.get(probe)
    if outcome is None or outcome.metrics is None:
        return None
    value = outcome.metrics.get(field)
    return float(value) if isinstance(value, int | float) else None


def _metrics_of(s: SetRecord, probe: str) -> Mapping[str, Any] | None:
    outcome = s.probes.get(probe)
    return None if outcome is None else outcome.metrics


def _attacks(s: SetRecord, view: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(attribute, attacker) -> attack result of one view ("motion" or "static")."""
    outcome = s.probes.get(f"leakage_{view}")
    if outcome is None or outcome.metrics is None:
        return {}
    return {(a["attribute"], a["attacker"]): a for a in outcome.metrics["attacks"]}


def removed_fraction(raw: float | None, anon: float | None, chance: float | None) -> float | None:
    """(raw − anon) / (raw − chance); None when an input is missing or raw is not above chance.

    The formula of `pipeline.probes.leakage.leakage_removed` (a test checks they agree), restated here
    so that `report` does not import torch, which that module needs for its attackers.
    """
    if raw is None or anon is None or chance is None or not raw > chance:
        return None
    return (raw - anon) / (raw - chance)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def priv(s: SetRecord, view: str = "motion") -> float | None:
    """Mean over attributes of the worst-attacker leakage, clipped at 0 (see `DEFINITIONS`)."""
    worst: dict[str, float] = {}
    for (attribute, _), a in _attacks(s, view).items():
        worst[attribute] = max(worst.get(attribute, 0.0), max(0.0, float(a["leakage"])))
    return sum(worst.values()) / len(worst) if worst else None


def combined(s: SetRecord) -> float | None:
    accuracy, p = _metric(s, "action", "top1"), priv(s)
    return None if accuracy is None or p is None else (accuracy + (1.0 - p)) / 2.0


def _leakage_rows(sets: list[SetRecord], raw: SetRecord) -> tuple[list[dict], list[dict]]:
    """Per (view, attribute, attacker) and per (view, attribute) worst case over attackers."""
    rows, worst_rows = [], []
    for view in VIEWS:
        per_set = {s.name: _attacks(s, view) for s in sets}
        keys = sorted({k for attacks in per_set.values() for k in attacks}, key=_attack_order(raw, view))
        by_attribute: dict[str, list[dict]] = {}
        for attribute, attacker in keys:
            found = {name: attacks.get((attribute, attacker)) for name, attacks in per_set.items()}
            reference = found.get(raw.name) or next(a for a in found.values() if a is not None)
            chance = float(reference["chance"])
            raw_attack = found.get(raw.name)
            raw_cmap = None if raw_attack is None else float(raw_attack["cmap"])
            row = {
                "view": view,
                "attribute": attribute,
                "attacker": attacker,
                "chance": chance,
                "cmap": {n: (a["cmap"] if a else None) for n, a in found.items()},
                "cmap_interval": {n: _interval(a, "cmap") for n, a in found.items()},
                "macro_f1": {n: (a["macro_f1"] if a else None) for n, a in found.items()},
                "leakage": {n: (a["leakage"] if a else None) for n, a in found.items()},
                "delta": {n: _minus(a["cmap"] if a else None, raw_cmap) for n, a in found.items()},
                "removed": {
                    n: removed_fraction(raw_cmap, a["cmap"] if a else None, chance) for n, a in found.items()
                },
                "near_chance": raw_attack is not None and raw_attack["leakage"] < NEAR_CHANCE,
            }
            rows.append(row)
            by_attribute.setdefault(attribute, []).append(row)
        panel = {s.name: _panel_worst(s, view) for s in sets}
        for attribute, group in by_attribute.items():
            w = _worst(view, attribute, group, [s.name for s in sets], raw.name)
            found_worst = {n: p.get(attribute) for n, p in panel.items()}
            w["winner"] = {n: (f["attacker"] if f else None) for n, f in found_worst.items()}
            w["leakage_interval"] = {n: _interval(f, "leakage") for n, f in found_worst.items()}
            worst_rows.append(w)
    return rows, worst_rows


def _interval(figure: Mapping[str, Any] | None, key: str) -> list[float] | None:
    """[low, high] of ``figure``'s 95% interval of ``key`` (probe.json ``KEY_low``/``KEY_high``), or None."""
    if not figure or figure.get(f"{key}_low") is None or figure.get(f"{key}_high") is None:
        return None
    return [float(figure[f"{key}_low"]), float(figure[f"{key}_high"])]


def _panel_worst(s: SetRecord, view: str) -> dict[str, dict[str, Any]]:
    """attribute -> the probe's worst-over-the-panel entry (attacker that won, leakage and interval)."""
    outcome = s.probes.get(f"leakage_{view}")
    if outcome is None or outcome.metrics is None:
        return {}
    return {w["attribute"]: w for w in outcome.metrics.get("worst") or []}


def _attack_order(raw: SetRecord, view: str) -> Callable[[tuple[str, str]], tuple[int, int, str, str]]:
    """Attributes in the probe's order, attackers in the config's order, whatever set has them."""
    keys = list(_attacks(raw, view))
    attributes = list(dict.fromkeys(a for a, _ in keys))
    attackers = list(dict.fromkeys(b for _, b in keys))

    def order(key: tuple[str, str]) -> tuple[int, int, str, str]:
        a, b = key
        ia = attributes.index(a) if a in attributes else len(attributes)
        ib = attackers.index(b) if b in attackers else len(attackers)
        return ia, ib, a, b

    return order


def _worst(view: str, attribute: str, group: list[dict], names: list[str], raw: str) -> dict[str, Any]:
    def strongest(name: str, key: str) -> float | None:
        values = [r[key][name] for r in group if r[key][name] is not None]
        return max(values) if values else None

    def smallest_removed(name: str) -> float | None:
        values = [r["removed"][name] for r in group if r["removed"][name] is not None]
        return min(values) if values else None

    chance = group[0]["chance"]
    raw_cmap, raw_leakage = strongest(raw, "cmap"), strongest(raw, "leakage")
    return {
        "view": view,
        "attribute": attribute,
        "chance": chance,
        "worst_cmap": {n: strongest(n, "cmap") for n in names},
        "worst_leakage": {n: strongest(n, "leakage") for n in names},
        "removed_worst": {n: removed_fraction(raw_cmap, strongest(n, "cmap"), chance) for n in names},
        "removed_min": {n: smallest_removed(n) for n in names},
        "near_chance": raw_leakage is not None and raw_leakage < NEAR_CHANCE,
    }


def compare(record: ProbeRecord, probe_path: str = "") -> dict[str, Any]:
    """The report: every set against the raw one (see `DEFINITIONS`); plain JSON."""
    sets = record.sets
    raw = next((s for s in sets if s.kind == "raw"), sets[0])
    metrics = []
    for key, label, probe, field, chance_field, lower in METRICS:
        values = {s.name: _metric(s, probe, field) for s in sets}
        chance = _metric(raw, probe, chance_field) if chance_field else None
        k = _metric(raw, "action", "k") if key == "action_topk" else None
        metrics.append(
            {
                "key": key,
                "label": label.replace("top-k", f"top-{int(k)}") if k else label,
                "chance": chance,
                "lower_is_better": lower,
                "values": values,
                "intervals": {s.name: _interval(_metrics_of(s, probe), field) for s in sets},
                "deltas": {n: _minus(v, values[raw.name]) for n, v in values.items()},
            }
        )
    leakage, worst = _leakage_rows(sets, raw)
    return {
        "kind": KIND,
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "probe": {
            "path": probe_path,
            "created_at": record.created_at,
            "schema_version": record.schema_version,
            "config": record.config,
            "store": record.store,
            "timings_s": record.timings_s,
        },
        "definitions": DEFINITIONS,
        "baseline": raw.name,
        "sets": [
            {
                "name": s.name,
                "kind": s.kind,
                "source": s.source,
                "counts": s.counts,
                "action_top1": _metric(s, "action", "top1"),
                "priv": priv(s),
                "priv_static": priv(s, "static"),
                "combined": combined(s),
            }
            for s in sets
        ],
        "metrics": metrics,
        "leakage": leakage,
        "leakage_worst": worst,
        "reid": {
            s.name: {
                "protocol": m.get("protocol", "within-split"),
                "attacker": m.get("attacker"),
                "skipped_attackers": m.get("skipped_attackers") or {},
                "top1": m.get("top1"),
                "top1_interval": [m.get("top1_low"), m.get("top1_high")],
                "chance_top1": m.get("chance_top1"),
            }
            for s in sets
            if (m := s.probes["reid"].metrics) is not None
        },
        "bias_groups": {
            s.name: s.probes["bias"].metrics["per_group"]
            for s in sets
            if s.probes["bias"].metrics is not None
        },
        "skipped": [
            {"set": s.name, "probe": p, "reason": s.probes[p].reason}
            for s in sets
            for p in PROBES
            if s.probes[p].status == "skipped"
        ],
    }


# --- Markdown ------------------------------------------------------------------------------------------


def fmt(value: float | None, signed: bool = False) -> str:
    """A metric as report.md shows it: 3 decimals (signed for deltas), "—" when absent."""
    if value is None:
        return "—"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def pct(value: float | None) -> str:
    """A removed fraction as report.md shows it: a percentage with one decimal, "n/a" when undefined."""
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "|".join("---" for _ in header) + "|", *[line(r) for r in rows]]


def markdown(report: dict[str, Any]) -> str:
    """report.md: summary, leakage removed per attribute and attacker, worst cases, bias, skips."""
    names = [s["name"] for s in report["sets"]]
    raw = report["baseline"]
    others = [n for n in names if n != raw]
    store = report["probe"]["store"]
    counts = store["counts"]
    lines = [
        "# Probe report",
        "",
        f"Store `{store['url']}` · encoder `{store['encoder_id']}` · {counts['videos']} videos, "
        f"{counts['motion_clips']} motion + {counts['static_clips']} static clips · "
        f"seed {report['probe']['config']['seed']} · probed {report['probe']['created_at']}.",
        "",
        "Embedding sets:",
        "",
    ]
    for s in report["sets"]:
        c = s["counts"]
        lines.append(
            f"* `{s['name']}` ({s['kind']}): {c['videos']} videos, {c['motion_clips']} motion and "
            f"{c['static_clips']} static clips" + _coverage_note(s, counts)
        )
    lines += ["", "## Summary", ""]
    header = ["metric", "chance", *[f"`{n}`" for n in names], *[f"Δ `{n}`" for n in others]]
    rows = []
    for m in report["metrics"]:
        arrow = " (↓)" if m["lower_is_better"] else ""
        rows.append(
            [
                m["label"] + arrow,
                fmt(m["chance"]),
                *[fmt(m["values"][n]) + _fmt_interval((m.get("intervals") or {}).get(n)) for n in names],
                *[fmt(m["deltas"][n], signed=True) for n in others],
            ]
        )
    by_name = {s["name"]: s for s in report["sets"]}
    for key, label in (
        ("priv", "priv, motion clips (↓)"),
        ("priv_static", "priv, static clips (↓)"),
        ("combined", "combined score"),
    ):
        values = [by_name[n][key] for n in names]
        deltas = [_minus(by_name[n][key], by_name[raw][key]) for n in others]
        rows.append([label, "—", *[fmt(v) for v in values], *[fmt(d, signed=True) for d in deltas]])
    lines += _table(header, rows)
    lines += ["", "↓: lower is better (privacy). Δ = set − raw. [low, high]: 95% interval over people.", ""]
    lines += _reid_lines(report.get("reid") or {})
    lines += _leakage_sections(report, names, others)
    lines += _bias_section(report, names)
    if report["skipped"]:
        lines += ["## Skipped probes", ""]
        lines += [f"* `{s['set']}` · {s['probe']}: {s['reason']}" for s in report["skipped"]]
        lines.append("")
    lines += [
        "## Charts",
        "",
        f"![privacy–utility trade-off]({TRADEOFF_PNG})",
        "",
        f"![worst-attacker leakage per attribute]({LEAKAGE_PNG})",
        "",
        "## Definitions",
        "",
    ]
    lines += [f"* **{k}**: {v}" for k, v in report["definitions"].items()]
    return "\n".join(lines) + "\n"


def _reid_lines(reid: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """How re-ID was measured per set: the protocol, the winning attacker, any attacker that did not run."""
    if not reid:
        return []
    lines = []
    for name, r in reid.items():
        skipped = "".join(f"; `{k}` not run: {why}" for k, why in r["skipped_attackers"].items())
        low, high = r.get("top1_interval") or (None, None)
        figure = f"top-1 {fmt(r.get('top1'))}" + (f" [{fmt(low)}, {fmt(high)}]" if low is not None else "")
        lines.append(f"* `{name}`: {figure}, {r['protocol']} protocol, won by `{r['attacker']}`{skipped}")
    how = (
        "within-split: the queried split's videos among themselves; cross-split: each test video against "
        "every other video of a different action, from any split (the test people are not in train)."
    )
    how += " [low, high]: 95% interval over the queried people."
    return ["Re-identification:", "", *lines, "", how, ""]


def _coverage_note(s: Mapping[str, Any], store_counts: Mapping[str, int]) -> str:
    c = s["counts"]
    if s["kind"] != "published":
        return "."
    note = f"; adapter variant `{s['source'].get('adapter_variant')}`"
    if c["motion_clips"] < store_counts["motion_clips"]:
        note += (
            f"; covers {c['motion_clips']} of the store's {store_counts['motion_clips']} clips, so its "
            "numbers are over fewer videos than raw's"
        )
    return note + "."


def _fmt_interval(bounds: list[float] | None) -> str:
    return "" if not bounds else f" [{fmt(bounds[0])}, {fmt(bounds[1])}]"


def _worst_cell(w: Mapping[str, Any], name: str) -> str:
    """Worst leakage of one set, its interval and the attacker that won (when the probe named one)."""
    cell = fmt(w["worst_leakage"][name]) + _fmt_interval((w.get("leakage_interval") or {}).get(name))
    winner = (w.get("winner") or {}).get(name)
    return cell + (f" ({winner})" if winner else "")


def _leakage_sections(report: dict[str, Any], all_names: list[str], all_others: list[str]) -> list[str]:
    lines: list[str] = []
    titles = {"motion": "motion clips (what is published)", "static": "static clips (the paper's protocol)"}
    for view in VIEWS:
        rows = [r for r in report["leakage"] if r["view"] == view]
        if not rows:
            continue
        # Sets without this view (published shards hold no static clips) get no columns here.
        names = [n for n in all_names if any(r["cmap"][n] is not None for r in rows)]
        others = [n for n in all_others if n in names]
        lines += [f"## Attribute leakage: {titles[view]}", ""]
        header = ["attribute", "attacker", "chance", *[f"`{n}` cMAP" for n in names]]
        header += [f"`{n}` F1" for n in names] + [f"`{n}` removed" for n in others]
        table = [
            [
                r["attribute"],
                r["attacker"],
                fmt(r["chance"]),
                *[fmt(r["cmap"][n]) + _fmt_interval((r.get("cmap_interval") or {}).get(n)) for n in names],
                *[fmt(r["macro_f1"][n]) for n in names],
                *[pct(r["removed"][n]) + (" †" if r["near_chance"] else "") for n in others],
            ]
            for r in rows
        ]
        lines += _table(header, table)
        worst = [w for w in report["leakage_worst"] if w["view"] == view]
        header = ["attribute", "chance", *[f"`{n}` worst leakage" for n in names]]
        header += [f"`{n}` removed (worst case)" for n in others]
        table = [
            [
                w["attribute"],
                fmt(w["chance"]),
                *[_worst_cell(w, n) for n in names],
                *[pct(w["removed_worst"][n]) + (" †" if w["near_chance"] else "") for n in others],
            ]
            for w in worst
        ]
        caption = (
            "Worst case over attackers: the strongest attacker before against the strongest after; "
            "[95% interval over people, worst over the panel resample by resample] and the attacker that won."
        )
        lines += ["", caption, "", *_table(header, table), ""]
        if any(r["near_chance"] for r in rows):
            lines += [
                f"†: raw leakage under {NEAR_CHANCE}; little to remove, the fraction is mostly noise.",
                "",
            ]
    return lines


def _bias_section(report: dict[str, Any], names: list[str]) -> list[str]:
    groups_by_set = report["bias_groups"]
    if not groups_by_set:
        return []
    groups = sorted({g for per in groups_by_set.values() for g in per})
    header = ["group", *[f"`{n}`" for n in names]]
    rows = [[g, *[fmt(groups_by_set.get(n, {}).get(g)) for n in names]] for g in groups]
    return ["## Bias: top-1 per group on the balanced split", "", *_table(header, rows), ""]


# --- the flow ------------------------------------------------------------------------------------------


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def make_report(probe_dir: str | Path, out: str | Path) -> ReportResult:
    """Compare every embedding set of PROBE_DIR/probe.json with the raw one; write report.md, the two
    charts, and report.json last."""
    probe_dir, out = Path(probe_dir), Path(out)
    if not probe_dir.is_dir():
        raise ConfigError(f"{probe_dir}: no such folder; pass the --out of `aam-pipeline probe`")
    record = load_record(probe_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder for the report")
    out.mkdir(parents=True, exist_ok=True)
    report = compare(record, str(probe_dir))
    report["files"] = [REPORT_MD, TRADEOFF_PNG, LEAKAGE_PNG]
    _write_text(out / REPORT_MD, markdown(report))
    plot_tradeoff(report, out / TRADEOFF_PNG)
    plot_leakage(report, out / LEAKAGE_PNG)
    _write_text(out / REPORT_JSON, json.dumps(report, indent=1, allow_nan=False) + "\n")
    files = [out / REPORT_JSON, out / REPORT_MD, out / TRADEOFF_PNG, out / LEAKAGE_PNG]
    return ReportResult(out, files, report)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A compact plain-text table of the summary metrics (rows) by embedding set (columns)."""
    names = [s["name"] for s in report["sets"]]
    by_name = {s["name"]: s for s in report["sets"]}
    rows = [["metric", "chance", *names]]
    for m in report["metrics"]:
        rows.append([m["label"], fmt(m["chance"]), *[fmt(m["values"][n]) for n in names]])
    for view in VIEWS:
        for w in (w for w in report["leakage_worst"] if w["view"] == view):
            label = f"leakage {view} {w['attribute']} (worst cMAP)"
            rows.append([label, fmt(w["chance"]), *[fmt(w["worst_cmap"][n]) for n in names]])
    rows.append(["priv (motion)", "—", *[fmt(by_name[n]["priv"]) for n in names]])
    rows.append(["combined score", "—", *[fmt(by_name[n]["combined"]) for n in names]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
