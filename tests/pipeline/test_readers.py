"""Reader choice and fallback: the default reader, one retry with the other reader, both failing, and
`--reader torchcodec` refused on a CPU-only install."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.data import decode as decode_mod
from pipeline.data.clips import ClipSpec
from pipeline.data.decode import FrameSize, decode_chunks, plan_media
from pipeline.data.video import DEFAULT_READER, DecordReader, PyAVReader, write_video
from pipeline.errors import DecodeError


def _video(path: Path, frames: int = 24, size: int = 128, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    write_video(path, (np.roll(base, 3 * t, axis=1) for t in range(frames)), fps=12)
    return path


@pytest.fixture(scope="module")
def video_128(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _video(tmp_path_factory.mktemp("v") / "v.mp4")


@pytest.fixture(scope="module")
def videomae_72(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny VideoMAE whose processor asks for shortest edge 72 (the case decord failed on)."""
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(0)
    config = VideoMAEConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=64,
        patch_size=16,
        num_frames=4,
        tubelet_size=2,
    )
    path = tmp_path_factory.mktemp("videomae72")
    VideoMAEModel(config).save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": 72}}))
    return path


def test_decord_fails_the_shortest_edge_72_case_that_pyav_decodes(video_128: Path) -> None:
    with pytest.raises(DecodeError, match="from_size == to_size"):
        list(DecordReader().iter_frames(video_128, short_side=72))
    frames = list(PyAVReader().iter_frames(video_128, short_side=72))
    assert len(frames) == 24 and frames[0].shape == (72, 72, 3)


@pytest.mark.parametrize("reader", [None, "decord"])
def test_the_videomae_72_case_extracts_with_the_default_reader_and_after_a_decord_failure(
    videomae_72: Path, video_128: Path, tmp_path: Path, reader: str | None
) -> None:
    from flows.extract import ExtractConfig, extract, load_inputs

    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "v.mp4").write_bytes(video_128.read_bytes())
    options = {"reader": reader} if reader else {}
    config = ExtractConfig(encoder=f"videomae:{videomae_72}", device="cpu", decode_workers=0, **options)
    assert config.reader == (reader or DEFAULT_READER) and DEFAULT_READER == "pyav"
    result = extract(load_inputs(None, folder, None), tmp_path / "s.zarr", config, bar=False)
    assert (result.ok, result.failed, result.errors) == (1, 0, [])
    assert result.motion_clips > 0


class _BreaksAfter:
    """PyAV that raises DecodeError after `after` frames, as a stream broken midway would."""

    name = "pyav"

    def __init__(self, after: int) -> None:
        self.after = after
        self.inner = PyAVReader()

    def probe(self, path: str | Path):  # type: ignore[no-untyped-def]
        return self.inner.probe(path)

    def iter_frames(
        self, path: str | Path, *, short_side: int | None = None, size: tuple[int, int] | None = None
    ) -> Iterator[np.ndarray]:
        for i, frame in enumerate(self.inner.iter_frames(path, short_side=short_side, size=size)):
            if i == self.after:
                raise DecodeError(f"{path}: stream broken after {i} frames: test")
            yield frame


def test_a_midway_failure_is_retried_with_the_other_reader_without_repeating_clips(
    video_128: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = ClipSpec(frames_per_clip=4, static_frames=3)
    frame = FrameSize(64, 64)
    plan = plan_media(video_128, spec)
    expected = list(decode_chunks(video_128, plan, frame, chunk=2))
    real = decode_mod.get_reader
    used: list[str] = []

    def fake(name: str, **kwargs: int):  # type: ignore[no-untyped-def]
        used.append(name)
        return _BreaksAfter(14) if name == "pyav" else real("pyav")

    monkeypatch.setattr(decode_mod, "get_reader", fake)
    got = list(decode_chunks(video_128, plan, frame, chunk=2))
    assert used == ["pyav", "decord"]
    for key in ("motion", "static"):
        want = {
            int(i): c
            for ch in expected
            for i, c in zip(getattr(ch, f"{key}_index"), getattr(ch, key), strict=True)
        }
        have = [
            (int(i), c)
            for ch in got
            for i, c in zip(getattr(ch, f"{key}_index"), getattr(ch, key), strict=True)
        ]
        assert sorted(i for i, _ in have) == sorted(want)  # every clip exactly once
        assert all(np.array_equal(c, want[i]) for i, c in have)


def test_when_both_readers_fail_the_error_names_each_and_why(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(DecodeError, match=r"pyav failed: .+; retried with decord: .+"):
        plan_media(bad, ClipSpec(frames_per_clip=4))


def test_reader_torchcodec_on_a_cpu_install_exits_2_saying_what_to_install(
    video_128: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "v.mp4").write_bytes(video_128.read_bytes())
    args = ["extract", "--videos", str(folder), "--encoder", "tiny", "--out", str(tmp_path / "s.zarr")]
    result = CliRunner().invoke(app, [*args, "--reader", "torchcodec"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "torchcodec" in lines[0] and "pip install" in lines[0]
    assert not (tmp_path / "s.zarr").exists()
