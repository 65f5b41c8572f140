"""Re-identification: faiss ranking equals the numpy reference; planted identities found, noise at chance;
the learned-metric attacker finds people plain cosine misses, and never trains on the queried people."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from pipeline.probes import reid
from pipeline.probes.inputs import Clips, ProbeError
from pipeline.probes.metrics import l2_normalise, retrieval_metrics
from pipeline.probes.reid import probe_reid, rank_by_cosine, video_means
from pipeline.probes.synthetic import synthetic_probe_data

SMALL = {
    "dim": 32,
    "actions_per_identity": 2,
    "untrimmed_clips": 3,
    "anomaly_clips": 3,
    "static_per_video": 1,
}


def test_faiss_ranking_matches_numpy() -> None:
    x = l2_normalise(np.random.default_rng(0).normal(size=(50, 16)))
    expected = np.argsort(-(x @ x.T), axis=1, kind="stable")
    index = faiss.IndexFlatIP(16)
    index.add(x)
    got = rank_by_cosine(index, x)
    assert got.shape == (50, 50)
    np.testing.assert_array_equal(got[:, :10], expected[:, :10])  # no near-ties among the top ranks


def test_video_means_normalised_are_unit_means() -> None:
    emb = np.array([[1, 0], [3, 0], [0, 2], [0, 4]], np.float32)
    clips = Clips(emb, np.array(["a", "a", "b", "b"]), np.array([0, 1, 0, 1]))
    np.testing.assert_allclose(l2_normalise(video_means(clips, ["b", "a"])), [[0, 1], [1, 0]])


def test_reid_on_videos_equals_reference_and_finds_planted_identities() -> None:
    data = synthetic_probe_data(0, identities=(10, 10), identity_signal=6.0, **SMALL)  # type: ignore[arg-type]
    m = probe_reid(data.motion, data.identities).metrics
    videos = sorted(data.identities)
    ids = np.array([data.identities[v] for v in videos])
    ref = retrieval_metrics(l2_normalise(video_means(data.motion, videos)), ids, np.array(videos))
    assert m == pytest.approx(ref)
    assert m.num_items == 20 * 4 and m.num_queries == 80  # 4 videos a person
    assert m.top1 > 0.9 and m.map > 0.7 and m.chance_top1 == pytest.approx(3 / 79)


def test_reid_on_noise_is_near_chance() -> None:
    data = synthetic_probe_data(
        1,
        identities=(0, 60),
        identity_signal=0.0,
        attribute_signal=0.0,
        **SMALL,  # type: ignore[arg-type]
    )
    m = probe_reid(data.static, data.identities).metrics
    assert abs(m.top1 - m.chance_top1) < 0.05
    assert abs(m.map - m.chance_map) < 0.03


def test_reid_restricted_to_chosen_videos_and_missing_identities() -> None:
    data = synthetic_probe_data(0, identities=(10, 10), **SMALL)  # type: ignore[arg-type]
    test = [v for v, s in data.splits.items() if s == "test"]
    assert probe_reid(data.motion, data.identities, videos=test).metrics.num_items == 40
    partial = {v: data.identities[v] for v in test[:1]}
    with pytest.raises(ProbeError, match="at least two videos"):
        probe_reid(data.motion, partial)


def test_reid_in_query_blocks_equals_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    data = synthetic_probe_data(0, identities=(10, 10), **SMALL)  # type: ignore[arg-type]
    whole = probe_reid(data.motion, data.identities)
    monkeypatch.setattr(reid, "QUERY_BLOCK", 7 * 80)  # 80 videos → blocks of 7 queries
    assert probe_reid(data.motion, data.identities) == whole


def _people(seed: int, people: int, prefix: str) -> tuple[Clips, dict[str, str]]:
    """4 videos a person, 3 clips each: identity is a faint offset in 4 of 64 dimensions, what the video
    shows (one of 4 actions) a strong one in 8 others, plus noise — pooled embeddings as encoders give."""
    rng = np.random.default_rng(seed)
    action_dirs = rng.normal(size=(4, 64)) * np.r_[np.zeros(4), np.ones(8), np.zeros(52)] * 3
    rows, vids, idx, identities = [], [], [], {}
    for p in range(people):
        who = np.r_[rng.normal(size=4) * 0.8, np.zeros(60)]
        for a in range(4):
            v = f"{prefix}{p}-{a}"
            identities[v] = f"{prefix}{p}"
            for c in range(3):
                rows.append(who + action_dirs[a] + rng.normal(size=64) * 0.3)
                vids.append(v)
                idx.append(c)
    return Clips(np.array(rows, np.float32), np.array(vids), np.array(idx)), identities


def _joined(a: tuple[Clips, dict[str, str]], b: tuple[Clips, dict[str, str]]) -> tuple[Clips, dict[str, str]]:
    (ca, ia), (cb, ib) = a, b
    clips = Clips(np.r_[ca.emb, cb.emb], np.r_[ca.video_id, cb.video_id], np.r_[ca.index, cb.index])
    return clips, ia | ib


def test_learned_metric_finds_people_that_cosine_misses() -> None:
    clips, identities = _joined(_people(0, 30, "train"), _people(1, 20, "test"))
    test = [v for v in identities if v.startswith("test")]
    train = [v for v in identities if v.startswith("train")]
    plain = probe_reid(clips, identities, test)
    assert (
        plain.attacker == "cosine" and set(plain.attackers) == {"cosine"} and plain.num_train_identities == 0
    )
    learned = probe_reid(clips, identities, test, train_videos=train)
    assert learned.num_train_identities == 30 and set(learned.attackers) == {"cosine", "lda"}
    assert learned.attackers["cosine"] == plain.metrics
    chance = plain.metrics.chance_top1
    assert plain.metrics.top1 < 2 * chance  # the action dominates the cosine: someone else doing the same
    assert learned.attacker == "lda" and learned.metrics.top1 > 5 * chance, learned


def test_learned_metric_refuses_to_train_on_queried_people() -> None:
    clips, identities = _people(0, 10, "p")
    videos = sorted(identities)
    with pytest.raises(ProbeError, match="queried and in the metric's training"):
        probe_reid(clips, identities, videos[::2], train_videos=videos[1::2])


def test_learned_metric_on_noise_stays_near_chance() -> None:
    data = synthetic_probe_data(
        1,
        identities=(60, 60),
        identity_signal=0.0,
        attribute_signal=0.0,
        **SMALL,  # type: ignore[arg-type]
    )
    split = {s: [v for v, t in data.splits.items() if t == s] for s in ("train", "test")}
    r = probe_reid(data.static, data.identities, split["test"], train_videos=split["train"])
    assert r.num_train_identities == 60
    m = r.attackers["lda"]
    assert abs(m.top1 - m.chance_top1) < 0.05 and abs(m.map - m.chance_map) < 0.03


def test_cross_split_queries_only_other_actions_of_any_split() -> None:
    """Each test person has one test video (action 0) and three in val: within the test split nothing
    can be found; cross-split, every query is ranked against the other actions' videos of every split
    and finds the person's own val videos."""
    clips, identities = _joined(_people(0, 30, "train"), _people(1, 20, "test"))
    queries = [v for v in identities if v.startswith("test") and v.endswith("-0")]
    actions = {v: v.rsplit("-", 1)[1] for v in identities}
    with pytest.raises(ProbeError, match="no query has a same-id item"):
        probe_reid(clips, identities, queries)
    train = [v for v in identities if v.startswith("train")]
    r = probe_reid(clips, identities, None, train_videos=train, queries=queries, groups=actions)
    assert r.protocol == "cross-split" and r.skipped == {}
    m = r.attackers["cosine"]
    assert m.num_queries == 20 and m.num_items == len(identities)
    # the gallery of a query is every video of actions 1-3 (50 people x 3), 3 of them its own person's
    assert m.chance_top1 == pytest.approx(3 / 150)
    assert r.attacker == "lda" and r.metrics.top1 > 5 * m.chance_top1, r


