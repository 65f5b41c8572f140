"""Adapter losses: golden values (from the plain-python references below), gradients, identity start."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from pipeline.adapter.config import AdapterConfig
from pipeline.adapter.losses import (
    action_ce,
    anomaly_mil_ranking,
    bounded_privacy,
    info_nce,
    latent_consistency,
    nt_xent,
    nt_xent_chance,
    temporal_detection_loss,
    total_loss,
)
from pipeline.adapter.model import build_adapter

Z1 = [[1.0, 0.0, 2.0], [0.5, -1.0, 0.0], [0.0, 1.0, 1.0]]
Z2 = [[1.0, 0.5, 1.5], [0.0, -1.0, 0.5], [-1.0, 1.0, 0.0]]
LOGITS = [[2.0, 0.5, -1.0], [0.0, 0.0, 3.0], [1.0, -2.0, 0.5], [0.3, 0.2, 0.1]]
SCORES = [[0.9, 0.2, 0.4, 0.0], [0.3, 0.6, 0.0, 0.0], [0.1, 0.7, 0.2, 0.5], [0.2, 0.1, 0.3, 0.0]]
LENGTHS = [3, 2, 4, 3]
ABNORMAL = [True, False, True, False]


def nt_xent_reference(z1: list[list[float]], z2: list[list[float]], tau: float) -> float:
    """SimCLR NT-Xent written out loop by loop."""
    n = len(z1)
    views = [[a / math.sqrt(sum(b * b for b in v)) for a in v] for v in z1 + z2]
    total = 0.0
    for i in range(2 * n):
        j = i + n if i < n else i - n
        sims = {
            k: sum(a * b for a, b in zip(views[i], views[k], strict=True)) / tau
            for k in range(2 * n)
            if k != i
        }
        total += -sims[j] + math.log(sum(math.exp(s) for s in sims.values()))
    return total / (2 * n)


def mil_reference(
    scores: list[list[float]], lengths: list[int], abnormal: list[bool], l1: float, l2: float
) -> float:
    peaks = [max(s[:n]) for s, n in zip(scores, lengths, strict=True)]
    pos = [p for p, a in zip(peaks, abnormal, strict=True) if a]
    neg = [p for p, a in zip(peaks, abnormal, strict=True) if not a]
    hinge = sum(max(0.0, 1.0 - p + q) for p in pos for q in neg) / (len(pos) * len(neg))
    bags = [(s, n) for s, n, a in zip(scores, lengths, abnormal, strict=True) if a]
    smooth = sum(sum((s[t + 1] - s[t]) ** 2 for t in range(n - 1)) for s, n in bags) / len(bags)
    sparse = sum(sum(s[:n]) for s, n in bags) / len(bags)
    return hinge + l1 * smooth + l2 * sparse


def ce_reference(logits: list[list[float]], labels: list[int]) -> float:
    rows = [(row, y) for row, y in zip(logits, labels, strict=True) if y >= 0]
    return sum(-row[y] + math.log(sum(math.exp(v) for v in row)) for row, y in rows) / len(rows)


def test_nt_xent_golden() -> None:
    z1, z2 = torch.tensor(Z1), torch.tensor(Z2)
    assert nt_xent(z1, z2, 0.1).item() == pytest.approx(0.5109741864313998, rel=1e-5)
    assert nt_xent(z1, z2, 0.5).item() == pytest.approx(0.7544725879859738, rel=1e-5)
    assert nt_xent_reference(Z1, Z2, 0.1) == pytest.approx(0.5109741864313998, rel=1e-12)


def test_nt_xent_matches_reference_on_random_tensors() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    expected = nt_xent_reference(z1.tolist(), z2.tolist(), 0.2)
    assert nt_xent(z1, z2, 0.2).item() == pytest.approx(expected, rel=1e-5)
    # symmetric in the two views, invariant to the scale of each vector
    assert nt_xent(z2, z1, 0.2).item() == pytest.approx(expected, rel=1e-5)
    assert nt_xent(3 * z1, 0.5 * z2, 0.2).item() == pytest.approx(expected, rel=1e-5)


def test_nt_xent_chance_when_all_views_agree() -> None:
    z = torch.ones(5, 4)
    assert nt_xent(z, z).item() == pytest.approx(nt_xent_chance(5), rel=1e-6)
    assert nt_xent_chance(5) == pytest.approx(math.log(9))


def test_bounded_privacy_caps_at_chance() -> None:
    loss = torch.tensor([0.5, 3.0])
    assert bounded_privacy(loss, 2.0).tolist() == [0.5, 2.0]


def test_info_nce_golden() -> None:
    q, k = torch.tensor(Z1), torch.tensor(Z2)
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    sims = (qn @ kn.t() / 0.1).tolist()
    expected = sum(-row[i] + math.log(sum(math.exp(v) for v in row)) for i, row in enumerate(sims)) / 3
    assert info_nce(q, k).item() == pytest.approx(expected, rel=1e-5)


def test_latent_consistency_golden() -> None:
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    y = torch.tensor([[1.0, 0.0], [2.0, 4.0]])
    assert latent_consistency(x, y).item() == pytest.approx((0 + 4 + 1 + 0) / 4)


def test_action_ce_golden_ignores_unlabelled() -> None:
    labels = [0, 2, -1, 1]
    expected = ce_reference(LOGITS, labels)
    assert expected == pytest.approx(0.4793923671024542, rel=1e-12)
    assert action_ce(torch.tensor(LOGITS), torch.tensor(labels)).item() == pytest.approx(expected, rel=1e-6)
    none = action_ce(torch.tensor(LOGITS, requires_grad=True), torch.tensor([-1, -1, -1, -1]))
    assert none.item() == 0.0 and none.requires_grad


def test_temporal_detection_loss_masks_padding() -> None:
    logits = torch.tensor(LOGITS).view(2, 2, 3)  # 2 videos x 2 clips x (2 classes + background)
    labels = torch.tensor([[0, 2], [-1, 1]])  # 2 = background, -1 = padding
    assert temporal_detection_loss(logits, labels).item() == pytest.approx(0.4793923671024542, rel=1e-6)


def test_anomaly_mil_ranking_golden() -> None:
    scores = torch.tensor(SCORES)
    mask = torch.arange(4)[None, :] < torch.tensor(LENGTHS)[:, None]
    abnormal = torch.tensor(ABNORMAL)
    got = anomaly_mil_ranking(scores, mask, abnormal).item()
    assert got == pytest.approx(0.6501692, rel=1e-6)
    assert got == pytest.approx(mil_reference(SCORES, LENGTHS, ABNORMAL, 8e-5, 8e-5), rel=1e-6)
    got = anomaly_mil_ranking(scores, mask, abnormal, smoothness=0.5, sparsity=0.1).item()
    assert got == pytest.approx(1.1075, rel=1e-6)
    # padding never counts: a huge padded score changes nothing
    padded = scores.clone()
    padded[1, 3] = 100.0
    assert anomaly_mil_ranking(padded, mask, abnormal).item() == pytest.approx(0.6501692, rel=1e-6)
    no_pairs = anomaly_mil_ranking(scores, mask, torch.ones(4, dtype=torch.bool))
    assert no_pairs.item() == 0.0


def test_total_loss_subtracts_privacy() -> None:
    one = torch.tensor(1.0)
    got = total_loss(lc=one, task=2 * one, privacy=3 * one, w_lc=100, w_task=1, w_privacy=1)
    assert got.item() == pytest.approx(100 + 2 - 3)


def test_minus_nt_xent_gradient_moves_a_videos_static_clips_apart() -> None:
    """Descending on -L_B lowers the cosine of each video's two static clips."""
    g = torch.Generator().manual_seed(1)
    base = torch.randn(8, 16, generator=g)
    z1 = (base + 0.3 * torch.randn(8, 16, generator=g)).requires_grad_()
    z2 = (base + 0.3 * torch.randn(8, 16, generator=g)).requires_grad_()
    before = F.cosine_similarity(z1, z2).detach()
    (-nt_xent(z1, z2)).backward()
    with torch.no_grad():
        after = F.cosine_similarity(z1 - 0.5 * z1.grad, z2 - 0.5 * z2.grad)  # type: ignore[operator]
    assert bool((after < before).all())


