"""`aam-pipeline run` through typer's CliRunner: every stage on labelled synthetic videos with work
units on a local Dask cluster, reporting to a temporary Prefect server; a rerun that does nothing; bad
input (exit 2, one line, before Prefect starts)."""

from __future__ import annotations

import os

# Before Prefect is imported anywhere: no analytics, time for a first server start on 2 busy cores.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from flows.orchestrate import stage_available
from stores.latent_cache import LatentCache
from tests.flows.extract_support import CROP, store_snapshot

# People of the `tiny` benchmark (seed 0) whose trimmed action clips make the labelled set: six train,
# two val, four test identities, three actions each (36 videos of 32 frames).
PEOPLE = [*range(6), 16, 17, 20, 21, 22, 23]


def render_people(out: Path, people: list[int]) -> list[dict[str, object]]:
    """Render the trimmed action clips of `people` into OUT/videos; their manifest rows."""
    from pipeline.data.synthetic import plan_benchmark, render_to_file

    wanted = {f"s{k:04d}" for k in people}
    specs = [s for s in plan_benchmark("tiny", 0) if s.identity in wanted and s.task == "action"]
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in specs:
        path = out / "videos" / f"{spec.video_id}.mp4"
        if not path.exists():
            render_to_file(spec, str(path))
        rows.append(spec.manifest_row(str(path)))
    return rows


def write_rows(rows: list[dict[str, object]], path: Path) -> Path:
    from stores.manifest import write_manifest

    write_manifest(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture(scope="session")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, object]]]:
    """(folder, manifest rows) of 36 labelled synthetic videos, rendered once per session."""
    out = tmp_path_factory.mktemp("labelled")
    return out, render_people(out, PEOPLE)


def encoder_args(encoder: Path) -> list[str]:
    return ["--encoder", f"torchscript:{encoder}", "--crop", str(CROP), "--device", "cpu"]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def test_help_has_examples() -> None:
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    for text in (
        "--manifest",
        "--workdir",
        "--encoder",
        "--dask-workers",
        "--dask-address",
        "Examples",
        "Exits",
    ):
        assert text in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give exactly one input"),
        (["--manifest", "m.csv", "--videos", "v"], "give exactly one input"),
        (["--videos", "v", "--dask-workers", "2", "--dask-address", "tcp://h:1"], "not both"),
        (["--videos", "v", "--dask-workers", "0"], "--workers"),
        (["--videos", "v", "--epochs", "0"], "epochs"),
        (["--videos", "v", "--max-leakage", "2"], "max_leakage"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    if message in ("epochs", "max_leakage") and not stage_available("anonymize"):
        pytest.skip("the adapter stages are not in this install")
    result = invoke("run", "--workdir", tmp_path / "w", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "w").exists()


def test_bad_config_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "run.json"
    bad.write_text(json.dumps({"extract": {"static_frame": 2}}))
    result = invoke("run", "--videos", tmp_path, "--workdir", tmp_path / "w", "--config", bad)
    assert result.exit_code == 2 and "extract.static_frame" in result.stderr, result.output
    bad.write_text("{not json")
    result = invoke("run", "--videos", tmp_path, "--workdir", tmp_path / "w", "--config", bad)
    assert result.exit_code == 2 and "not valid" in result.stderr, result.output


def test_end_to_end_on_a_local_dask_cluster_then_a_rerun_does_nothing(
    labelled: tuple[Path, list[dict[str, object]]], script_encoder: Path, tmp_path: Path
) -> None:
    _, rows = labelled
    manifest = write_rows(rows, tmp_path / "manifest.parquet")
    work = tmp_path / "work"
    settings = tmp_path / "run.yaml"
    settings.write_text("extract:\n  static_frames: 4\n  videos_per_part: 12\n")
    common = ["run", "--manifest", manifest, "--workdir", work, *encoder_args(script_encoder)]
    common += ["--epochs", "2", "--config", settings, "--no-gate"]  # a 2-epoch adapter is not private
    result = invoke(*common, "--dask-workers", "2")
    assert result.exit_code == 0, result.output
    record = json.loads((work / "run.json").read_text())
    stages = record["stages"]
    extracted = stages["extract"]
    assert (extracted["ok"], extracted["failed"], extracted["units"]) == (36, 0, 3)
    assert extracted["cluster"]["workers"] == 2 and extracted["cluster"]["local"] is True
    view = LatentCache.open(work / "latents.zarr").read()
    assert view.videos.num_rows == 36 and view.clips.num_rows == 72
    assert (work / "report" / "report.md").is_file() and (work / "probe" / "probe.json").is_file()
    assert "report" in result.stdout and "report.md" in result.stdout

    if stage_available("anonymize"):
        assert stages["train-adapter"]["status"] == "done" and not stages["train-adapter"]["reused"]
        assert stages["anonymize"]["videos_added"] == 36
        files = list((work / "published").rglob("*.parquet"))
        published = pa.concat_tables([pq.read_table(f) for f in files])
        assert published.num_rows == 72
        assert not [c for c in published.column_names if c.startswith("private_") or c == "path"]
        probed = json.loads((work / "probe" / "probe.json").read_text())
        assert any(s["kind"] == "published" for s in probed["sets"])

    # Everything is up to date: the rerun (embedded, no cluster) redoes nothing.
    before = store_snapshot(work)
    again = invoke(*common)
    assert again.exit_code == 0, again.output
    stages = json.loads((work / "run.json").read_text())["stages"]
    assert (stages["extract"]["ok"], stages["extract"]["skipped"], stages["extract"]["units"]) == (0, 36, 0)
    assert stages["probe"]["status"] == "unchanged" and stages["report"]["status"] == "unchanged"
    if stage_available("anonymize"):
        assert stages["train-adapter"]["reused"] and stages["anonymize"]["videos_added"] == 0
    after = store_snapshot(work)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    changed = {k for k in changed if not Path(k).name.startswith(".lock-")}  # writer locks name their holder
    assert changed <= {"run.json"}, sorted(changed)
