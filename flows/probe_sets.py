"""Embedding sets: the motion clips (and static clips, when there are any) of one kind of embedding,
each row tied to the private store's clips so that every set is probed against the same labels.

A set is the latent cache's own raw embeddings (`raw_set`), the store passed through a trained adapter
(`adapter_set`), or a published partition joined back to the store's videos on (video_id, clip_index)
(`published_sets`, `join_published`). Used by `flows.probe`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from flows.views import anonymize_view, motion_clips, published_video_ids, static_clips
from pipeline.errors import ConfigError
from pipeline.probes.inputs import Clips
from stores.errors import StoreError

if TYPE_CHECKING:
    import pyarrow as pa

    from stores.latent_cache import CacheView
    from stores.published import PartitionInfo

TIME_TOLERANCE_S = 1e-3  # published clip times must match the store's (float32 seconds)


@dataclass(frozen=True, eq=False)
class EmbeddingSet:
    """Motion clips (and static clips, when the set has them) of one kind of embedding."""

    name: str
    kind: Literal["raw", "adapter", "published"]
    motion: Clips
    static: Clips | None
    source: dict[str, Any]
    no_static: str = ""  # why `static` is None
    extra_counts: dict[str, int] | None = None

    def counts(self) -> dict[str, int]:
        counts = {
            "videos": len(self.motion.rows_by_video),
            "motion_clips": int(self.motion.emb.shape[0]),
            "static_clips": 0 if self.static is None else int(self.static.emb.shape[0]),
            "dim": self.motion.dim,
        }
        return counts | (self.extra_counts or {})


def raw_set(view: CacheView) -> EmbeddingSet:
    """The cache's own (pre-adapter) embeddings."""
    has_static = view.static.shape[0] > 0
    return EmbeddingSet(
        name="raw",
        kind="raw",
        motion=motion_clips(view, view.motion),
        static=static_clips(view, view.static) if has_static else None,
        source={"encoder_id": view.attrs.encoder_id},
        no_static="" if has_static else "the store holds no static clips (extract --static-frames 0)",
    )


def adapter_set(view: CacheView, adapter_dir: Path, name: str) -> EmbeddingSet:
    """The store's motion and static clips passed through the adapter in `adapter_dir`."""
    if not adapter_dir.is_dir():
        raise ConfigError(f"--adapter {adapter_dir}: not a folder; pass the --out of train-adapter")
    motion, static = anonymize_view(view, adapter_dir)
    motion = np.asarray(motion, dtype=np.float32)
    if motion.shape[0] != view.motion.shape[0]:
        raise ConfigError(
            f"--adapter {adapter_dir}: anonymize_view gave {motion.shape[0]} motion rows for "
            f"{view.motion.shape[0]} clips"
        )
    has_static = static is not None and view.static.shape[0] > 0
    return EmbeddingSet(
        name=name,
        kind="adapter",
        motion=motion_clips(view, motion),
        static=static_clips(view, np.asarray(static, dtype=np.float32)) if has_static else None,
        source={"adapter_dir": str(adapter_dir)},
        no_static="" if has_static else "the adapter gave no static-clip embeddings",
    )


def _partitions(folder: Path) -> list[PartitionInfo]:
    """The complete partitions under a published root, or the one partition `folder` is."""
    from stores.published import published_partitions

    if not folder.is_dir():
        raise ConfigError(f"--published {folder}: not a folder; pass the --out of anonymize")
    if (folder / "_manifest.json").is_file():  # a partition folder: PUBLISHED/dataset=…/encoder=…/adapter=…
        root = folder.resolve().parents[2]
        found = [p for p in published_partitions(root) if Path(p.location).resolve() == folder.resolve()]
    else:
        found = published_partitions(folder)
    if not found:
        raise ConfigError(
            f"--published {folder}: no complete published partition (dataset=…/encoder=…/adapter=… with a "
            "_manifest.json) there"
        )
    return found


