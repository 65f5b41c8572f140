"""Encoder loaders against the contract: tiny random-weight VideoMAE / V-JEPA 2 and TorchScript files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from pipeline.encoders.base import LoadedEncoder, freeze, resolve_device, state_dict_sha256
from pipeline.encoders.hf import load_videomae, load_vjepa2
from pipeline.encoders.registry import ENCODER_FORMS, build_encoder
from pipeline.encoders.torchscript import load_torchscript
from pipeline.errors import ConfigError, EncoderError

FRAMES, CROP, DIM = 4, 32, 64


@pytest.fixture(scope="module")
def videomae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(0)
    config = VideoMAEConfig(
        hidden_size=DIM,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        image_size=CROP,
        patch_size=8,
        num_frames=FRAMES,
        tubelet_size=2,
    )
    path = tmp_path_factory.mktemp("videomae")
    VideoMAEModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def vjepa2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import VJEPA2Config, VJEPA2Model

    torch.manual_seed(0)
    config = VJEPA2Config(
        hidden_size=DIM,
        num_hidden_layers=2,
        num_attention_heads=4,
        mlp_ratio=2.0,
        crop_size=CROP,
        patch_size=8,
        frames_per_clip=FRAMES,
        tubelet_size=2,
        pred_hidden_size=32,
        pred_num_hidden_layers=1,
        pred_num_attention_heads=4,
        num_pooler_layers=1,
    )
    path = tmp_path_factory.mktemp("vjepa2")
    VJEPA2Model(config).save_pretrained(path)
    return path


def clip_batch(batch: int = 2, frames: int = FRAMES, seed: int = 0) -> torch.Tensor:
    """A normalised-looking float32 (B, 3, T, H, W) batch."""
    return torch.randn(batch, 3, frames, CROP, CROP, generator=torch.Generator().manual_seed(seed))


def assert_frozen(encoder: LoadedEncoder) -> None:
    assert not encoder.module.training
    assert all(not p.requires_grad for p in encoder.module.parameters())
    assert len(encoder.weights_sha256) == 64


# --------------------------------------------------------------------------- Hugging Face


def test_videomae_matches_the_transformers_model(videomae_dir: Path) -> None:
    from transformers import VideoMAEModel

    encoder = load_videomae(str(videomae_dir))
    assert (encoder.dim, encoder.frames_per_clip, encoder.output, encoder.pooling) == (
        DIM,
        FRAMES,
        "tokens",
        "mean-tokens",
    )
    assert (encoder.preprocess.crop, encoder.preprocess.resize, encoder.time_groups) == (CROP, CROP, 2)
    assert (encoder.preprocess.mean, encoder.preprocess.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert encoder.encoder_id == f"videomae:{videomae_dir}"
    assert_frozen(encoder)

    x = clip_batch()
    pooled = encoder.encode(x)
    assert pooled.shape == (2, DIM) and pooled.dtype == torch.float32
    reference = VideoMAEModel.from_pretrained(videomae_dir).eval()
    with torch.no_grad():
        expected = reference(pixel_values=x.permute(0, 2, 1, 3, 4)).last_hidden_state.mean(dim=1)
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-5)

    again = load_videomae(str(videomae_dir))
    assert again.weights_sha256 == encoder.weights_sha256
    torch.testing.assert_close(again.encode(x), pooled, atol=0, rtol=0)  # deterministic


def test_vjepa2_matches_the_transformers_model(vjepa2_dir: Path) -> None:
    from transformers import VJEPA2Model

    encoder = load_vjepa2(str(vjepa2_dir))
    assert (encoder.dim, encoder.frames_per_clip, encoder.time_groups) == (DIM, FRAMES, 2)
    assert (encoder.preprocess.crop, encoder.preprocess.resize) == (CROP, CROP * 256 // 224)
    assert_frozen(encoder)
    assert not any(k.startswith("predictor") for k in encoder.module.state_dict())

    x = clip_batch()
    pooled = encoder.encode(x)
    assert pooled.shape == (2, DIM)
    reference = VJEPA2Model.from_pretrained(vjepa2_dir).eval()
    with torch.no_grad():  # transformers' V-JEPA 2 takes (B, T, C, H, W)
        expected = reference.get_vision_features(x.permute(0, 2, 1, 3, 4)).mean(dim=1)
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(encoder.encode(x), pooled, atol=0, rtol=0)


def test_vjepa2_takes_another_clip_length(vjepa2_dir: Path) -> None:
    encoder = load_vjepa2(str(vjepa2_dir), frames_per_clip=8)
    assert (encoder.frames_per_clip, encoder.time_groups) == (8, 4)
    assert encoder.encode(clip_batch(1, frames=8)).shape == (1, DIM)
    assert encoder.encode_tokens(clip_batch(1, frames=8)).shape == (1, 4, DIM)


def test_temporal_tokens_average_back_to_the_pooled_embedding(videomae_dir: Path) -> None:
    encoder = load_videomae(str(videomae_dir))
    x = clip_batch()
    tokens = encoder.encode_tokens(x)  # (B, T', D): 2 tubelets of 4x4 spatial tokens
    assert tokens.shape == (2, 2, DIM)
    torch.testing.assert_close(tokens.mean(dim=1), encoder.encode(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(EncoderError, match="temporal groups"):
        encoder.encode_tokens(x, t_groups=3)


def test_preprocessing_is_read_from_the_checkpoint(videomae_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "videomae"
    shutil.copytree(videomae_dir, copy)
    (copy / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3, "size": {"shortest_edge": 40}})
    )
    pre = load_videomae(str(copy)).preprocess
    assert (pre.resize, pre.crop, pre.mean, pre.std) == (40, CROP, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_hub_id_resolves_from_the_local_cache_only(
    videomae_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An offline machine with a pre-filled Hugging Face cache: `videomae:org/name` loads from it."""
    import huggingface_hub.constants

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--tiny-org--videomae"
    shutil.copytree(videomae_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    encoder = load_videomae("tiny-org/videomae")
    assert encoder.encoder_id == "videomae:tiny-org/videomae"
    assert encoder.weights_sha256 == load_videomae(str(videomae_dir)).weights_sha256
    with pytest.raises(EncoderError, match="no local copy of 'tiny-org/other'"):
        load_videomae("tiny-org/other")


def test_encoder_rejects_input_that_breaks_the_contract(videomae_dir: Path) -> None:
    encoder = load_videomae(str(videomae_dir))
    with pytest.raises(EncoderError, match=r"takes \(B, 3, 4, 32, 32\)"):
        encoder.encode(torch.zeros(1, 3, 8, CROP, CROP))
    with pytest.raises(EncoderError):
        encoder.encode(torch.zeros(1, FRAMES, 3, CROP, CROP))  # (B, T, C, H, W) is the wrong layout


def test_missing_models_say_what_to_do(tmp_path: Path, videomae_dir: Path) -> None:
    for source in (str(tmp_path / "nowhere"), "no-such-org/no-such-videomae"):
        with pytest.raises(EncoderError, match=r"no local copy of .*--allow-download") as info:
            load_videomae(source)
        assert "\n" not in str(info.value)
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    shutil.copy(videomae_dir / "config.json", config_only / "config.json")
    with pytest.raises(EncoderError, match="no local copy"):
        load_videomae(str(config_only))
    with pytest.raises(EncoderError, match="holds a 'videomae' model"):
        load_vjepa2(str(videomae_dir))


# --------------------------------------------------------------------------- TorchScript


class PatchTokens(nn.Module):
    """Tubelet patch embedding only: tokens are time-major and local, so their layout can be checked."""

    def __init__(self, pooled: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv3d(3, 16, kernel_size=(2, 8, 8), stride=(2, 8, 8))
        self.pooled = pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens: torch.Tensor = self.proj(x).flatten(2).transpose(1, 2)  # (B, T/2 * H/8 * W/8, 16)
        return tokens.mean(dim=1) if self.pooled else tokens


def save_script(module: nn.Module, path: Path) -> Path:
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning):  # torch.jit is deprecated upstream, still the contract format
        torch.jit.script(module).save(str(path))
    return path


def test_torchscript_token_encoder(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = PatchTokens().eval()
    path = save_script(module, tmp_path / "enc.pt")
    encoder = load_torchscript(path, frames_per_clip=FRAMES, crop=CROP)
    assert (encoder.output, encoder.pooling, encoder.dim) == ("tokens", "mean-tokens", 16)
    assert (encoder.preprocess.resize, encoder.preprocess.crop) == (CROP, CROP)
    assert encoder.weights_sha256 == state_dict_sha256(module)
    assert_frozen(encoder)

    x = clip_batch()
    with torch.no_grad():
        expected = module(x).mean(dim=1)
    torch.testing.assert_close(encoder.encode(x), expected, atol=1e-6, rtol=1e-6)

    # Time-major tokens: changing the second tubelet (frames 2-3) changes only the second group.
    tokens = encoder.encode_tokens(x, t_groups=2)
    y = x.clone()
    y[:, :, 2:] += 1.0
    changed = encoder.encode_tokens(y, t_groups=2)
    torch.testing.assert_close(changed[:, 0], tokens[:, 0])
    assert not torch.allclose(changed[:, 1], tokens[:, 1])


def test_torchscript_pooled_encoder(tmp_path: Path) -> None:
    path = save_script(PatchTokens(pooled=True), tmp_path / "pooled.pt")
    encoder = load_torchscript(path, frames_per_clip=FRAMES, crop=CROP, resize=36)
    assert (encoder.output, encoder.pooling, encoder.preprocess.resize) == ("pooled", "model", 36)
    assert encoder.encode(clip_batch()).shape == (2, 16)
    with pytest.raises(EncoderError, match="pooled"):
        encoder.encode_tokens(clip_batch(), t_groups=2)


def test_torchscript_errors(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="no such TorchScript file"):
        load_torchscript(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a model")
    with pytest.raises(EncoderError, match="not a TorchScript file"):
        load_torchscript(tmp_path / "junk.pt")

    class Grid(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, 0]  # (B, T, H, W): neither tokens nor pooled

    with pytest.raises(EncoderError, match="must return"):
        load_torchscript(save_script(Grid(), tmp_path / "grid.pt"), frames_per_clip=FRAMES, crop=CROP)
    with pytest.raises(EncoderError, match="fails on a"):
        load_torchscript(save_script(PatchTokens(), tmp_path / "enc.pt"), frames_per_clip=1, crop=CROP)
    with pytest.raises(ConfigError, match="must not exceed"):
        load_torchscript(tmp_path / "enc.pt", crop=CROP, resize=16)


# --------------------------------------------------------------------------- registry and helpers


def test_build_encoder_dispatches(videomae_dir: Path, vjepa2_dir: Path, tmp_path: Path) -> None:
    assert build_encoder(f"videomae:{videomae_dir}", device="cpu").dim == DIM
    assert build_encoder(f"vjepa2:{vjepa2_dir}", device="cpu", frames_per_clip=8).frames_per_clip == 8
    script = save_script(PatchTokens(), tmp_path / "enc.pt")
    encoder = build_encoder(f"torchscript:{script}", frames_per_clip=FRAMES, crop=CROP)
    assert encoder.device == resolve_device("auto") and encoder.output == "tokens"


@pytest.mark.parametrize("name", ["resnet", "videomae:", "videomae", "tiny:extra", "torchscript:"])
def test_build_encoder_rejects_unknown_names(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown encoder") as info:
        build_encoder(name)
    assert all(form in str(info.value) for form in ENCODER_FORMS)


def test_build_encoder_rejects_unknown_options(videomae_dir: Path) -> None:
    with pytest.raises(ConfigError, match="does not take frames_per_clip; it takes: none"):
        build_encoder(f"videomae:{videomae_dir}", frames_per_clip=16)
    with pytest.raises(ConfigError, match="does not take crop"):
        build_encoder("tiny", crop=64)


def test_resolve_device() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_state_dict_sha256_is_a_content_checksum() -> None:
    def model(seed: int) -> nn.Linear:
        torch.manual_seed(seed)
        return nn.Linear(4, 3)

    assert state_dict_sha256(model(0)) == state_dict_sha256(model(0))
    assert state_dict_sha256(model(0)) != state_dict_sha256(model(1))
    changed = model(0)
    with torch.no_grad():
        changed.weight[0, 0] += 1e-3
    assert state_dict_sha256(changed) != state_dict_sha256(model(0))
    assert state_dict_sha256(model(0).to(torch.bfloat16)) != state_dict_sha256(model(0))  # dtype counts


def test_freeze_and_describe(videomae_dir: Path) -> None:
    module = freeze(nn.Linear(2, 2).train())
    assert not module.training and not any(p.requires_grad for p in module.parameters())
    record = load_videomae(str(videomae_dir)).describe()
    assert json.loads(json.dumps(record)) == record
    assert record["preprocess"] == {
        "resize": CROP,
        "crop": CROP,
        "resize_mode": "short-side",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }
