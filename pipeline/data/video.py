"""Video and image reading, and H.264 writing.

Every reader decodes a video in ONE sequential pass and yields each frame once, in order, as an
``(H, W, 3)`` uint8 RGB array. Clips are cut from that stream (``pipeline.data.clips``); re-opening or
seeking per clip is several times slower on CPU (design §5), so no reader offers it.

Errors surface as :class:`~pipeline.errors.DecodeError` with a short reason. Opening is eager:
``iter_frames`` raises for a missing, empty or non-video file before it returns; a stream that breaks
midway (truncated or corrupt file) yields the frames decoded so far and then raises.

decord and PyAV are imported inside the functions that use them, so importing this module is cheap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from pipeline.errors import ConfigError, DecodeError

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".flv", ".wmv", ".ts"}
)
# Container format for write_video, by suffix (the file is written as PATH.tmp, so PyAV cannot guess).
_MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}


@dataclass(frozen=True)
class VideoInfo:
    """What a container says about its video stream (frame count may be an estimate for some formats)."""

    num_frames: int
    fps: float
    height: int
    width: int


@runtime_checkable
class VideoReader(Protocol):
    """A video decoder: metadata, and every frame once, in order, in one sequential pass."""

    name: str

    def probe(self, path: str | Path) -> VideoInfo:
        """Frame count, frame rate and native size of the first video stream."""
        ...

    def iter_frames(
        self, path: str | Path, *, short_side: int | None = None, size: tuple[int, int] | None = None
    ) -> Iterator[np.ndarray]:
        """Yield every frame as ``(H, W, 3)`` uint8 RGB; resized so min(H, W) == short_side, or to
        ``size`` = (H, W) exactly (aspect ratio not kept), if given."""
        ...


def scaled_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(height, width)`` after scaling so the short side is ``short_side``, keeping the aspect ratio."""
    if short_side < 1:
        raise ConfigError(f"short_side must be a positive number of pixels, got {short_side}")
    scale = short_side / min(height, width)
    if height <= width:
        return short_side, max(short_side, round(width * scale))
    return max(short_side, round(height * scale)), short_side


def is_image(path: str | Path) -> bool:
    """True when the file name has an image extension (jpg, png, …)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_video(path: str | Path) -> bool:
    """True when the file name has a video container extension (mp4, mkv, …)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


# --------------------------------------------------------------------------- errors


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DecodeError(f"{path}: no such file")
    if not path.is_file():
        raise DecodeError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise DecodeError(f"{path}: zero-byte file")


# decord prefixes messages with "[hh:mm:ss] /build/path/file.cc:123: ", sometimes nested.
_DECORD_PREFIX = re.compile(r"\[[\d:]+\] \S+:\d+: ")


def _reason(exc: BaseException) -> str:
    """One short line from a decoder exception."""
    text = getattr(exc, "strerror", None) or str(exc)
    lines = _DECORD_PREFIX.sub("", str(text)).strip().splitlines()
    return lines[0][:160] if lines else type(exc).__name__


# --------------------------------------------------------------------------- PyAV


def _open_av(path: Path) -> tuple[InputContainer, VideoStream]:
    """Open with PyAV (reads the header only) and return the container and its first video stream."""
    import av

    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"{path}: not a video: {_reason(exc)}") from exc
    if not container.streams.video:
        container.close()
        raise DecodeError(f"{path}: not a video: no video stream")
    return container, container.streams.video[0]


def _av_info(stream: VideoStream, container: InputContainer) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else 0.0
    num_frames = int(stream.frames)
    if num_frames <= 0 and fps > 0:
        # Some containers (webm, some avi) carry no frame count: estimate from the duration.
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        else:
            seconds = (container.duration or 0) / 1_000_000
        num_frames = round(seconds * fps)
    return VideoInfo(num_frames=num_frames, fps=fps, height=stream.height, width=stream.width)


