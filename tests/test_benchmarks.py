"""The benchmarks' helpers: the seed sweep's variant parsing and mean ± sd summary; the label-eraser
diagnostic's label matrix, eraser and worst-attacker comparison."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.adapter_seeds import figures, parse_variant, summarise
from benchmarks.eraser_ceiling import fit_eraser, label_matrix, static_looks, worst_removed
from flows.views import Labels
from pipeline.probes.inputs import Clips
from pipeline.probes.leakage import AttackResult


def test_variant_spec_parses_names_and_typed_options() -> None:
    assert parse_variant("default") == ("default", {})
    assert parse_variant("wide:erase_dims=112,erase_clip_dims=0,erase_static=true") == (
        "wide",
        {"erase_dims": 112, "erase_clip_dims": 0, "erase_static": True},
    )
    assert parse_variant('ceiling:private_labels=["skin_tone","gender"],critic=2') == (
        "ceiling",
        {"private_labels": ["skin_tone", "gender"], "critic": 2},
    )


def test_summary_is_mean_and_sd_over_seeds_and_drops_figures_missing_in_a_run() -> None:
    runs = {"a": [{"x": 1.0, "y": None}, {"x": 3.0, "y": 2.0}]}
    table = summarise(runs)
    assert table["a"]["x"] == pytest.approx((2.0, 2**0.5))
    assert "y" not in table["a"]


def test_figures_reads_metrics_and_removed_leakage_of_one_set() -> None:
    report = {
        "metrics": [
            {"key": "action_top1", "values": {"s": 0.9}},
            {"key": "bias_delta", "values": {"s": 0.1}},
            {"key": "reid_map", "values": {"s": 0.2}},  # not a target figure: left out
        ],
        "leakage_worst": [{"view": "motion", "attribute": "gender", "removed_worst": {"s": 0.8}}],
    }
    assert figures(report, "s") == {"action top-1": 0.9, "bias gap": 0.1, "removed motion: gender": 0.8}


def _labels(videos: list[str], colour: dict[str, object], splits: dict[str, str]) -> Labels:
    return Labels(
        splits=splits,
        actions={v: "walk" for v in videos},
        segments={},
        anomaly={},
        num_frames={},
        fps={},
        bias_splits={},
        attributes={"colour": colour},
        identity={},
        bias_group=None,
    )


def test_label_matrix_is_one_hot_without_the_first_value_and_zero_where_missing() -> None:
    attrs = {"colour": {"a": "red", "b": "blue", "c": "green"}, "gender": {"a": "f", "b": "m"}}
    m = label_matrix(["a", "b", "c"], attrs)
    # colour columns: green, red (blue is first); gender: m (f is first); c has no gender
    np.testing.assert_array_equal(m, [[0, 1, 0], [0, 0, 1], [1, 0, 0]])


def test_label_eraser_removes_every_linear_trace_of_the_labels_and_keeps_the_rest() -> None:
    rng = np.random.default_rng(0)
    n_videos, per_video = 300, 4
    videos = [f"v{i:03d}" for i in range(n_videos)]
    colour: dict[str, object] = {v: ["red", "green", "blue"][i % 3] for i, v in enumerate(videos)}
    splits = {v: ("train", "val", "test")[i % 5 % 3] for i, v in enumerate(videos)}
    video_id = np.repeat(videos, per_video)
    onehot = label_matrix(list(video_id), {"colour": colour})  # (N, 2)
    kept = rng.standard_normal((len(video_id), 3))
    emb = np.concatenate([onehot @ rng.standard_normal((2, 3)), kept], 1) + 0.1 * rng.standard_normal(
        (len(video_id), 6)
    )
    clips = Clips(
        emb=emb.astype(np.float32), video_id=video_id, index=np.tile(np.arange(per_video), n_videos)
    )
    target = {"colour": colour}
    erase = fit_eraser([clips], _labels(videos, colour, splits), lambda v: label_matrix(v, target), 2)
    erased = erase(clips.emb).astype(np.float64)

    def r2(x: np.ndarray, y: np.ndarray) -> float:
        xa = np.concatenate([x, np.ones((len(x), 1))], 1)
        resid = y - xa @ np.linalg.lstsq(xa, y, rcond=None)[0]
        return float(1 - (resid**2).sum() / ((y - y.mean(0)) ** 2).sum())

    test = np.array([splits[v] == "test" for v in video_id])  # held out of the fit
    assert r2(emb[test], onehot[test]) > 0.9
    assert r2(erased[test], onehot[test]) < 0.05
    assert r2(erased, kept) > r2(emb, kept) - 0.01  # what is independent of the labels stays


def test_worst_removed_compares_the_strongest_attackers() -> None:
    def result(attacker: str, cmap: float) -> AttackResult:
        return AttackResult("gender", attacker, cmap, 0.0, 0.5, 0.5, 2, 10, 10, "video")

    raw = [result("linear", 0.9), result("mlp", 0.8)]
    anon = [result("linear", 0.55), result("mlp", 0.6)]
    assert worst_removed(raw, anon) == {"gender": pytest.approx((0.9 - 0.6) / (0.9 - 0.5))}


def test_static_looks_are_each_videos_mean_static_clip() -> None:
    emb = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]], np.float32)
    clips = Clips(emb=emb, video_id=np.array(["b", "a", "b"]), index=np.array([0, 0, 1]))
    looks = static_looks(clips)
    assert set(looks) == {"a", "b"}
    np.testing.assert_allclose(looks["a"], [3.0, 2.0])
    np.testing.assert_allclose(looks["b"], [3.0, 2.5])


@pytest.mark.slow
def test_the_adapter_benchmark_runs_to_its_anonymize_figures(tmp_path: Path) -> None:
    """`make bench` runs it: training, then anonymize against the plain publish on the adapter it
    trained (which must be bound to the bench cache's encoder, or anonymize refuses it)."""
    from benchmarks.bench_adapter import main

    out = tmp_path / "adapter.json"
    report = main(["--epochs", "1", "--repeats", "1", "--skip-paper", "--threads", "1", "--json", str(out)])
    assert report["train"][0]["recipe"] == "default" and report["train"][0]["clips_per_s"] > 0
    assert report["anonymize"]["ratio_anonymize_to_plain"] > 0
    assert json.loads(out.read_text())["anonymize"] == report["anonymize"]


def test_kernel_ceiling_step_leaves_no_label_covariance_in_its_features() -> None:
    """After one label-informed kernel erasure step, no output coordinate nor any random-feature
    function of the input covaries with the labels on the fit rows; a label the input carries
    nonlinearly only (an even function) is gone from the output's features too."""
    from benchmarks.kernel_ceiling import kernel_erasure_step

    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 6))
    label = (np.abs(x[:, 0]) > 0.67).astype(np.float64)  # even in x0: no linear trace
    onehot = label[:, None]
    out, apply = kernel_erasure_step(x, onehot, 256, np.random.default_rng(1))
    assert out.shape == x.shape
    np.testing.assert_allclose(apply(x), out)
    cov = (onehot - onehot.mean(0)).T @ (out - out.mean(0)) / len(x)
    assert np.abs(cov).max() < 1e-10
    square = ((x[:, 0] ** 2) - (x[:, 0] ** 2).mean()) @ (label - label.mean()) / len(x)
    erased_square = max(
        abs(((out[:, j] ** 2) - (out[:, j] ** 2).mean()) @ (label - label.mean()) / len(x)) for j in range(6)
    )
    assert square > 0.2 and erased_square < 0.5 * square


