"""Decode one video (or image) into encoder-ready uint8 clips, streamed in bounded chunks.

This is what an extraction worker runs per input: one sequential decoding pass, every motion window
and static frame cut from it, resized at decode time and centre-cropped, never more than `chunk`
clips held at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline.data.clips import ClipSpec, cut_clips, plan_static, plan_windows, window_times
from pipeline.data.video import DEFAULT_READER, FALLBACK, get_reader, is_image, read_image, scaled_size
from pipeline.errors import DecodeError


class FrameGeometry(Protocol):
    """What decoding needs of an encoder's preprocessing (a `transforms.Preprocess` is one). Decoding
    never imports torch, so decode worker processes start fast and stay small."""

    @property
    def resize(self) -> int: ...

    @property
    def crop(self) -> int: ...

    @property
    def resize_mode(self) -> str: ...


@dataclass(frozen=True)
class FrameSize:
    """Short side after resizing and side of the centre crop, in pixels; "squash" resizes the whole
    frame to crop x crop instead (see `transforms.Preprocess`)."""

    resize: int
    crop: int
    resize_mode: str = "short-side"


@dataclass
class ClipChunk:
    """Some clips of one input. `motion` `[n, T, S, S, 3]` uint8 with their `motion_index`;
    `static` `[m, S, S, 3]` uint8 frames (a static clip repeats its frame T times)."""

    motion: np.ndarray
    motion_index: np.ndarray
    static: np.ndarray
    static_index: np.ndarray


@dataclass
class MediaPlan:
    """Where the clips of one input sit: windows `[n, T]` of frame indices and static frame indices."""

    kind: str  # "video" | "image"
    num_frames: int
    fps: float
    windows: np.ndarray
    static_frames: np.ndarray
    t_start: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    t_end: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


def centre_crop(frame: np.ndarray, crop: int) -> np.ndarray:
    h, w = frame.shape[:2]
    top, left = (h - crop) // 2, (w - crop) // 2
    return frame[top : top + crop, left : left + crop]


def plan_media(path: str | Path, spec: ClipSpec, reader: str = DEFAULT_READER) -> MediaPlan:
    """Probe an input and place its clips. Images have one static clip and no motion clip. A probe
    error is retried once with the fallback reader (`video.FALLBACK`)."""
    if is_image(path):
        return MediaPlan(
            "image", 1, 0.0, np.zeros((0, spec.frames_per_clip), np.int64), np.zeros(1, np.int64)
        )
    try:
        info = get_reader(reader).probe(path)
    except DecodeError as first:
        other = FALLBACK[reader]
        try:
            info = get_reader(other).probe(path)
        except DecodeError as second:
            raise _both_failed(path, reader, first, other, second) from second
    windows = plan_windows(info.num_frames, spec)
    fps = info.fps if info.fps > 0 else 25.0
    t_start, t_end = window_times(windows, fps)
    return MediaPlan(
        "video",
        info.num_frames,
        fps,
        windows,
        plan_static(info.num_frames, spec.static_frames),
        t_start.astype(np.float32),
        t_end.astype(np.float32),
    )


def decode_chunks(
    path: str | Path, plan: MediaPlan, pre: FrameGeometry, chunk: int = 16, reader: str = DEFAULT_READER
) -> Iterator[ClipChunk]:
    """Stream the clips of `plan` out of one decoding pass, at most `chunk` clips per yield; frames
    come resized (short side `pre.resize`) and centre-cropped to `pre.crop` x `pre.crop`.

    A decode error is retried once with the fallback reader (`video.FALLBACK`), which yields only the
    clips not yielded before the error; when it fails too, the DecodeError names both readers and why."""
    if plan.kind == "image":
        yield _image_chunk(path, pre)
        return
    sent: set[tuple[str, int]] = set()
    try:
        yield from _video_chunks(path, plan, pre, chunk, reader, sent)
    except DecodeError as first:
        other = FALLBACK[reader]
        try:
            yield from _video_chunks(path, plan, pre, chunk, other, sent)
        except DecodeError as second:
            raise _both_failed(path, reader, first, other, second) from second


def _both_failed(
    path: str | Path, reader: str, first: Exception, other: str, second: Exception
) -> DecodeError:
    prefix = f"{path}: "

    def why(err: Exception) -> str:
        text = str(err)
        return text[len(prefix) :] if text.startswith(prefix) else text

    return DecodeError(f"{path}: {reader} failed: {why(first)}; retried with {other}: {why(second)}")


def _image_chunk(path: str | Path, pre: FrameGeometry) -> ClipChunk:
    crop = pre.crop
    image = read_image(path)
    h, w = _target(image.shape[0], image.shape[1], pre)
    resized = _resize(image, h, w)
    return ClipChunk(
        np.zeros((0, 0, crop, crop, 3), np.uint8),
        np.zeros(0, np.int64),
        centre_crop(resized, crop)[None],
        np.zeros(1, np.int64),
    )


def _video_chunks(
    path: str | Path, plan: MediaPlan, pre: FrameGeometry, chunk: int, reader: str, sent: set[tuple[str, int]]
) -> Iterator[ClipChunk]:
    """One decoding pass with `reader`; skips the clips in `sent` and adds those it yields."""
    crop = pre.crop
    squash = (crop, crop) if pre.resize_mode == "squash" else None
    frames = get_reader(reader).iter_frames(path, short_side=pre.resize, size=squash)
    motion: list[np.ndarray] = []
    motion_idx: list[int] = []
    static: list[np.ndarray] = []
    static_idx: list[int] = []

    def flush() -> ClipChunk:
        sent.update(("motion", i) for i in motion_idx)
        sent.update(("static", i) for i in static_idx)
        return _chunk(motion, motion_idx, static, static_idx, plan.windows.shape[1], crop)

    for kind, index, clip in cut_clips(frames, plan.windows, plan.static_frames):
        if (kind, index) in sent:
            continue
        if kind == "motion":
            motion.append(np.stack([centre_crop(f, crop) for f in clip]))
            motion_idx.append(index)
        else:
            static.append(centre_crop(clip[0], crop))
            static_idx.append(index)
        if len(motion) + len(static) >= chunk:
            yield flush()
            motion, motion_idx, static, static_idx = [], [], [], []
    if motion or static:
        yield flush()


def _chunk(
    motion: list[np.ndarray],
    motion_idx: list[int],
    static: list[np.ndarray],
    static_idx: list[int],
    t: int,
    s: int,
) -> ClipChunk:
    return ClipChunk(
        np.stack(motion) if motion else np.zeros((0, t, s, s, 3), np.uint8),
        np.asarray(motion_idx, np.int64),
        np.stack(static) if static else np.zeros((0, s, s, 3), np.uint8),
        np.asarray(static_idx, np.int64),
    )


def _target(height: int, width: int, pre: FrameGeometry) -> tuple[int, int]:
    if pre.resize_mode == "squash":
        return pre.crop, pre.crop
    return scaled_size(height, width, pre.resize)


def _resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
    if image.shape[:2] == (h, w):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
