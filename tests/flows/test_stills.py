"""The stills protocol (the paper's VISPR evaluation): png stills of other people become static clips,
an adapter trained on another store of the same encoder is applied, and attackers fit on the stills'
train(+val) split are scored on their test split."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.slow
def test_a_stills_store_extracts_and_probes_with_another_stores_adapter(
    tiny_benchmark: Path, script_encoder: Path, tmp_path: Path
) -> None:
    from flows.extract import ExtractConfig, extract
    from flows.probe import ProbeRunConfig, probe
    from flows.synth import synth_benchmark
    from flows.train_adapter import TrainAdapterConfig, train_adapter_stage
    from stores.manifest import read_manifest
    from tests.flows.extract_support import encoder_config_kwargs

    config = ExtractConfig(**encoder_config_kwargs(script_encoder))  # type: ignore[arg-type]
    videos = tmp_path / "latents.zarr"
    extract(read_manifest(tiny_benchmark / "manifest.parquet"), videos, config)
    train_adapter_stage(videos, tmp_path / "adapter", TrainAdapterConfig(epochs=2, device="cpu"))

    stills = synth_benchmark(tmp_path / "stills", preset="stills", seed=0)
    assert stills.counts["still"] == stills.videos
    cache = tmp_path / "stills.zarr"
    extracted = extract(read_manifest(stills.manifest), cache, config)
    assert extracted.failed == 0

    record = probe(cache, tmp_path / "probe", ProbeRunConfig(), adapters=[tmp_path / "adapter"]).record
    assert [s.kind for s in record.sets][:1] == ["raw"] and len(record.sets) == 2
    for probe_set in record.sets:
        leakage = probe_set.probes["leakage_static"]
        assert leakage.status == "ok" and leakage.metrics, leakage
        for name in ("action", "temporal", "anomaly", "leakage_motion", "bias"):
            outcome = probe_set.probes[name]
            assert outcome.status == "skipped" and outcome.reason, (name, outcome)


def test_stills_targets_judge_every_static_attribute_of_our_adapter() -> None:
    from flows.demo import stills_targets

    def worst(attribute: str, removed: float | None, near: bool = False, view: str = "static") -> dict:
        return {
            "view": view,
            "attribute": attribute,
            "removed_worst": {"adapter:a": removed},
            "near_chance": near,
        }

    report = {
        "leakage_worst": [
            worst("gender", 0.75),
            worst("skin_tone", 0.5),
            worst("pattern", 0.9, near=True),
            worst("gender", 0.0, view="motion"),
        ]
    }
    targets = stills_targets(report, ours="adapter:a")
    assert [(t.name, t.met) for t in targets] == [
        ("stills gender leakage removed", True),
        ("stills skin_tone leakage removed", False),
        ("stills pattern leakage removed", None),
    ]
