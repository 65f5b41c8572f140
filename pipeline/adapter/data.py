"""What adapter training reads: cached embeddings and task labels as numpy arrays, all in memory.

Shapes: N motion clips, M static clips, V videos, D embedding size, T' temporal tokens per clip.
The rows of one video are in temporal order (the latent cache sorts by video, then clip index).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.adapter.errors import AdapterError


@dataclass(frozen=True)
class AdapterData:
    """Cached latents plus the labels of the co-training tasks; no private attribute unless asked.

    `action` is a per-clip class (-1 = none); `detection` a per-clip class of untrimmed videos in
    [0, detection_classes] where `detection_classes` means background (-1 = not a detection clip);
    `anomaly` a per-video bag label (1 abnormal, 0 normal, -1 not in the anomaly task).
    `split` names each video's split; only "train" and "val" videos are used.
    `private` is None unless the owner asked for the label-informed critic (`--private-labels`): then
    (V, A) class indices of those attributes, -1 where unknown (and on every non-train video).
    """

    motion: np.ndarray  # (N, D) float32
    video: np.ndarray  # (N,) int64 in [0, V)
    static: np.ndarray  # (M, D) float32
    static_video: np.ndarray  # (M,) int64 in [0, V)
    split: np.ndarray  # (V,) str
    tokens: np.ndarray | None = None  # (N, T', D) float32
    action: np.ndarray | None = None  # (N,) int64
    detection: np.ndarray | None = None  # (N,) int64
    detection_classes: int = 0
    anomaly: np.ndarray | None = None  # (V,) int64
    private: np.ndarray | None = None  # (V, A) int64, label-informed mode only

    @property
    def dim(self) -> int:
        return int(self.motion.shape[1])

    @property
    def num_videos(self) -> int:
        return len(self.split)

    @property
    def num_actions(self) -> int:
        """Number of action classes (1 + the largest label), 0 without action labels."""
        if self.action is None or not (self.action >= 0).any():
            return 0
        return int(self.action.max()) + 1

    def validate(self) -> None:
        """Raise AdapterError naming the first inconsistency (shapes, ranges, non-finite values)."""
        N, V = len(self.motion), self.num_videos
        _check(self.motion.ndim == 2 and N > 0, f"motion must be (N, D) with N > 0, got {self.motion.shape}")
        _check(self.static.ndim == 2, f"static must be (M, D), got {self.static.shape}")
        _check(
            self.static.shape[1] == self.dim,
            f"static clips have dim {self.static.shape[1]} but motion clips have {self.dim}",
        )
        _check(self.video.shape == (N,), f"video must be ({N},), got {self.video.shape}")
        _check(
            self.static_video.shape == (len(self.static),),
            f"static_video must be ({len(self.static)},), got {self.static_video.shape}",
        )
        for name, idx in (("video", self.video), ("static_video", self.static_video)):
            _check(idx.size == 0 or (idx.min() >= 0 and idx.max() < V), f"{name} indexes outside [0, {V})")
        if N > 1:
            _check(bool((np.diff(self.video) >= 0).all()), "motion rows must be grouped by video (sorted)")
        for name, arr in (("motion", self.motion), ("static", self.static), ("tokens", self.tokens)):
            if arr is not None:
                _check(bool(np.isfinite(arr).all()), f"{name} holds non-finite values")
        if self.tokens is not None:
            _check(
                self.tokens.ndim == 3 and self.tokens.shape[0] == N and self.tokens.shape[2] == self.dim,
                f"tokens must be ({N}, T', {self.dim}), got {self.tokens.shape}",
            )
        for name, lab in (("action", self.action), ("detection", self.detection)):
            if lab is not None:
                _check(lab.shape == (N,), f"{name} must be ({N},), got {lab.shape}")
        if self.detection is not None:
            _check(
                bool((self.detection <= self.detection_classes).all()),
                f"detection labels exceed detection_classes={self.detection_classes} (the background id)",
            )
        if self.anomaly is not None:
            _check(self.anomaly.shape == (V,), f"anomaly must be ({V},), got {self.anomaly.shape}")
        if self.private is not None:
            _check(
                self.private.ndim == 2 and self.private.shape[0] == V,
                f"private must be ({V}, A), got {self.private.shape}",
            )
        train = self.split == "train"
        _check(bool(train.any()), "no video is in the train split")
        has_static = np.bincount(self.static_video, minlength=V) >= 2
        _check(
            bool(has_static[train].any()),
            "no training video has 2 static clips; extract with --static-frames >= 2",
        )

    def checksum(self) -> str:
        """SHA-256 over every array (dtype, shape, bytes): which data an adapter was trained on."""
        digest = hashlib.sha256()
        for name in ("motion", "video", "static", "static_video", "tokens", "action", "detection", "anomaly"):
            arr = getattr(self, name)
            digest.update(name.encode())
            if arr is not None:
                arr = np.ascontiguousarray(arr)
                digest.update(f"{arr.dtype}|{arr.shape}|".encode())
                digest.update(arr.tobytes())
        digest.update("|".join(map(str, self.split)).encode())
        digest.update(str(self.detection_classes).encode())
        if self.private is not None:  # only then: a label-free run keeps its checksum
            arr = np.ascontiguousarray(self.private)
            digest.update(f"private|{arr.dtype}|{arr.shape}|".encode())
            digest.update(arr.tobytes())
        return digest.hexdigest()


@dataclass(frozen=True)
class AdapterChunks:
    """Training data too large for memory: `count` groups of whole videos, loaded one at a time.

    `load(i)` returns group i as `AdapterData` with labels encoded as for the whole set (the same
    `num_actions` and `detection_classes`); `checksum` identifies the whole set without reading it.
    """

    load: Callable[[int], AdapterData]
    count: int
    dim: int
    num_actions: int
    detection_classes: int
    data_checksum: str

    def checksum(self) -> str:
        return self.data_checksum


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise AdapterError(f"adapter training data: {message}")
