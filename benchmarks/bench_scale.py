"""Scale presets (issue 23): `train-adapter`, `anonymize` and `probe` on HMDB51- and Kinetics-sized caches.

A planted-feature latent cache (the model of `pipeline.adapter.synthetic`: per-person appearance from
private attributes, per-video action motion, both through one fixed random ReLU network) is written
straight into a real latent-cache store, one part of whole persons at a time, so generation holds one
part in memory whatever the preset. The videos table carries the labels the stages read: split (by
person), `action` on trimmed videos, `segments` on untrimmed ones, `anomaly_segments`, and the
`private_*` attributes the gate and the probes attack. Then each stage runs as its own child process
(the real CLI) and one line per step reports wall time, CPU time and peak RSS (`os.wait4`'s rusage).

| preset | persons | videos | motion clips | static clips | D | store dtype |
|---|---|---|---|---|---|---|
| small | 60 | 300 | 2,040 | 1,200 | 64 | float32 |
| hmdb | 1,430 | 7,150 | 60,060 | 71,500 | 768 | float32 |
| kinetics | 48,000 | 240,000 | 2,400,000 | 2,400,000 | 768 | float16 |

Examples:

    python benchmarks/bench_scale.py --preset small --work /tmp/scale-small
    nice python benchmarks/bench_scale.py --preset hmdb --work bench-out/scale-hmdb --epochs 1
    nice python benchmarks/bench_scale.py --preset kinetics --work bench-out/scale-k --steps generate
    python benchmarks/bench_scale.py generate --preset hmdb --out /tmp/h.zarr   # the store only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ATTRIBUTES = {"gender": 2, "skin_tone": 4, "clothing_color": 5}
SPLIT_OF = ("train",) * 7 + ("val",) + ("test",) * 2  # person p is in SPLIT_OF[p % 10]
PRIVATE = tuple(f"private_{n}" for n in (*ATTRIBUTES, "identity"))
STEPS = ("generate", "train-adapter", "anonymize", "probe")


@dataclass(frozen=True)
class Preset:
    persons: int
    videos_per_person: int  # trimmed action videos; each person also has one untrimmed video
    clips: int  # motion clips per trimmed video (untrimmed: 12 detection or 8 anomaly clips)
    static: int  # static clips per video
    dim: int
    actions: int
    dtype: str
    persons_per_part: int

    @property
    def videos(self) -> int:
        return self.persons * (self.videos_per_person + 1)

    @property
    def motion_clips(self) -> int:
        return self.persons * self.videos_per_person * self.clips + 10 * self.persons  # 12 and 8 alternate


PRESETS = {
    "small": Preset(60, 4, 6, 4, 64, 6, "float32", 20),
    # ≈ HMDB51: 7k videos, 60k motion clips, 51 actions
    "hmdb": Preset(1430, 4, 8, 10, 768, 51, "float32", 200),
    # ≈ Kinetics-400: 240k videos, 2.4M motion clips, 400 actions, stored as float16
    "kinetics": Preset(48_000, 4, 10, 10, 768, 400, "float16", 200),
}


# --- the planted world ---------------------------------------------------------------------------------


class World:
    """The fixed part of the planted model: attribute and action latents and the random network."""

    def __init__(self, preset: Preset, seed: int) -> None:
        rng = np.random.default_rng([seed, 2718])
        D = preset.dim
        self.k = k = max(D // 4, 4)
        self.actions = preset.actions
        self.attr_emb = {name: rng.standard_normal((n, k)) for name, n in ATTRIBUTES.items()}
        self.motion_emb = rng.standard_normal((preset.actions + 2, k)) * 1.5  # + background, anomaly
        self.still = rng.standard_normal(k)
        hidden = 2 * D
        self.W1 = (rng.standard_normal((hidden, 2 * k)) / np.sqrt(2 * k)).astype(np.float32)
        self.b1 = (rng.standard_normal(hidden) * 0.5).astype(np.float32)
        self.W2 = (rng.standard_normal((D, hidden)) / np.sqrt(hidden)).astype(np.float32)
        self.Lin = (rng.standard_normal((D, 2 * k)) / np.sqrt(2 * k)).astype(np.float32)

    def embed(self, look: np.ndarray, motion: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(n, k) appearance and (n, k) motion latents -> (n, D) float32 embeddings."""
        return self.embed_all([self.latent(look, motion, rng)])[0]

    def latent(self, look: np.ndarray, motion: np.ndarray, rng: np.random.Generator) -> Latent:
        """What `embed` needs of one video, its noise drawn now (the rng's order stays that of embed)."""
        h = np.concatenate([look, motion], axis=1).astype(np.float32)
        return Latent(h, 0.05 * rng.standard_normal((len(h), self.W2.shape[0]), dtype=np.float32))

    def embed_all(self, latents: Sequence[Latent]) -> list[np.ndarray]:
        """`embed` of many videos through one matrix product (far faster than one per video; equal
        to per-video products within float32 rounding)."""
        if not latents:
            return []
        h = np.concatenate([x.h for x in latents])  # (n, 2k)
        out = np.maximum(h @ self.W1.T + self.b1, 0) @ self.W2.T + 0.5 * h @ self.Lin.T  # (n, D)
        out += np.concatenate([x.noise for x in latents])
        bounds = np.cumsum([len(x.h) for x in latents])[:-1]
        return np.split(out, bounds)