class PyAVReader:
    """Sequential demux + decode with PyAV (FFmpeg); colour conversion and resize by swscale (bicubic)."""

    name: str = "pyav"

    def __init__(self, num_threads: int = 1) -> None:
        self.num_threads = num_threads

    def probe(self, path: str | Path) -> VideoInfo:
        path = Path(path)
        _check_file(path)
        container, stream = _open_av(path)
        try:
            return _av_info(stream, container)
        finally:
            container.close()

    def iter_frames(
        self, path: str | Path, *, short_side: int | None = None, size: tuple[int, int] | None = None
    ) -> Iterator[np.ndarray]:
        path = Path(path)
        _check_file(path)
        container, stream = _open_av(path)
        stream.codec_context.thread_count = self.num_threads
        if self.num_threads != 1:
            stream.codec_context.thread_type = "AUTO"
        if size is None and short_side:
            size = scaled_size(stream.height, stream.width, short_side)
        return self._frames(path, container, stream, size)

    @staticmethod
    def _frames(
        path: Path, container: InputContainer, stream: VideoStream, size: tuple[int, int] | None
    ) -> Iterator[np.ndarray]:
        import av
        from av.video.reformatter import VideoReformatter

        resize: dict[str, Any] = (
            {"height": size[0], "width": size[1], "interpolation": "BICUBIC"} if size else {}
        )
        # One reformatter for the whole stream keeps its swscale context: frame.to_ndarray(format=...)
        # builds a fresh one per frame, which made PyAV 3-4x slower than decord on small frames.
        reformatter = VideoReformatter()
        done = 0
        try:
            for frame in container.decode(stream):
                rgb = reformatter.reformat(frame, format="rgb24", **resize)
                yield rgb.to_ndarray()  # (H, W, 3) uint8
                done += 1
        except av.FFmpegError as exc:
            raise DecodeError(f"{path}: stream broken after {done} frames: {_reason(exc)}") from exc
        finally:
            container.close()
        if done == 0:
            raise DecodeError(f"{path}: no frames decoded")


# --------------------------------------------------------------------------- decord


class DecordReader:
    """Sequential decode with decord, read in small batches of consecutive frames (no seeking).

    decord indexes the packets when it opens a file, so a truncated file usually fails at open; when it
    fails midway, the frames of the batches before the break are yielded, then DecodeError.
    """

    name: str = "decord"

    def __init__(self, num_threads: int = 1, batch_size: int = 8) -> None:
        self.num_threads = num_threads
        self.batch_size = batch_size

    def probe(self, path: str | Path) -> VideoInfo:
        path = Path(path)
        _check_file(path)
        height, width = _native_size(path)
        vr = self._open(path, -1, -1)
        return VideoInfo(num_frames=len(vr), fps=float(vr.get_avg_fps()), height=height, width=width)

    def iter_frames(
        self, path: str | Path, *, short_side: int | None = None, size: tuple[int, int] | None = None
    ) -> Iterator[np.ndarray]:
        path = Path(path)
        _check_file(path)
        if size is not None:
            height, width = size
        else:
            height, width = scaled_size(*_native_size(path), short_side) if short_side else (-1, -1)
        return self._frames(path, self._open(path, width, height))

    def _open(self, path: Path, width: int, height: int) -> Any:  # decord.VideoReader
        import decord

        try:
            return decord.VideoReader(
                str(path), ctx=decord.cpu(0), width=width, height=height, num_threads=self.num_threads
            )
        except (RuntimeError, decord.DECORDError, AssertionError) as exc:
            # decord's own message is often just "Error reading PATH..."; FFmpeg via PyAV says why.
            _native_size(path)
            raise DecodeError(f"{path}: corrupt or truncated video: {_reason(exc)}") from exc

    def _frames(self, path: Path, vr: Any) -> Iterator[np.ndarray]:
        import decord

        num_frames = len(vr)
        done = 0
        for start in range(0, num_frames, self.batch_size):
            indices = list(range(start, min(num_frames, start + self.batch_size)))
            try:
                batch = vr.get_batch(indices).asnumpy()  # (b, H, W, 3) uint8
            except (decord.DECORDError, RuntimeError, IndexError) as exc:
                raise DecodeError(
                    f"{path}: stream broken after {done} of {num_frames} frames: {_reason(exc)}"
                ) from exc
            for frame in batch:
                yield frame
                done += 1
        if done == 0:
            raise DecodeError(f"{path}: no frames decoded")


