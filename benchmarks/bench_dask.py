"""Dask against the plain path: `aam-pipeline extract` and `aam-pipeline extract --dask-workers N` on the
same videos, each into a fresh store, in turn (plain, Dask, plain, Dask, ...), as child processes of the
real CLI (wall time; user and system CPU and peak RSS from `os.wait4`).

Reported: the median wall time of each, the Dask / plain ratio (median of the pair-by-pair ratios:
pairing keeps it meaningful on a machine whose speed drifts) and the same ratio of CPU time (on a
machine busy with other jobs, more processes get more of it, so the wall ratio favours Dask), whether
the Dask store is the plain store bit for bit (tables and arrays), and the Dask path's overhead: its
fixed part is a rerun with nothing to do (each path checks the store and returns; Dask also starts its
temporary Prefect server and its cluster) minus the plain path's, and the rest divided by the work
units is the overhead per unit (negative when the workers' parallelism gains more than the units cost).

The videos are a synthetic benchmark (`aam-pipeline synth --preset bench`, made once under `--work`)
or a manifest of yours.

Examples:

    python benchmarks/bench_dask.py                           # bench preset, 2 workers, 3 pairs
    python benchmarks/bench_dask.py --preset tiny --repeats 1 --json dask.json
    python benchmarks/bench_dask.py --manifest m.parquet --workers 4
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_scale import StepResult, run_step  # noqa: E402

SUMMARY = re.compile(r"extract: (\d+) inputs, (\d+) already complete, (\d+) extracted, (\d+) failed")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_dask.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", default="bench", help="synth preset of the videos (default bench)")
    parser.add_argument("--seed", type=int, default=0, help="synth seed (default 0)")
    parser.add_argument("--manifest", type=Path, help="your manifest instead of a synthetic benchmark")
    parser.add_argument("--encoder", default="tiny", help="extract --encoder (default tiny)")
    parser.add_argument("--workers", type=int, default=2, help="--dask-workers (default 2)")
    parser.add_argument("--videos-per-part", type=int, default=32, help="videos per work unit (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="plain/Dask pairs (default 3)")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed after)")
    parser.add_argument("--json", type=Path, help="write every run and figure here")
    return parser.parse_args(argv)


def videos_in(manifest: Path) -> int:
    from stores.manifest import read_manifest

    return read_manifest(manifest).num_rows


def extract_command(args: argparse.Namespace, manifest: Path, store: Path, dask: bool) -> list[str]:
    argv = [sys.executable, "-m", "cli.main", "extract", "--manifest", str(manifest), "--out", str(store)]
    argv += ["--encoder", args.encoder, "--videos-per-part", str(args.videos_per_part)]
    return argv + (["--dask-workers", str(args.workers)] if dask else [])


def run_extract(name: str, argv: list[str], log: Path) -> StepResult:
    """One extract child; SystemExit with its log's tail when it fails or extracts nothing new it
    should have (the counts line is checked)."""
    result = run_step(name, argv, log, None)
    text = log.read_text(errors="replace")
    if result.rc != 0 or not SUMMARY.search(text):
        raise SystemExit(f"{name} failed (exit {result.rc}):\n{text[-2000:]}")
    print(result.line(), flush=True)
    return result


def same_store(a: Path, b: Path) -> bool:
    """Whether two stores hold the same tables and, bit for bit, the same arrays."""
    import numpy as np

    from stores.latent_cache import LatentCache

    x, y = LatentCache.open(a).read(), LatentCache.open(b).read()
    tables = all(getattr(x, t).equals(getattr(y, t)) for t in ("clips", "static_clips", "videos"))
    arrays = all(np.array_equal(getattr(x, n), getattr(y, n)) for n in ("motion", "static"))
    return tables and arrays


def figures(
    plain: list[StepResult], dask: list[StepResult], noop: dict[str, StepResult], units: int
) -> dict[str, Any]:
    """Medians, the paired ratio and the overheads (seconds)."""
    p = statistics.median(r.wall_s for r in plain)
    d = statistics.median(r.wall_s for r in dask)
    fixed = noop["dask"].wall_s - noop["plain"].wall_s
    ratios = [b.wall_s / a.wall_s for a, b in zip(plain, dask, strict=True)]
    cpu = [(b.user_s + b.sys_s) / (a.user_s + a.sys_s) for a, b in zip(plain, dask, strict=True)]
    return {
        "plain_wall_s": p,
        "dask_wall_s": d,
        "dask_over_plain": round(statistics.median(ratios), 3),
        "dask_over_plain_cpu": round(statistics.median(cpu), 3),
        "fixed_overhead_s": round(fixed, 2),
        "overhead_per_unit_s": round((d - p - fixed) / units, 3) if units else None,
    }


def print_report(r: dict[str, Any], pairs: int) -> None:
    print(
        f"\nDask ({r['workers']} workers) / plain wall = {r['dask_over_plain']:.3f}  [target <= 1.2]  "
        f"(medians {r['dask_wall_s']:.1f} s / {r['plain_wall_s']:.1f} s, {pairs} pairs); CPU time "
        f"(user + system) {r['dask_over_plain_cpu']:.3f}"
    )
    print(
        f"  fixed overhead (reruns with nothing to do) {r['fixed_overhead_s']:.1f} s, per work unit "
        f"{r['overhead_per_unit_s']} s; same store bit for bit: {'yes' if r['identical_store'] else 'NO'}",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-dask-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        manifest = args.manifest
        if manifest is None:
            data = work / f"synth-{args.preset}-{args.seed}"
            if not (data / "manifest.parquet").exists():
                synth = [sys.executable, "-m", "cli.main", "synth", str(data), "--preset", args.preset]
                made = run_step("synth", [*synth, "--seed", str(args.seed)], work / "synth.log", None)
                if made.rc != 0:
                    raise SystemExit((work / "synth.log").read_text()[-2000:])
            manifest = data / "manifest.parquet"
        videos = videos_in(manifest)
        units = math.ceil(videos / args.videos_per_part)
        print(f"{videos} videos, {units} units of {args.videos_per_part}, {args.workers} workers", flush=True)
        plain: list[StepResult] = []
        dask: list[StepResult] = []
        identical = None
        for r in range(args.repeats):
            for kind, runs in (("plain", plain), ("dask", dask)):
                store = work / f"{kind}.zarr"
                shutil.rmtree(store, ignore_errors=True)
                argv = extract_command(args, manifest, store, kind == "dask")
                runs.append(run_extract(f"{kind} {r + 1}", argv, work / f"{kind}-{r + 1}.log"))
            if identical is None:
                identical = same_store(work / "plain.zarr", work / "dask.zarr")
        noop = {
            kind: run_extract(
                f"{kind} rerun",
                extract_command(args, manifest, work / f"{kind}.zarr", kind == "dask"),
                work / f"{kind}-rerun.log",
            )
            for kind in ("plain", "dask")
        }
        result = figures(plain, dask, noop, units) | {
            "videos": videos,
            "units": units,
            "workers": args.workers,
            "encoder": args.encoder,
            "preset": None if args.manifest else args.preset,
            "identical_store": identical,
            "runs": {"plain": [vars(r) for r in plain], "dask": [vars(r) for r in dask]},
            "reruns": {k: vars(v) for k, v in noop.items()},
        }
        print_report(result, args.repeats)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2))
        return result
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
