"""The embedded end-to-end demo on the `tiny` preset: every stage runs and the report compares them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.demo import run_demo
from stores.published import published_partitions


@pytest.mark.slow
def test_demo_runs_every_stage_on_the_tiny_preset(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_demo(tmp_path / "demo", preset="tiny", epochs=2, echo=lines.append)
    assert result.stages_done == ["synth", "extract", "train-adapter", "anonymize", "probe", "report"]
    assert result.extract.failed == 0 and result.extract.motion_clips > 0
    assert set(result.adapters) == {"default", "paper"}
    (part,) = published_partitions(tmp_path / "demo" / "published")
    assert part.dataset == "demo" and part.rows == result.extract.motion_clips
    assert result.anonymize.gate.measured  # the synthetic benchmark carries private labels
    report = json.loads((result.report.out / "report.json").read_text())
    names = [s["name"] for s in report["sets"]]
    assert names[0] == "raw" and "adapter:adapter-paper" in names
    assert any(n.startswith("published:") for n in names)
    assert (result.report.out / "report.md").is_file() and result.summary
    assert any("train-adapter" in line for line in lines)


@pytest.mark.slow
def test_the_same_stages_run_on_a_torchscript_encoder(
    tiny_benchmark: Path, script_encoder: Path, tmp_path: Path
) -> None:
    """Another encoder (any TorchScript file obeying the contract) and a manifest: nothing else changes."""
    from flows.anonymize import anonymize
    from flows.extract import ExtractConfig, extract
    from flows.probe import ProbeRunConfig, probe
    from flows.train_adapter import TrainAdapterConfig, train_adapter_stage
    from stores.manifest import read_manifest
    from tests.flows.extract_support import encoder_config_kwargs

    cache = tmp_path / "latents.zarr"
    config = ExtractConfig(**encoder_config_kwargs(script_encoder))  # type: ignore[arg-type]
    extracted = extract(read_manifest(tiny_benchmark / "manifest.parquet"), cache, config)
    assert extracted.failed == 0
    trained = train_adapter_stage(cache, tmp_path / "adapter", TrainAdapterConfig(epochs=2, device="cpu"))
    published = anonymize(cache, tmp_path / "adapter", tmp_path / "published")
    assert published.gate.measured and published.dim == 32 and trained.clips > 0
    record = probe(
        cache,
        tmp_path / "probe",
        ProbeRunConfig(tasks=("action", "leakage")),
        published=[tmp_path / "published"],
    ).record
    assert [s.name for s in record.sets] == ["raw", record.sets[1].name] and record.sets[
        1
    ].kind == "published"
