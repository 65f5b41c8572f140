"""`extract`: inputs -> frozen encoder -> crash-safe latent cache.

Each input is decoded once, in order, in a worker process (see `flows.decode_pool`); its clips are
batched across inputs and encoded in this process (bf16 autocast on CUDA). Inputs are grouped into
work units of `videos_per_part`; a unit becomes one part of the cache, written atomically once all
its inputs are done, so a killed run loses at most the units in flight and a rerun does only those.
User guide: docs/extract.md.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field

from flows.cpu import keep_freed_memory
from flows.decode_pool import (
    Chunk,
    DecodeJob,
    DecodeSettings,
    Done,
    Event,
    Failed,
    Planned,
    decode_in_workers,
    decode_inline,
)
from flows.progress import progress
from pipeline.data.clips import ClipSpec
from pipeline.data.decode import FrameSize, MediaPlan
from pipeline.data.transforms import Preprocess
from pipeline.data.video import require_torchcodec
from pipeline.encoders.base import LoadedEncoder
from pipeline.encoders.registry import build_encoder
from pipeline.errors import ConfigError
from stores.latent_cache import CacheAttrs, LatentCache, PartData
from stores.manifest import manifest_from_folder, read_manifest
from stores.published import public_encoder_id


class ExtractConfig(BaseModel):
    """Everything that decides what `extract` computes and how; recorded in the store's attributes
    where it changes the embeddings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    encoder: str = "tiny"
    frames_per_clip: int | None = Field(None, ge=1, description="None = the encoder's own clip length")
    crop: int | None = Field(None, ge=1, description="TorchScript encoders: input side (default 224)")
    resize: int | None = Field(None, ge=1, description="TorchScript encoders: short side before the crop")
    resize_mode: Literal["short-side", "squash"] | None = Field(
        None, description="TorchScript encoders: short side + centre crop (default), or squash to the crop"
    )
    frame_step: int = Field(1, ge=1)
    stride: int | None = Field(None, ge=1)
    num_clips: int | None = Field(None, ge=1)
    static_frames: int | None = Field(
        None, ge=0, description="static clips per video but the test split's; None = the store's, else 10"
    )
    static_frames_test: int | None = Field(
        None, ge=0, description="static clips per video of the test split; None = the store's, else min(5, K)"
    )
    tokens: bool = False
    dtype: Literal["float32", "float16"] = "float32"
    reader: Literal["pyav", "decord", "torchcodec"] = Field(
        "pyav", description="video decoder; a decode error is retried once with the other CPU reader"
    )
    device: str = "auto"
    allow_download: bool = False
    batch_size: int = Field(32, ge=1)
    decode_workers: int | None = Field(None, ge=0, description="0 = decode in this process; None = auto")
    videos_per_part: int = Field(32, ge=1)


@dataclass
class ExtractResult:
    store: str
    total: int
    skipped: int
    ok: int
    failed: int
    motion_clips: int
    static_clips: int
    seconds: float
    errors: list[tuple[str, str]] = field(default_factory=list)  # (video_id, reason)
    parts: list[str] = field(default_factory=list)  # ids of the store parts written by this run


def load_inputs(
    manifest: str | Path | None, videos: str | Path | None, images: str | Path | None
) -> pa.Table:
    """The manifest table of exactly one of: a manifest file, a folder of videos, a folder of images."""
    given = [x for x in (manifest, videos, images) if x is not None]
    if len(given) != 1:
        raise ConfigError("give exactly one input: --manifest FILE, --videos DIR or --images DIR")
    if manifest is not None:
        return read_manifest(manifest)
    if videos is not None:
        return manifest_from_folder(videos, "videos")
    assert images is not None
    return manifest_from_folder(images, "images")


def cache_attrs(encoder: LoadedEncoder, spec: ClipSpec, config: ExtractConfig) -> CacheAttrs:
    tokens = None
    if config.tokens:
        if encoder.time_groups is None or encoder.output != "tokens":
            raise ConfigError(f"encoder {encoder.encoder_id} has no temporal tokens; drop --tokens")
        tokens = (encoder.time_groups, encoder.dim)
    preprocessing: dict[str, Any] = {
        "clips": spec.model_dump(mode="json"),
        "preprocess": encoder.preprocess.model_dump(mode="json"),
        "decoder": config.reader,
    }
    by_split = static_frames_by_split(config)
    if by_split:  # absent when every split has clips.static_frames: the stores made before it had
        preprocessing["static_frames_by_split"] = by_split
    return CacheAttrs(
        encoder_id=public_encoder_id(encoder.encoder_id),  # what the published manifest says too
        weights_sha256=encoder.weights_sha256,
        dim=encoder.dim,
        pooling=encoder.pooling,
        dtype=config.dtype,
        preprocessing=preprocessing,
        tokens=tokens,
    )


