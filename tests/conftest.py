"""Shared fixtures: tiny synthetic inputs made on the fly, isolated Prefect home."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never talk to a shared Prefect server or send analytics.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", str(Path(os.environ.get("TMPDIR", "/tmp")) / "aam-tests-prefect"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _gpu_marker_fails_without_gpu(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("gpu") is not None:
        import torch

        assert torch.cuda.is_available(), "gpu test run on a machine without CUDA"


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `tiny` synthetic benchmark (seed 0), rendered once per test session."""
    from flows.synth import synth_benchmark

    out = tmp_path_factory.mktemp("tiny-benchmark")
    synth_benchmark(out, preset="tiny", seed=0)
    return out