@dataclass(frozen=True)
class Latent:
    h: np.ndarray  # (n, 2k) appearance and motion latents
    noise: np.ndarray  # (n, D) float32


def _segments(seq: np.ndarray, actions: int) -> str:
    """The detection segments of one untrimmed video: runs of non-background clips, 1 s per clip."""
    segs, start = [], None
    for i, c in enumerate([*seq.tolist(), actions]):
        if start is not None and c != seq[start]:
            segs.append({"start": float(start), "end": float(i), "label": f"a{int(seq[start]):03d}"})
            start = None
        if start is None and i < len(seq) and c != actions:
            start = i
    return json.dumps(segs)


def _part(preset: Preset, w: World, first: int, count: int, seed: int) -> Any:
    """PartData of persons [first, first + count): every row drawn from rng([seed, first])."""
    import pyarrow as pa

    from stores.latent_cache import PartData

    rng = np.random.default_rng([seed, first])
    k, A = w.k, w.actions
    videos: dict[str, list[Any]] = {
        c: [] for c in ("video_id", "split", "action", "segments", "anomaly_segments", "num_frames", *PRIVATE)
    }
    clip_video: list[str] = []
    clip_index: list[np.ndarray] = []
    motion: list[Latent] = []
    static_video: list[str] = []
    static: list[Latent] = []
    for person in range(first, first + count):
        attrs = {name: int(rng.integers(n)) for name, n in ATTRIBUTES.items()}
        look = sum(w.attr_emb[name][attrs[name]] for name in ATTRIBUTES) + 0.5 * rng.standard_normal(k)
        plans: list[tuple[str, np.ndarray]] = [
            ("action", np.full(preset.clips, a)) for a in rng.permutation(A)[: preset.videos_per_person]
        ]
        if person % 2 == 0:
            seq = np.full(12, A)  # background with two action segments
            seq[2:5], seq[7:10] = rng.integers(A), rng.integers(A)
            plans.append(("detection", seq))
        else:
            seq = np.zeros(8, np.int64)  # a normal video walks (action 0) throughout
            if rng.random() < 0.5:
                seq[3:6] = A + 1
            plans.append(("anomaly", seq))
        for j, (kind, seq) in enumerate(plans):
            vid = f"p{person:06d}-{j}"
            videos["video_id"].append(vid)
            videos["split"].append(SPLIT_OF[person % len(SPLIT_OF)])
            videos["action"].append(f"a{int(seq[0]):03d}" if kind == "action" else None)
            videos["segments"].append(_segments(seq, A) if kind == "detection" else None)
            abnormal = np.flatnonzero(seq == A + 1)
            anomaly = json.dumps([[float(abnormal[0]), float(abnormal[-1] + 1)]] if len(abnormal) else [])
            videos["anomaly_segments"].append(anomaly if kind == "anomaly" else None)
            videos["num_frames"].append(16 * len(seq))
            for name, value in attrs.items():
                videos[f"private_{name}"].append(str(value))
            videos["private_identity"].append(f"person{person:06d}")
            nuisance = 0.4 * rng.standard_normal(k)
            m = w.motion_emb[seq] + nuisance + 0.3 * rng.standard_normal((len(seq), k))
            motion.append(w.latent(np.repeat(look[None], len(seq), 0), m, rng))
            clip_video.extend([vid] * len(seq))
            clip_index.append(np.arange(len(seq), dtype=np.int32))
            s = w.still + 0.3 * rng.standard_normal((preset.static, k))
            static.append(w.latent(np.repeat(look[None], preset.static, 0), s, rng))
            static_video.extend([vid] * preset.static)
    n = len(videos["video_id"])
    index = np.concatenate(clip_index)
    sindex = np.tile(np.arange(preset.static, dtype=np.int32), n)
    table = pa.table(
        {
            "video_id": videos["video_id"],
            "path": [f"/planted/{v}.mp4" for v in videos["video_id"]],
            "size": [1] * n,
            "mtime_ns": [1] * n,
            "kind": ["video"] * n,
            "status": ["ok"] * n,
            "num_frames": videos.pop("num_frames"),
            "fps": [16.0] * n,
            **{c: pa.array(v, pa.string()) for c, v in videos.items() if c != "video_id"},
        }
    )
    clips = pa.table(
        {
            "video_id": clip_video,
            "clip_index": index,
            "frame_start": index * 16,
            "frame_stop": index * 16 + 16,
            "frame_step": np.ones(len(index), np.int32),
            "t_start_s": index.astype(np.float32),
            "t_end_s": (index + 1).astype(np.float32),
        }
    )
    static_clips = pa.table(
        {
            "video_id": static_video,
            "static_index": sindex,
            "frame_index": sindex * 16,
            "t_s": sindex.astype(np.float32),
        }
    )
    errors = pa.table({c: pa.array([], pa.string()) for c in ("video_id", "path", "reason")})
    motion_emb, static_emb = np.concatenate(w.embed_all(motion)), np.concatenate(w.embed_all(static))
    return PartData(table, clips, motion_emb, static_clips, static_emb, errors)