def join_published(
    view: CacheView, table: pa.Table, video_ids: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of published `table` and of the store's clips that hold the same (video_id, clip_index),
    ordered by store row; StoreError when none match or their clip times differ. `video_ids`: the
    store clips' ids as the publication names them (pseudonyms; default: the store's own ids)."""
    import pyarrow as pa

    ids = view.clips.column("video_id") if video_ids is None else pa.array(video_ids, pa.string())
    store = pa.table(
        {
            "video_id": ids,
            "clip_index": view.clips.column("clip_index").cast(pa.int32()),
            "_store_row": pa.array(np.arange(view.clips.num_rows, dtype=np.int64)),
        }
    )
    published = pa.table(
        {
            "video_id": table.column("video_id"),
            "clip_index": table.column("clip_index").cast(pa.int32()),
            "_published_row": pa.array(np.arange(table.num_rows, dtype=np.int64)),
        }
    )
    joined = published.join(store, keys=["video_id", "clip_index"], join_type="inner")
    store_rows = joined.column("_store_row").to_numpy()
    order = np.argsort(store_rows, kind="stable")
    store_rows = store_rows[order]
    published_rows = joined.column("_published_row").to_numpy()[order]
    if len(store_rows) == 0:
        raise StoreError(
            "none of the published clips is in the store (joined on video_id, clip_index); probe "
            "published shards against the latent cache they were made from"
        )
    for column in ("t_start_s", "t_end_s"):
        ours = view.clips.column(column).to_numpy()[store_rows]
        theirs = table.column(column).to_numpy()[published_rows]
        if np.abs(ours.astype(np.float64) - theirs).max() > TIME_TOLERANCE_S:
            raise StoreError(
                f"published clips and store clips with the same (video_id, clip_index) differ in {column}: "
                "they come from different extractions; probe against the store they were made from"
            )
    return published_rows, store_rows


def published_sets(
    view: CacheView, folder: Path, prefix: str = "published", store: str = "", only_view: bool = False
) -> list[EmbeddingSet]:
    """One set per published partition under `folder`, its rows joined to the store's clips (at `store`,
    whose key turns its ids into the publication's pseudonyms). only_view=True reads only the published
    rows of the view's videos (a sample of the store), one file at a time."""
    from stores.published import read_published

    partitions = _partitions(folder)
    ambiguous = len({p.adapter for p in partitions}) < len(partitions)
    sets = []
    for p in partitions:
        root = Path(p.location).parents[2]  # PUBLISHED of PUBLISHED/dataset=…/encoder=…/adapter=…
        m = p.manifest
        ids = None if m.id_scheme == "original" else published_video_ids(view, store, m.id_scheme)
        wanted = None
        if only_view:
            wanted = set(ids if ids is not None else view.clips.column("video_id").to_pylist())
        table, emb = read_published(
            root, dataset=p.dataset, encoder=p.encoder, adapter=p.adapter, video_ids=wanted
        )
        published_rows, store_rows = join_published(view, table, ids)
        label = f"{p.dataset}/{p.encoder}/{p.adapter}" if ambiguous else p.adapter
        sets.append(
            EmbeddingSet(
                name=f"{prefix}:{label}",
                kind="published",
                motion=motion_clips(view, emb[published_rows], store_rows),
                static=None,
                source={
                    "location": p.location,
                    "dataset": p.dataset,
                    "encoder": p.encoder,
                    "adapter": p.adapter,
                    "adapter_variant": m.adapter_variant,
                    "adapter_sha256": m.adapter_sha256,
                    "encoder_sha256": m.encoder_sha256,
                    "encoder_matches_store": m.encoder_sha256 == view.attrs.weights_sha256,
                    "normalisation": m.normalisation,
                    "dtype": m.dtype,
                },
                no_static="published shards hold no static clips (by design)",
                extra_counts={
                    "published_rows": int(table.num_rows),
                    "unmatched_published_rows": int(table.num_rows - len(published_rows)),
                    "store_clips_missing": int(view.clips.num_rows - len(store_rows)),
                },
            )
        )
    return sets


def unique_names(sets: list[EmbeddingSet]) -> list[EmbeddingSet]:
    """The sets in order, a repeated name suffixed `#2`, `#3`, …"""
    seen: dict[str, int] = {}
    out = []
    for s in sets:
        seen[s.name] = seen.get(s.name, 0) + 1
        if seen[s.name] > 1:
            s = replace(s, name=f"{s.name}#{seen[s.name]}")
        out.append(s)
    return out
