"""`--reader torchcodec`: the reader's batching, resize and errors on CPU with a stand-in decoder, and
(gpu-marked, for a CUDA machine with torchcodec installed) the real GPU decode against PyAV."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from pipeline.data.torchcodec_reader import TorchcodecReader
from pipeline.data.video import PyAVReader, write_video
from pipeline.errors import DecodeError


def _video(path: Path, frames: int = 21, size: tuple[int, int] = (96, 128)) -> Path:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    write_video(path, (np.roll(base, 3 * t, axis=1) for t in range(frames)), fps=12)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _video(tmp_path_factory.mktemp("tc") / "v.mp4")


class _Decoder:
    """Stands in for torchcodec.decoders.VideoDecoder: frames from PyAV, (b, 3, H, W) uint8 batches."""

    calls: ClassVar[list[tuple[int, int]]] = []
    break_at: ClassVar[int | None] = None

    def __init__(self, source: str, **kwargs: Any) -> None:
        if not Path(source).stat().st_size:
            raise RuntimeError("Could not open input file")
        self.frames = np.stack(list(PyAVReader().iter_frames(source)))
        n, h, w, _ = self.frames.shape
        self.metadata = types.SimpleNamespace(num_frames=n, average_fps=12.0, height=h, width=w)

    def __len__(self) -> int:
        return len(self.frames)

    def get_frames_in_range(self, start: int, stop: int) -> Any:
        _Decoder.calls.append((start, stop))
        if _Decoder.break_at is not None and stop > _Decoder.break_at:
            raise RuntimeError("Requested next frame while there are no more frames left to decode.")
        data = torch.from_numpy(self.frames[start:stop]).permute(0, 3, 1, 2)
        return types.SimpleNamespace(data=data)


@pytest.fixture
def fake_torchcodec(monkeypatch: pytest.MonkeyPatch) -> type[_Decoder]:
    module = types.ModuleType("torchcodec.decoders")
    module.VideoDecoder = _Decoder  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchcodec", types.ModuleType("torchcodec"))
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", module)
    _Decoder.calls, _Decoder.break_at = [], None
    return _Decoder


def test_every_frame_once_in_order_in_batches_of_consecutive_frames(
    video: Path, fake_torchcodec: type[_Decoder]
) -> None:
    reference = list(PyAVReader().iter_frames(video))
    frames = list(TorchcodecReader(device="cpu", batch_size=8).iter_frames(video))
    assert fake_torchcodec.calls == [(0, 8), (8, 16), (16, 21)]
    assert len(frames) == len(reference) == 21
    assert all(a.dtype == np.uint8 and np.array_equal(a, b) for a, b in zip(frames, reference, strict=True))
    info = TorchcodecReader(device="cpu").probe(video)
    assert (info.num_frames, info.height, info.width) == (21, 96, 128)


def test_resized_to_the_short_side_like_pyav(video: Path, fake_torchcodec: type[_Decoder]) -> None:
    frames = list(TorchcodecReader(device="cpu").iter_frames(video, short_side=72))
    reference = list(PyAVReader().iter_frames(video, short_side=72))
    assert frames[0].shape == reference[0].shape == (72, 96, 3)
    # bilinear on the device against swscale's bicubic: close, not equal
    diff = np.abs(np.stack(frames).astype(np.int16) - np.stack(reference).astype(np.int16))
    assert diff.mean() < 12
    squashed = list(TorchcodecReader(device="cpu").iter_frames(video, size=(64, 64)))
    assert squashed[0].shape == (64, 64, 3)


def test_a_broken_stream_yields_what_decoded_then_decode_error(
    video: Path, tmp_path: Path, fake_torchcodec: type[_Decoder]
) -> None:
    fake_torchcodec.break_at = 10
    got = []
    with pytest.raises(DecodeError, match="stream broken after 8 of 21 frames"):
        for frame in TorchcodecReader(device="cpu", batch_size=8).iter_frames(video):
            got.append(frame)
    assert len(got) == 8
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DecodeError):
        TorchcodecReader(device="cpu").iter_frames(empty)


@pytest.mark.gpu
def test_gpu_decode_matches_pyav(video: Path) -> None:
    """On a CUDA install with the torchcodec extra: NVDEC frames, resized on the GPU, against PyAV."""
    from pipeline.data.video import get_reader

    reader = get_reader("torchcodec")
    frames = list(reader.iter_frames(video, short_side=72))
    reference = list(PyAVReader().iter_frames(video, short_side=72))
    assert len(frames) == len(reference) and frames[0].shape == reference[0].shape == (72, 96, 3)
    diff = np.abs(np.stack(frames).astype(np.int16) - np.stack(reference).astype(np.int16))
    assert diff.mean() < 12  # NVDEC's colour conversion and bilinear resize against swscale's