def part_starts(preset: Preset) -> Iterator[tuple[int, int]]:
    for first in range(0, preset.persons, preset.persons_per_part):
        yield first, min(preset.persons_per_part, preset.persons - first)


def generate(preset: Preset, out: Path, seed: int = 0, max_parts: int | None = None) -> dict[str, Any]:
    """Write the preset's planted cache into a latent-cache store at `out`, one part at a time;
    a rerun skips the parts already complete. `max_parts` stops early (for timing a prefix)."""
    from stores.latent_cache import CacheAttrs, LatentCache

    attrs = CacheAttrs(
        encoder_id=f"planted:{preset.dim}",
        weights_sha256=f"{seed:064x}",
        dim=preset.dim,
        pooling="mean",
        dtype=preset.dtype,  # type: ignore[arg-type]
        preprocessing={"planted": asdict(preset), "seed": seed},
    )
    cache = LatentCache.create_or_open(out, attrs)
    world = World(preset, seed)
    parts = list(part_starts(preset))[:max_parts]
    written = clips = 0
    started = time.perf_counter()
    for first, count in parts:
        data = _part(preset, world, first, count, seed)
        ids = data.videos.column("video_id").to_pylist()
        written += cache.write_part(LatentCache.part_id_for(ids), data)
        clips += len(data.motion)
        del data
    return {
        "parts": len(parts),
        "written": written,
        "motion_clips": clips,
        "seconds": time.perf_counter() - started,
    }


# --- running and measuring the stages ------------------------------------------------------------------


@dataclass
class StepResult:
    step: str
    rc: int
    wall_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float
    timed_out: bool
    command: str

    def line(self) -> str:
        status = "timed out" if self.timed_out else ("ok" if self.rc == 0 else f"exit {self.rc}")
        return (
            f"{self.step:14s} {status:9s} wall {self.wall_s:8.1f} s  user {self.user_s:8.1f} s  "
            f"sys {self.sys_s:6.1f} s  peak RSS {self.peak_rss_mb:8.0f} MB"
        )


