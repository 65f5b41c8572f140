"""What fewer static clips per test video cost the static-clip leakage figures (`extract
--static-frames-test`): on a store extracted with K static clips per video, keep every clip of the train
and val videos (the attackers fit there, and the adapter trains there) and, for each k of `--ks`, only k
of each test video's K, evenly spaced (the frames `extract --static-frames-test k` would be nearest to);
then the leakage probe's attacker panel on the raw (or, with `--adapter`, the anonymized) static clips:
per attribute the worst attacker's leakage and its 95% interval over people.

Choose on the dev benchmark (`synth --preset dev`), never on the demo's test split. What a smaller k
saves: the test videos' share of the clips extract encodes (printed).

    python benchmarks/static_frames.py --store dev.zarr --ks 10,5,3,2,1 [--adapter dev-adapter] [--json f]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def kept_indices(stored: int, k: int) -> np.ndarray:
    """Which of `stored` evenly placed static clips stand for `k` (k <= stored): the one nearest to the
    centre of each of k equal segments."""
    if not 0 < k <= stored:
        raise SystemExit(f"k must be in 1..{stored}, got {k}")
    centres = (np.arange(k) + 0.5) * stored / k - 0.5
    return np.unique(np.clip(np.rint(centres), 0, stored - 1).astype(int))


def subset_rows(video_id: np.ndarray, index: np.ndarray, test: set[str], k: int) -> np.ndarray:
    """Rows to keep: every static clip of a video outside `test`; k evenly spaced ones of a test video."""
    keep = np.ones(len(video_id), dtype=bool)
    for vid in test:
        rows = np.flatnonzero(video_id == vid)
        if len(rows) <= k:
            continue
        order = rows[np.argsort(index[rows])]
        chosen = set(order[kept_indices(len(order), k)].tolist())
        keep[[r for r in rows if r not in chosen]] = False
    return np.flatnonzero(keep)


def measure(store: str, ks: Sequence[int], adapter: str | None, attackers: str) -> dict[str, Any]:
    from flows.probe import _leakage, with_attackers
    from flows.views import anonymize_view, labels_of, static_clips
    from pipeline.probes.inputs import Clips
    from stores.latent_cache import LatentCache

    view = LatentCache.open(store).read()
    labels = labels_of(view.videos)
    emb = np.asarray(anonymize_view(view, adapter)[1] if adapter else view.static, dtype=np.float32)
    clips = static_clips(view, emb)
    test = {v for v, s in labels.splits.items() if s == "test"}
    cfg = with_attackers(attackers)
    total = len(clips.video_id) + view.motion.shape[0]
    test_static = int(np.isin(clips.video_id, list(test)).sum())
    rows_out = []
    for k in ks:
        rows = subset_rows(clips.video_id, clips.index, test, k)
        sub = Clips(emb=clips.emb[rows], video_id=clips.video_id[rows], index=clips.index[rows])
        kept_test = int(np.isin(sub.video_id, list(test)).sum())
        leakage = _leakage(sub, labels, cfg)
        rows_out.append(
            {
                "k": k,
                "test_static_clips": kept_test,
                "encoded_share_saved": round((test_static - kept_test) / total, 4),
                "worst": {
                    w["attribute"]: [w["leakage"], w["leakage_low"], w["leakage_high"], w["attacker"]]
                    for w in leakage["worst"]
                },
            }
        )
        print(_line(rows_out[-1]), flush=True)
    return {"store": store, "adapter": adapter, "attackers": attackers, "rows": rows_out}


def _line(row: dict[str, Any]) -> str:
    figures = "  ".join(f"{a} {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" for a, v in row["worst"].items())
    return (
        f"k={row['k']:2d}  test static clips {row['test_static_clips']:5d}  "
        f"saves {100 * row['encoded_share_saved']:4.1f}% of encoded clips  {figures}"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(
        prog="static_frames.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--store", required=True, help="a latent cache with static clips and private_* labels")
    p.add_argument(
        "--ks", default="10,5,3,2,1", help="static clips per test video to try (default 10,5,3,2,1)"
    )
    p.add_argument("--adapter", help="measure the adapter's static clips instead of the raw ones")
    p.add_argument("--attackers", default="fast", help="the leakage panel: fast (default) or full")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",") if k.strip()]
    result = measure(args.store, ks, args.adapter, args.attackers)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
