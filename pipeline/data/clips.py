"""Where clips sit in a video, and a streaming cutter that fills them from one decoding pass.

A *window* is the row of frame indices of one motion clip. A *static clip* is one frame repeated
``frames_per_clip`` times (design §2): it carries a video's appearance without its motion.

``plan_windows`` and ``plan_static`` work from a frame count alone; ``cut_clips`` then consumes the
decoded frames once, in order, holding only the frames that a pending window still needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.errors import ConfigError, DecodeError

ClipKind = Literal["motion", "static"]


class ClipSpec(BaseModel):
    """How motion clips and static frames are placed in a video.

    By default clips are consecutive and non-overlapping (``stride = frames_per_clip * frame_step``), as
    in the paper; ``num_clips`` places that many clips evenly over the video instead (test-time
    protocol: 5 clips per video).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    frames_per_clip: int = Field(default=16, ge=1, description="frames in one clip (T)")
    frame_step: int = Field(default=1, ge=1, description="take every frame_step-th frame inside a clip")
    stride: int | None = Field(
        default=None, ge=1, description="frames between clip starts; None = frames_per_clip * frame_step"
    )
    num_clips: int | None = Field(
        default=None, ge=1, description="N evenly spaced clips per video instead of stride"
    )
    static_frames: int = Field(
        default=10, ge=0, description="K evenly spaced frames per video, each a static clip"
    )

    @model_validator(mode="after")
    def _one_placement(self) -> ClipSpec:
        if self.stride is not None and self.num_clips is not None:
            raise ValueError(
                "set either stride (a clip every `stride` frames) or num_clips (N evenly spaced clips), "
                "not both"
            )
        return self

    @property
    def span(self) -> int:
        """Frames from the first to the last frame of one window, inclusive."""
        return (self.frames_per_clip - 1) * self.frame_step + 1

    @property
    def hop(self) -> int:
        """Frames between the starts of consecutive windows in stride mode."""
        return self.stride if self.stride is not None else self.frames_per_clip * self.frame_step


class Clip(NamedTuple):
    """One clip cut from a video: ``frames`` is ``(T, H, W, 3)`` uint8."""

    kind: ClipKind
    # Row of `windows` (motion) or position in `static_idx` (static). The name shadows tuple.index on
    # purpose: clips read as (kind, index, frames) everywhere.
    index: int  # type: ignore[assignment]
    frames: np.ndarray


def plan_windows(num_frames: int, spec: ClipSpec) -> np.ndarray:
    """Frame indices of every motion clip, ``(n_clips, frames_per_clip)`` int64, sorted by start.

    A video shorter than one window gives a single window whose missing tail repeats the last frame
    (whatever the placement mode). In stride mode, trailing frames that do not fill a whole window are
    not covered. With ``num_clips`` there are exactly that many windows, spread from the first to the
    last frame; they overlap, or even repeat, when the video is only a little longer than one window.
    """
    if num_frames < 1:
        raise DecodeError(f"cannot place clips in a video with {num_frames} frames")
    offsets = np.arange(spec.frames_per_clip, dtype=np.int64) * spec.frame_step  # (T,)
    last_start = num_frames - spec.span
    if last_start < 0:
        return np.minimum(offsets, num_frames - 1)[None, :]  # (1, T): pad with the last frame
    if spec.num_clips is not None:
        starts = np.round(np.linspace(0, last_start, spec.num_clips)).astype(np.int64)
    else:
        starts = np.arange(0, last_start + 1, spec.hop, dtype=np.int64)
    return starts[:, None] + offsets[None, :]  # (n_clips, T)


def plan_static(num_frames: int, k: int) -> np.ndarray:
    """``min(k, num_frames)`` distinct frame indices at the centres of equal segments of the video."""
    if num_frames < 1 or k < 1:
        return np.zeros(0, dtype=np.int64)
    k = min(k, num_frames)
    return ((np.arange(k) + 0.5) * num_frames / k).astype(np.int64)


def window_times(windows: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Start and end time in seconds of each window: ``[first frame, last frame + 1) / fps``."""
    if fps <= 0:
        raise ConfigError(f"fps must be positive to place clips in time, got {fps}")
    return windows[:, 0] / fps, (windows[:, -1] + 1) / fps


def static_clip(frame: np.ndarray, frames_per_clip: int) -> np.ndarray:
    """``(H, W, 3)`` → ``(T, H, W, 3)``: the frame repeated ``frames_per_clip`` times."""
    return np.repeat(frame[None], frames_per_clip, axis=0)


def cut_clips(frames: Iterator[np.ndarray], windows: np.ndarray, static_idx: np.ndarray) -> Iterator[Clip]:
    """Stream clips out of one pass over ``frames`` (each ``(H, W, 3)`` uint8, in order from frame 0).

    Yields ``Clip(kind, index, frames (T, H, W, 3))`` as soon as a clip is complete: ``("static", k, …)``
    for ``static_idx[k]`` and ``("motion", i, …)`` for ``windows[i]``, with ``T = windows.shape[1]``.
    Only frames a pending window still needs are held (about one window span, plus whatever the decoder
    batches). Reading stops once every clip is out; the source is closed if it has ``close()``.
    Raises DecodeError if the frames run out before a planned clip is complete.
    """
    windows = np.asarray(windows, dtype=np.int64)
    static_idx = np.asarray(static_idx, dtype=np.int64)
    if windows.ndim != 2:
        raise ConfigError(f"windows must be (n_clips, frames_per_clip), got shape {windows.shape}")
    if len(windows) and np.any(np.diff(windows[:, -1]) < 0):
        raise ConfigError("windows must be sorted by their last frame (plan_windows output is)")
    frames_per_clip = windows.shape[1]
    last_needed = max(int(windows.max(initial=-1)), int(static_idx.max(initial=-1)))
    needed = set(windows.ravel().tolist())
    statics_at: dict[int, list[int]] = {}
    for k, t in enumerate(static_idx.tolist()):
        statics_at.setdefault(t, []).append(k)
    # Lowest frame any window from i onwards needs: frames below it can be dropped.
    keep_from = np.minimum.accumulate(windows.min(axis=1, initial=last_needed + 1)[::-1])[::-1]

    buffer: dict[int, np.ndarray] = {}  # frame index -> frame, in increasing index order
    next_window, seen = 0, 0
    try:
        if last_needed < 0:
            return
        for t, frame in enumerate(frames):
            seen = t + 1
            for k in statics_at.get(t, ()):
                yield Clip("static", k, static_clip(frame, frames_per_clip))
            if t in needed:
                buffer[t] = frame
            while next_window < len(windows) and windows[next_window, -1] <= t:
                clip = np.stack([buffer[i] for i in windows[next_window].tolist()])  # (T, H, W, 3)
                yield Clip("motion", next_window, clip)
                next_window += 1
            low = int(keep_from[next_window]) if next_window < len(windows) else last_needed + 1
            while buffer and next(iter(buffer)) < low:
                del buffer[next(iter(buffer))]
            if t >= last_needed:
                return
        raise DecodeError(
            f"the video ended after {seen} frames but its clips need frame {last_needed}; "
            "the container over-reported its frame count (re-encode the file)"
        )
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
