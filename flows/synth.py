"""`synth`: render the synthetic privacy benchmark and write its manifest."""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from flows.progress import progress
from pipeline.data.synthetic import PRESETS, VideoSpec, file_name, plan_benchmark, render_to_file
from pipeline.errors import ConfigError
from stores.manifest import write_manifest

MANIFEST = "manifest.parquet"
DONE_MARKER = "synth.json"


@dataclass(frozen=True)
class SynthResult:
    out_dir: Path
    manifest: Path
    videos: int
    rendered: int  # videos rendered now (the rest were already there)
    counts: dict[str, int]


def _render(job: tuple[VideoSpec, str]) -> str:
    spec, path = job
    render_to_file(spec, path)
    return spec.video_id


def synth_benchmark(
    out_dir: str | Path, preset: str = "tiny", seed: int = 0, workers: int | None = None
) -> SynthResult:
    """Render every video (or, for `stills`, every png) of `preset` into OUT_DIR/videos/ and write
    OUT_DIR/manifest.parquet.

    Deterministic for a seed; a rerun renders only the videos that are missing."""
    out = Path(out_dir)
    specs = plan_benchmark(preset, seed)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    marker = out / DONE_MARKER
    if marker.exists():
        done = json.loads(marker.read_text())
        if (done.get("preset"), done.get("seed")) != (preset, seed):
            raise ConfigError(
                f"{out} already holds preset {done.get('preset')!r} seed {done.get('seed')}; "
                "choose another OUT_DIR or delete it"
            )
    jobs = [(s, str(out / "videos" / file_name(s))) for s in specs]
    todo = [j for j in jobs if not Path(j[1]).exists()]
    workers = workers or min(len(todo), os.cpu_count() or 1) or 1
    if todo:
        with progress(f"synth {preset}", len(todo), "videos") as advance:
            if workers == 1:
                for job in todo:
                    _render(job)
                    advance()
            else:
                with ProcessPoolExecutor(workers) as pool:
                    for _ in pool.map(_render, todo, chunksize=4):
                        advance()
    rows = [s.manifest_row(f"videos/{file_name(s)}") for s in specs]
    manifest = out / MANIFEST
    write_manifest(pa.Table.from_pylist(rows), manifest)
    counts = {
        task: sum(s.task == task for s in specs) for task in ("action", "detection", "anomaly", "still")
    }
    counts["bias_train"] = sum(s.bias_split == "train" for s in specs)
    counts["bias_test"] = sum(s.bias_split == "test" for s in specs)
    info = {
        "preset": preset,
        "seed": seed,
        "videos": len(specs),
        "counts": counts,
        "size": PRESETS[preset].size,
    }
    marker.write_text(json.dumps(info, indent=2))
    return SynthResult(out, manifest, len(specs), len(todo), counts)
