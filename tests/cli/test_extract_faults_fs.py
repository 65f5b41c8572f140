"""`aam-pipeline extract` on a full and on a read-only filesystem (small tmpfs mounts; skipped where this
process may not mount): one line, exit 2, what was committed stays readable, and a rerun once there is
room finishes with every clip exactly once."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from stores.latent_cache import LatentCache
from tests.flows.extract_support import CROP, FRAMES, store_snapshot


def _mount(target: Path, options: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
    return done.returncode == 0


def _remount(target: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(target)], capture_output=True, check=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "disk"
    if not _mount(where, "size=16m"):
        pytest.skip("cannot mount a tmpfs here (needs root): the full and read-only cases are not exercised")
    yield where
    subprocess.run(["umount", str(where)], capture_output=True, check=False)


def _pages(root: Path) -> int:
    """4 KiB pages the files under `root` take on a tmpfs."""
    return sum(-(-p.stat().st_size // 4096) for p in root.rglob("*") if p.is_file())


def _extract(videos: Path, store: Path, encoder: Path) -> Result:
    args = ["extract", "--videos", str(videos), "--out", str(store), "--videos-per-part", "1"]
    args += ["--encoder", f"torchscript:{encoder}", "--crop", str(CROP), "--device", "cpu"]
    return CliRunner().invoke(app, [*args, "--decode-workers", "0"])


def _one_line(result: Result, pattern: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(pattern, lines[0]), lines
    assert "Traceback" not in result.output


def _clips_once(store: Path, frames: dict[str, int]) -> None:
    view = LatentCache.open(store).read()
    counts = Counter(view.clips["video_id"].to_pylist())
    assert counts == {v: n // FRAMES for v, n in frames.items() if n // FRAMES}, counts
    assert len(view.clips) == len(view.motion)


def test_a_full_disk_is_one_line_and_a_rerun_with_room_completes(
    disk: Path, small_videos: list[Path], script_encoder: Path, tmp_path: Path
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    for path in small_videos:
        shutil.copy2(path, videos / path.name)
    reference = tmp_path / "reference.zarr"
    assert _extract(videos, reference, script_encoder).exit_code == 0
    _remount(disk, f"size={_pages(reference) // 2 * 4096}")  # room for about half the store
    store = disk / "store.zarr"
    result = _extract(videos, store, script_encoder)
    _one_line(result, r"No space left on device.*free some space")
    view = LatentCache.open(store).read()  # readable: what was committed is whole
    committed = set(view.videos["video_id"].to_pylist())
    assert len(committed) < len(small_videos)
    assert not [p for p in (store / "parts").iterdir() if p.name.startswith(".tmp-")]

    _remount(disk, "size=16m")
    again = _extract(videos, store, script_encoder)
    assert again.exit_code == 0, again.output
    frames = {r["video_id"]: r["num_frames"] for r in LatentCache.open(store).read().videos.to_pylist()}
    assert set(frames) == {p.stem for p in small_videos}
    _clips_once(store, frames)


def test_a_read_only_filesystem_is_one_line_and_changes_nothing(
    disk: Path, small_videos: list[Path], script_encoder: Path, tmp_path: Path
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy2(small_videos[1], videos / small_videos[1].name)
    store = disk / "store.zarr"
    assert _extract(videos, store, script_encoder).exit_code == 0
    shutil.copy2(small_videos[2], videos / small_videos[2].name)  # new work for the next run
    before = store_snapshot(store)

    _remount(disk, "ro")
    _one_line(_extract(videos, store, script_encoder), r"[Rr]ead-only file system.*writable folder")
    _one_line(_extract(videos, disk / "new.zarr", script_encoder), r"[Rr]ead-only file system")
    assert store_snapshot(store) == before
    assert LatentCache.open(store).read().videos["video_id"].to_pylist() == ["clip1"]
