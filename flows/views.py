"""What `anonymize` and `probe` both read off a latent cache: the per-video labels, the clips as the
probes take them, and the store's clips passed through a trained adapter.

Both stages import this module; neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from pipeline.adapter import AdapterConfig, AdapterMeta, anonymize_array, load_adapter
from pipeline.probes.inputs import Clips, is_missing
from stores.errors import StoreError
from stores.pseudonyms import default_key_location, fingerprint, load_key, pseudonyms

if TYPE_CHECKING:
    import pyarrow as pa

    from stores.latent_cache import CacheAttrs, CacheView

PRIVATE = "private_"
IDENTITY = "private_identity"
BIAS_GROUP = "private_gender"


# --- labels --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Labels:
    """Per-video labels of the store, as the probes take them (a video a mapping lacks is not in it)."""

    splits: dict[str, str]
    actions: dict[str, object]
    segments: dict[str, list[tuple[float, float, str]]]
    anomaly: dict[str, list[tuple[float, float]]]
    num_frames: dict[str, int]
    fps: dict[str, float]
    bias_splits: dict[str, object]
    attributes: dict[str, dict[str, object]]  # attribute name without "private_" -> {video: value}
    identity: dict[str, object]
    bias_group: str | None  # the attribute whose groups the bias probe compares

    def counts(self) -> dict[str, int]:
        return {
            "split_train": sum(s == "train" for s in self.splits.values()),
            "split_val": sum(s == "val" for s in self.splits.values()),
            "split_test": sum(s == "test" for s in self.splits.values()),
            "action": len(self.actions),
            "segments": len(self.segments),
            "anomaly": len(self.anomaly),
            "bias_split": len(self.bias_splits),
            "identity": len(self.identity),
        }


def _column(videos: pa.Table, name: str) -> dict[str, object]:
    """{video_id: value} of the non-missing values of column `name` (empty when there is no column)."""
    if name not in videos.column_names:
        return {}
    ids = videos.column("video_id").to_pylist()
    return {v: x for v, x in zip(ids, videos.column(name).to_pylist(), strict=True) if not is_missing(x)}


def _numbers(videos: pa.Table, name: str) -> dict[str, float]:
    return {v: float(x) for v, x in _column(videos, name).items() if isinstance(x, int | float)}


def _binary(values: Mapping[str, object]) -> bool:
    return len({str(v) for v in values.values()}) == 2


def labels_of(videos: pa.Table) -> Labels:
    """The labels of the store's videos table (manifest columns, design §3.1)."""
    from stores.manifest import parse_anomaly_segments, parse_segments, private_columns

    attributes = {
        name.removeprefix(PRIVATE): _column(videos, name)
        for name in private_columns(videos)
        if name != IDENTITY
    }
    attributes = {name: values for name, values in attributes.items() if values}
    group: str | None = None
    if attributes.get(BIAS_GROUP.removeprefix(PRIVATE)):
        group = BIAS_GROUP.removeprefix(PRIVATE)
    else:
        group = next((name for name, values in attributes.items() if _binary(values)), None)
    anomaly: dict[str, list[tuple[float, float]]] = {}
    for v, text in _column(videos, "anomaly_segments").items():
        intervals = parse_anomaly_segments(str(text))
        if intervals is not None:
            anomaly[v] = intervals
    return Labels(
        splits={v: str(s) for v, s in _column(videos, "split").items()},
        actions=_column(videos, "action"),
        segments={v: parse_segments(str(t)) for v, t in _column(videos, "segments").items()},
        anomaly=anomaly,
        num_frames={v: int(n) for v, n in _numbers(videos, "num_frames").items()},
        fps=_numbers(videos, "fps"),
        bias_splits=_column(videos, "bias_split"),
        attributes=attributes,
        identity=_column(videos, IDENTITY),
        bias_group=group,
    )


# --- clips ---------------------------------------------------------------------------------------------


def motion_clips(view: CacheView, emb: np.ndarray, rows: np.ndarray | None = None) -> Clips:
    """`Clips` of the store's motion clips `rows` (default: all) with embeddings `emb` (len(rows), D)."""
    clips = view.clips if rows is None else view.clips.take(rows)
    return Clips(
        emb=emb,
        video_id=np.array(clips.column("video_id").to_pylist(), dtype=str),
        index=clips.column("clip_index").to_numpy().astype(np.int64),
        t_start=clips.column("t_start_s").to_numpy().astype(np.float64),
        t_end=clips.column("t_end_s").to_numpy().astype(np.float64),
    )


def static_clips(view: CacheView, emb: np.ndarray) -> Clips:
    table = view.static_clips
    return Clips(
        emb=emb,
        video_id=np.array(table.column("video_id").to_pylist(), dtype=str),
        index=table.column("static_index").to_numpy().astype(np.int64),
    )