@pytest.mark.slow
def test_the_gpu_extraction_preset_runs_on_cpu_at_a_small_size(tmp_path: Path) -> None:
    """`make bench-gpu` has never had a GPU: its preset's code path (the VideoMAE encoder with random
    weights through `videomae:<dir>`, worker decoding, the ratios) runs here on two small videos."""
    from benchmarks.bench_extract import main

    out = tmp_path / "gpu.json"
    argv = ["--gpu", "--device", "cpu", "--encoder", "videomae-small-random", "--videos", "2"]
    argv += ["--frames", "32", "--size", "160x96", "--decode-workers", "1", "--batch-size", "4"]
    argv += ["--repeats", "1", "--naive-videos", "1", "--long-seconds", "0", "--json", str(out)]
    report = main(argv)
    ratios = json.loads(out.read_text())["timings"]["ratios"]
    assert ratios["full_over_decode_plus_encode"] > 0 and report["timings"]["ratios"] == ratios


BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name != "__init__.py")


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_runs_as_the_script_its_docs_name(script: str, tmp_path: Path) -> None:
    """`python benchmarks/X.py --help` from another folder: the docs and the Makefile run them as
    scripts, where the project root is not on sys.path unless the script puts it there."""
    import subprocess
    import sys

    command = [sys.executable, str(BENCHMARKS / script), "--help"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout


def test_the_second_encoder_traces_tiny_weights_to_the_same_function(tmp_path: Path) -> None:
    """`make bench-second` pretrains tiny weights from another seed and traces them: the traced file,
    loaded as a user's `torchscript:` encoder, computes what the tiny encoder of those weights does."""
    import torch

    from benchmarks.second_encoder import trace_tiny
    from pipeline.encoders.tiny import WEIGHTS_FILE, load_tiny_encoder
    from pipeline.encoders.torchscript import load_torchscript

    traced = load_torchscript(trace_tiny(WEIGHTS_FILE, tmp_path / "tiny.pt"), frames_per_clip=16, crop=96)
    tiny = load_tiny_encoder(torch.device("cpu"))
    assert (traced.dim, traced.output, traced.preprocess) == (tiny.dim, tiny.output, tiny.preprocess)
    clips = torch.rand(2, 3, 16, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(traced.module(clips), tiny.module(clips))
