"""The learned privacy critic: its losses on hand-worked cases, its chance, and that it changes training."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from pipeline.adapter import AdapterError, anonymize_array, train_adapter
from pipeline.adapter.config import ObjectiveConfig, default_objective
from pipeline.adapter.critic import LabelCritic, LookCritic, same_group_candidates
from pipeline.adapter.synthetic import PlantedData
from tests.pipeline.adapter_support import small_cfg, small_planted


@pytest.fixture(scope="module")
def planted() -> PlantedData:
    return small_planted()


def test_candidates_are_the_videos_of_the_same_action() -> None:
    group = torch.tensor([0, 0, 1, -1, -1, 1])
    allowed = same_group_candidates(group)
    assert allowed.tolist()[0] == [True, True, False, False, False, False]
    assert allowed.tolist()[3] == [False, False, False, True, True, False]


def test_look_critic_chance_and_a_golden_loss() -> None:
    torch.manual_seed(0)
    critic = LookCritic(4, hidden=8, proj=4)
    z, look = torch.randn(5, 4), torch.randn(5, 4)
    group = torch.tensor([0, 0, 0, 1, 2])  # videos 3 and 4 are alone in their action: left out
    loss, chance = critic.loss(z, look, group)
    assert chance == pytest.approx(math.log(3))
    q = torch.nn.functional.normalize(critic.query(z), dim=1)[:3]
    k = torch.nn.functional.normalize(critic.key(look), dim=1)[:3]
    expected = torch.nn.functional.cross_entropy(q @ k.t() / critic.tau, torch.arange(3))
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    alone, none = critic.loss(z[3:], look[3:], group[3:])
    assert float(alone) == 0.0 and none == 0.0


def test_label_critic_chance_is_the_label_entropy_and_unknown_labels_are_skipped() -> None:
    torch.manual_seed(0)
    critic = LabelCritic(4, classes=(2, 3), hidden=8)
    z = torch.randn(4, 4)
    labels = torch.tensor([[0, -1], [0, -1], [1, 2], [1, -1]])  # attribute 1: one known label, skipped
    loss, chance = critic.loss(z, labels)
    assert chance == pytest.approx(math.log(2))
    logits = critic.heads[0](critic.trunk(z))
    expected = torch.nn.functional.cross_entropy(logits, labels[:, 0])
    assert float(loss.detach()) == pytest.approx(float(expected.detach()))


def test_a_critic_learns_to_match_clips_to_their_look() -> None:
    """The critic is a real adversary: on clips that carry their look it gets well below chance."""
    torch.manual_seed(0)
    look = torch.randn(32, 8)
    z = look + 0.1 * torch.randn(32, 8)
    group = torch.zeros(32, dtype=torch.long)
    critic = LookCritic(8, hidden=32, proj=8)
    critic.set_statistics(z)
    opt = torch.optim.AdamW(critic.parameters(), lr=1e-2)
    for _ in range(100):
        loss, chance = critic.loss(z, look, group)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * chance


def test_the_critic_term_is_computed_and_changes_training(planted: PlantedData) -> None:
    plain = train_adapter(planted.data, small_cfg(default_objective()))
    critic_obj = default_objective().model_copy(update={"critic": 1.0})
    with_critic = train_adapter(planted.data, small_cfg(critic_obj))
    last = with_critic.history[-1]
    assert "critic" not in plain.history[-1]
    assert last["critic"] > 0 and last["critic_chance"] > 0
    assert not np.array_equal(
        anonymize_array(plain.model, planted.data.motion),
        anonymize_array(with_critic.model, planted.data.motion),
    )
    again = train_adapter(planted.data, small_cfg(critic_obj))  # deterministic under a fixed seed
    np.testing.assert_array_equal(
        anonymize_array(with_critic.model, planted.data.motion),
        anonymize_array(again.model, planted.data.motion),
    )


def test_label_informed_critic_reads_the_private_labels_it_is_given(planted: PlantedData) -> None:
    names = ("gender", "skin_tone")
    train = planted.data.split == "train"
    private = np.stack([np.where(train, planted.private[n], -1) for n in names], 1)
    obj = default_objective().model_copy(update={"critic": 1.0, "private_labels": names})
    with pytest.raises(AdapterError, match="private labels"):
        train_adapter(planted.data, small_cfg(obj, epochs=1))  # asked for labels the data does not hold
    result = train_adapter(replace(planted.data, private=private), small_cfg(obj, epochs=1))
    chance = result.history[-1]["critic_chance"]
    assert 0 < chance <= math.log(4)  # entropies of a 2- and a 4-valued attribute, averaged


def test_private_labels_need_the_critic() -> None:
    with pytest.raises(ValueError, match="critic > 0"):
        ObjectiveConfig(private_labels=("private_gender",))


def test_a_refitted_critic_is_fresh_every_epoch_and_changes_training(planted: PlantedData) -> None:
    kept = default_objective().model_copy(update={"critic": 1.0})
    fresh = kept.model_copy(update={"critic_refit": 20})
    a, b = train_adapter(planted.data, small_cfg(kept)), train_adapter(planted.data, small_cfg(fresh))
    assert "critic_refit" not in a.history[-1] and b.history[-1]["critic_refit"] > 0
    assert not np.array_equal(
        anonymize_array(a.model, planted.data.motion), anonymize_array(b.model, planted.data.motion)
    )
