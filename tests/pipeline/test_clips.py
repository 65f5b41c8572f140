"""Clip placement, the streaming cutter (values and memory) and preprocessing to encoder input."""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from pipeline.data.clips import (
    ClipSpec,
    cut_clips,
    plan_static,
    plan_windows,
    static_clip,
    window_times,
)
from pipeline.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    batch_to_model_input,
    to_model_input,
)
from pipeline.errors import ConfigError, DecodeError


def numbered_frame(t: int) -> np.ndarray:
    """A 2x2 frame that encodes its own index t (low byte, high byte)."""
    frame = np.zeros((2, 2, 3), np.uint8)
    frame[..., 0], frame[..., 1] = t % 256, t // 256
    return frame


def frame_number(frame: np.ndarray) -> int:
    return int(frame[0, 0, 0]) + 256 * int(frame[0, 0, 1])


def numbered_frames(n: int) -> Iterator[np.ndarray]:
    for t in range(n):
        yield numbered_frame(t)


# --------------------------------------------------------------------------- ClipSpec


def test_clip_spec_defaults_and_validation() -> None:
    spec = ClipSpec()
    assert (spec.frames_per_clip, spec.frame_step, spec.stride, spec.num_clips, spec.static_frames) == (
        16,
        1,
        None,
        None,
        10,
    )
    assert spec.span == 16 and spec.hop == 16
    assert ClipSpec(frames_per_clip=4, frame_step=3).span == 10
    assert ClipSpec(frames_per_clip=4, frame_step=3).hop == 12
    with pytest.raises(ValidationError, match="not both"):
        ClipSpec(stride=4, num_clips=5)
    with pytest.raises(ValidationError, match="frames_per_clip"):
        ClipSpec(frames_per_clip=0)
    with pytest.raises(ValidationError, match="extra"):
        ClipSpec(frames=16)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="frozen"):
        spec.stride = 3  # type: ignore[misc]


# --------------------------------------------------------------------------- planning


def test_plan_windows_default_is_consecutive_non_overlapping() -> None:
    windows = plan_windows(70, ClipSpec())
    assert windows.dtype == np.int64 and windows.shape == (4, 16)
    np.testing.assert_array_equal(windows, np.arange(64).reshape(4, 16))  # frames 64..69 are not covered


def test_plan_windows_stride_and_step() -> None:
    overlapping = plan_windows(40, ClipSpec(frames_per_clip=16, stride=8))
    np.testing.assert_array_equal(overlapping[:, 0], [0, 8, 16, 24])
    stepped = plan_windows(40, ClipSpec(frames_per_clip=4, frame_step=3))
    np.testing.assert_array_equal(stepped[0], [0, 3, 6, 9])
    np.testing.assert_array_equal(stepped[:, 0], [0, 12, 24])


def test_plan_windows_evenly_spaced() -> None:
    windows = plan_windows(100, ClipSpec(num_clips=5))
    np.testing.assert_array_equal(windows[:, 0], [0, 21, 42, 63, 84])
    assert windows[-1, -1] == 99


def test_short_video_gives_one_window_padded_with_the_last_frame() -> None:
    np.testing.assert_array_equal(plan_windows(10, ClipSpec())[0], [*range(10), *[9] * 6])
    np.testing.assert_array_equal(plan_windows(5, ClipSpec(frames_per_clip=4, frame_step=2))[0], [0, 2, 4, 4])
    assert plan_windows(10, ClipSpec(num_clips=3)).shape == (1, 16)
    np.testing.assert_array_equal(plan_windows(18, ClipSpec(num_clips=5))[:, 0], [0, 0, 1, 2, 2])
    with pytest.raises(DecodeError, match="0 frames"):
        plan_windows(0, ClipSpec())


def test_plan_static() -> None:
    np.testing.assert_array_equal(plan_static(100, 10), [5, 15, 25, 35, 45, 55, 65, 75, 85, 95])
    np.testing.assert_array_equal(plan_static(3, 10), [0, 1, 2])
    assert len(set(plan_static(17, 10).tolist())) == 10
    assert plan_static(0, 10).size == 0 and plan_static(50, 0).size == 0