def test_cross_split_matches_a_brute_force_ranking() -> None:
    clips, identities = _people(2, 12, "p")
    queries = [v for v in sorted(identities) if v.endswith("-1")]
    actions = {v: v.rsplit("-", 1)[1] for v in identities}
    r = probe_reid(clips, identities, None, queries=queries, groups=actions)
    videos = sorted(identities)
    means = l2_normalise(video_means(clips, videos))
    hits = []
    for q in queries:
        i = videos.index(q)
        others = [j for j, v in enumerate(videos) if actions[v] != actions[q]]
        best = others[int(np.argmax(means[others] @ means[i]))]
        hits.append(identities[videos[best]] == identities[q])
    assert r.attackers["cosine"].top1 == pytest.approx(np.mean(hits))
    assert r.skipped == {"lda": "no training videos of people other than the queried ones"}


def test_reid_intervals_bracket_the_figure_and_shrink_with_more_people() -> None:
    few, ids_few = _joined(_people(0, 30, "train"), _people(1, 6, "test"))
    many, ids_many = _joined(_people(0, 30, "train"), _people(1, 40, "test"))

    def run(clips: Clips, identities: dict[str, str]) -> reid.ReidResult:
        test = [v for v in identities if v.startswith("test")]
        train = [v for v in identities if v.startswith("train")]
        return probe_reid(clips, identities, test, train_videos=train)

    widths = []
    for r in (run(few, ids_few), run(many, ids_many)):
        for key, value in (("top1", r.metrics.top1), ("map", r.metrics.map)):
            low, high = r.intervals[key]
            assert low <= value <= high, (key, r)
        widths.append(r.intervals["map"][1] - r.intervals["map"][0])
    assert widths[1] < widths[0]


def test_reid_interval_of_a_perfect_attacker_is_a_point() -> None:
    """Identity far stronger than everything else: every query's top-1 is its own person, in every
    resample, so top-1's interval is exactly (1, 1); no resamples, no intervals."""
    rng = np.random.default_rng(0)
    people = np.repeat(np.arange(8), 6)  # 8 people x 3 videos x 2 clips
    emb = (np.eye(16)[people] * 10 + rng.normal(scale=0.01, size=(48, 16))).astype(np.float32)
    vids = np.array([f"p{p}-{i // 2 % 3}" for i, p in enumerate(people)])
    clips = Clips(emb, vids, np.tile([0, 1], 24))
    identities = {v: v.split("-")[0] for v in vids}
    r = probe_reid(clips, identities)
    assert r.metrics.top1 == 1.0 and r.intervals["top1"] == (1.0, 1.0)
    assert probe_reid(clips, identities, resamples=0).intervals == {}
