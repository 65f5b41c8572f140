"""The shipped `tiny` reference encoder: contract, checksum, and what its features carry."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from pipeline.encoders.registry import build_encoder
from pipeline.encoders.tiny import META_FILE, WEIGHTS_FILE, build_tiny_encoder, load_tiny_weights
from pipeline.errors import EncoderError


def test_tiny_obeys_the_encoder_contract() -> None:
    enc = build_encoder("tiny", device="cpu")
    assert enc.dim == 256 and enc.frames_per_clip == 16 and enc.preprocess.crop == 96
    assert not enc.module.training
    assert all(not p.requires_grad for p in enc.module.parameters())
    x = torch.randn(3, 3, 16, 96, 96)
    pooled = enc.encode(x)
    assert pooled.shape == (3, 256) and pooled.dtype == torch.float32
    torch.testing.assert_close(enc.encode(x[:1]), pooled[:1], rtol=1e-4, atol=1e-5)
    assert enc.encode_tokens(x).shape == (3, 2, 256)


def test_weights_checksum_is_verified(tmp_path: Path) -> None:
    weights, meta = tmp_path / "tiny.safetensors", tmp_path / "tiny.json"
    shutil.copy(WEIGHTS_FILE, weights)
    shutil.copy(META_FILE, meta)
    model, info = load_tiny_weights(weights, meta)
    assert info["sha256"] and sum(p.numel() for p in model.parameters()) > 100_000
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(EncoderError, match="checksum mismatch"):
        load_tiny_weights(weights, meta)


def test_missing_weights_say_how_to_make_them(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="make encoder"):
        load_tiny_weights(tmp_path / "none.safetensors", tmp_path / "none.json")


def test_unknown_config_key_is_an_error() -> None:
    with pytest.raises(EncoderError, match="unknown"):
        build_tiny_encoder({"depth": 3})


@pytest.mark.slow
def test_features_carry_actions_and_appearance(tiny_benchmark: Path, tmp_path: Path) -> None:
    """A broken or random-weight encoder cannot land: actions well above chance and appearance leaking.

    The `tiny` preset has only 8 test people; on it the shipped weights give action top-1 0.50 and a
    mean fraction-to-perfect over attributes of 0.19 (demo-preset figures: docs/reference-encoder.md)."""
    from flows.encoder_report import store_figures
    from flows.extract import ExtractConfig, extract
    from stores.manifest import read_manifest

    store = tmp_path / "tiny.zarr"
    extract(read_manifest(tiny_benchmark / "manifest.parquet"), store, ExtractConfig(static_frames=4))
    figures = store_figures(store)
    assert figures.action_top1 >= 2.5 * figures.action_chance
    fractions = [
        row[f"{kind}_fraction_to_perfect"]
        for row in figures.attributes.values()
        for kind in ("static", "motion")
    ]
    assert sum(fractions) / len(fractions) >= 0.08, figures.attributes
