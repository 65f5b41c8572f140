"""Fixtures of the extraction tests: the TorchScript test encoder and small generated videos."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.flows.extract_support import make_encoder, write_test_video


@pytest.fixture(scope="session")
def script_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deterministic TorchScript encoder: (B, 3, 16, 32, 32) -> tokens (B, 64, 32)."""
    return make_encoder(tmp_path_factory.mktemp("encoder") / "patches.pt")


@pytest.fixture(scope="session")
def small_videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Six 64x64 videos of 20 to 70 frames (1 to 4 clips each); read-only, copy before changing."""
    folder = tmp_path_factory.mktemp("small-videos")
    return [write_test_video(folder / f"clip{k}.mp4", 20 + 10 * k, seed=k) for k in range(6)]


@pytest.fixture
def videos(small_videos: list[Path], tmp_path: Path) -> Path:
    """A writable folder holding copies of `small_videos`."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for path in small_videos:
        shutil.copy2(path, folder / path.name)
    return folder
