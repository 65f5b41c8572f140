"""`extract` end to end on the synthetic benchmark, images and transformers encoders, checked against an
independent reference (decord frames -> `to_model_input` -> the encoder module)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from flows.extract import ExtractConfig, ExtractResult, extract, load_inputs, model_input
from pipeline.data.transforms import Preprocess, batch_to_model_input
from pipeline.errors import ConfigError
from stores.latent_cache import CacheView, LatentCache
from stores.manifest import read_manifest
from tests.flows.extract_support import (
    CROP,
    DIM,
    FRAMES,
    centre,
    decoded_frames,
    encoder_config_kwargs,
    reference_embedding,
)

K, K_TEST = 10, 5  # static clips per video by default: of train/val videos, of test videos
LABELS = ("split", "action", "segments", "anomaly_segments")


@pytest.fixture(scope="module")
def benchmark_inputs(tiny_benchmark: Path) -> pa.Table:
    return read_manifest(tiny_benchmark / "manifest.parquet")


@pytest.fixture(scope="module")
def benchmark_store(
    benchmark_inputs: pa.Table, script_encoder: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[CacheView, ExtractResult]:
    store = tmp_path_factory.mktemp("bench") / "tiny.zarr"
    config = ExtractConfig(**encoder_config_kwargs(script_encoder), decode_workers=1, videos_per_part=16)
    result = extract(benchmark_inputs, store, config, bar=False)
    return LatentCache.open(store).read(), result


def test_every_input_is_in_the_store_once_with_its_clips(
    benchmark_inputs: pa.Table, benchmark_store: tuple[CacheView, ExtractResult]
) -> None:
    view, result = benchmark_store
    ids = benchmark_inputs["video_id"].to_pylist()
    frames = dict(zip(ids, benchmark_inputs["num_frames"].to_pylist(), strict=True))
    assert (result.total, result.ok, result.failed, result.skipped) == (len(ids), len(ids), 0, 0)
    assert sorted(view.videos["video_id"].to_pylist()) == sorted(ids)
    assert view.errors.num_rows == 0
    assert view.motion.shape == (view.clips.num_rows, DIM) and np.isfinite(view.motion).all()
    assert view.static.shape == (view.static_clips.num_rows, DIM)
    assert (result.motion_clips, result.static_clips) == (view.clips.num_rows, view.static_clips.num_rows)

    clips = view.clips.to_pydict()
    per_video: dict[str, list[int]] = {}
    for video_id, index in zip(clips["video_id"], clips["clip_index"], strict=True):
        per_video.setdefault(video_id, []).append(index)
    for video_id in ids:
        # 16 consecutive frames, non-overlapping, trailing frames dropped (trimmed videos: 32 -> 2).
        assert per_video[video_id] == list(range(frames[video_id] // FRAMES)), video_id
    assert sum(n == 32 for n in frames.values()) > 50  # most of the benchmark is trimmed clips

    fps = dict(zip(view.videos["video_id"].to_pylist(), view.videos["fps"].to_pylist(), strict=True))
    assert set(fps.values()) == {16.0}
    np.testing.assert_array_equal(clips["frame_start"], np.asarray(clips["clip_index"]) * FRAMES)
    np.testing.assert_array_equal(np.asarray(clips["frame_stop"]) - clips["frame_start"], FRAMES)
    np.testing.assert_allclose(clips["t_start_s"], np.asarray(clips["clip_index"]) * FRAMES / 16.0)
    np.testing.assert_allclose(clips["t_end_s"], (np.asarray(clips["clip_index"]) + 1) * FRAMES / 16.0)

    static = view.static_clips.to_pydict()
    splits = dict(zip(ids, benchmark_inputs["split"].to_pylist(), strict=True))
    for video_id in ids:
        rows = [i for i, v in enumerate(static["video_id"]) if v == video_id]
        n, k = frames[video_id], K_TEST if splits[video_id] == "test" else K
        assert [static["static_index"][i] for i in rows] == list(range(k))
        assert [static["frame_index"][i] for i in rows] == [int((j + 0.5) * n / k) for j in range(k)]
    assert K_TEST < K and "test" in splits.values()
    np.testing.assert_allclose(static["t_s"], np.asarray(static["frame_index"]) / 16.0, rtol=1e-6)


def test_labels_and_file_facts_are_carried_into_the_videos_table(
    benchmark_inputs: pa.Table, benchmark_store: tuple[CacheView, ExtractResult]
) -> None:
    view, _ = benchmark_store
    private = [c for c in benchmark_inputs.column_names if c.startswith("private_")]
    assert len(private) >= 3
    expected = {r["video_id"]: r for r in benchmark_inputs.to_pylist()}
    for row in view.videos.to_pylist():
        source = expected[row["video_id"]]
        for column in (*LABELS, *private, "path"):
            assert row[column] == source[column], (row["video_id"], column)
        assert (row["status"], row["kind"], row["num_frames"]) == ("ok", "video", source["num_frames"])
        assert row["size"] == Path(source["path"]).stat().st_size
    tasks = {r["task"] for r in view.videos.to_pylist()}
    assert tasks == {"action", "detection", "anomaly"}
    detection = next(r for r in view.videos.to_pylist() if r["task"] == "detection")
    assert json.loads(detection["segments"])[0]["label"]


def test_embeddings_equal_a_direct_encoder_call(
    benchmark_inputs: pa.Table, benchmark_store: tuple[CacheView, ExtractResult], script_encoder: Path
) -> None:
    view, _ = benchmark_store
    rows = benchmark_inputs.to_pylist()
    picks = [
        next(r for r in rows if r["task"] == "action" and r["split"] != "test"),  # K static clips
        next(r for r in rows if r["task"] == "detection" and r["split"] != "test"),  # K static clips
        next(r for r in rows if r["task"] == "anomaly" and r["split"] != "test"),  # K static clips
    ]
    clip_keys = list(
        zip(view.clips["video_id"].to_pylist(), view.clips["clip_index"].to_pylist(), strict=True)
    )
    static_keys = list(
        zip(
            view.static_clips["video_id"].to_pylist(),
            view.static_clips["static_index"].to_pylist(),
            strict=True,
        )
    )
    for row, clip_index, static_index in zip(picks, (1, 4, 2), (0, 7, 9), strict=True):
        frames = [centre(f, CROP) for f in decoded_frames(row["path"], CROP)]
        assert len(frames) == row["num_frames"]
        window = np.stack(frames[clip_index * FRAMES : (clip_index + 1) * FRAMES])  # (T, S, S, 3)
        stored = view.motion[clip_keys.index((row["video_id"], clip_index))]
        np.testing.assert_allclose(stored, reference_embedding(script_encoder, window), atol=1e-5, rtol=0)

        frame = frames[int((static_index + 0.5) * row["num_frames"] / K)]
        still = np.repeat(frame[None], FRAMES, axis=0)  # a static clip: one frame, T times
        stored = view.static[static_keys.index((row["video_id"], static_index))]
        np.testing.assert_allclose(stored, reference_embedding(script_encoder, still), atol=1e-5, rtol=0)


def test_inline_and_worker_decoding_give_the_same_store(
    benchmark_inputs: pa.Table, script_encoder: Path, tmp_path: Path
) -> None:
    tasks = benchmark_inputs["task"].to_pylist()
    rows = [
        i for t in ("action", "detection", "anomaly") for i in [k for k, x in enumerate(tasks) if x == t][:2]
    ]
    subset = benchmark_inputs.take(rows)
    views = []
    threads = torch.get_num_threads()
    for workers in (0, 2):
        config = ExtractConfig(
            **encoder_config_kwargs(script_encoder), decode_workers=workers, videos_per_part=4
        )
        result = extract(subset, tmp_path / f"w{workers}.zarr", config, bar=False)
        assert (result.ok, result.failed) == (len(rows), 0)
        views.append(LatentCache.open(tmp_path / f"w{workers}.zarr").read())
        assert torch.get_num_threads() == threads  # lowered during the run on CPU, restored after
    inline, pooled = views
    assert inline.clips.equals(pooled.clips) and inline.static_clips.equals(pooled.static_clips)
    np.testing.assert_allclose(inline.motion, pooled.motion, atol=1e-6, rtol=0)
    np.testing.assert_allclose(inline.static, pooled.static, atol=1e-6, rtol=0)


def test_a_folder_of_images_becomes_static_clips(script_encoder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    shapes = {"wide.png": (60, 80, "RGB"), "tall.jpg": (100, 50, "RGB"), "sub/alpha.png": (40, 40, "RGBA")}
    shapes["grey.png"] = (64, 48, "L")
    for name, (h, w, mode) in shapes.items():
        channels = len(mode)
        pixels = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
        Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(folder / name)

    inputs = load_inputs(None, None, folder)
    result = extract(
        inputs, tmp_path / "images.zarr", ExtractConfig(**encoder_config_kwargs(script_encoder)), bar=False
    )
    assert (result.ok, result.failed, result.motion_clips, result.static_clips) == (4, 0, 0, 4)
    view = LatentCache.open(tmp_path / "images.zarr").read()
    assert view.clips.num_rows == 0
    assert set(view.videos["kind"].to_pylist()) == {"image"}
    assert view.videos["num_frames"].to_pylist() == [1, 1, 1, 1]
    assert sorted(view.static_clips["video_id"].to_pylist()) == ["grey", "sub__alpha", "tall", "wide"]
    for video_id, embedding in zip(view.static_clips["video_id"].to_pylist(), view.static, strict=True):
        name = {"sub__alpha": "sub/alpha.png", "tall": "tall.jpg"}.get(video_id, f"{video_id}.png")
        with Image.open(folder / name) as image:
            rgb = image.convert("RGB")
        scale = CROP / min(rgb.size)
        size = (max(CROP, round(rgb.width * scale)), max(CROP, round(rgb.height * scale)))
        resized = rgb.resize(size, Image.Resampling.BILINEAR)
        frame = centre(np.asarray(resized), CROP)
        reference = reference_embedding(script_encoder, np.repeat(frame[None], FRAMES, axis=0))
        np.testing.assert_allclose(embedding, reference, atol=1e-5, rtol=0)


def test_model_input_matches_the_reference_preprocessing() -> None:
    rng = np.random.default_rng(0)
    pre = Preprocess(resize=24, crop=24, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    motion = rng.integers(0, 256, size=(3, 4, 24, 24, 3), dtype=np.uint8)
    static = rng.integers(0, 256, size=(2, 24, 24, 3), dtype=np.uint8)
    reference = batch_to_model_input(
        torch.from_numpy(np.concatenate([motion, np.repeat(static[:, None], 4, axis=1)])), pre
    )
    buffer = torch.full((8, 3, 4, 24, 24), float("nan"))
    for got in (
        model_input(motion, static, 4, pre, torch.device("cpu")),
        model_input(motion, static, 4, pre, torch.device("cpu"), buffer),
    ):
        torch.testing.assert_close(got, reference, rtol=0, atol=0)
    only_static = model_input(motion[:0], static, 4, pre, torch.device("cpu"))
    torch.testing.assert_close(only_static, reference[3:], rtol=0, atol=0)
    with pytest.raises(ConfigError, match="do not fit"):
        model_input(motion, static, 8, pre, torch.device("cpu"))


def save_hf_encoder(kind: str, folder: Path) -> Path:
    """Random-weight VideoMAE (crop 32, resize 32) or V-JEPA 2 (crop 32, resize 36) of 16 frames."""
    from transformers import VideoMAEConfig, VideoMAEModel, VJEPA2Config, VJEPA2Model

    torch.manual_seed(0)
    small = {"hidden_size": DIM, "num_hidden_layers": 1, "num_attention_heads": 2, "patch_size": 16}
    if kind == "videomae":
        config = VideoMAEConfig(
            **small, intermediate_size=64, image_size=CROP, num_frames=FRAMES, tubelet_size=2
        )
        VideoMAEModel(config).save_pretrained(folder)
    else:
        vjepa = VJEPA2Config(
            **small,
            mlp_ratio=2.0,
            crop_size=CROP,
            frames_per_clip=FRAMES,
            tubelet_size=2,
            pred_hidden_size=16,
            pred_num_hidden_layers=1,
            pred_num_attention_heads=2,
            num_pooler_layers=1,
        )
        VJEPA2Model(vjepa).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", [pytest.param("videomae", marks=pytest.mark.slow), "vjepa2"])
def test_transformers_encoders_with_temporal_tokens(
    kind: str, small_videos: list[Path], tmp_path: Path
) -> None:
    """Frames are resized and cropped once, at decode time (V-JEPA 2: short side 36, crop 32): the
    embeddings equal the model's own output on those frames; temporal tokens average to them."""
    from pipeline.encoders.registry import build_encoder

    encoder_id = f"{kind}:{save_hf_encoder(kind, tmp_path / kind)}"
    video = small_videos[3]  # 50 frames: 3 clips
    inputs = pa.table({"video_id": ["v"], "path": [str(video)], "split": ["train"]})
    config = ExtractConfig(encoder=encoder_id, device="cpu", tokens=True, decode_workers=0)
    extract(inputs, tmp_path / "s.zarr", config, bar=False)
    view = LatentCache.open(tmp_path / "s.zarr").read()
    groups = FRAMES // 2
    assert view.tokens is not None and view.tokens.shape == (3, groups, DIM)
    np.testing.assert_allclose(view.tokens.mean(axis=1), view.motion, atol=1e-5)

    encoder = build_encoder(encoder_id, device="cpu")
    resize = {"videomae": CROP, "vjepa2": CROP * 256 // 224}[kind]
    assert encoder.preprocess.resize == resize
    frames = [centre(f, CROP) for f in decoded_frames(video, resize)]
    window = np.stack(frames[FRAMES : 2 * FRAMES])
    x = batch_to_model_input(torch.from_numpy(window[None]), Preprocess(resize=CROP, crop=CROP))
    np.testing.assert_allclose(view.motion[1], encoder.encode(x)[0].numpy(), atol=1e-5, rtol=0)


def test_tokens_need_an_encoder_that_has_them(script_encoder: Path, tmp_path: Path) -> None:
    inputs = pa.table({"video_id": ["v"], "path": [str(tmp_path / "none.mp4")], "split": ["train"]})
    config = ExtractConfig(**encoder_config_kwargs(script_encoder), tokens=True)
    with pytest.raises(ConfigError, match="no temporal tokens"):
        extract(inputs, tmp_path / "s.zarr", config, bar=False)
    assert not (tmp_path / "s.zarr").exists()
