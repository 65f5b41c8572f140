"""The train-adapter stage on a latent cache with planted labels: data mapping, artifact, rerun, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from flows.train_adapter import WRITER_LOCK, TrainAdapterConfig, adapter_data, train_adapter_stage
from pipeline.adapter import AdapterError, load_adapter
from pipeline.adapter.config import TRAINING_REVISION
from pipeline.errors import ConfigError
from stores._atomic import WriterBusyError, writer_lock
from stores.latent_cache import LatentCache
from tests.flows.test_probe import planted, write_store

SMALL = {"identities": (10, 6), "actions_per_identity": 2}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(tmp_path_factory.mktemp("train-adapter") / "store.zarr", planted(**SMALL))


def test_adapter_data_maps_labels_and_leaves_test_videos_out(store: Path) -> None:
    view = LatentCache.open(store).read()
    data, classes = adapter_data(view)
    splits = dict(zip(view.videos["video_id"].to_pylist(), view.videos["split"].to_pylist(), strict=True))
    kept = sorted(v for v, s in splits.items() if s in ("train", "val"))
    assert data.num_videos == len(kept) and set(data.split) <= {"train", "val"}
    assert len(data.motion) == sum(splits[v] != "test" for v in view.clips["video_id"].to_pylist())
    # action: the class of trimmed videos on each clip; untrimmed and anomaly videos have none
    assert data.action is not None and classes["action"] == sorted(classes["action"])
    actions = dict(zip(view.videos["video_id"].to_pylist(), view.videos["action"].to_pylist(), strict=True))
    for row in np.flatnonzero(data.action >= 0)[:20]:
        assert classes["action"][data.action[row]] == actions[kept[data.video[row]]]
    # detection: per clip of untrimmed videos, C = background
    assert data.detection is not None and data.detection_classes == len(classes["detection"]) > 0
    det = data.detection[data.detection >= 0]
    assert (det == data.detection_classes).any() and (det < data.detection_classes).any()
    # anomaly: one bag label per video, both kinds present
    assert data.anomaly is not None and set(data.anomaly.tolist()) == {-1, 0, 1}
    data.validate()


def test_stage_writes_the_artifact_and_a_rerun_reuses_it(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    lines: list[str] = []
    config = TrainAdapterConfig(epochs=2, device="cpu")
    first = train_adapter_stage(store, out, config, echo=lines.append)
    assert not first.reused and len(first.history) == 2
    assert (out / "adapter.safetensors").is_file() and (out / "classes.json").is_file()
    doc = json.loads((out / "adapter.json").read_text())
    assert doc["meta"]["encoder_id"] == "planted" and doc["adapter"]["variant"] == "clip"
    assert doc["meta"]["objective"]["name"] == "default" and doc["meta"]["seed"] == 0
    assert len(doc["meta"]["history"]) == 2 and doc["meta"]["data_checksum"]
    before = (out / "adapter.safetensors").read_bytes()
    again = train_adapter_stage(store, out, config, echo=lines.append)
    assert again.reused and (out / "adapter.safetensors").read_bytes() == before
    assert any("not retrained" in line for line in lines)
    other = train_adapter_stage(store, out, TrainAdapterConfig(epochs=2, seed=1, device="cpu"))
    assert not other.reused


def test_an_artifact_of_older_training_code_is_retrained(store: Path, tmp_path: Path) -> None:
    """Same data and settings but trained by an older revision of the training code (or before the
    revision was recorded): a rerun retrains instead of serving stale weights."""
    out = tmp_path / "adapter"
    config = TrainAdapterConfig(epochs=1, device="cpu")
    train_adapter_stage(store, out, config)
    doc = json.loads((out / "adapter.json").read_text())
    assert doc["meta"]["training_revision"] == TRAINING_REVISION >= 1
    del doc["meta"]["training_revision"]  # as written before revisions were recorded
    (out / "adapter.json").write_text(json.dumps(doc))
    assert not train_adapter_stage(store, out, config).reused
    assert train_adapter_stage(store, out, config).reused


def test_paper_objective_and_task_subset(store: Path, tmp_path: Path) -> None:
    config = TrainAdapterConfig(objective="paper", epochs=1, tasks=("action",), device="cpu")
    result = train_adapter_stage(store, tmp_path / "paper", config)
    _, cfg, meta = load_adapter(tmp_path / "paper", expect_encoder_id="planted", expect_dim=32)
    assert cfg.variant == "paper" and meta.objective.lc == 100.0
    assert meta.tasks == ("action",) and "detection" not in result.history[0]


def test_adapter_refused_for_another_encoder(store: Path, tmp_path: Path) -> None:
    train_adapter_stage(store, tmp_path / "a", TrainAdapterConfig(epochs=1, device="cpu"))
    with pytest.raises(AdapterError, match="trained for encoder planted dim 32"):
        load_adapter(tmp_path / "a", expect_encoder_id="videomae:base", expect_dim=768)


def test_eraser_options_map_onto_the_recipe() -> None:
    default = TrainAdapterConfig().train_config(256).adapter
    assert (default.erase_dims, default.erase_clip_dims) == (96, 16)
    off = TrainAdapterConfig(erase_dims=0).train_config(256).adapter  # --erase-dims 0: no eraser at all
    assert (off.erase_dims, off.erase_clip_dims) == (0, 0)
    static_only = TrainAdapterConfig(erase_clip_dims=0).train_config(256).adapter
    assert (static_only.erase_dims, static_only.erase_clip_dims) == (96, 0)


def test_bad_inputs(store: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        train_adapter_stage(store, tmp_path / "file", TrainAdapterConfig(epochs=1))
    with pytest.raises(ConfigError, match="temporal tokens"):
        train_adapter_stage(store, tmp_path / "t", TrainAdapterConfig(epochs=1, temporal=True))
    with pytest.raises(ConfigError, match="need the per-clip adapter"):
        TrainAdapterConfig(objective="paper", temporal=True).train_config(32)
    with pytest.raises(ConfigError, match="erase_clip_dims needs erase_dims > 0"):
        TrainAdapterConfig(erase_dims=0, erase_clip_dims=2).train_config(32)
    with pytest.raises(ConfigError, match="dimension 32: erase_dims \\+ erase_clip_dims = 40 exceeds dim 32"):
        TrainAdapterConfig(erase_dims=40, erase_clip_dims=0).train_config(32)
    only_test = write_store(
        tmp_path / "test-only.zarr", planted(identities=(4, 4), actions_per_identity=1), drop=("split",)
    )
    with pytest.raises(ConfigError, match="no video in the train or val split"):
        train_adapter_stage(only_test, tmp_path / "b", TrainAdapterConfig(epochs=1))


def test_a_store_larger_than_memory_is_streamed_in_groups(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines: list[str] = []
    config = TrainAdapterConfig(epochs=2, device="cpu", memory_gb=2e-4)  # 20 kB of latents per group
    result = train_adapter_stage(store, tmp_path / "streamed", config, echo=lines.append, bar=False)
    groups = int(next(line for line in lines if "streaming" in line).split("streaming ")[1].split()[0])
    assert groups > 1
    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train-adapter:")]
    assert f"{2 * groups}/{2 * groups} groups" in progress[-1]  # progress by group, every group once
    assert len(result.history) == 2 and result.clips > 0
    assert np.isfinite(result.history[-1]["loss"] or 0.0) and result.history[-1]["action"] is not None
    view = LatentCache.open(store).read()
    model, _, _ = load_adapter(tmp_path / "streamed", expect_encoder_id="planted", expect_dim=32)
    from pipeline.adapter import anonymize_array

    z = anonymize_array(model, view.motion)
    assert z.shape == view.motion.shape and np.isfinite(z).all()
    in_memory = train_adapter_stage(store, tmp_path / "memory", TrainAdapterConfig(epochs=1, device="cpu"))
    assert in_memory.clips == result.clips  # the same training clips either way


def test_a_second_writer_of_one_adapter_folder_is_refused_naming_the_first(
    store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "adapter"
    config = TrainAdapterConfig(epochs=1, device="cpu")
    with writer_lock(str(out / WRITER_LOCK), "the adapter folder"):  # a run in progress
        with pytest.raises(
            WriterBusyError, match=rf"another writer .* \(pid {os.getpid()} on .* since .*\); wait"
        ):
            train_adapter_stage(store, out, config)
        assert not (out / "adapter.json").exists()
    assert not train_adapter_stage(store, out, config).reused  # released: the next run writes it
    assert (out / "adapter.json").is_file()


def test_a_second_train_adapter_is_one_line_and_exit_2(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    with writer_lock(str(out / WRITER_LOCK), "the adapter folder"):
        result = CliRunner().invoke(
            app, ["train-adapter", "--store", str(store), "--out", str(out), "--epochs", "1"]
        )
    assert result.exit_code == 2, result.output
    assert (
        result.output.strip()
        .splitlines()[-1]
        .startswith("error: another writer is writing the adapter folder")
    )
    assert "Traceback" not in result.output


def test_critic_options_map_onto_the_objective() -> None:
    default = TrainAdapterConfig().train_config(256).objective
    assert default.critic == 0 and default.private_labels == ()  # label-free and off unless asked
    on = TrainAdapterConfig(critic=2.0, critic_static=False, critic_steps=5).train_config(256).objective
    assert (on.critic, on.critic_static, on.critic_steps) == (2.0, False, 5)
    labels = TrainAdapterConfig(private_labels=("gender", "private_skin_tone")).train_config(256).objective
    assert labels.private_labels == ("private_gender", "private_skin_tone") and labels.critic == 1.0
    assert (default.privacy, default.cross_view, default.independence) == (0, 0, 10)  # issue 24's ablation
    ablated = TrainAdapterConfig(privacy=1, cross_view=1, independence=0).train_config(256).objective
    assert (ablated.privacy, ablated.cross_view, ablated.independence) == (1, 1, 0)
    with pytest.raises(ConfigError, match="set critic > 0"):
        TrainAdapterConfig(critic=0, private_labels=("gender",)).train_config(256)


def test_private_labels_are_read_for_train_videos_only(store: Path, tmp_path: Path) -> None:
    view = LatentCache.open(store).read()
    plain, _ = adapter_data(view)
    assert plain.private is None  # the default never reads a private_* column
    data, _ = adapter_data(view, private=("private_gender",))
    assert data.private is not None and data.private.shape == (data.num_videos, 1)
    train = data.split == "train"
    assert (data.private[~train] == -1).all() and set(data.private[train, 0].tolist()) == {0, 1}
    assert data.checksum() != plain.checksum()
    with pytest.raises(ConfigError, match="no column private_shoe_size"):
        adapter_data(view, private=("private_shoe_size",))
    result = train_adapter_stage(
        store, tmp_path / "ceiling", TrainAdapterConfig(epochs=1, private_labels=("gender",))
    )
    meta = json.loads((tmp_path / "ceiling" / "adapter.json").read_text())
    assert meta["meta"]["objective"]["private_labels"] == ["private_gender"]
    assert result.history[0]["critic"] is not None


def test_kernel_options_map_onto_the_objective_and_round_trip_in_the_artifact(
    store: Path, tmp_path: Path
) -> None:
    assert TrainAdapterConfig().train_config(256).objective.kernel == 0  # off unless asked
    on = TrainAdapterConfig(kernel=10, kernel_dims=8, kernel_static=False).train_config(256).objective
    assert (on.kernel, on.kernel_dims, on.kernel_static) == (10, 8, False)
    config = TrainAdapterConfig(epochs=1, kernel=10, kernel_dims=4, kernel_features=32)
    result = train_adapter_stage(store, tmp_path / "kernel", config)
    meta = json.loads((tmp_path / "kernel" / "adapter.json").read_text())["meta"]
    assert meta["objective"]["kernel"] == 10 and meta["objective"]["kernel_dims"] == 4
    assert result.history[0]["kernel"] is not None
    assert train_adapter_stage(store, tmp_path / "kernel", config).reused  # the same settings: found
    assert not train_adapter_stage(store, tmp_path / "kernel", config.model_copy(update={"kernel": 5})).reused


def test_the_kernel_flag_reaches_the_artifact(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-kernel"
    args = ["train-adapter", "--store", str(store), "--out", str(out), "--epochs", "1", "--kernel", "3"]
    result = CliRunner().invoke(app, [*args, "--kernel-dims", "4", "--no-kernel-static"])
    assert result.exit_code == 0, result.output
    objective = json.loads((out / "adapter.json").read_text())["meta"]["objective"]
    assert (objective["kernel"], objective["kernel_dims"], objective["kernel_static"]) == (3, 4, False)
