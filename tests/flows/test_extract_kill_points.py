"""`extract` stopped right after each of its writes (as `kill -9` there would), then rerun: against a clean
run the store has lost no clip, duplicated none and serves no stale one, embeddings bit for bit (motion
and static). A few kill points by default; every one with -m slow."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from stores.latent_cache import LatentCache
from tests.faults import KILLED, Damage, compare_views, run_stage


@pytest.fixture(scope="module")
def setup(small_videos: list[Path], script_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("kill-points")
    manifest = root / "manifest.csv"
    manifest.write_text("video_id,path\n" + "".join(f"{p.stem},{p}\n" for p in small_videos))

    def args(store: Path) -> list[str]:
        return [
            "extract", "--manifest", str(manifest), "--out", str(store),
            "--encoder", f"torchscript:{script_encoder}", "--crop", "32", "--device", "cpu",
            "--videos-per-part", "2", "--decode-workers", "0", "--batch-size", "4",
        ]  # fmt: skip

    clean = root / "clean.zarr"
    count = root / "writes"
    assert run_stage("extract", 0, args(clean), count) == 0
    return {
        "args": args,
        "clean": LatentCache.open(clean).read(),
        "writes": int(count.read_text()),
        "root": root,
    }


def _kill_and_resume(setup: dict, at: int) -> Damage:
    store = Path(tempfile.mkdtemp(dir=setup["root"])) / "store.zarr"
    assert run_stage("extract", at, setup["args"](store), setup["root"] / f"count-{at}") == KILLED
    assert run_stage("extract", 0, setup["args"](store), setup["root"] / f"count-{at}") == 0
    assert not [n for n in (store / "parts").iterdir() if n.name.startswith(".tmp-")]
    return compare_views(setup["clean"], LatentCache.open(store).read())


def test_the_stage_has_writes_to_kill_at(setup: dict) -> None:
    assert setup["writes"] >= 3 * 6  # three parts, each arrays + four tables + marker + rename


@pytest.mark.parametrize("where", [0.0, 0.5, 1.0])
def test_killed_at_a_write_then_rerun_matches_a_clean_run(setup: dict, where: float) -> None:
    at = max(1, round(where * (setup["writes"] - 1)))
    assert _kill_and_resume(setup, at) == Damage()


@pytest.mark.slow
def test_killed_at_every_write_then_rerun_matches_a_clean_run(setup: dict) -> None:
    damage = [(at, _kill_and_resume(setup, at)) for at in range(1, setup["writes"])]
    assert [(at, d) for at, d in damage if d != Damage()] == []
