"""Extraction benchmark: decode-only, encode-only, the full `extract` and naive per-clip decoding, timed
on the same files in one run (issue 4, design §5).

Passes, each repeated `--repeats` times (medians reported):

* decode-only: `decode_in_workers` (or inline with 0 workers) over every video with the settings
  `extract` uses, events drained;
* encode-only: build the encoder, then `encode_clips` on as many motion and static clips as the run
  has, from memory, in batches of the same size and mix;
* full: `flows.extract.extract` into a fresh store;
* naive: re-open the video with decord for every clip and `get_batch` its frame indices, on the same
  files (or the first `--naive-videos`), beside the decode-once pass on those files.

Then the peak memory (RSS of the extract process and its decode workers) of `aam-pipeline extract` on
a long video against a short one of the same size.

Ratios: full / (decode + encode) [CPU target <= 1.15]; full clips/s / min(decode, encode) clips/s
[GPU target >= 0.8]; naive / decode-once time. The encode-only pass runs on the torch threads the full
`extract` gives its encoder (`flows.extract.encoder_threads`), so the two compare like for like. The
system-time share of the full extract is sys / (user + sys) CPU time of this process and its decode
workers over those passes (`resource.getrusage`). `--gpu` is the H200 preset: random-weight VideoMAE-B,
bf16 (autocast on CUDA), 16 decode workers, 720p videos, and the encoder-only ceiling.

Examples:

    python benchmarks/bench_extract.py                      # CPU preset, tiny encoder
    python benchmarks/bench_extract.py --gpu --json gpu.json
    python benchmarks/bench_extract.py --encoder torchscript:enc.pt --crop 112 --videos 8

Heavy imports live inside functions: decode workers are spawned and re-import this module.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flows  # noqa: F401  (sets OMP_WAIT_POLICY before the first torch import, as extract runs)

PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "encoder": "tiny",
        "device": "cpu",
        "videos": 12,
        "frames": 128,
        "size": "480x272",
        "fps": 25,
        "decode_workers": None,  # extract's default: about half the cores
        "batch_size": 32,
        "naive_videos": None,  # all
        "short_seconds": 15,  # >= one full batch of clips, so both runs reach the batch's peak
        "long_seconds": 60,
        "long_size": "1280x720",
    },
    "gpu": {
        "encoder": "videomae-b-random",
        "device": "cuda",
        "videos": 64,
        "frames": 300,
        "size": "1280x720",
        "fps": 30,
        "decode_workers": 16,
        "batch_size": 64,
        "naive_videos": 8,
        "short_seconds": 30,
        "long_seconds": 120,
        "long_size": "1280x720",
    },
}
ENCODER_NAMES = (
    "tiny (the shipped encoder; tiny-random when its weights are missing)",
    "tiny-random (TorchScript trace of the tiny architecture, random weights: the same compute)",
    "videomae-b-random (VideoMAE-B config, random weights, through videomae:<dir>)",
    "videomae-small-random (2 layers, width 64: for smoke tests of the VideoMAE path)",
    "any --encoder form extract takes: torchscript:FILE, videomae:DIR, vjepa2:DIR",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_extract.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="encoders: " + "; ".join(ENCODER_NAMES),
    )
    parser.add_argument("--gpu", action="store_true", help="H200 preset (VideoMAE-B, bf16, 16 workers, 720p)")
    parser.add_argument(
        "--encoder", help="encoder (see below); default: tiny, or videomae-b-random with --gpu"
    )
    parser.add_argument("--crop", type=int, help="TorchScript encoders: input side")
    parser.add_argument("--device", help="cpu | cuda | auto (default: cpu, cuda with --gpu)")
    parser.add_argument("--videos", type=int, help="synthetic videos to generate (default 12; 64 with --gpu)")
    parser.add_argument("--frames", type=int, help="frames per generated video (default 128; 300 with --gpu)")
    parser.add_argument("--size", help="WxH of generated videos (default 480x272; 1280x720 with --gpu)")
    parser.add_argument("--fps", type=int, help="frame rate of generated videos")
    parser.add_argument("--reader", default="pyav", help="video decoder: pyav (default) or decord")
    parser.add_argument("--inputs", type=Path, help="a folder of videos to use instead of generating")
    parser.add_argument(
        "--decode-workers", type=int, help="decode processes (0 = inline; default: extract's)"
    )
    parser.add_argument("--batch-size", type=int, help="clips per encoder batch (default 32; 64 with --gpu)")
    parser.add_argument("--repeats", type=int, default=3, help="times each pass runs (default 3)")
    parser.add_argument(
        "--naive-videos", type=int, help="videos for the naive pass (default: all; 8 with --gpu)"
    )
    parser.add_argument("--short-seconds", type=int, help="short video of the memory check")
    parser.add_argument(
        "--long-seconds", type=int, help="long video of the memory check (0 = skip the check)"
    )
    parser.add_argument("--long-size", help="WxH of the memory-check videos (default 1280x720)")
    parser.add_argument("--memory-only", action="store_true", help="only the long/short video memory check")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed after)")
    parser.add_argument("--json", type=Path, help="write every timing and ratio here")
    args = parser.parse_args(argv)
    preset = PRESETS["gpu" if args.gpu else "cpu"]
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


# --------------------------------------------------------------------------- synthetic videos


def parse_size(text: str) -> tuple[int, int]:
    """'1280x720' -> (height, width), both even (H.264 yuv420p)."""
    width, height = (int(v) for v in text.lower().split("x"))
    return height - height % 2, width - width % 2


def write_synthetic_video(job: tuple[str, int, int, int, int, int, str]) -> str:
    """A panning textured scene with moving blocks and sensor noise, as H.264; returns the path.

    Frames are views into four pre-noised textures plus a few drawn blocks: cheap enough to write
    minutes of 720p."""
    import numpy as np

    from pipeline.data.video import write_video

    path, frames, height, width, fps, seed, preset = job
    rng = np.random.default_rng(seed)
    pad = 64
    coarse = rng.integers(30, 220, size=((height + 2 * pad) // 16 + 1, (width + 2 * pad) // 16 + 1, 3))
    texture = np.kron(coarse, np.ones((16, 16, 1)))[: height + 2 * pad, : width + 2 * pad]
    noisy = [(texture + rng.normal(0, 6, texture.shape)).clip(0, 255).astype(np.uint8) for _ in range(4)]
    blocks = rng.uniform(0, 1, size=(4, 4))  # x, y, vx, vy per block
    side = max(8, height // 6)

    def frame_at(t: int) -> np.ndarray:
        dx = int(pad + pad * 0.9 * np.sin(t / 40 + seed))
        dy = int(pad + pad * 0.5 * np.cos(t / 55 + seed))
        frame = noisy[t % 4][dy : dy + height, dx : dx + width].copy()
        for i, (x, y, vx, vy) in enumerate(blocks):
            cx = int(((x + 0.01 * vx * t) % 1) * (width - side))
            cy = int(((y + 0.01 * vy * t) % 1) * (height - side))
            frame[cy : cy + side, cx : cx + side] = (60 * i + 40, 200 - 40 * i, 120)
        return frame

    write_video(path, (frame_at(t) for t in range(frames)), fps=fps, preset=preset)
    return path


def generate_videos(
    folder: Path, count: int, frames: int, size: tuple[int, int], fps: int, preset: str = "veryfast"
) -> list[Path]:
    from concurrent.futures import ProcessPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)
    jobs = [
        (str(folder / f"v{i:04d}.mp4"), frames, size[0], size[1], fps, i, preset)
        for i in range(count)
        if not (folder / f"v{i:04d}.mp4").exists()
    ]
    if jobs:
        import multiprocessing as mp

        workers = min(len(jobs), os.cpu_count() or 1)
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            list(pool.map(write_synthetic_video, jobs))
    return sorted(folder.glob("v*.mp4"))[:count]


# --------------------------------------------------------------------------- encoders


def resolve_encoder(name: str, crop: int | None, work: Path, device: str) -> tuple[str, dict[str, int], str]:
    """(encoder form for extract, its crop/resize overrides, a note) for a benchmark encoder name."""
    if name == "tiny":
        from pipeline.encoders.tiny import WEIGHTS_FILE

        if WEIGHTS_FILE.exists():
            return "tiny", {}, "the shipped tiny encoder"
        name = "tiny-random"
        note = f"tiny weights missing ({WEIGHTS_FILE}): a random-weight trace of the same architecture"
        return (*_tiny_random(work), note)
    if name == "tiny-random":
        return (*_tiny_random(work), "random-weight trace of the tiny architecture (same compute)")
    if name in ("videomae-b-random", "videomae-small-random"):
        return f"videomae:{_videomae_random(work, name)}", {}, f"{name}: random weights, same compute"
    overrides = {"crop": crop} if crop is not None else {}
    return name, overrides, "as given"


def _tiny_random(work: Path) -> tuple[str, dict[str, int]]:
    import torch

    from pipeline.encoders.tiny import TINY_CONFIG, build_tiny_encoder

    path = work / "tiny-random.pt"
    crop, frames = int(TINY_CONFIG["crop"]), int(TINY_CONFIG["frames_per_clip"])
    if not path.exists():
        torch.manual_seed(0)
        model = build_tiny_encoder().eval()
        with torch.no_grad():
            torch.jit.trace(model, torch.zeros(1, 3, frames, crop, crop)).save(str(path))
    return f"torchscript:{path}", {"crop": crop}


def _videomae_random(work: Path, name: str) -> Path:
    import torch
    from transformers import VideoMAEConfig, VideoMAEModel

    folder = work / name
    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        if name == "videomae-b-random":
            config = VideoMAEConfig()  # the base model: 768-d, 12 layers, 16 x 224 x 224 input
        else:
            config = VideoMAEConfig(
                hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128
            )
        VideoMAEModel(config).save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- passes


@dataclass
class Workload:
    """What the decode-only pass saw: the clip kinds in arrival order and a few real clips to encode."""

    kinds: list[bool] = field(default_factory=list)  # True = motion clip
    motion: list[Any] = field(default_factory=list)  # (T, S, S, 3) uint8
    static: list[Any] = field(default_factory=list)  # (S, S, 3) uint8

    @property
    def clips(self) -> int:
        return len(self.kinds)


def decode_pass(jobs: list[Any], settings: Any, workers: int, keep: int) -> tuple[float, Workload]:
    from flows.decode_pool import Chunk, Failed, decode_in_workers, decode_inline

    load = Workload()
    start = time.perf_counter()
    events = decode_in_workers(jobs, settings, workers) if workers else decode_inline(jobs, settings)
    for event in events:
        if isinstance(event, Failed):
            raise SystemExit(f"decoding {event.video_id} failed: {event.reason}")
        if isinstance(event, Chunk):
            chunk = event.chunk
            load.kinds += [True] * len(chunk.motion) + [False] * len(chunk.static)
            load.motion += [c.copy() for c in chunk.motion[: max(0, keep - len(load.motion))]]
            load.static += [f.copy() for f in chunk.static[: max(0, keep - len(load.static))]]
    return time.perf_counter() - start, load


def encode_pass(config: Any, load: Workload, workers: int) -> float:
    """Build the encoder, then embed `load.clips` clips in batches with the run's mix of kinds, on the
    torch threads `extract` gives it beside `workers` decode processes."""
    import torch

    from flows.extract import encoder_threads, load_encoder

    start = time.perf_counter()
    encoder = load_encoder(config)
    before = torch.get_num_threads()
    torch.set_num_threads(encoder_threads(encoder, workers))
    try:
        _encode_batches(encoder, config, load)
    finally:
        torch.set_num_threads(before)
    return time.perf_counter() - start


def _encode_batches(encoder: Any, config: Any, load: Workload) -> None:
    import numpy as np
    import torch

    from flows.extract import encode_clips

    crop, batch = encoder.preprocess.crop, config.batch_size
    buffer = torch.empty(
        (batch, 3, encoder.frames_per_clip, crop, crop), dtype=torch.float32, device=encoder.device
    )
    for first in range(0, load.clips, batch):
        kinds = load.kinds[first : first + batch]
        n_motion = sum(kinds)
        motion = [load.motion[i % len(load.motion)] for i in range(n_motion)] if n_motion else []
        static = [load.static[i % len(load.static)] for i in range(len(kinds) - n_motion)]
        encode_clips(
            encoder,
            np.stack(motion) if motion else np.zeros((0, 0, crop, crop, 3), np.uint8),
            np.stack(static) if static else np.zeros((0, crop, crop, 3), np.uint8),
            buffer=buffer,
        )
    if encoder.device.type == "cuda":
        torch.cuda.synchronize()


def cpu_times() -> tuple[float, float]:
    """(user, system) CPU seconds of this process and of its children that have exited (the decode
    workers of a finished extract)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + children.ru_utime, own.ru_stime + children.ru_stime


