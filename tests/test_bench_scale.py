"""The scale benchmark's small preset end to end: a valid planted store, every stage run and measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.bench_scale import PRESETS, World, generate, main
from stores.latent_cache import LatentCache


def test_generated_store_is_a_valid_latent_cache_with_planted_labels(tmp_path: Path) -> None:
    preset = PRESETS["small"]
    result = generate(preset, tmp_path / "s.zarr")
    view = LatentCache.open(tmp_path / "s.zarr").read()
    assert result["motion_clips"] == preset.motion_clips == view.motion.shape[0]
    assert view.videos.num_rows == preset.videos
    assert view.static.shape == (preset.videos * preset.static, preset.dim)
    assert {"split", "action", "segments", "anomaly_segments", "private_gender"} <= set(
        view.videos.column_names
    )
    assert generate(preset, tmp_path / "s.zarr")["written"] == 0  # a rerun skips complete parts


def test_batched_embedding_is_the_per_video_one() -> None:
    """Generation embeds a part in one matrix product; the draws and values are those of one product per
    video (same rng order; float32 rounding at most)."""
    world = World(PRESETS["small"], 0)
    k = world.k
    looks = [np.random.default_rng(i).standard_normal((n, k)) for i, n in enumerate((3, 1, 5))]
    motions = [np.random.default_rng(10 + i).standard_normal(x.shape) for i, x in enumerate(looks)]
    one_by_one = [
        world.embed(a, m, np.random.default_rng([7, i]))
        for i, (a, m) in enumerate(zip(looks, motions, strict=True))
    ]
    latents = [
        world.latent(a, m, np.random.default_rng([7, i]))
        for i, (a, m) in enumerate(zip(looks, motions, strict=True))
    ]
    for single, batched in zip(one_by_one, world.embed_all(latents), strict=True):
        np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_small_preset_runs_every_step(tmp_path: Path) -> None:
    report = main(["--preset", "small", "--work", str(tmp_path), "--probe-tasks", "action"])
    steps = {s["step"]: s for s in report["steps"]}
    assert list(steps) == ["generate", "train-adapter", "anonymize", "probe"]
    assert all(s["rc"] == 0 and s["peak_rss_mb"] > 0 for s in steps.values())
    assert (tmp_path / "adapter" / "adapter.json").is_file()
    assert (tmp_path / "probe" / "probe.json").is_file()
