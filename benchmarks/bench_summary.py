"""The figures `make bench` is judged on, in one block, from the JSON files its benchmarks wrote:
extraction end-to-end / (decode-only + encode-only) and its system-time share (`bench_extract.py`),
Dask / plain wall time and the overhead per work unit (`bench_dask.py`), and each scale preset's steps
with wall time and peak RSS (`bench_scale.py`). A file that is missing is said, and the exit status is
then 1.

    python benchmarks/bench_summary.py --extract bench-out/extract-cpu.json --dask bench-out/dask.json \\
        --scale bench-out/scale-hmdb.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MISSING = "did not run or failed"


def _load(path: Path | None, what: str, lines: list[str]) -> dict[str, Any] | None:
    if path is None:
        return None
    if not path.exists():
        lines.append(f"{what}: no {path} (that benchmark {MISSING})")
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def extract_lines(r: dict[str, Any]) -> list[str]:
    t = r["timings"]
    ratio = t["ratios"]["full_over_decode_plus_encode"]
    return [
        f"extract   full / (decode-only + encode-only) = {ratio:.3f} [CPU target <= 1.15]; system-time share "
        f"{t['system_share_full_median']:.3f}; {t['clips']['total']} clips, encoder {r['encoder']}, "
        f"{t['decode_workers']} decode workers, {t['encoder_threads']} encoder threads"
    ]


def dask_lines(r: dict[str, Any]) -> list[str]:
    return [
        f"dask      {r['workers']} workers / plain wall = {r['dask_over_plain']:.3f} [target <= 1.2] "
        f"({r['dask_wall_s']:.1f} s / {r['plain_wall_s']:.1f} s, {r['videos']} videos, {r['units']} units), "
        f"CPU {r.get('dask_over_plain_cpu', float('nan')):.3f}; "
        f"fixed overhead {r['fixed_overhead_s']:.1f} s, per unit {r['overhead_per_unit_s']} s; "
        f"same store bit for bit: {'yes' if r['identical_store'] else 'NO'}"
    ]


def scale_lines(r: dict[str, Any]) -> list[str]:
    out = [
        f"scale     preset {r['preset']}: {r.get('motion_clips', '?')} motion clips, D={r.get('dim', '?')}"
    ]
    for s in r["steps"]:
        status = "timed out" if s["timed_out"] else ("ok" if s["rc"] == 0 else f"exit {s['rc']}")
        wall, rss = s["wall_s"], s["peak_rss_mb"]
        out.append(f"          {s['step']:14s} {status:9s} wall {wall:8.1f} s  peak RSS {rss:8.0f} MB")
    return out


def summary(extract: Path | None, dask: Path | None, scale: Sequence[Path]) -> list[str]:
    lines: list[str] = []
    if (r := _load(extract, "extract", lines)) is not None:
        lines += extract_lines(r)
    if (r := _load(dask, "dask", lines)) is not None:
        lines += dask_lines(r)
    for path in scale:
        if (r := _load(path, "scale", lines)) is not None:
            lines += scale_lines(r)
    return lines


def main(argv: Sequence[str] | None = None) -> list[str]:
    p = argparse.ArgumentParser(
        prog="bench_summary.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--extract", type=Path, help="bench_extract.py --json output")
    p.add_argument("--dask", type=Path, help="bench_dask.py --json output")
    p.add_argument("--scale", type=Path, action="append", default=[], help="bench_scale.py --json output")
    args = p.parse_args(argv)
    lines = summary(args.extract, args.dask, args.scale)
    print("\n== make bench: the judged figures ==")
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    raise SystemExit(1 if any(MISSING in line for line in main()) else 0)
