"""`benchmarks/bench_dask.py` (Dask against the plain path) and `benchmarks/bench_summary.py` (the
figures `make bench` prints in one block)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from benchmarks.bench_dask import figures
from benchmarks.bench_dask import main as bench_dask
from benchmarks.bench_scale import StepResult
from benchmarks.bench_summary import MISSING, summary


def _run(wall: float) -> StepResult:
    return StepResult("x", 0, wall, 1.0, 0.1, 100.0, False, "cmd")


def test_the_ratio_is_paired_and_the_overheads_split_fixed_from_per_unit() -> None:
    plain, dask = [_run(10.0), _run(20.0), _run(10.0)], [_run(12.0), _run(22.0), _run(30.0)]
    noop = {"plain": _run(2.0), "dask": _run(5.0)}
    r = figures(plain, dask, noop, units=4)
    assert r["dask_over_plain"] == pytest.approx(1.2)  # median of 1.2, 1.1, 3.0 (not 22 / 10)
    assert r["dask_over_plain_cpu"] == pytest.approx(1.0)  # every run: 1.1 s of CPU
    assert r["fixed_overhead_s"] == pytest.approx(3.0)
    assert r["overhead_per_unit_s"] == pytest.approx((22.0 - 10.0 - 3.0) / 4)


def test_the_summary_says_what_is_missing(tmp_path: Path) -> None:
    dask = {
        "workers": 2, "dask_over_plain": 1.1, "dask_wall_s": 11.0, "plain_wall_s": 10.0, "videos": 8,
        "units": 2, "fixed_overhead_s": 0.5, "overhead_per_unit_s": 0.25, "identical_store": True,
        "dask_over_plain_cpu": 1.3,
    }  # fmt: skip
    (tmp_path / "dask.json").write_text(json.dumps(dask))
    scale = {
        "preset": "small", "motion_clips": 10, "static_clips": 4, "dim": 8, "dtype": "float32",
        "steps": [vars(_run(3.0)) | {"step": "probe"}],
    }  # fmt: skip
    (tmp_path / "scale.json").write_text(json.dumps(scale))
    adapter = {
        "device": "cpu x1 threads", "dim": 768,
        "train": [{"recipe": "default", "clips_per_s": 670.2, "train_clips": 2520}],
        "anonymize": {"anonymize_clips_per_s": 6595.0, "ratio_anonymize_to_plain": 1.31, "clips": 2880},
    }  # fmt: skip
    (tmp_path / "adapter.json").write_text(json.dumps(adapter))
    files = [tmp_path / name for name in ("extract.json", "dask.json", "scale.json", "adapter.json")]
    lines = summary(files[0], files[1], [files[2]], files[3])
    assert MISSING in lines[0] and "extract.json" in lines[0]
    assert "default 670 clips/s per epoch" in lines[1] and "1.31x a plain publish" in lines[2]
    assert "plain wall = 1.100" in lines[3] and "bit for bit: yes" in lines[3]
    assert "10 motion + 4 static clips" in lines[4]
    assert "probe" in lines[5] and "user + sys      1.1 s" in lines[5] and "peak RSS" in lines[5]
    assert MISSING in summary(None, None, [], tmp_path / "no-adapter.json")[0]


@pytest.mark.slow
def test_bench_dask_runs_both_paths_and_finds_the_same_store(tiny_benchmark: Path, tmp_path: Path) -> None:
    """Twelve videos of the tiny benchmark in units of four: one plain and one Dask run, the reruns."""
    manifest = tiny_benchmark / "first-12.parquet"  # beside the videos its relative paths name
    pq.write_table(pq.read_table(tiny_benchmark / "manifest.parquet").slice(0, 12), manifest)
    out = tmp_path / "dask.json"
    argv = ["--manifest", str(manifest), "--repeats", "1", "--videos-per-part", "4", "--json", str(out)]
    result = bench_dask([*argv, "--work", str(tmp_path / "work")])
    assert result["units"] == 3 and result["identical_store"] is True
    assert json.loads(out.read_text())["dask_over_plain"] == result["dask_over_plain"] > 0
    assert len(result["runs"]["dask"]) == 1 and result["reruns"]["dask"]["rc"] == 0
