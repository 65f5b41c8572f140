"""A small planted-feature training set and config shared by the adapter objective tests."""

from __future__ import annotations

import torch

from pipeline.adapter import AdapterConfig, TrainConfig
from pipeline.adapter.config import ObjectiveConfig
from pipeline.adapter.synthetic import PlantedData, planted_features

D = 16


def small_planted() -> PlantedData:
    """24 persons (16 / 4 / 4 train / val / test), 3 videos of 3 clips each, D = 16, one torch thread."""
    torch.set_num_threads(1)
    return planted_features(persons=(16, 4, 4), videos_per_person=3, clips_per_video=3, dim=D, appearance=0.5)


def small_cfg(objective: ObjectiveConfig, epochs: int = 2) -> TrainConfig:
    adapter = AdapterConfig(dim=D, layers=1, heads=2, tokens=2, width=16, erase_dims=4)
    return TrainConfig(adapter=adapter, objective=objective, epochs=epochs, batch_size=64, lr=1e-2)
