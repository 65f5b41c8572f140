"""What every probe reads: clip embeddings with where each clip sits, and per-video labels as mappings.

Probes take a `Clips` (one row per clip, in any order) and plain ``{video_id: value}`` mappings for
labels and splits; a video that a mapping lacks (or maps to None/NaN) is simply not in that task.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from pipeline.errors import PipelineError


class ProbeError(PipelineError):
    """A probe or metric cannot be computed from the inputs it was given."""


@dataclass(frozen=True, eq=False)
class Clips:
    """Clip embeddings ``emb`` (N, D) and, per row, ``video_id`` (N,) str and ``index`` (N,) int, the
    clip's order in its video; ``t_start``/``t_end`` (N,) seconds where a probe needs time."""

    emb: np.ndarray
    video_id: np.ndarray
    index: np.ndarray
    t_start: np.ndarray | None = None
    t_end: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.emb.ndim != 2:
            raise ProbeError(f"clip embeddings must be (N, D), got shape {self.emb.shape}")
        n = self.emb.shape[0]
        for name in ("video_id", "index", "t_start", "t_end"):
            col = getattr(self, name)
            if col is not None and col.shape != (n,):
                raise ProbeError(f"Clips.{name} must have shape ({n},) like emb's rows, got {col.shape}")
        if (self.t_start is None) != (self.t_end is None):
            raise ProbeError("give both t_start and t_end, or neither")
        if not np.isfinite(self.emb).all():
            raise ProbeError("clip embeddings contain NaN or inf; check the store these came from")

    @property
    def dim(self) -> int:
        return int(self.emb.shape[1])

    @cached_property
    def rows_by_video(self) -> dict[str, np.ndarray]:
        """Row indices of each video's clips, sorted by ``index``."""
        vids, inverse = np.unique(self.video_id.astype(str), return_inverse=True)
        order = np.lexsort((self.index, inverse))
        bounds = np.searchsorted(inverse[order], np.arange(len(vids) + 1))
        return {str(v): order[bounds[i] : bounds[i + 1]] for i, v in enumerate(vids)}

    def rows(self, video_ids: Iterable[str]) -> np.ndarray:
        """Row indices of the clips of ``video_ids`` (in that order, each video's clips in order)."""
        by_video = self.rows_by_video
        parts = [by_video[v] for v in video_ids if v in by_video]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def times(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``t_start``, ``t_end`` of ``rows``; a ProbeError when the clips carry no times."""
        if self.t_start is None or self.t_end is None:
            raise ProbeError("this probe needs clip times: build Clips with t_start and t_end")
        return self.t_start[rows].astype(np.float64), self.t_end[rows].astype(np.float64)


def is_missing(value: object) -> bool:
    """None, NaN or an empty string: the video carries no label for this task."""
    if isinstance(value, float):
        return math.isnan(value)
    return value is None or (isinstance(value, str) and value == "")


def labelled_videos(
    clips: Clips, labels: Mapping[str, object], splits: Mapping[str, str], split: str
) -> list[str]:
    """Sorted ids of the videos in ``split`` that have a label and at least one clip."""
    have = clips.rows_by_video
    return sorted(v for v, s in splits.items() if s == split and v in have and not is_missing(labels.get(v)))


def encode_labels(values: Sequence[object], classes: Sequence[str]) -> np.ndarray:
    """Class index (N,) int64 of each value (compared as str) in ``classes``."""
    lookup = {c: i for i, c in enumerate(classes)}
    try:
        return np.array([lookup[str(v)] for v in values], dtype=np.int64)
    except KeyError as err:
        raise ProbeError(f"label {err.args[0]!r} is not one of the classes {list(classes)}") from None


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """Positions of ``min(n, k)`` evenly spaced items out of ``n``, first and last included."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(np.int64))


def mean_by_owner(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Mean of the rows of ``values`` (N, C) that each of ``n`` owners has (``owner``: (N,) index of
    each row's owner): (n, C) float64; an owner without rows gets zeros."""
    sums = np.zeros((n, values.shape[1]))
    np.add.at(sums, owner, values)
    means: np.ndarray = sums / np.maximum(np.bincount(owner, minlength=n), 1)[:, None]
    return means


def require_split(videos: Sequence[str], split: str, task: str) -> None:
    if not videos:
        raise ProbeError(
            f"{task}: no labelled videos with clips in split {split!r}; check the manifest's split and "
            f"label columns for this task"
        )