@pytest.mark.parametrize("variant", ["clip", "paper"])
def test_adapter_steps_on_minus_nt_xent_raise_l_b(variant: str) -> None:
    """Through an adapter, descending on -L_B raises L_B. (Its cheapest route is often to pull all
    static clips together rather than a video's two apart: L_B then tends to its chance value.)"""
    torch.manual_seed(0)
    model = build_adapter(AdapterConfig(dim=32, variant=variant, heads=4, tokens=4, width=16))
    g = torch.Generator().manual_seed(2)
    look = torch.randn(6, 32, generator=g)
    s1, s2 = look + 0.2 * torch.randn(6, 32, generator=g), look + 0.2 * torch.randn(6, 32, generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    before = nt_xent(model(s1), model(s2)).item()
    for _ in range(10):
        opt.zero_grad()
        (-nt_xent(model(s1), model(s2))).backward()
        opt.step()
    assert nt_xent(model(s1), model(s2)).item() > before + 0.1


@pytest.mark.parametrize("variant", ["clip", "paper"])
def test_identity_start_gives_zero_latent_consistency(variant: str) -> None:
    model = build_adapter(AdapterConfig(dim=64, variant=variant))
    x = torch.randn(33, 64)
    model.train()
    assert latent_consistency(x, model(x)).item() < 1e-12
    model.eval()
    with torch.no_grad():
        assert latent_consistency(x, model(x)).item() < 1e-12
