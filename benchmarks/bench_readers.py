"""Video readers side by side: frames/s of each reader on the same files, in one run (issue 25).

Every reader decodes every file in one sequential pass (`VideoReader.iter_frames`, what `extract`
runs per input), at native size and resized to a short side, on one thread; passes alternate between
readers (A B A B ...) so drift on a shared machine hits both alike. Medians over `--repeats`.

Examples:

    python benchmarks/bench_readers.py                               # 8 generated 480x272 videos
    python benchmarks/bench_readers.py --inputs data/demo/videos     # the synthetic benchmark's videos
    python benchmarks/bench_readers.py --readers pyav,decord,torchcodec --json readers.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--readers", default="pyav,decord", help="comma-separated readers (default pyav,decord)"
    )
    parser.add_argument(
        "--inputs", type=Path, help="a folder of videos (default: generate --videos of --size)"
    )
    parser.add_argument("--videos", type=int, default=8, help="videos to generate (default 8)")
    parser.add_argument("--frames", type=int, default=128, help="frames per generated video (default 128)")
    parser.add_argument("--size", default="480x272", help="WxH of generated videos (default 480x272)")
    parser.add_argument(
        "--short-side", type=int, default=128, help="short side of the resized pass (default 128)"
    )
    parser.add_argument("--threads", type=int, default=1, help="decoder threads per reader (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="passes per reader and size (default 3)")
    parser.add_argument("--json", type=Path, help="write every timing here")
    return parser.parse_args(argv)


def decode_all(reader: Any, paths: list[Path], short_side: int | None) -> tuple[float, int]:
    """Seconds and frames of one sequential pass over every file."""
    start = time.perf_counter()
    frames = 0
    for path in paths:
        for _ in reader.iter_frames(path, short_side=short_side):
            frames += 1
    return time.perf_counter() - start, frames


def measure(
    names: list[str], paths: list[Path], short_side: int, threads: int, repeats: int
) -> dict[str, Any]:
    """Median frames/s of each reader at native size and at `short_side`, passes interleaved."""
    from pipeline.data.video import get_reader

    readers = {name: get_reader(name, num_threads=threads) for name in names}
    runs: dict[str, dict[str, list[float]]] = {n: {"native": [], "resized": []} for n in names}
    frames: dict[str, dict[str, int]] = {n: {} for n in names}
    for _ in range(repeats):
        for size, side in (("native", None), ("resized", short_side)):
            for name, reader in readers.items():
                seconds, count = decode_all(reader, paths, side)
                runs[name][size].append(count / seconds)
                frames[name][size] = count
    return {
        name: {
            size: {"frames_per_s": statistics.median(rates), "runs": rates, "frames": frames[name][size]}
            for size, rates in by_size.items()
        }
        for name, by_size in runs.items()
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from benchmarks.bench_extract import generate_videos, parse_size

    args = parse_args(argv)
    names = [n.strip() for n in args.readers.split(",") if n.strip()]
    with tempfile.TemporaryDirectory(prefix="aam-bench-readers-") as tmp:
        if args.inputs is not None:
            from pipeline.data.video import is_video

            paths = sorted(p for p in args.inputs.rglob("*") if is_video(p))
        else:
            paths = generate_videos(Path(tmp), args.videos, args.frames, parse_size(args.size), 25)
        if not paths:
            raise SystemExit(f"no videos under {args.inputs}")
        result = {
            "videos": len(paths),
            "short_side": args.short_side,
            "threads": args.threads,
            "repeats": args.repeats,
            "readers": measure(names, paths, args.short_side, args.threads, args.repeats),
        }
    print(f"{len(paths)} videos, {args.threads} thread(s), median of {args.repeats} passes")
    print(f"{'reader':<12}{'native f/s':>12}{f'short {args.short_side} f/s':>18}")
    for name, r in result["readers"].items():
        print(f"{name:<12}{r['native']['frames_per_s']:>12.0f}{r['resized']['frames_per_s']:>18.0f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