def test_window_times() -> None:
    start, end = window_times(plan_windows(32, ClipSpec()), fps=16.0)
    np.testing.assert_allclose(start, [0.0, 1.0])
    np.testing.assert_allclose(end, [1.0, 2.0])
    with pytest.raises(ConfigError):
        window_times(np.zeros((1, 16), np.int64), fps=0)


# --------------------------------------------------------------------------- cutting


@pytest.mark.parametrize(
    ("num_frames", "spec"),
    [
        (70, ClipSpec()),
        (70, ClipSpec(frames_per_clip=8, stride=3)),
        (70, ClipSpec(frames_per_clip=5, frame_step=3)),
        (300, ClipSpec(num_clips=7, static_frames=4)),
        (10, ClipSpec()),
    ],
)
def test_cut_clips_matches_the_plan(num_frames: int, spec: ClipSpec) -> None:
    windows = plan_windows(num_frames, spec)
    static_idx = plan_static(num_frames, spec.static_frames)
    clips = list(cut_clips(numbered_frames(num_frames), windows, static_idx))

    motion = [c for c in clips if c.kind == "motion"]
    static = [c for c in clips if c.kind == "static"]
    assert [c.index for c in motion] == list(range(len(windows)))
    assert [c.index for c in static] == list(range(len(static_idx)))
    for clip in motion:
        assert clip.frames.shape == (spec.frames_per_clip, 2, 2, 3) and clip.frames.dtype == np.uint8
        assert [frame_number(f) for f in clip.frames] == windows[clip.index].tolist()
    for clip in static:
        assert clip.frames.shape == (spec.frames_per_clip, 2, 2, 3)
        assert {frame_number(f) for f in clip.frames} == {int(static_idx[clip.index])}


def test_cut_clips_yields_each_clip_as_soon_as_it_is_complete() -> None:
    produced: list[int] = []

    def source() -> Iterator[np.ndarray]:
        for t in range(48):
            produced.append(t)
            yield numbered_frame(t)

    windows = plan_windows(48, ClipSpec())
    for clip in cut_clips(source(), windows, np.zeros(0, np.int64)):
        assert produced[-1] == windows[clip.index, -1]


@pytest.mark.parametrize("spec", [ClipSpec(), ClipSpec(frames_per_clip=8, frame_step=4, stride=5)])
def test_cut_clips_memory_is_bounded_by_the_window_span(spec: ClipSpec) -> None:
    """2000 frames stream through; the cutter may hold at most one window span (+ the current frame)."""
    alive: list[weakref.ref[np.ndarray]] = []
    peak = 0

    def source() -> Iterator[np.ndarray]:
        nonlocal peak
        for t in range(2000):
            peak = max(peak, sum(r() is not None for r in alive[-4 * spec.span :]))
            frame = numbered_frame(t)
            alive.append(weakref.ref(frame))
            yield frame
            del frame

    windows = plan_windows(2000, spec)
    count = sum(1 for _ in cut_clips(source(), windows, plan_static(2000, 10)))
    assert count == len(windows) + 10
    assert peak <= spec.span + 1
    assert sum(r() is not None for r in alive) <= 1  # nothing kept once it is done


def test_cut_clips_stops_reading_once_every_clip_is_out() -> None:
    state = {"produced": 0, "closed": False}

    def source() -> Iterator[np.ndarray]:
        try:
            for t in range(2000):
                state["produced"] = t + 1
                yield numbered_frame(t)
        finally:
            state["closed"] = True

    windows = plan_windows(100, ClipSpec(num_clips=2))  # last clip ends at frame 99
    assert len(list(cut_clips(source(), windows, plan_static(100, 3)))) == 5
    assert state == {"produced": 100, "closed": True}


def test_cut_clips_raises_when_the_video_is_shorter_than_planned() -> None:
    windows = plan_windows(100, ClipSpec())
    clips = []
    with pytest.raises(DecodeError, match="ended after 50 frames"):
        for clip in cut_clips(numbered_frames(50), windows, plan_static(100, 10)):
            clips.append(clip)
    assert [c.index for c in clips if c.kind == "motion"] == [0, 1, 2]  # what was complete came out