def system_share(before: tuple[float, float], after: tuple[float, float]) -> float:
    """sys / (user + sys) of the CPU time spent between two `cpu_times` readings."""
    user, system = after[0] - before[0], after[1] - before[1]
    return system / (user + system) if user + system > 0 else 0.0


def full_pass(inputs: Any, store: Path, config: Any) -> tuple[float, Any, float]:
    """Seconds, result and system-time share of one `extract` into a fresh store."""
    from flows.extract import extract

    shutil.rmtree(store, ignore_errors=True)
    cpu = cpu_times()
    start = time.perf_counter()
    result = extract(inputs, store, config, bar=False)
    seconds = time.perf_counter() - start
    share = system_share(cpu, cpu_times())
    if result.failed:
        raise SystemExit(f"extract failed on {result.errors[:3]}")
    return seconds, result, share


def naive_one(job: tuple[str, Any, Any]) -> int:
    """Decode one video's clips the naive way: re-open and seek for every clip; returns clips read."""
    import decord
    import numpy as np

    from pipeline.data.decode import centre_crop, plan_media
    from pipeline.data.video import get_reader, scaled_size

    path, spec, frame = job
    plan = plan_media(path, spec)
    info = get_reader("decord").probe(path)
    height, width = scaled_size(info.height, info.width, frame.resize)
    clips = 0
    for indices in [*plan.windows.tolist(), *([k] for k in plan.static_frames.tolist())]:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), width=width, height=height, num_threads=1)
        frames = reader.get_batch(indices).asnumpy()  # (T, H, W, 3)
        np.stack([centre_crop(f, frame.crop) for f in frames])
        clips += 1
        del reader
    return clips