def published_video_ids(view: CacheView, store: str, id_scheme: str, key_file: str = "") -> list[str]:
    """The video id of each of the store's motion clips as a publication with `id_scheme` names it:
    the owner's ids, or their keyed pseudonyms under the store's key (`key_file`: another key file)."""
    ids: list[str] = view.clips.column("video_id").to_pylist()
    if id_scheme == "original":
        return ids
    key = load_key(key_file or default_key_location(store), create=False)
    if f"pseudonym:{fingerprint(key)}" != id_scheme:
        raise StoreError(
            f"the published ids are pseudonyms under key {id_scheme.removeprefix('pseudonym:')}, this "
            f"store's key is {fingerprint(key)}: probe the store they were published from"
        )
    mapping = pseudonyms(key, set(ids))
    return [mapping[v] for v in ids]


def pseudonym_map(store: str, key_file: str = "") -> dict[str, str]:
    """{video_id: pseudonym} of every video of the store, under its key (`key_file`: another key file)."""
    from stores.latent_cache import LatentCache

    videos = LatentCache.open(store).read(arrays=False).videos
    key = load_key(key_file or default_key_location(store), create=False)
    return pseudonyms(key, videos.column("video_id").to_pylist())


# --- the adapter's view --------------------------------------------------------------------------------


def load_for(view: CacheView, adapter_dir: str | Path) -> tuple[nn.Module, AdapterConfig, AdapterMeta]:
    """The adapter in `adapter_dir`, refused unless it was trained for this store's exact encoder: id,
    weights checksum, preprocessing, pooling and D."""
    return load_adapter(adapter_dir, **binding(view.attrs))


def binding(attrs: CacheAttrs) -> dict[str, Any]:
    """`load_adapter`'s expectations for an adapter applied to a store with these attributes."""
    return {
        "expect_encoder_id": attrs.encoder_id,
        "expect_dim": attrs.dim,
        "expect_weights_sha256": attrs.weights_sha256,
        "expect_preprocessing": attrs.preprocessing,
        "expect_pooling": attrs.pooling,
    }


def anonymize_view(view: CacheView, adapter_dir: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Anonymized motion clips (N, D) and static clips (M, D) of `view` (static None when it has none)."""
    model, cfg, _ = load_for(view, adapter_dir)
    tokens = view.tokens if cfg.temporal else None
    motion = anonymize_array(model, view.motion, tokens)
    static = None
    if view.static.shape[0]:
        still = None
        if cfg.temporal:
            assert view.tokens is not None
            still = np.repeat(view.static[:, None], view.tokens.shape[1], axis=1)
        static = anonymize_array(model, view.static, still)
    return motion, static


# --- bounded samples of a large store ------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """The videos a bounded measurement reads: whole people (whole videos when the store has no
    `private_identity`) drawn per split with a seeded permutation, each split keeping its share of
    the store's motion clips; `videos` None means the whole store (it has at most `max_clips`)."""

    videos: list[str] | None
    max_clips: int
    seed: int
    motion_clips: int  # in the sample
    of_motion_clips: int  # in the store
    num_videos: int
    of_videos: int

    def record(self) -> dict[str, Any]:
        """What a manifest or probe record says about the sample."""
        return {
            "sampled": self.videos is not None,
            "max_clips": self.max_clips,
            "seed": self.seed,
            "by": "people per split (a video without an identity label counts alone)",
            "videos": self.num_videos,
            "motion_clips": self.motion_clips,
            "of_videos": self.of_videos,
            "of_motion_clips": self.of_motion_clips,
        }


SAMPLE_STREAM = 2323  # the rng stream of samples, apart from every probe's own


def sample_videos(clips: pa.Table, labels: Labels, max_clips: int, seed: int) -> Sample:
    """At most about `max_clips` motion clips of whole people, drawn per split (module doc of Sample);
    the whole store when it has no more than `max_clips` (0: never sample). Videos without a split are
    left out of a sample (no probe and no gate uses them)."""
    import pyarrow.compute as pc

    counted = pc.value_counts(clips.column("video_id"))
    counts = dict(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True))
    total = int(sum(counts.values()))
    if max_clips == 0 or total <= max_clips:
        return Sample(None, max_clips, seed, total, total, len(counts), len(counts))
    units: dict[str, dict[str, list[str]]] = {}  # split -> person -> videos
    for video in sorted(counts):
        split = labels.splits.get(video)
        if split is None:
            continue
        person = labels.identity.get(video)
        key = f"person:{person}" if person is not None else f"video:{video}"
        units.setdefault(split, {}).setdefault(key, []).append(video)
    with_split = sum(counts[v] for people in units.values() for vs in people.values() for v in vs)
    chosen: list[str] = []
    for index, split in enumerate(sorted(units)):
        people = sorted(units[split])
        rows = {p: sum(counts[v] for v in units[split][p]) for p in people}
        quota = max_clips * sum(rows.values()) / max(with_split, 1)
        order = np.random.default_rng([seed, SAMPLE_STREAM, index]).permutation(len(people))
        taken = 0
        for i in order:
            person = people[int(i)]
            if taken and taken + rows[person] > quota:
                continue
            chosen.extend(units[split][person])
            taken += rows[person]
    chosen.sort()
    clips_in = sum(counts[v] for v in chosen)
    return Sample(chosen, max_clips, seed, clips_in, total, len(chosen), len(counts))
