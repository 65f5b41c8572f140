"""The dataset card (`README.md`, Hugging Face dataset-card form) of a published partition, rendered from
its `_manifest.json` alone, so the card and the manifest never disagree; rewritten by every commit."""

from __future__ import annotations

import json
from typing import Any

from stores._published_types import INDEX_DIR, MANIFEST, ZARR_DIR, PartitionManifest

CARD = "README.md"
# The numbers of one attacker's result, in the order the card shows them (others follow by name).
COLUMNS = ("cmap", "chance", "leakage", "leakage_ci95", "raw_cmap", "raw_leakage", "removed", "removed_ci95")


def render_card(m: PartitionManifest) -> str:
    """The card's Markdown: front matter, what the embeddings are, how to read them, what they leak."""
    lines = [*_front_matter(m), f"# {m.dataset}: anonymized clip embeddings", ""]
    lines += _what(m) + _how_to_read(m) + _sensitive(m) + _history(m)
    return "\n".join(lines).rstrip() + "\n"


def _front_matter(m: PartitionManifest) -> list[str]:
    return [
        "---",
        f"pretty_name: {json.dumps(f'{m.dataset} anonymized clip embeddings')}",
        "tags:",
        "  - video",
        "  - embeddings",
        "  - privacy",
        "  - aam-pipeline",
        "configs:",
        "  - config_name: default",
        '    data_files: "part-*.parquet"',
        "---",
        "",
    ]


def _what(m: PartitionManifest) -> list[str]:
    ids = (
        "the owner's own video ids"
        if m.id_scheme == "original"
        else "keyed pseudonyms (HMAC-SHA256 under a key the publisher keeps with the private store; "
        f"key {m.id_scheme.removeprefix('pseudonym:')}): stable across republishes and appends, so you "
        "can join and dedupe on them, and meaningless without the key"
    )
    return [
        "## Dataset description",
        "",
        f"One row per motion clip of a video: the clip's embedding by the frozen video encoder "
        f"`{m.encoder_id}`, passed through an anonymizing adapter (AAM) that removes what identifies "
        "the people in the video while keeping what tasks need.",
        "",
        "| | |",
        "|---|---|",
        f"| encoder | `{m.encoder_id}` (weights sha256 `{m.encoder_sha256}`) |",
        f"| preprocessing | `{m.extra_metadata.get('preprocessing', 'not recorded')}`, pooling "
        f"`{m.extra_metadata.get('pooling', 'not recorded')}` |",
        f"| adapter | `{m.adapter_partition}` ({m.adapter_variant}, "
        f"{m.extra_metadata.get('adapter_objective', '?')} objective; sha256 `{m.adapter_sha256}`) |",
        f"| rows, videos, files | {m.counts['rows']}, {m.counts['videos']}, {m.counts['files']} |",
        f"| embedding | `emb`: {m.dim} x {m.dtype}, normalisation `{m.normalisation}` |",
        f"| `video_id` | {ids} |",
        f"| published | {m.created_at}; updated {m.updated_at} |",
        "",
        "Never in this dataset: private attributes (skin tone, gender, ...), raw (pre-adapter) or "
        "static-clip embeddings, source file locations"
        + (", the owner's video ids." if m.id_scheme != "original" else "."),
        "",
    ]


def _how_to_read(m: PartitionManifest) -> list[str]:
    d = m.dim
    extras = []
    if m.faiss_index is not None:
        extras.append(
            f"* faiss: `{INDEX_DIR}/` holds a cosine {m.faiss_index.kind} index and its row -> clip_id map."
        )
    if m.zarr_copy is not None:
        extras.append(
            f"* Zarr: `{ZARR_DIR}/` holds `emb` [{m.counts['rows']}, {d}] and clips.parquet, same order."
        )
    return [
        "## How to read it",
        "",
        "From the folder that holds `dataset=...` (the publisher's `--out`), read only the data files:",
        "",
        "```python",
        "import duckdb",
        f'duckdb.sql("SELECT clip_id, video_id, emb::FLOAT[{d}] AS emb FROM read_parquet('
        f"'dataset=*/encoder=*/adapter=*/part-*.parquet', hive_partitioning = true) LIMIT 5\")",
        "",
        "import polars as pl",
        "df = pl.read_parquet('dataset=*/encoder=*/adapter=*/part-*.parquet', hive_partitioning=True)",
        f"# df['emb'] is Array(Float32, {d})",
        "",
        "import pyarrow.dataset as ds  # skip manifests, side outputs and these cards",
        "table = ds.dataset('.', format='parquet', partitioning='hive', "
        "ignore_prefixes=['.', '_', 'README']).to_table()",
        f"emb = table['emb'].combine_chunks().flatten().to_numpy().reshape(-1, {d})",
        "clips = table.drop_columns(['emb']).to_pandas()  # pandas: one row per clip, emb as numpy",
        "",
        "import faiss, numpy as np",
        "x = np.ascontiguousarray(emb, dtype=np.float32)",
        "faiss.normalize_L2(x)  # cosine = inner product of unit vectors",
        f"index = faiss.IndexFlatIP({d})",
        "index.add(x)",
        "```",
        "",
        f"DuckDB reads `emb` as `FLOAT[]`: cast it with `emb::FLOAT[{d}]` before "
        "`array_cosine_similarity`. "
        + (
            "Rows have unit length."
            if m.normalisation == "l2"
            else "Use cosine similarity, not the dot product."
        ),
        *extras,
        f"`{MANIFEST}` lists every file with its sha256; a file it does not list is not part of the dataset.",
        "",
    ]