# The split whose static clips only the probes read (to score attackers fit on train and val clips);
# the adapter trains on those of train and val.
TEST_SPLIT = "test"


# Static clips per video for a new store: K of the train and val videos (what the adapter trains on),
# min(K, 5) of the test videos (only the probes read them: 5 of 10 moved no static-leakage figure by
# more than 0.025 on the dev benchmark and encodes 12% fewer clips; fewer reads the attackers low;
# docs/extract.md).
DEFAULT_STATIC_FRAMES = 10
DEFAULT_STATIC_FRAMES_TEST = 5


def for_store(config: ExtractConfig, out: str | Path | None) -> ExtractConfig:
    """`config` with the static-clip counts it leaves unset taken from the store at `out` when there is
    one, else (also for `out` None) the defaults. So a store keeps its own numbers when a later release
    changes a default (a store made before the test split had its own number has one for every split)."""
    if config.static_frames is not None and config.static_frames_test is not None:
        return config
    stored = None if out is None else _stored_preprocessing(out)
    if stored is None:
        k = DEFAULT_STATIC_FRAMES if config.static_frames is None else config.static_frames
        test = min(k, DEFAULT_STATIC_FRAMES_TEST)
    else:
        k = static_frames_of(stored, None)
        test = static_frames_of(stored, TEST_SPLIT)
    update = {
        "static_frames": k if config.static_frames is None else config.static_frames,
        "static_frames_test": test if config.static_frames_test is None else config.static_frames_test,
    }
    return config.model_copy(update=update)


def _stored_preprocessing(out: str | Path) -> dict[str, Any] | None:
    """The preprocessing attributes of the latent cache at `out`; None when there is none yet."""
    if not LatentCache.exists(out):
        return None
    return LatentCache.open(out).attrs.preprocessing


def static_frames_by_split(config: ExtractConfig) -> dict[str, int]:
    """The splits whose videos get another number of static clips than `config.static_frames`
    (`config` as `for_store` gives it)."""
    test = config.static_frames_test
    return {} if test is None or test == config.static_frames else {TEST_SPLIT: test}


def static_frames_of(preprocessing: dict[str, Any], split: str | None) -> int:
    """Static clips per video of `split` in a store with these `preprocessing` attributes (stores made
    before `static_frames_by_split` have `clips.static_frames` for every split)."""
    by_split = preprocessing.get("static_frames_by_split") or {}
    if split is not None and split in by_split:
        return int(by_split[split])
    return int(preprocessing["clips"]["static_frames"])