def naive_pass(paths: list[str], settings: Any, workers: int) -> tuple[float, int]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    jobs = [(p, settings.spec, settings.frame) for p in paths]
    start = time.perf_counter()
    if workers:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            clips = sum(pool.map(naive_one, jobs))
    else:
        clips = sum(naive_one(job) for job in jobs)
    return time.perf_counter() - start, clips


def encoder_ceiling(config: Any, seconds: float = 5.0) -> float:
    """Clips/s of the encoder's forward alone on a batch already normalised on its device."""
    import torch

    from flows.extract import load_encoder

    encoder = load_encoder(config)
    crop = encoder.preprocess.crop
    x = torch.randn(config.batch_size, 3, encoder.frames_per_clip, crop, crop, device=encoder.device)
    encoder.forward(x)  # warm-up
    sync = torch.cuda.synchronize if encoder.device.type == "cuda" else (lambda: None)
    sync()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        encoder.forward(x)
        done += config.batch_size
        if done % (4 * config.batch_size) == 0:
            sync()
    sync()
    return done / (time.perf_counter() - start)


# --------------------------------------------------------------------------- memory


def peak_memory(
    video: Path, store: Path, encoder: str, overrides: dict[str, int], args: Any, reader: str
) -> dict[str, Any]:
    """Run `aam-pipeline extract` on one video in a fresh process; sample the RSS of it and of each of
    its decode workers every 50 ms."""
    import psutil

    folder = video.parent
    shutil.rmtree(store, ignore_errors=True)
    command = [sys.executable, "-m", "cli.main", "extract", "--videos", str(folder), "--out", str(store)]
    command += ["--encoder", encoder, "--device", args.device, "--batch-size", str(args.batch_size)]
    command += ["--reader", reader]
    for key, value in overrides.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    if args.decode_workers is not None:
        command += ["--decode-workers", str(args.decode_workers)]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    main = psutil.Process(proc.pid)
    peak_main = peak_worker = peak_all = 0
    while proc.poll() is None:
        try:
            rss_main = main.memory_info().rss
            workers = [c.memory_info().rss for c in main.children(recursive=True)]
        except psutil.Error:
            continue
        peak_main, peak_worker = max(peak_main, rss_main), max([peak_worker, *workers])
        peak_all = max(peak_all, rss_main + sum(workers))
        time.sleep(0.05)
    output = proc.stdout.read().decode() if proc.stdout else ""
    if proc.returncode != 0:
        raise SystemExit(f"extract on {video} failed ({proc.returncode}):\n{output[-2000:]}")
    return {
        "video": video.name,
        "seconds": round(time.perf_counter() - start, 2),
        "peak_rss_main_mb": round(peak_main / 2**20, 1),
        "peak_rss_worker_mb": round(peak_worker / 2**20, 1),
        "peak_rss_all_mb": round(peak_all / 2**20, 1),
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    work = args.work or Path(tempfile.mkdtemp(prefix="aam-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        report = run(args, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch

    encoder_name, overrides, note = resolve_encoder(args.encoder, args.crop, work, args.device)
    print(f"encoder: {encoder_name} ({note})", flush=True)
    report: dict[str, Any] = {
        "command": " ".join(["python benchmarks/bench_extract.py", *sys.argv[1:]]),
        "encoder": encoder_name,
        "encoder_note": note,
        "device": str(args.device),
        "gpu_name": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
    }
    if not args.memory_only:
        report["timings"] = run_timings(args, work, encoder_name, overrides)
    report["memory"] = run_memory(args, work, encoder_name, overrides) if args.long_seconds else []
    print_report(report)
    return report


def run_timings(
    args: argparse.Namespace, work: Path, encoder_name: str, overrides: dict[str, int]
) -> dict[str, Any]:
    """The four passes, `args.repeats` times each; medians and ratios."""

    from flows.cpu import keep_freed_memory
    from flows.decode_pool import DecodeJob
    from flows.extract import (
        ExtractConfig,
        clip_spec,
        decode_settings,
        decode_worker_count,
        encoder_threads,
        for_store,
        load_encoder,
        load_inputs,
    )

    if args.inputs:
        folder = args.inputs
    else:
        folder = work / f"videos-{args.size}-{args.frames}"
        t = time.perf_counter()
        generate_videos(folder, args.videos, args.frames, parse_size(args.size), args.fps)
        print(
            f"generated {args.videos} videos of {args.frames} frames at {args.size} "
            f"in {time.perf_counter() - t:.1f} s",
            flush=True,
        )
    inputs = load_inputs(None, folder, None)
    paths = inputs.column("path").to_pylist()
    for p in paths:  # warm the page cache: every pass reads the files from memory
        Path(p).read_bytes()
    config = ExtractConfig(
        encoder=encoder_name,
        device=args.device,
        batch_size=args.batch_size,
        decode_workers=args.decode_workers,
        reader=args.reader,
        **overrides,
    )
    config = for_store(config, None)  # the static clips of a new store, as every full pass makes one
    keep_freed_memory()  # as extract does: every pass of this process on the same heap policy
    encoder = load_encoder(config)
    spec = clip_spec(config, encoder)
    settings = decode_settings(config, encoder, spec)
    workers = decode_worker_count(config, encoder, len(paths))
    threads = encoder_threads(encoder, workers)
    jobs = [DecodeJob(v, p) for v, p in zip(inputs.column("video_id").to_pylist(), paths, strict=True)]
    naive_paths = paths[: args.naive_videos] if args.naive_videos else paths
    naive_jobs = jobs[: len(naive_paths)]
    print(
        f"{len(paths)} videos, device {encoder.device}, {workers} decode workers, batch {args.batch_size}, "
        f"encoder torch threads {threads}, cores {os.cpu_count()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}",
        flush=True,
    )
    del encoder

    # Untimed warm-up: the first decode and the first forward pay one-off costs (CUDA context, caches).
    _, load = decode_pass(jobs[:1], settings, workers, keep=args.batch_size)
    encode_pass(config, Workload(load.kinds[: args.batch_size], load.motion, load.static), workers)

    times: dict[str, list[float]] = {"decode": [], "encode": [], "full": [], "naive": [], "once_subset": []}
    shares: list[float] = []
    clips = motion = static = naive_clips = 0
    for r in range(args.repeats):
        seconds, load = decode_pass(jobs, settings, workers, keep=args.batch_size)
        times["decode"].append(seconds)
        times["encode"].append(encode_pass(config, load, workers))
        seconds, result, share = full_pass(inputs, work / "store", config)
        times["full"].append(seconds)
        shares.append(share)
        clips, motion, static = load.clips, result.motion_clips, result.static_clips
        if motion + static != clips:
            raise SystemExit(f"extract stored {motion + static} clips, decoding gave {clips}")
        seconds, naive_clips = naive_pass(naive_paths, settings, workers)
        times["naive"].append(seconds)
        times["once_subset"].append(decode_pass(naive_jobs, settings, workers, keep=0)[0])
        print(
            f"repeat {r + 1}/{args.repeats}: "
            + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items())
            + f", full sys share {share:.3f}",
            flush=True,
        )
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: clips / med[k] for k in ("decode", "encode", "full")}
    return {
        "decode_workers": workers,
        "encoder_threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "system_share_full": shares,
        "system_share_full_median": statistics.median(shares),
        "videos": len(paths),
        "video_size": args.size if not args.inputs else str(args.inputs),
        "frames_per_video": args.frames if not args.inputs else None,
        "clips": {"motion": motion, "static": static, "total": clips, "naive_subset": naive_clips},
        "seconds": times,
        "median_seconds": med,
        "clips_per_s": rate,
        "encoder_ceiling_clips_per_s": encoder_ceiling(config),
        "ratios": {
            "full_over_decode_plus_encode": med["full"] / (med["decode"] + med["encode"]),
            "full_rate_over_min_rate": rate["full"] / min(rate["decode"], rate["encode"]),
            "naive_over_once_decode": med["naive"] / med["once_subset"],
        },
    }


def run_memory(
    args: argparse.Namespace, work: Path, encoder_name: str, overrides: dict[str, int]
) -> list[dict[str, Any]]:
    """Peak RSS of `aam-pipeline extract` on a short and a long video of the same size (30 fps), with
    each reader: decord reads ahead and holds about the whole compressed file; PyAV does not."""
    memory = []
    size = parse_size(args.long_size)
    for label, seconds in (("short", args.short_seconds), ("long", args.long_seconds)):
        one = work / f"memory-{label}-{seconds}s-{args.long_size}"
        t = time.perf_counter()
        generate_videos(one, 1, seconds * 30, size, 30, preset="ultrafast")
        video = one / "v0000.mp4"
        print(
            f"generated the {label} video ({seconds} s at {args.long_size}, "
            f"{video.stat().st_size / 2**20:.0f} MB) in {time.perf_counter() - t:.1f} s",
            flush=True,
        )
        for reader in ("decord", "pyav"):
            stats = peak_memory(video, work / f"store-{label}", encoder_name, overrides, args, reader)
            memory.append(
                {
                    "label": label,
                    "seconds_of_video": seconds,
                    "size": args.long_size,
                    "file_mb": round(video.stat().st_size / 2**20, 1),
                    "reader": reader,
                    **stats,
                }
            )
    return memory


def print_report(r: dict[str, Any]) -> None:
    t = r.get("timings")
    if t:
        med, rate, ratios = t["median_seconds"], t["clips_per_s"], t["ratios"]
        print(
            f"\n{t['videos']} videos, {t['clips']['total']} clips ({t['clips']['motion']} motion), "
            f"encoder {r['encoder']}, {t['decode_workers']} decode workers, "
            f"{t['encoder_threads']} encoder threads, "
            f"median of {len(t['seconds']['full'])}"
        )
        print(f"  decode-only   {med['decode']:8.2f} s  {rate['decode']:9.1f} clips/s")
        print(f"  encode-only   {med['encode']:8.2f} s  {rate['encode']:9.1f} clips/s")
        print(f"  full extract  {med['full']:8.2f} s  {rate['full']:9.1f} clips/s")
        print(
            f"  encoder-only ceiling      {t['encoder_ceiling_clips_per_s']:9.1f} clips/s "
            "(forward on a ready batch)"
        )
        print(
            f"  naive per-clip decode {med['naive']:.2f} s vs decode-once {med['once_subset']:.2f} s "
            f"on {t['clips']['naive_subset']} clips"
        )
        print(
            f"  full / (decode + encode)           = {ratios['full_over_decode_plus_encode']:.3f}  "
            "[CPU target <= 1.15]"
        )
        print(
            f"  full clips/s / min(decode, encode) = {ratios['full_rate_over_min_rate']:.3f}  "
            "[GPU target >= 0.8]"
        )
        print(f"  naive / decode-once time           = {ratios['naive_over_once_decode']:.2f}x")
        print(
            f"  full extract system-time share     = {t['system_share_full_median']:.3f}  "
            "(sys / (user + sys), this process and its decode workers)"
        )
    for m in r["memory"]:
        print(
            f"  memory, {m['label']} video ({m['seconds_of_video']} s at {m['size']}, "
            f"{m['file_mb']:.0f} MB), "
            f"{m['reader']}: peak RSS {m['peak_rss_main_mb']:.0f} MB extract process, "
            f"{m['peak_rss_worker_mb']:.0f} MB decode worker, {m['peak_rss_all_mb']:.0f} MB together "
            f"({m['seconds']:.1f} s)"
        )


if __name__ == "__main__":
    main()
