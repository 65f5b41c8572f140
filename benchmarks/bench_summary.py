"""The figures `make bench` is judged on, in one block, from the JSON files its benchmarks wrote:
extraction end-to-end / (decode-only + encode-only) and its system-time share (`bench_extract.py`),
adapter training clips/s and anonymize against a plain publish (`bench_adapter.py`), Dask / plain wall
time and the overhead per work unit (`bench_dask.py`), and each scale preset's steps with wall time, CPU
time and peak RSS (`bench_scale.py`). A file that is missing is said, and the exit status is then 1
(`make bench` removes the previous run's files first, so none is reported from an earlier run).

    python benchmarks/bench_summary.py --extract bench-out/extract-cpu.json \\
        --adapter bench-out/adapter-cpu.json --dask bench-out/dask.json --scale bench-out/scale-hmdb.json
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


def adapter_lines(r: dict[str, Any]) -> list[str]:
    train = "; ".join(f"{t['recipe']} {t['clips_per_s']:.0f} clips/s per epoch" for t in r["train"])
    clips = r["train"][0]["train_clips"] if r["train"] else "?"
    a = r["anonymize"]
    return [
        f"adapter   training {train} ({clips} train clips, D={r['dim']}, {r['device']})",
        f"          anonymize {a['anonymize_clips_per_s']:.0f} clips/s, "
        f"{a['ratio_anonymize_to_plain']:.2f}x a plain publish of the same {a['clips']} clips",
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
        f"scale     preset {r['preset']}: {r.get('motion_clips', '?')} motion + "
        f"{r.get('static_clips', '?')} static clips, D={r['dim']}, {r['dtype']}"
    ]
    for s in r["steps"]:
        status = "timed out" if s["timed_out"] else ("ok" if s["rc"] == 0 else f"exit {s['rc']}")
        wall, cpu, rss = s["wall_s"], s["user_s"] + s["sys_s"], s["peak_rss_mb"]
        out.append(
            f"          {s['step']:14s} {status:9s} wall {wall:8.1f} s  user + sys {cpu:8.1f} s  "
            f"peak RSS {rss:8.0f} MB"
        )
    return out


def summary(
    extract: Path | None, dask: Path | None, scale: Sequence[Path], adapter: Path | None = None
) -> list[str]:
    lines: list[str] = []
    if (r := _load(extract, "extract", lines)) is not None:
        lines += extract_lines(r)
    if (r := _load(adapter, "adapter", lines)) is not None:
        lines += adapter_lines(r)
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
    p.add_argument("--adapter", type=Path, help="bench_adapter.py --json output")
    p.add_argument("--dask", type=Path, help="bench_dask.py --json output")
    p.add_argument("--scale", type=Path, action="append", default=[], help="bench_scale.py --json output")
    args = p.parse_args(argv)
    lines = summary(args.extract, args.dask, args.scale, args.adapter)
    print("\n== make bench: the judged figures ==")
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    raise SystemExit(1 if any(MISSING in line for line in main()) else 0)
