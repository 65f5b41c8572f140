"""`demo`: the embedded end-to-end job on the synthetic benchmark and the reference encoder.

Runs every stage that exists, in order, into one folder, and reports what it did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flows.extract import ExtractConfig, ExtractResult, extract
from flows.probe import ProbeResult, probe
from flows.report import ReportResult, make_report, summary_lines
from flows.synth import SynthResult, synth_benchmark
from stores.manifest import read_manifest


@dataclass
class DemoResult:
    out: Path
    synth: SynthResult
    extract: ExtractResult
    probe: ProbeResult
    report: ReportResult
    summary: list[str] = field(default_factory=list)
    stages_done: list[str] = field(default_factory=list)
    stages_missing: list[str] = field(default_factory=list)


def run_demo(out: str | Path, preset: str = "demo", seed: int = 0, encoder: str = "tiny") -> DemoResult:
    """Synthesise the benchmark, extract its latent cache, probe and report the raw latents; the
    adapter stages join as they land."""
    root = Path(out)
    synth = synth_benchmark(root / "data", preset=preset, seed=seed)
    cache = root / "latents.zarr"
    extracted = extract(read_manifest(synth.manifest), cache, ExtractConfig(encoder=encoder))
    probed = probe(cache, root / "probe", echo=print)
    report = make_report(root / "probe", root / "report")
    return DemoResult(
        out=root,
        synth=synth,
        extract=extracted,
        probe=probed,
        report=report,
        summary=summary_lines(report.report),
        stages_done=["synth", "extract", "probe", "report"],
        stages_missing=["train-adapter", "anonymize"],
    )