def fingerprint(path: str) -> tuple[int, int] | None:
    """(size, mtime_ns) of a video file as the store records it; None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


@dataclass
class _Video:
    """Per-input state while its clips are decoded and encoded."""

    row: int
    fingerprint: tuple[int, int] | None  # (size, mtime_ns) before decoding: what the store records
    plan: MediaPlan | None = None
    motion: np.ndarray | None = None
    static: np.ndarray | None = None
    tokens: np.ndarray | None = None
    pending: int = 0  # clips received but not yet encoded
    error: str | None = None


def encode_clips(
    encoder: LoadedEncoder,
    motion: np.ndarray,
    static: np.ndarray,
    *,
    tokens: bool = False,
    buffer: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Embed decoded clips: uint8 motion clips `(Bm, T, S, S, 3)` and static frames `(Bs, S, S, 3)`, as
    `decode_chunks` yields them, -> pooled float32 `(Bm + Bs, D)` (motion rows first) and, if `tokens`,
    temporal tokens float32 `(Bm + Bs, T', D)`. `buffer`: see `model_input`."""
    x = model_input(motion, static, encoder.frames_per_clip, encoder.preprocess, encoder.device, buffer)
    out = encoder.forward(x).float()  # (B, N, D) or (B, D)
    pooled = out.mean(1) if out.ndim == 3 else out  # (B, D)
    temporal = None
    if tokens:
        b, n, d = out.shape
        groups = int(encoder.time_groups or 1)
        temporal = out.view(b, groups, n // groups, d).mean(2).cpu().numpy()  # (B, T', D)
    return pooled.cpu().numpy(), temporal


def model_input(
    motion: np.ndarray,
    static: np.ndarray,
    frames: int,
    pre: Preprocess,
    device: torch.device,
    buffer: torch.Tensor | None = None,
) -> torch.Tensor:
    """Decoded uint8 motion clips `(Bm, T, S, S, 3)` and static frames `(Bs, S, S, 3)` (already resized
    and cropped, S = pre.crop) -> normalised float32 `(Bm + Bs, 3, T, S, S)` on `device`, each static
    frame repeated T times. The values of `transforms.batch_to_model_input`, in fewer passes over memory
    (preprocessing is memory-bound on CPU): uint8 crosses to the device, static frames are normalised
    once and repeated after. A float32 `buffer` on `device` with room for the batch is filled in place
    and a view of it returned: reusing one saves a fresh, page-faulting allocation per batch."""
    bm, bs, crop = len(motion), len(static), pre.crop
    if (bm and motion.shape[1:] != (frames, crop, crop, 3)) or (bs and static.shape[1:] != (crop, crop, 3)):
        raise ConfigError(
            f"decoded clips {motion.shape} / frames {static.shape} do not fit the encoder's "
            f"{frames} x {crop} x {crop} input"
        )
    std = torch.tensor(pre.std, device=device)
    scale = (1.0 / (255.0 * std)).view(1, 3, 1, 1)
    shift = (torch.tensor(pre.mean, device=device) / std).view(1, 3, 1, 1)
    shape = (bm + bs, 3, frames, crop, crop)
    fits = buffer is not None and buffer.shape[1:] == shape[1:] and len(buffer) >= shape[0]
    out = buffer[: shape[0]] if fits and buffer is not None else torch.empty(shape, device=device)
    if bm:
        x = _to_device(motion, device).permute(0, 4, 1, 2, 3)  # (Bm, 3, T, S, S) uint8 view
        head = out[:bm]
        head.copy_(x)
        head.mul_(scale[..., None]).sub_(shift[..., None])
    if bs:
        f = _to_device(static, device).permute(0, 3, 1, 2).float()  # (Bs, 3, S, S)
        f = f * scale - shift
        out[bm:].copy_(f[:, :, None].expand(-1, -1, frames, -1, -1))
    return out


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    batch = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda":
        batch = batch.pin_memory()
    return batch.to(device, non_blocking=True)


class _Encoder:
    """Batches clips of any inputs and writes each embedding back to its input's arrays."""

    def __init__(self, encoder: LoadedEncoder, batch_size: int, tokens: bool) -> None:
        self.encoder = encoder
        self.batch_size = batch_size
        self.tokens = tokens
        self.items: list[tuple[_Video, str, int, np.ndarray]] = []
        self.clips_done = 0
        pre = encoder.preprocess
        shape = (batch_size, 3, encoder.frames_per_clip, pre.crop, pre.crop)
        self.buffer = torch.empty(shape, dtype=torch.float32, device=encoder.device)

    def add(self, video: _Video, kind: str, index: int, clip: np.ndarray) -> None:
        self.items.append((video, kind, index, clip))
        video.pending += 1
        if len(self.items) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.items:
            return
        # Motion clips first, as encode_clips returns them.
        items = [i for i in self.items if i[1] == "motion"] + [i for i in self.items if i[1] != "motion"]
        n_motion = sum(i[1] == "motion" for i in items)
        crop = self.encoder.preprocess.crop
        motion = [c for _, _, _, c in items[:n_motion]]
        # Always one batch shape: a short batch is padded with blank static frames. The encoder's
        # kernels depend on the batch size (an embedding encoded in a batch of 1 differs from the same
        # clip in a batch of 32 in the last bits), so without this a resumed run, whose batches are
        # cut differently, would not reproduce a clean run bit for bit. Costs at most one batch a run.
        blank = np.zeros((crop, crop, 3), np.uint8)
        static = [c for _, _, _, c in items[n_motion:]] + [blank] * (self.batch_size - len(items))
        pooled, temporal = encode_clips(
            self.encoder,
            np.stack(motion) if motion else np.zeros((0, 0, crop, crop, 3), np.uint8),
            np.stack(static) if static else np.zeros((0, crop, crop, 3), np.uint8),
            tokens=self.tokens,
            buffer=self.buffer,
        )
        for i, (video, kind, index, _) in enumerate(items):
            target = video.motion if kind == "motion" else video.static
            assert target is not None  # an input's arrays go only once none of its clips is pending
            target[index] = pooled[i]
            if temporal is not None and kind == "motion" and video.tokens is not None:
                video.tokens[index] = temporal[i]
            video.pending -= 1
        self.clips_done += len(items)
        self.items = []


def extract(
    inputs: pa.Table,
    out: str | Path,
    config: ExtractConfig | None = None,
    *,
    bar: bool | None = None,
    cleanup: bool = True,
    lock: bool = True,
    encoder: LoadedEncoder | None = None,
) -> ExtractResult:
    """Extract every input not already complete in the store at `out`; see the module docstring.

    `lock`: hold the store's writer lock for the run (`LatentCache.writer_lock`): a second run on the
    same store gets WriterBusyError naming the first. `cleanup=False, lock=False` is for one work unit
    among others writing the same store at once (flows/prefect_extract.py): their coordinator holds the
    lock and cleans up when no unit is left. `encoder`: the encoder `load_encoder(config)` gives, already
    loaded (reused across the work units one process runs)."""
    config = for_store(config or ExtractConfig(), out)
    if config.reader == "torchcodec":
        require_torchcodec()  # before the encoder loads
    start = time.perf_counter()
    keep_freed_memory()  # else every batch page-faults its buffers back in (flows/cpu.py)
    encoder = encoder or load_encoder(config)
    spec = clip_spec(config, encoder)
    # Opened (and checked) before the lock is taken: bad arguments leave no lock file behind.
    cache = LatentCache.create_or_open(out, cache_attrs(encoder, spec, config))
    with LatentCache.writer_lock(out) if lock else contextlib.nullcontext():
        return _extract(inputs, cache, config, spec, encoder, start, bar=bar, cleanup=cleanup)


def _extract(
    inputs: pa.Table,
    cache: LatentCache,
    config: ExtractConfig,
    spec: ClipSpec,
    encoder: LoadedEncoder,
    start: float,
    *,
    bar: bool | None,
    cleanup: bool,
) -> ExtractResult:
    """`extract` once the store is open (and, unless a coordinator holds it, locked)."""
    out = cache.url
    if cleanup:
        cache.cleanup()
    done = cache.completed_videos()
    ids = inputs.column("video_id").to_pylist()
    paths = inputs.column("path").to_pylist()
    # Fingerprints are taken before decoding: a file that changes meanwhile is re-extracted next run.
    prints = [fingerprint(p) for p in paths]
    todo = [i for i in range(len(ids)) if done.get(ids[i]) is None or done[ids[i]] != prints[i]]
    todo.sort(key=lambda i: ids[i])
    units = [todo[k : k + config.videos_per_part] for k in range(0, len(todo), config.videos_per_part)]
    result = ExtractResult(str(out), len(ids), len(ids) - len(todo), 0, 0, 0, 0, 0.0)
    if todo:
        settings = decode_settings(config, encoder, spec)
        workers = decode_worker_count(config, encoder, len(todo))
        jobs = decode_jobs(inputs, todo, config)
        events = decode_in_workers(jobs, settings, workers) if workers else decode_inline(jobs, settings)
        state = {ids[i]: _Video(row=i, fingerprint=prints[i]) for i in todo}
        # closing: whatever happens in _run, the decode workers stop with it.
        with (
            progress("extract", len(todo), "videos", bar=bar) as advance,
            contextlib.closing(events),
            _cpu_threads(encoder, workers),
        ):
            _run(
                events,
                inputs,
                units,
                state,
                cache,
                _Encoder(encoder, config.batch_size, config.tokens),
                result,
                advance,
            )
    result.seconds = round(time.perf_counter() - start, 2)
    return result


def encoder_threads(encoder: LoadedEncoder, decode_workers: int) -> int:
    """Torch threads for the encoder during an extraction with `decode_workers` processes: on CPU the
    cores the workers leave (at least one, never more than torch's setting, so OMP_NUM_THREADS or
    torch.set_num_threads can lower it); elsewhere, or decoding inline, torch's own setting."""
    threads = torch.get_num_threads()
    if encoder.device.type != "cpu" or decode_workers == 0:
        return threads
    return max(1, min(threads, (os.cpu_count() or 1) - decode_workers))


def decode_jobs(inputs: pa.Table, rows: list[int], config: ExtractConfig) -> list[DecodeJob]:
    """One decode job per row of `inputs`, with its split's number of static clips."""
    ids = inputs.column("video_id").to_pylist()
    paths = inputs.column("path").to_pylist()
    splits = inputs.column("split").to_pylist() if "split" in inputs.column_names else [None] * len(ids)
    by_split = static_frames_by_split(config)
    return [DecodeJob(ids[i], paths[i], by_split.get(splits[i] or "")) for i in rows]


@contextlib.contextmanager
def _cpu_threads(encoder: LoadedEncoder, decode_workers: int) -> Iterator[None]:
    """`encoder_threads` for the run. Oversubscribed, torch's threads stall each other (measured on 2
    cores: 1 worker + 2 torch threads took 12.2 s where 1 + 1 took 8.8 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(encoder_threads(encoder, decode_workers))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_encoder(config: ExtractConfig) -> LoadedEncoder:
    """The frozen encoder `config` names, with its clip length / crop / resize overrides."""
    overrides = {
        name: value
        for name, value in (
            ("frames_per_clip", config.frames_per_clip),
            ("crop", config.crop),
            ("resize", config.resize),
            ("resize_mode", config.resize_mode),
        )
        if value is not None
    }
    return build_encoder(
        config.encoder, device=config.device, allow_download=config.allow_download, **overrides
    )


def clip_spec(config: ExtractConfig, encoder: LoadedEncoder) -> ClipSpec:
    """Where clips sit in each video: the config's placement at the encoder's clip length (`config` as
    `for_store` gives it)."""
    if config.static_frames is None:
        raise ConfigError("internal: clip_spec needs a config with its static clips set (for_store)")
    spec = ClipSpec(
        frames_per_clip=config.frames_per_clip or encoder.frames_per_clip,
        frame_step=config.frame_step,
        stride=config.stride,
        num_clips=config.num_clips,
        static_frames=config.static_frames,
    )
    if spec.frames_per_clip != encoder.frames_per_clip:
        raise ConfigError(
            f"encoder {encoder.encoder_id} takes {encoder.frames_per_clip} frames per clip, "
            f"not {spec.frames_per_clip}; drop --frames-per-clip"
        )
    return spec


def decode_settings(config: ExtractConfig, encoder: LoadedEncoder, spec: ClipSpec) -> DecodeSettings:
    """What every decode worker needs: clip placement, frame size, decoder, clips per chunk."""
    if config.reader == "torchcodec":
        require_torchcodec()  # refused here, once, not as one failure per video
    pre = encoder.preprocess
    frame = FrameSize(pre.resize, pre.crop, pre.resize_mode)
    return DecodeSettings(spec, frame, config.reader, chunk=max(1, config.batch_size // 2))


# Encoders whose clip costs the CPU hundreds of times what decoding it does (VideoMAE-B: about 361
# GFLOPs a clip at 224 px, against a few ms to decode and resize its 16 frames): one decode worker
# keeps them fed, and every other core is theirs.
HEAVY_ENCODERS = ("videomae", "vjepa2")


def decode_worker_count(config: ExtractConfig, encoder: LoadedEncoder, n_inputs: int) -> int:
    """Decode processes for `n_inputs` inputs: the config's; with a GPU all cores but one; on CPU one
    for a transformer encoder (`HEAVY_ENCODERS`) and half the cores for the others (the tiny 3-D CNN,
    TorchScript), the encoder's torch threads getting the rest (`encoder_threads`)."""
    if config.decode_workers is not None:
        return config.decode_workers
    cores = os.cpu_count() or 1
    if encoder.device.type == "cuda":
        wanted = cores - 1
    elif encoder.encoder_id.partition(":")[0] in HEAVY_ENCODERS:
        wanted = 1
    else:
        wanted = max(1, cores // 2)
    return max(1, min(wanted, n_inputs))


def _run(
    events: Iterator[Event],
    inputs: pa.Table,
    units: list[list[int]],
    state: dict[str, _Video],
    cache: LatentCache,
    enc: _Encoder,
    result: ExtractResult,
    advance: Any,
) -> None:
    ids = inputs.column("video_id").to_pylist()
    unit_of = {ids[i]: u for u, unit in enumerate(units) for i in unit}
    started = time.perf_counter()
    left = [len(unit) for unit in units]  # inputs of each unit not yet finished
    waiting: set[str] = set()  # decoded (or failed), some clips maybe still in the encoder's batch
    dim, tokens = cache.attrs.dim, cache.attrs.tokens

    def finish(video_id: str) -> None:
        u = unit_of[video_id]
        left[u] -= 1
        video = state[video_id]
        if video.error is None and video.plan is None:
            video.error = "the decoder produced no clips"
        advance(clips_per_s=enc.clips_done / max(time.perf_counter() - started, 1e-9))
        if left[u] == 0:
            members = [state[ids[i]] for i in units[u]]
            unit_ids = [ids[i] for i in units[u]]
            part_id = unit_part_id(unit_ids, members, cache.attrs)
            wrote = cache.write_part(part_id, build_part(inputs, members, dim))
            if wrote:
                result.parts.append(part_id)
            _count(result, unit_ids, members, wrote)
            for member in members:  # written: keep memory bounded on long runs
                member.motion = member.static = member.tokens = None

    def settle() -> None:
        for video_id in [v for v in waiting if state[v].pending == 0]:
            waiting.discard(video_id)
            finish(video_id)

    for event in events:
        video = state[event.video_id]
        if isinstance(event, Planned):
            plan = event.plan
            video.plan = plan
            video.motion = np.zeros((len(plan.windows), dim), np.float32)
            video.static = np.zeros((len(plan.static_frames), dim), np.float32)
            if tokens is not None:
                video.tokens = np.zeros((len(plan.windows), *tokens), np.float32)
        elif isinstance(event, Chunk):
            for k, clip in zip(event.chunk.motion_index.tolist(), event.chunk.motion, strict=True):
                enc.add(video, "motion", k, clip)
            for k, frame in zip(event.chunk.static_index.tolist(), event.chunk.static, strict=True):
                enc.add(video, "static", k, frame)
        elif isinstance(event, Failed):
            # Its clips still in the batch are encoded into arrays that are then dropped.
            video.error = event.reason
            waiting.add(event.video_id)
        elif isinstance(event, Done):
            waiting.add(event.video_id)
        settle()
    enc.flush()
    settle()


def unit_part_id(video_ids: list[str], videos: list[_Video], attrs: CacheAttrs) -> str:
    """The part id of a finished unit, keyed by content: each input's id, file fingerprint (size and
    mtime_ns, taken before decoding) and outcome, and the store's settings. A fixed or changed input
    makes a new part, which, written last, is what readers believe; the same unit done again with the
    same outcome is the part already there."""
    content = []
    for video in videos:
        size, mtime_ns = video.fingerprint or (-1, -1)
        content.append(f"{size}\t{mtime_ns}\t{'ok' if video.error is None else 'error'}")
    return LatentCache.part_id_for(video_ids, content=content, settings=attrs)


def _count(result: ExtractResult, video_ids: list[str], videos: list[_Video], wrote: bool) -> None:
    """Add a written (or already present) unit to the run's counts: an ok input whose identical part
    was already in the store counts as already there, not extracted."""
    for video_id, video in zip(video_ids, videos, strict=True):
        if video.error is not None:
            result.failed += 1
            result.errors.append((video_id, video.error))
        elif not wrote:
            result.skipped += 1
        else:
            result.ok += 1
            result.motion_clips += len(video.motion) if video.motion is not None else 0
            result.static_clips += len(video.static) if video.static is not None else 0


def build_part(inputs: pa.Table, videos: list[_Video], dim: int) -> PartData:
    """The cache part of one finished work unit: side tables and embeddings of its ok inputs."""
    rows = inputs.take([v.row for v in videos])
    ids = rows.column("video_id").to_pylist()
    paths = rows.column("path").to_pylist()
    prints = [v.fingerprint or (-1, -1) for v in videos]
    for v in videos:
        if v.error is None and v.plan is None:
            v.error = "the decoder produced no clips"
    ok = [v.error is None for v in videos]
    plans = [v.plan for v in videos]
    extra = {
        "size": pa.array([p[0] for p in prints], pa.int64()),
        "mtime_ns": pa.array([p[1] for p in prints], pa.int64()),
        "kind": pa.array([p.kind if p else "video" for p in plans], pa.string()),
        "status": pa.array(["ok" if good else "error" for good in ok], pa.string()),
        "num_frames": pa.array([p.num_frames if p else 0 for p in plans], pa.int32()),
        "fps": pa.array([p.fps if p else 0.0 for p in plans], pa.float32()),
    }
    for name, column in extra.items():
        if name in rows.column_names:  # a manifest may carry its own num_frames/fps: ours win
            rows = rows.drop_columns([name])
        rows = rows.append_column(name, column)
    good = [(vid, v) for vid, v, g in zip(ids, videos, ok, strict=True) if g]
    clips = _clip_table(good)
    static = _static_table(good)
    motion = np.concatenate([v.motion for _, v in good]) if good else np.zeros((0, dim), np.float32)
    static_emb = np.concatenate([v.static for _, v in good]) if good else np.zeros((0, dim), np.float32)
    tokens = None
    if any(v.tokens is not None for _, v in good):
        tokens = np.concatenate([v.tokens for _, v in good if v.tokens is not None])
    errors = pa.table(
        {
            "video_id": [vid for vid, v in zip(ids, videos, strict=True) if v.error is not None],
            "path": [p for p, v in zip(paths, videos, strict=True) if v.error is not None],
            "reason": [v.error for v in videos if v.error is not None],
        },
        schema=pa.schema([("video_id", pa.string()), ("path", pa.string()), ("reason", pa.string())]),
    )
    return PartData(
        videos=rows,
        clips=clips,
        motion=motion,
        static_clips=static,
        static=static_emb,
        errors=errors,
        tokens=tokens,
    )


def _clip_table(good: list[tuple[str, _Video]]) -> pa.Table:
    cols: dict[str, list[Any]] = {
        k: [] for k in ("video_id", "clip_index", "frame_start", "frame_stop", "frame_step")
    }
    t0: list[np.ndarray] = []
    t1: list[np.ndarray] = []
    for vid, v in good:
        assert v.plan is not None
        w = v.plan.windows
        cols["video_id"] += [vid] * len(w)
        cols["clip_index"] += list(range(len(w)))
        cols["frame_start"] += w[:, 0].tolist() if len(w) else []
        cols["frame_stop"] += (w[:, -1] + 1).tolist() if len(w) else []
        step = int(w[0, 1] - w[0, 0]) if w.shape[1] > 1 and len(w) else 1
        cols["frame_step"] += [step] * len(w)
        t0.append(v.plan.t_start)
        t1.append(v.plan.t_end)
    return pa.table(
        {
            "video_id": pa.array(cols["video_id"], pa.string()),
            "clip_index": pa.array(cols["clip_index"], pa.int32()),
            "frame_start": pa.array(cols["frame_start"], pa.int32()),
            "frame_stop": pa.array(cols["frame_stop"], pa.int32()),
            "frame_step": pa.array(cols["frame_step"], pa.int32()),
            "t_start_s": pa.array(np.concatenate(t0) if t0 else [], pa.float32()),
            "t_end_s": pa.array(np.concatenate(t1) if t1 else [], pa.float32()),
        }
    )


def _static_table(good: list[tuple[str, _Video]]) -> pa.Table:
    vids: list[str] = []
    index: list[int] = []
    frame: list[int] = []
    t: list[float] = []
    for vid, v in good:
        assert v.plan is not None
        k = v.plan.static_frames
        vids += [vid] * len(k)
        index += list(range(len(k)))
        frame += k.tolist()
        t += (k / v.plan.fps).tolist() if v.plan.fps > 0 else [0.0] * len(k)
    return pa.table(
        {
            "video_id": pa.array(vids, pa.string()),
            "static_index": pa.array(index, pa.int32()),
            "frame_index": pa.array(frame, pa.int32()),
            "t_s": pa.array(t, pa.float32()),
        }
    )