def run_step(step: str, argv: Sequence[str], log: Path, limit_s: float | None) -> StepResult:
    """Run `argv` as a child process (its output to `log`), killed after `limit_s`; wall time and the
    child's own rusage (peak RSS, user and system CPU) from os.wait4."""
    started = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = None if limit_s is None else started + limit_s
        timed_out = False
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                os.killpg(child.pid, signal.SIGTERM)  # the child's own session: nothing else
                timed_out = True
                deadline = None
            time.sleep(0.2)
        child.returncode = os.waitstatus_to_exitcode(status)
    return StepResult(
        step=step,
        rc=child.returncode,
        wall_s=round(time.perf_counter() - started, 2),
        user_s=round(usage.ru_utime, 2),
        sys_s=round(usage.ru_stime, 2),
        peak_rss_mb=round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        timed_out=timed_out,
        command=" ".join(argv),
    )


def step_commands(args: argparse.Namespace, work: Path) -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "cli.main"]
    store, adapter = str(work / "latents.zarr"), str(work / "adapter")
    threads = ["--threads", str(args.threads)]
    train = [*cli, "train-adapter", "--store", store, "--out", adapter, "--epochs", str(args.epochs)]
    train += ["--device", "cpu", *threads]
    if args.memory_gb:
        train += ["--memory-gb", str(args.memory_gb)]
    generate_cmd = [sys.executable, str(Path(__file__).resolve()), "generate", "--preset", args.preset]
    generate_cmd += ["--out", store, "--seed", str(args.seed)]
    return {
        "generate": generate_cmd,
        "train-adapter": train,
        # the gate is measured and recorded, never refuses: a 1-epoch adapter is timed, not judged
        "anonymize": [*cli, "anonymize", "--store", store, "--adapter", adapter, "--out",
                      str(work / "published"), "--no-gate", *threads],
        "probe": [*cli, "probe", "--store", store, "--adapter", adapter, "--out", str(work / "probe"),
                  "--tasks", args.probe_tasks],
    }  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command")
    g = sub.add_parser("generate", help="write the planted store only (what the generate step runs)")
    g.add_argument("--preset", choices=sorted(PRESETS), required=True)
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--max-parts", type=int, help="stop after this many parts (time a prefix)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--work", type=Path, help="folder for the store and outputs (default: a temporary one)")
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    p.add_argument("--epochs", type=int, default=1, help="train-adapter epochs (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of train-adapter and anonymize")
    p.add_argument("--memory-gb", type=float, help="train-adapter --memory-gb (default: its own)")
    p.add_argument("--probe-tasks", default="action,temporal,anomaly,leakage", help="probe --tasks")
    p.add_argument("--max-minutes", type=float, help="kill a step that runs longer than this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep a temporary --work folder")
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.command == "generate":
        result = generate(PRESETS[args.preset], args.out, args.seed, args.max_parts)
        print(json.dumps(result), flush=True)
        return result
    preset = PRESETS[args.preset]
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        raise SystemExit(f"--steps: unknown {unknown}; choose from {','.join(STEPS)}")
    temporary = args.work is None
    work = Path(args.work or _mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    commands = step_commands(args, work)
    limit = None if args.max_minutes is None else args.max_minutes * 60
    print(
        f"scale preset {args.preset}: {preset.videos} videos, {preset.motion_clips} motion clips, "
        f"{preset.videos * preset.static} static clips, D={preset.dim}, {preset.dtype}; "
        f"{os.cpu_count()} CPUs; work {work}",
        flush=True,
    )
    report: dict[str, Any] = {
        "preset": args.preset,
        **asdict(preset),
        "videos": preset.videos,
        "motion_clips": preset.motion_clips,
        "static_clips": preset.videos * preset.static,
        "steps": [],
    }
    try:
        for step in steps:
            result = run_step(step, commands[step], work / f"{step}.log", limit)
            report["steps"].append(asdict(result))
            print(f"{args.preset:9s} {result.line()}", flush=True)
            if result.rc != 0:
                print(f"  {step} failed; its output: {work / f'{step}.log'}", flush=True)
                break
        report["store_mb"] = round(_size(work / "latents.zarr") / 1e6, 1)
    finally:
        if temporary and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["self_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _mkdtemp() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="bench-scale-")


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


if __name__ == "__main__":
    main()
