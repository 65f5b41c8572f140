"""Adapter model: config validation, exact batch independence of the clip variant, artifact round trip."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.adapter import (
    AdapterConfig,
    AdapterError,
    AdapterMeta,
    anonymize_array,
    build_adapter,
    default_objective,
    load_adapter,
    save_adapter,
)
from pipeline.errors import PipelineError

D = 64
N = 300


def _perturbed(cfg: AdapterConfig, seed: int = 0) -> torch.nn.Module:
    """An adapter away from its identity start (zero-initialised layers made non-zero)."""
    torch.manual_seed(seed)
    model = build_adapter(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def clips() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((N, D)).astype(np.float32)


@pytest.fixture(scope="module")
def tokens() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((N, 2, D)).astype(np.float32)


@pytest.fixture(scope="module")
def pooled_model() -> torch.nn.Module:
    return _perturbed(AdapterConfig(dim=D, micro_batch=16))


@pytest.fixture(scope="module")
def temporal_model() -> torch.nn.Module:
    return _perturbed(AdapterConfig(dim=D, temporal=True, micro_batch=16))


@pytest.fixture(scope="module")
def alone(pooled_model: torch.nn.Module, clips: np.ndarray) -> np.ndarray:
    """Each clip anonymised on its own."""
    return np.concatenate([anonymize_array(pooled_model, clips[i : i + 1]) for i in range(N)])


def test_unknown_config_key_is_an_error() -> None:
    with pytest.raises(ValidationError, match="extra"):
        AdapterConfig.model_validate({"dim": D, "layer": 3})
    with pytest.raises(ValidationError, match="divisible"):
        AdapterConfig(dim=D, tokens=5)
    with pytest.raises(ValidationError):
        AdapterConfig(dim=D, variant="bogus")  # type: ignore[arg-type]


def test_eraser_sizes_are_checked() -> None:
    with pytest.raises(ValidationError, match="needs erase_dims"):
        AdapterConfig(dim=D, erase_clip_dims=4)
    with pytest.raises(ValidationError, match=f"= {D + 1} exceeds dim {D}"):
        AdapterConfig(dim=D, erase_dims=D, erase_clip_dims=1)
    with pytest.raises(ValidationError, match="paper variant has no eraser"):
        AdapterConfig(dim=D, variant="paper", heads=1, erase_clip_dims=1)


def test_output_shape_and_identity_start(clips: np.ndarray) -> None:
    for cfg in (AdapterConfig(dim=D), AdapterConfig(dim=D, variant="paper")):
        out = anonymize_array(build_adapter(cfg), clips)
        assert out.shape == (N, D) and out.dtype == np.float32
        np.testing.assert_array_equal(out, clips)


def test_every_batch_size_gives_bit_identical_rows(
    pooled_model: torch.nn.Module, clips: np.ndarray, alone: np.ndarray
) -> None:
    for n in range(1, N + 1, 7):
        np.testing.assert_array_equal(anonymize_array(pooled_model, clips[:n]), alone[:n])
    np.testing.assert_array_equal(anonymize_array(pooled_model, clips), alone)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_batch_independence_property(
    pooled_model: torch.nn.Module, clips: np.ndarray, alone: np.ndarray, data: st.DataObject
) -> None:
    """Any subset, in any order, in any chunking: every clip gets exactly its solo output."""
    idx = data.draw(st.lists(st.integers(0, N - 1), min_size=1, max_size=N), label="rows")
    batch = data.draw(st.integers(1, 2 * N), label="batch")
    rows = np.array(idx)
    np.testing.assert_array_equal(anonymize_array(pooled_model, clips[rows], batch=batch), alone[rows])


def test_temporal_tokens_are_batch_independent(
    temporal_model: torch.nn.Module, clips: np.ndarray, tokens: np.ndarray
) -> None:
    solo = np.concatenate(
        [anonymize_array(temporal_model, clips[i : i + 1], tokens[i : i + 1]) for i in range(40)]
    )
    rng = np.random.default_rng(3)
    for _ in range(5):
        rows = rng.permutation(N)[: rng.integers(1, N)]
        rows = rows[rows < 40] if (rows < 40).any() else np.array([0])
        extra = rng.permutation(N)[: rng.integers(0, 100)]
        both = np.concatenate([rows, extra])
        out = anonymize_array(temporal_model, clips[both], tokens[both])[: len(rows)]
        np.testing.assert_array_equal(out, solo[rows])


def test_paper_variant_depends_on_the_batch(clips: np.ndarray) -> None:
    model = _perturbed(AdapterConfig(dim=D, variant="paper"))
    first = anonymize_array(model, clips[:10])[0]
    mixed = anonymize_array(model, clips[[0, *range(100, 109)]])[0]
    assert not np.allclose(first, mixed, atol=1e-4)


def _meta(encoder_id: str = "tiny") -> AdapterMeta:
    return AdapterMeta(encoder_id=encoder_id, objective=default_objective(), data_checksum="abc", seed=3)


def test_save_load_round_trip(tmp_path: Path, pooled_model: torch.nn.Module, clips: np.ndarray) -> None:
    cfg: AdapterConfig = pooled_model.config  # type: ignore[assignment]
    save_adapter(tmp_path / "a", pooled_model, cfg, _meta())
    doc = json.loads((tmp_path / "a" / "adapter.json").read_text())
    assert doc["adapter"]["variant"] == "clip" and doc["meta"]["encoder_id"] == "tiny"
    assert doc["meta"]["objective"]["lc"] == default_objective().lc and doc["meta"]["seed"] == 3
    assert not any(p.suffix in {".pt", ".pth", ".pkl", ".bin"} for p in (tmp_path / "a").iterdir())
    model, cfg2, meta = load_adapter(tmp_path / "a", expect_encoder_id="tiny", expect_dim=D)
    assert cfg2 == cfg and meta == _meta() and meta.tasks == ("action", "detection", "anomaly")
    np.testing.assert_array_equal(anonymize_array(model, clips), anonymize_array(pooled_model, clips))


def test_load_refuses_another_encoder_or_dimension(tmp_path: Path, pooled_model: torch.nn.Module) -> None:
    save_adapter(tmp_path, pooled_model, pooled_model.config, _meta())  # type: ignore[arg-type]
    with pytest.raises(AdapterError, match="trained for encoder tiny dim 64, this store is videomae dim 64"):
        load_adapter(tmp_path, expect_encoder_id="videomae", expect_dim=D)
    with pytest.raises(AdapterError, match="dim 64, this store is tiny dim 768"):
        load_adapter(tmp_path, expect_encoder_id="tiny", expect_dim=768)
    assert issubclass(AdapterError, PipelineError)


def test_load_refuses_other_weights_preprocessing_or_pooling(
    tmp_path: Path, pooled_model: torch.nn.Module
) -> None:
    prep = {"crop": 96, "resize": 96, "frames": 16}
    meta = _meta().model_copy(
        update={"encoder_weights_sha256": "a" * 64, "encoder_preprocessing": prep, "encoder_pooling": "mean"}
    )
    save_adapter(tmp_path, pooled_model, pooled_model.config, meta)  # type: ignore[arg-type]
    same = {"expect_encoder_id": "tiny", "expect_dim": D, "expect_weights_sha256": "a" * 64}
    load_adapter(tmp_path, **same, expect_preprocessing=dict(prep), expect_pooling="mean")
    with pytest.raises(
        AdapterError, match="encoder weights sha256 aaaaaaaaaaaa, this store's are bbbbbbbbbbbb"
    ):
        load_adapter(tmp_path, **(same | {"expect_weights_sha256": "b" * 64}))
    with pytest.raises(AdapterError, match=r"preprocessed otherwise.*differs in crop"):
        load_adapter(tmp_path, **same, expect_preprocessing=prep | {"crop": 112})
    with pytest.raises(AdapterError, match="mean-pooled embeddings, this store's are cls-pooled"):
        load_adapter(tmp_path, **same, expect_pooling="cls")
    bare = tmp_path / "old"
    save_adapter(bare, pooled_model, pooled_model.config, _meta())  # type: ignore[arg-type]
    with pytest.raises(AdapterError, match="weights sha256 none recorded"):
        load_adapter(bare, **same)
    with pytest.raises(AdapterError, match="records no encoder preprocessing"):
        load_adapter(bare, expect_encoder_id="tiny", expect_dim=D, expect_preprocessing=prep)


def test_a_pickle_renamed_safetensors_is_one_adapter_error(
    tmp_path: Path, pooled_model: torch.nn.Module
) -> None:
    save_adapter(tmp_path, pooled_model, pooled_model.config, _meta())  # type: ignore[arg-type]
    weights = tmp_path / "adapter.safetensors"
    torch.save(pooled_model.state_dict(), weights)  # a pickle under the safetensors name
    doc = json.loads((tmp_path / "adapter.json").read_text())
    doc["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()  # and a JSON that vouches for it
    (tmp_path / "adapter.json").write_text(json.dumps(doc))
    with pytest.raises(AdapterError, match="is not a safetensors file"):
        load_adapter(tmp_path, expect_encoder_id="tiny", expect_dim=D)


def test_load_refuses_incomplete_or_tampered_artifacts(tmp_path: Path, pooled_model: torch.nn.Module) -> None:
    with pytest.raises(AdapterError, match="no complete adapter"):
        load_adapter(tmp_path, expect_encoder_id="tiny", expect_dim=D)
    save_adapter(tmp_path, pooled_model, pooled_model.config, _meta())  # type: ignore[arg-type]
    weights = tmp_path / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(AdapterError, match="does not match"):
        load_adapter(tmp_path, expect_encoder_id="tiny", expect_dim=D)
    doc = json.loads((tmp_path / "adapter.json").read_text())
    doc["schema_version"] = 99
    (tmp_path / "adapter.json").write_text(json.dumps(doc))
    with pytest.raises(AdapterError, match="upgrade"):
        load_adapter(tmp_path, expect_encoder_id="tiny", expect_dim=D)


def test_train_recipes() -> None:
    from pipeline.adapter import train_recipe

    paper = train_recipe("paper", 768)
    assert paper.adapter.variant == "paper" and paper.objective.lc == 100 and paper.scaled_lr == 1e-4
    ours = train_recipe("default", 256, epochs=3, seed=5)
    assert ours.adapter.variant == "clip" and ours.adapter.erase_dims == 96 and ours.epochs == 3
    assert ours.scaled_lr == pytest.approx(2.5e-4) and ours.seed == 5 and ours.objective.independence > 0
    with pytest.raises(ValidationError, match="extra"):
        train_recipe("default", 256, epoch=3)