def _native_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the container header (cheap: no packet is decoded)."""
    container, stream = _open_av(path)
    try:
        if stream.height <= 0 or stream.width <= 0:
            raise DecodeError(f"{path}: not a video: the stream has no frame size")
        return stream.height, stream.width
    finally:
        container.close()


READERS = ("pyav", "decord", "torchcodec")
DEFAULT_READER = "pyav"  # maintained, and as fast as decord once its swscale context is kept
# The reader a decode error is retried with once (torchcodec's errors are retried on the CPU).
FALLBACK = {"pyav": "decord", "decord": "pyav", "torchcodec": "pyav"}


def get_reader(name: str, *, num_threads: int = 1) -> VideoReader:
    """The reader called ``name``: "pyav" (the default), "decord" or "torchcodec" (CUDA installs)."""
    if name == "pyav":
        return PyAVReader(num_threads=num_threads)
    if name == "decord":
        return DecordReader(num_threads=num_threads)
    if name == "torchcodec":
        require_torchcodec()
        from pipeline.data.torchcodec_reader import TorchcodecReader

        return TorchcodecReader()
    raise ConfigError(f"unknown video reader {name!r}; choose one of: {', '.join(READERS)}")


def require_torchcodec() -> None:
    """Raise ConfigError saying what to install unless torchcodec imports next to a CUDA torch."""
    install = (
        "install a CUDA build of torch, FFmpeg 5-7 shared libraries and the extra "
        "(pip install 'aam-pipeline[torchcodec]'), or use --reader pyav"
    )
    import importlib.util

    if importlib.util.find_spec("torchcodec") is None:
        raise ConfigError(f"--reader torchcodec needs the torchcodec package: {install}")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"--reader torchcodec decodes on a CUDA GPU and this torch sees none: {install}")
    try:
        import torchcodec  # noqa: F401
    except (ImportError, OSError, RuntimeError) as exc:
        raise ConfigError(f"--reader torchcodec does not import ({_reason(exc)}): {install}") from exc


# --------------------------------------------------------------------------- images


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to ``(H, W, 3)`` uint8 RGB, honouring its EXIF orientation."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    _check_file(path)
    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image)
            return np.asarray(upright.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise DecodeError(f"{path}: not a readable image: {_reason(exc)}") from exc


# --------------------------------------------------------------------------- writing


def write_video(
    path: str | Path, frames: Iterable[np.ndarray], fps: int, crf: int = 18, *, preset: str = "medium"
) -> int:
    """Encode ``(H, W, 3)`` uint8 RGB frames as H.264 (libx264, yuv420p); returns the frame count.

    H and W must be even (yuv420p). The file is written to ``PATH.tmp`` and renamed, so ``path`` only
    ever holds a complete video.
    """
    import av

    path = Path(path)
    muxer = _MUXERS.get(path.suffix.lower())
    if muxer is None:
        raise ConfigError(f"write_video: unsupported suffix {path.suffix!r}; use one of {sorted(_MUXERS)}")
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ConfigError(f"write_video: no frames to write to {path}")
    height, width = _check_frame(first, None)
    if height % 2 or width % 2:
        raise ConfigError(f"write_video: H.264 yuv420p needs an even frame size; got {height}x{width} (HxW)")

    tmp = path.with_name(path.name + ".tmp")
    container = av.open(str(tmp), mode="w", format=muxer)
    count = 0
    try:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        frame: np.ndarray | None = first
        while frame is not None:
            _check_frame(frame, (height, width))
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            container.mux(stream.encode(video_frame))
            count += 1
            frame = next(it, None)
        container.mux(stream.encode(None))  # flush the encoder's delayed frames
    except BaseException:
        container.close()
        tmp.unlink(missing_ok=True)
        raise
    container.close()
    tmp.replace(path)
    return count


def _check_frame(frame: np.ndarray, size: tuple[int, int] | None) -> tuple[int, int]:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ConfigError(f"write_video: frames must be (H, W, 3) uint8; got {frame.shape} {frame.dtype}")
    if size is not None and frame.shape[:2] != size:
        raise ConfigError(f"write_video: frame size changed from {size} to {frame.shape[:2]}")
    return frame.shape[0], frame.shape[1]
