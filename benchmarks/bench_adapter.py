"""Adapter benchmark: training throughput (issue 5) and anonymize + publish throughput (issue 6).

* train: `pipeline.adapter.train_adapter` with the default (and paper) recipe on a synthetic cache of
  planted features; reports clips/s per epoch (median over epochs after the first) and the time the
  configured number of epochs took. `--gpu` is the HMDB51-sized preset: ≈7k videos, ≈60k motion
  clips, D = 768, 100 epochs, on CUDA.
* anonymize: on a real latent cache written to disk, `flows.anonymize.anonymize` (read the cache,
  apply the adapter, publish Parquet) against a plain pass that reads the same cache and publishes
  the raw embeddings with the same writer and no adapter; medians of `--repeats` runs side by side.
  Ratio = anonymize time / plain time (the adapter's cost on top of I/O). The bench cache has no
  private labels, so the privacy gate is not part of either timing.

Examples:

    python benchmarks/bench_adapter.py                 # CPU preset
    python benchmarks/bench_adapter.py --gpu --json gpu-adapter.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "persons": (60, 15, 0),
        "videos_per_person": 4,
        "clips": 8,
        "dim": 768,
        "epochs": 3,
        "device": "cpu",
    },
    # ≈ HMDB51: 7,000 videos of ≈8.6 clips each
    "gpu": {
        "persons": (1400, 350, 0),
        "videos_per_person": 4,
        "clips": 9,
        "dim": 768,
        "epochs": 100,
        "device": "cuda",
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpu", action="store_true", help="the H200 preset (HMDB51-sized, CUDA, 100 epochs)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the preset's)")
    p.add_argument(
        "--device", help="cpu | cuda (default: the preset's); --gpu --device cpu --epochs 1 checks the script"
    )
    p.add_argument("--repeats", type=int, default=3, help="anonymize / plain runs, medians reported")
    p.add_argument("--skip-paper", action="store_true", help="time the default recipe only")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args(argv)


def planted(preset: dict[str, Any]) -> Any:
    from pipeline.adapter.synthetic import planted_features

    return planted_features(
        persons=preset["persons"],
        videos_per_person=preset["videos_per_person"],
        clips_per_video=preset["clips"],
        static_per_video=10,
        dim=preset["dim"],
        sequence_videos=True,
    ).data


def train_pass(data: Any, recipe: str, epochs: int, device: str) -> dict[str, Any]:
    from pipeline.adapter import train_adapter, train_recipe

    cfg = train_recipe(recipe, data.dim, epochs=epochs, device=device)  # type: ignore[arg-type]
    start = time.perf_counter()
    result = train_adapter(data, cfg)
    total = time.perf_counter() - start
    train_clips = int((data.split[data.video] == "train").sum())
    per_epoch = [h["seconds"] for h in result.history]
    steady = per_epoch[1:] or per_epoch
    return {
        "recipe": recipe,
        "epochs": epochs,
        "train_clips": train_clips,
        "seconds_total": round(total, 2),
        "seconds_per_epoch_median": round(statistics.median(steady), 3),
        "clips_per_s": round(train_clips / statistics.median(steady), 1),
        "model": result.model,
        "config": cfg,
    }


# The bench cache's encoder, which the adapter's metadata names too (anonymize checks the binding).
ENCODER_ID, WEIGHTS, POOLING = "planted", "ab" * 32, "mean"


def preset_clips(data: Any, video: int) -> int:
    return int((data.video == video).sum())


def write_cache(data: Any, path: Path) -> Path:
    """The planted features as a real latent cache (one part per 256 videos), with split labels only."""
    import numpy as np
    import pyarrow as pa

    from stores.latent_cache import CacheAttrs, LatentCache, PartData

    attrs = CacheAttrs(
        encoder_id=ENCODER_ID, weights_sha256=WEIGHTS, dim=data.dim, pooling=POOLING, preprocessing={}
    )
    cache = LatentCache.create_or_open(path, attrs)
    V = data.num_videos
    ids = [f"v{v:06d}" for v in range(V)]
    for start in range(0, V, 256):
        vids = np.arange(start, min(start + 256, V))
        m = np.flatnonzero(np.isin(data.video, vids))
        s = np.flatnonzero(np.isin(data.static_video, vids))
        index = np.concatenate([np.arange(c) for c in np.bincount(data.video[m] - start)])
        videos = pa.table(
            {
                "video_id": [ids[v] for v in vids],
                "path": [f"/bench/{ids[v]}.mp4" for v in vids],
                "size": [1] * len(vids),
                "mtime_ns": [1] * len(vids),
                "kind": ["video"] * len(vids),
                "status": ["ok"] * len(vids),
                "num_frames": [16 * preset_clips(data, v) for v in vids],
                "fps": [16.0] * len(vids),
                "split": [str(data.split[v]) for v in vids],
            }
        )
        clips = pa.table(
            {
                "video_id": [ids[v] for v in data.video[m]],
                "clip_index": index.astype(np.int32),
                "frame_start": (index * 16).astype(np.int32),
                "frame_stop": (index * 16 + 16).astype(np.int32),
                "frame_step": np.ones(len(m), np.int32),
                "t_start_s": index.astype(np.float32),
                "t_end_s": (index + 1).astype(np.float32),
            }
        )
        sindex = np.concatenate([np.arange(c) for c in np.bincount(data.static_video[s] - start)])
        static_clips = pa.table(
            {
                "video_id": [ids[v] for v in data.static_video[s]],
                "static_index": sindex.astype(np.int32),
                "frame_index": sindex.astype(np.int32),
                "t_s": sindex.astype(np.float32),
            }
        )
        errors = pa.table({"video_id": pa.array([], pa.string()), "path": [], "reason": []})
        part = PartData(videos, clips, data.motion[m], static_clips, data.static[s], errors)
        cache.write_part(LatentCache.part_id_for([ids[v] for v in vids]), part)
    return path


def anonymize_passes(store: Path, adapter: Path, work: Path, repeats: int) -> dict[str, Any]:
    from flows.anonymize import AnonymizeConfig, anonymize
    from stores.latent_cache import LatentCache
    from stores.published import LeakageNotMeasured, PublicationInfo, publish

    def plain(out: Path) -> float:
        start = time.perf_counter()
        view = LatentCache.open(store).read()
        info = PublicationInfo(
            dataset="bench",
            encoder_id=ENCODER_ID,
            encoder_sha256=WEIGHTS,
            adapter_sha256="cd" * 32,
            adapter_variant="none",
            leakage=LeakageNotMeasured("benchmark"),
        )
        publish(out, info, view.clips.select(["video_id", "clip_index", "t_start_s", "t_end_s"]), view.motion)
        return time.perf_counter() - start

    def full(out: Path) -> float:
        start = time.perf_counter()
        anonymize(store, adapter, out, AnonymizeConfig(allow_unmeasured=True))  # no labels: no gate
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"plain": [], "anonymize": []}
    for r in range(repeats):
        for name, fn in (("plain", plain), ("anonymize", full)):
            out = work / f"{name}-{r}"
            times[name].append(fn(out))
            size = sum(p.stat().st_size for p in out.rglob("*.parquet"))
            shutil.rmtree(out)
    clips = LatentCache.open(store).read(arrays=False).clips.num_rows
    plain_s, anon_s = statistics.median(times["plain"]), statistics.median(times["anonymize"])
    return {
        "clips": clips,
        "parquet_mb": round(size / 1e6, 1),
        "plain_s": round(plain_s, 3),
        "anonymize_s": round(anon_s, 3),
        "anonymize_clips_per_s": round(clips / anon_s, 1),
        "anonymize_mb_per_s": round(size / 1e6 / anon_s, 1),
        "ratio_anonymize_to_plain": round(anon_s / plain_s, 3),
        "runs": {k: [round(t, 3) for t in v] for k, v in times.items()},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    from pipeline.adapter import meta_from_training, save_adapter

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = dict(PRESETS["gpu" if args.gpu else "cpu"])
    if args.device:
        preset["device"] = args.device
    epochs = args.epochs or preset["epochs"]
    data = planted(preset)
    report: dict[str, Any] = {
        "preset": "gpu" if args.gpu else "cpu",
        "device": (
            torch.cuda.get_device_name(0)
            if preset["device"] == "cuda"
            else f"cpu x{torch.get_num_threads()} threads"
        ),
        "videos": data.num_videos,
        "motion_clips": len(data.motion),
        "dim": data.dim,
        "train": [],
    }
    trained = None
    for recipe in ("default",) if args.skip_paper else ("default", "paper"):
        result = train_pass(data, recipe, epochs, preset["device"])
        if recipe == "default":
            trained = result
        report["train"].append({k: v for k, v in result.items() if k not in ("model", "config")})
        print(json.dumps(report["train"][-1]), flush=True)
    assert trained is not None
    with tempfile.TemporaryDirectory(prefix="bench-adapter-") as tmp:
        work = Path(tmp)
        store = write_cache(data, work / "cache.zarr")
        cfg = trained["config"]
        meta = meta_from_training(
            ENCODER_ID,
            cfg,
            data_checksum="",
            history=[],
            best_epoch=0,
            val_action_acc=0.0,
            encoder_weights_sha256=WEIGHTS,
            encoder_pooling=POOLING,
        )
        save_adapter(work / "adapter", trained["model"].cpu(), cfg.adapter, meta)
        report["anonymize"] = anonymize_passes(store, work / "adapter", work, args.repeats)
    print(json.dumps(report["anonymize"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