def test_cut_clips_edge_cases() -> None:
    with pytest.raises(ConfigError, match="sorted"):
        list(cut_clips(numbered_frames(40), np.array([[16, 17], [0, 1]]), np.zeros(0, np.int64)))
    consumed = numbered_frames(10)
    assert list(cut_clips(consumed, np.zeros((0, 16), np.int64), np.zeros(0, np.int64))) == []
    static_only = list(cut_clips(numbered_frames(10), np.zeros((0, 4), np.int64), np.array([2, 7])))
    assert [(c.kind, c.index, c.frames.shape[0]) for c in static_only] == [
        ("static", 0, 4),
        ("static", 1, 4),
    ]


def test_static_clip() -> None:
    frame = numbered_frame(3)
    clip = static_clip(frame, 16)
    assert clip.shape == (16, 2, 2, 3) and clip.flags.writeable
    assert all(np.array_equal(f, frame) for f in clip)


# --------------------------------------------------------------------------- preprocessing


def test_preprocess_config() -> None:
    pre = Preprocess()
    assert (pre.resize, pre.crop, pre.mean, pre.std) == (224, 224, IMAGENET_MEAN, IMAGENET_STD)
    with pytest.raises(ValidationError, match="must not exceed"):
        Preprocess(resize=100, crop=112)
    with pytest.raises(ValidationError, match="positive"):
        Preprocess(std=(0.2, 0.0, 0.2))


def _normalised(pixels: np.ndarray, pre: Preprocess) -> np.ndarray:
    """Reference: (T, c, c, 3) uint8 → (3, T, c, c) float, by the textbook formula."""
    x: np.ndarray = (pixels.astype(np.float64) / 255.0 - np.array(pre.mean)) / np.array(pre.std)
    return x.transpose(3, 0, 1, 2)


def test_to_model_input_crop_and_normalise() -> None:
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (4, 20, 30, 3), dtype=np.uint8)
    pre = Preprocess(resize=20, crop=16)  # short side already 20: no resampling
    out = to_model_input(clip, pre)
    assert out.shape == (3, 4, 16, 16) and out.dtype == np.float32
    np.testing.assert_allclose(out, _normalised(clip[:, 2:18, 7:23], pre), atol=1e-5)


def test_to_model_input_resize_matches_pillow() -> None:
    rng = np.random.default_rng(1)
    # Smooth content, so a 2x bilinear downscale has a well-defined answer.
    base = rng.integers(0, 256, (2, 15, 23, 3), dtype=np.uint8)
    clip = np.stack([np.asarray(Image.fromarray(f).resize((92, 60), Image.Resampling.BICUBIC)) for f in base])
    pre = Preprocess(resize=30, crop=24)
    out = to_model_input(clip, pre)  # (3, 2, 24, 24)
    small = np.stack(
        [np.asarray(Image.fromarray(f).resize((46, 30), Image.Resampling.BILINEAR)) for f in clip]
    )
    reference = _normalised(small[:, 3:27, 11:35], pre)
    assert np.abs(out - reference).max() < 2.5 / 255 / min(pre.std)  # within ~2 grey levels


def test_batch_versions_agree() -> None:
    rng = np.random.default_rng(2)
    batch = rng.integers(0, 256, (3, 4, 40, 50, 3), dtype=np.uint8)
    pre = Preprocess(resize=32, crop=28)
    per_clip = np.stack([to_model_input(clip, pre) for clip in batch])
    whole = to_model_input(batch, pre)
    torch_out = batch_to_model_input(torch.from_numpy(batch), pre, device="cpu")
    assert whole.shape == (3, 3, 4, 28, 28) and torch_out.dtype == torch.float32
    np.testing.assert_array_equal(per_clip, whole)
    np.testing.assert_array_equal(torch_out.numpy(), whole)
    assert torch_out.is_contiguous()


def test_model_input_rejects_wrong_layouts() -> None:
    pre = Preprocess(resize=16, crop=16)
    with pytest.raises(ConfigError):
        to_model_input(np.zeros((16, 16, 3), np.uint8), pre)
    with pytest.raises(ConfigError, match="uint8"):
        batch_to_model_input(torch.zeros(1, 2, 16, 16, 3), pre)
