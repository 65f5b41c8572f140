"""`aam-pipeline synth` through typer's CliRunner: the manifest contract, decodable videos of the
preset's size and length, and determinism for a seed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from pipeline.data.synthetic import PRESETS, plan_benchmark
from pipeline.data.video import get_reader
from stores.manifest import parse_anomaly_segments, parse_segments, read_manifest

CONTRACT = ("video_id", "path", "split", "action", "segments", "anomaly_segments")


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "a"), "--preset", "huge"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown preset 'huge'; choose one of tiny, demo, bench, pretrain, dev, stills"
    ]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "synth.json").write_text(json.dumps({"preset": "demo", "seed": 0}))
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "b"), "--preset", "tiny"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "already holds preset 'demo' seed 0" in lines[0]
    assert not list((tmp_path / "b" / "videos").glob("*.mp4"))


@pytest.mark.slow
def test_synth_tiny_preset(tmp_path: Path, tiny_benchmark: Path) -> None:
    out = tmp_path / "tiny"
    result = CliRunner().invoke(app, ["synth", str(out), "--preset", "tiny", "--seed", "0"])
    assert result.exit_code == 0, result.output
    specs = plan_benchmark("tiny", 0)
    match = re.search(r"synth: (\d+) videos \(action (\d+), detection (\d+), anomaly (\d+)", result.stdout)
    assert (
        match and int(match[1]) == len(specs) and int(match[2]) + int(match[3]) + int(match[4]) == len(specs)
    )
    assert f"rendered {len(specs)} now" in result.stdout

    manifest = read_manifest(out / "manifest.parquet")  # validates the contract
    assert set(CONTRACT) <= set(manifest.column_names)
    private = [c for c in manifest.column_names if c.startswith("private_")]
    assert {"private_identity", "private_gender", "private_skin_tone"} <= set(private)
    rows = manifest.to_pylist()
    assert [r["video_id"] for r in rows] == [s.video_id for s in specs]
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    for row in rows:
        assert Path(row["path"]).is_file() and Path(row["path"]).parent == out / "videos"
        if row["task"] == "action":
            assert row["action"] and row["segments"] is None and row["anomaly_segments"] is None
        elif row["task"] == "detection":
            assert parse_segments(row["segments"]) and row["anomaly_segments"] is None
        else:
            assert parse_anomaly_segments(row["anomaly_segments"]) is not None and row["segments"] is None
    # Identities never cross splits (attribute probes must generalise to unseen people).
    splits_of: dict[str, set[str]] = {}
    for row in rows:
        splits_of.setdefault(row["private_identity"], set()).add(row["split"])
    assert all(len(s) == 1 for s in splits_of.values())

    size = PRESETS["tiny"].size
    reader = get_reader("decord")
    picks = [rows[0], next(r for r in rows if r["task"] == "detection")]
    for row in picks:
        info = reader.probe(row["path"])
        assert (info.num_frames, info.height, info.width, info.fps) == (row["num_frames"], size, size, 16.0)
        frames = np.stack(list(reader.iter_frames(row["path"])))
        assert frames.shape == (row["num_frames"], size, size, 3)
        # Same seed, same videos: the session's benchmark was rendered separately, by the flow.
        twin = np.stack(list(reader.iter_frames(tiny_benchmark / "videos" / Path(row["path"]).name)))
        np.testing.assert_array_equal(frames, twin)

    again = CliRunner().invoke(app, ["synth", str(out), "--preset", "tiny", "--seed", "0"])
    assert again.exit_code == 0 and "rendered 0 now" in again.stdout
