"""Adapter recipes over several seeds on one latent cache: how much of a privacy or utility figure is the
recipe and how much is the seed.

On the demo benchmark one test video is half a point of action top-1 and the binomial standard error
of a 0.91 top-1 on 200 videos is two points, so a single training seed cannot tell recipes a few points
apart. This trains every variant with every seed (`train-adapter`'s stage, the demo's epochs), probes
them all in one `probe` run (fixed probe seed), and prints each figure's mean ± standard deviation
over seeds next to raw: action top-1, temporal detection mAP, anomaly AUC, re-ID top-1, the bias gap
and the removed share of raw above-chance leakage (worst attacker) per attribute on motion and static
clips.

A variant is `NAME` or `NAME:option=value,...` with options of `TrainAdapterConfig` (the
`train-adapter` flags), e.g. `static-only:erase_clip_dims=0`, `wide:erase_dims=112` or
`ceiling:private_labels=["skin_tone","gender"]` (JSON lists keep their commas).

Examples:

    aam-pipeline synth dev-data --preset dev --seed 1   # the dev benchmark: choose recipes here,
    aam-pipeline extract --manifest dev-data/manifest.parquet --encoder tiny --out dev.zarr  # not on demo
    python benchmarks/adapter_seeds.py --store dev.zarr --seeds 0,1,2,3,4 \\
        --variant default --variant static-only:erase_clip_dims=0 --json seeds.json
    python benchmarks/adapter_seeds.py --store dev.zarr --seeds 0,1,2 --attackers full \\
        --variant default --variant critic:critic=1 --variant ceiling:private_labels='["skin_tone","gender"]'
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path
from typing import Any

from flows.demo import DEMO_EPOCHS
from flows.probe import ProbeRunConfig, probe, with_attackers
from flows.report import compare
from flows.train_adapter import TrainAdapterConfig, train_adapter_stage

METRICS = {  # report key -> label
    "action_top1": "action top-1",
    "temporal_map": "temporal detection mAP",
    "anomaly_auc": "anomaly AUC",
    "reid_top1": "re-ID top-1",
    "bias_delta": "bias gap",
}


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    """`NAME[:key=value,...]` -> (NAME, options); values are read as JSON where they parse."""
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, re.split(r",(?![^\[]*\])", rest)):  # commas inside [...] stay
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return name, options


def figures(report: dict[str, Any], name: str) -> dict[str, float | None]:
    """One embedding set's figures out of a report."""
    out: dict[str, float | None] = {}
    for m in report["metrics"]:
        if m["key"] in METRICS:
            out[METRICS[m["key"]]] = m["values"].get(name)
    for w in report["leakage_worst"]:
        out[f"removed {w['view']}: {w['attribute']}"] = w["removed_worst"].get(name)
    return out


def summarise(runs: dict[str, list[dict[str, float | None]]]) -> dict[str, dict[str, tuple[float, float]]]:
    """variant -> figure -> (mean, sd over seeds); figures missing in any run are left out."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for variant, per_seed in runs.items():
        keys = [k for k in per_seed[0] if all(r.get(k) is not None for r in per_seed)]
        values = {k: [float(r[k]) for r in per_seed] for k in keys}  # type: ignore[arg-type]
        out[variant] = {
            k: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0) for k, v in values.items()
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", required=True, help="latent cache with splits, task and private labels")
    parser.add_argument("--out", default="bench-out/adapter-seeds", help="adapters and the probe run go here")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument(
        "--variant", action="append", default=None, help="NAME[:option=value,...]; repeatable"
    )
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS)
    parser.add_argument("--json", type=Path, default=None, help="also write every run's figures here")
    parser.add_argument(
        "--attackers", choices=("fast", "full"), default="fast", help="the leakage probe's attacker panel"
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = dict(parse_variant(v) for v in (args.variant or ["default"]))
    out = Path(args.out)
    folders: dict[tuple[str, int], Path] = {}
    for name, options in variants.items():
        for seed in seeds:
            folder = out / f"{name}-seed{seed}"
            config = TrainAdapterConfig(epochs=args.epochs, seed=seed, **options)
            train_adapter_stage(args.store, folder, config, echo=print)
            folders[name, seed] = folder
    tasks = ("action", "temporal", "anomaly", "leakage", "reid", "bias")
    run = ProbeRunConfig(tasks=tasks, probes=with_attackers(args.attackers))
    record = probe(args.store, out / "probe", run, adapters=list(folders.values()))
    report = compare(record.record)
    raw = figures(report, next(s["name"] for s in report["sets"] if s["kind"] == "raw"))
    runs = {
        name: [figures(report, f"adapter:{folders[name, seed].name}") for seed in seeds] for name in variants
    }
    table = summarise(runs)
    print(f"\nmean ± sd over seeds {seeds}, {args.epochs} epochs, {args.attackers} attacker panel; raw first")
    print(f"{'figure':38s} {'raw':>7s} " + " ".join(f"{n:>15s}" for n in variants))
    for key in next(iter(table.values())):
        row = " ".join(
            f"{table[n][key][0]:9.3f}±{table[n][key][1]:.3f}" if key in table[n] else f"{'—':>15s}"
            for n in variants
        )
        raw_value = "" if key.startswith("removed") or raw.get(key) is None else f"{raw[key]:.3f}"
        print(f"{key:38s} {raw_value:>7s} {row}")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"seeds": seeds, "attackers": args.attackers, "raw": raw, "runs": runs, "variants": variants},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
