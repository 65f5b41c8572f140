"""`demo`: the embedded end-to-end job on the synthetic benchmark and the reference encoder.

Runs every stage that exists, in order, into one folder, and reports what it did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flows.extract import ExtractConfig, ExtractResult, extract
from flows.synth import SynthResult, synth_benchmark
from stores.manifest import read_manifest


@dataclass
class DemoResult:
    out: Path
    synth: SynthResult
    extract: ExtractResult
    stages_done: list[str] = field(default_factory=list)
    stages_missing: list[str] = field(default_factory=list)


def run_demo(out: str | Path, preset: str = "demo", seed: int = 0, encoder: str = "tiny") -> DemoResult:
    """Synthesise the benchmark, extract its latent cache; later stages join as they land."""
    root = Path(out)
    synth = synth_benchmark(root / "data", preset=preset, seed=seed)
    cache = root / "latents.zarr"
    extracted = extract(read_manifest(synth.manifest), cache, ExtractConfig(encoder=encoder))
    return DemoResult(
        out=root,
        synth=synth,
        extract=extracted,
        stages_done=["synth", "extract"],
        stages_missing=["train-adapter", "anonymize", "probe", "report"],
    )