def _sample(r: dict[str, Any]) -> list[str]:
    """A line when the gate measured a sample of a large store (flows.views.sample_videos)."""
    sample = r.get("sample")
    if not isinstance(sample, dict) or not sample.get("sampled"):
        return []
    return [
        f"* measured on a seeded sample of {sample.get('motion_clips')} of {sample.get('of_motion_clips')} "
        f"motion clips ({sample.get('videos')} of {sample.get('of_videos')} videos, whole people per split; "
        f"cap {sample.get('max_clips')}, seed {sample.get('seed')}); every clip is published"
    ]


def _sensitive(m: PartitionManifest) -> list[str]:
    lines = ["## Personal and Sensitive Information", ""]
    leakage = m.leakage
    if not leakage.get("measured"):
        reason = leakage.get("reason", "no reason recorded")
        return [
            *lines,
            f"**Leakage was not measured at publication**: {reason}. Nothing here shows that private "
            "attributes cannot be recovered from these embeddings; treat them as personal data.",
            "",
        ]
    r: dict[str, Any] = leakage.get("results", {})
    lines += [
        "At publication, attackers were trained to recover each private attribute from these "
        f"embeddings ({r.get('view', 'motion clips')}; {r.get('split', '')}; "
        f"{r.get('test_videos', '?')} held-out videos). Metric: cMAP; **leakage** is its share of the "
        "way from chance (0) to perfect (1); **removed** is the share of the raw embeddings' "
        "above-chance leakage the adapter removed.",
        "",
        f"* worst leakage over attributes and attackers: **{_num(r.get('worst_leakage'))}**",
        f"* smallest share removed: **{_num(r.get('min_reduction'))}**",
        f"* gate: {_gate(r)}",
        *_sample(r),
        "",
    ]
    attributes: dict[str, dict[str, dict[str, Any]]] = r.get("attributes", {})
    rows = [
        (a, k, v)
        for a, by in sorted(attributes.items())
        for k, v in sorted(by.items())
        if isinstance(v, dict)
    ]
    if rows:
        names = [c for c in COLUMNS if any(c in v for _, _, v in rows)]
        names += sorted({c for _, _, v in rows for c in v} - set(names))
        lines += [
            "| attribute | attacker | " + " | ".join(names) + " |",
            "|---|---|" + "---|" * len(names),
            *(f"| {a} | {k} | " + " | ".join(_num(v.get(c)) for c in names) + " |" for a, k, v in rows),
            "",
        ]
    not_measured = r.get("not_measured")
    lines.append(
        "Not measured: "
        + (str(not_measured) if not_measured else "attributes without labels in the publisher's data, ")
        + "attackers stronger than those above, and re-identification by linking with other data."
    )
    return [*lines, ""]


def _gate(r: dict[str, Any]) -> str:
    gate, budget = r.get("gate"), r.get("budget") or {}
    if gate == "passed":
        most, least = budget.get("max_leakage"), budget.get("min_reduction")
        return f"passed (budget: leakage at most {most}, removed at least {least})"
    return str(gate or "not recorded")


def _history(m: PartitionManifest) -> list[str]:
    lines = [
        "## Publications",
        "",
        "| when | mode | rows | videos | worst leakage |",
        "|---|---|---|---|---|",
    ]
    for p in m.publications:
        worst = (
            p.leakage.get("results", {}).get("worst_leakage") if p.leakage.get("measured") else "not measured"
        )
        lines.append(f"| {p.created_at} | {p.mode} | {p.rows} | {p.videos} | {_num(worst)} |")
    return [*lines, ""]


def _num(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_num(v) for v in value) + "]"
    return str(value)
