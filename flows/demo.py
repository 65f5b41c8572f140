"""`demo`: the embedded end-to-end job on the synthetic benchmark and the reference encoder.

synth → extract → train-adapter (ours, and the paper's recipe for comparison) → anonymize (publish
our adapter's output, with the privacy gate's numbers) → probe raw, the paper adapter and the
published shards → report. Everything goes into one folder; a rerun reuses what is there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flows.anonymize import AnonymizeConfig, AnonymizeResult, anonymize
from flows.extract import ExtractConfig, ExtractResult, extract
from flows.probe import ProbeResult, probe
from flows.report import ReportResult, make_report, summary_lines
from flows.synth import SynthResult, synth_benchmark
from flows.train_adapter import TrainAdapterConfig, TrainAdapterResult, train_adapter_stage
from stores.manifest import read_manifest

DEMO_EPOCHS = 20  # enough for the demo benchmark's ≈2k training clips (see docs/adapter.md)


@dataclass
class DemoResult:
    out: Path
    synth: SynthResult
    extract: ExtractResult
    adapters: dict[str, TrainAdapterResult]
    anonymize: AnonymizeResult
    probe: ProbeResult
    report: ReportResult
    summary: list[str] = field(default_factory=list)
    stages_done: list[str] = field(default_factory=list)


def run_demo(
    out: str | Path,
    preset: str = "demo",
    seed: int = 0,
    encoder: str = "tiny",
    epochs: int = DEMO_EPOCHS,
    echo: Callable[[str], None] | None = print,
) -> DemoResult:
    """Every stage, in order, into `out` (see module docstring)."""
    root = Path(out)
    synth = synth_benchmark(root / "data", preset=preset, seed=seed)
    cache = root / "latents.zarr"
    extracted = extract(read_manifest(synth.manifest), cache, ExtractConfig(encoder=encoder))
    adapters = {}
    for objective in ("default", "paper"):
        config = TrainAdapterConfig(objective=objective, epochs=epochs, seed=seed)
        folder = root / ("adapter" if objective == "default" else "adapter-paper")
        adapters[objective] = train_adapter_stage(cache, folder, config, echo=echo)
    published = anonymize(
        cache, root / "adapter", root / "published", AnonymizeConfig(dataset="demo", seed=seed), echo=echo
    )
    probed = probe(
        cache, root / "probe", adapters=[root / "adapter-paper"], published=[root / "published"], echo=echo
    )
    report = make_report(root / "probe", root / "report")
    return DemoResult(
        out=root,
        synth=synth,
        extract=extracted,
        adapters=adapters,
        anonymize=published,
        probe=probed,
        report=report,
        summary=summary_lines(report.report),
        stages_done=["synth", "extract", "train-adapter", "anonymize", "probe", "report"],
    )
