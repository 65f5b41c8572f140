"""Re-identification: can a video's embedding find other videos of the same person?

Each video is represented by the mean of its clip embeddings; every video is a query against all
*other* videos (exact cosine search with a faiss ``IndexFlatIP``); top-1 accuracy and mAP of retrieving
a video with the same ``private_identity``, with their random-ranking chance levels.

Two attackers rank: ``cosine`` compares the L2-normalised video means as they are; ``lda`` first learns
a metric from the identities of *other* people (the ``train_videos``: shrinkage LDA fitted on their
clips, labelled by person — the usual re-identification protocol, training and test people disjoint)
and compares the projected means. Plain cosine is a weak attacker: pooled embeddings are dominated by
what happens, so the nearest video is usually someone else doing the same thing; a learned metric
finds who is there. `probe_reid` reports the stronger of the two (higher top-1), and both, and names
any attacker that did not run and why (``skipped``).

Two protocols (``ReidResult.protocol``): ``within-split`` ranks the chosen videos among themselves
(a video's own clips never match); ``cross-split`` (``queries`` and ``groups`` given) ranks each query
video against every other chosen video, from any split, whose group (its action) differs from the
query's, so a match is the same person doing something else.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import faiss
import numpy as np

from pipeline.probes.inputs import Clips, ProbeError, is_missing
from pipeline.probes.metrics import RetrievalMetrics, l2_normalise, retrieval_per_query, summarise_retrieval

QUERY_BLOCK = 1 << 22  # ranking entries held at once (32 MiB of int64)


def video_means(clips: Clips, videos: Sequence[str]) -> np.ndarray:
    """Mean clip embedding of each video: (V, D)."""
    means = [clips.emb[clips.rows_by_video[v]].mean(axis=0) for v in videos]
    return np.stack(means) if means else np.zeros((0, clips.dim), np.float32)


def rank_by_cosine(index: faiss.Index, queries: np.ndarray) -> np.ndarray:
    """Exact search of unit rows ``queries`` (Q, D) in ``index`` (all N items): indices (Q, N), best first."""
    _, ranking = index.search(np.ascontiguousarray(queries, dtype=np.float32), index.ntotal)
    return np.asarray(ranking, dtype=np.int64)


@dataclass(frozen=True)
class ReidResult:
    """The stronger attacker's metrics (``attacker`` names it) and every attacker's, by name."""

    attacker: str
    metrics: RetrievalMetrics
    attackers: dict[str, RetrievalMetrics]
    num_train_identities: int  # people the learned metric was fitted on (0 = cosine only)
    protocol: str = "within-split"
    skipped: dict[str, str] = field(default_factory=dict)  # attacker -> why it did not run
    # 95% bootstrap intervals of the reported attacker's top-1 and mAP over the queried people
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)


def _with_identity(clips: Clips, identities: Mapping[str, object], videos: Sequence[str] | None) -> list[str]:
    have = clips.rows_by_video
    chosen = sorted(videos) if videos is not None else sorted(have)
    return [v for v in chosen if v in have and not is_missing(identities.get(v))]


def fit_identity_metric(
    clips: Clips, identities: Mapping[str, object], train_videos: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Shrinkage LDA (Ledoit–Wolf) on the clips of ``train_videos``, each labelled with its video's
    identity: (mean (D,), projection (D, K), people), or None when fewer than two people have clips
    in more than one video (nothing to learn "same person" from)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    chosen = _with_identity(clips, identities, train_videos)
    videos_of = Counter(str(identities[v]) for v in chosen)
    chosen = [v for v in chosen if videos_of[str(identities[v])] >= 2]
    people = len({str(identities[v]) for v in chosen})
    if people < 2:
        return None
    rows = clips.rows(chosen)
    y = np.array([str(identities[v]) for v in clips.video_id[rows]])
    x = clips.emb[rows].astype(np.float64)
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(x, y)
    return x.mean(axis=0), lda.scalings_[:, : min(people - 1, clips.dim)], people


def probe_reid(
    clips: Clips,
    identities: Mapping[str, object],
    videos: Sequence[str] | None = None,
    train_videos: Sequence[str] = (),
    *,
    queries: Sequence[str] | None = None,
    groups: Mapping[str, object] | None = None,
    resamples: int = 200,
    seed: int = 0,
) -> ReidResult:
    """Same-identity retrieval across videos among ``videos`` (default: every video with clips and an
    identity); a video's own clips never count as a match. With ``train_videos`` (whose people must
    not be among the queried ones), the ``lda`` attacker learns its metric on them.

    ``queries`` (a subset of ``videos``) with ``groups`` (``{video: action}``) is the cross-split
    protocol: only those videos are queried, each against the chosen videos of another group.
    ``intervals`` resample the queries by person (``resamples`` times, `pipeline.probes.bootstrap`)."""
    chosen = _with_identity(clips, identities, videos)
    if len(chosen) < 2:
        raise ProbeError("re-identification needs at least two videos with clips and an identity")
    ids = np.array([str(identities[v]) for v in chosen])
    if queries is None:
        query_idx, protocol = np.arange(len(chosen)), "within-split"
        owner = np.array(chosen)  # a video is its own group: its own clips never count
    else:
        wanted = set(queries)
        query_idx = np.array([i for i, v in enumerate(chosen) if v in wanted], dtype=np.int64)
        protocol = "cross-split"
        owner = np.array([str((groups or {}).get(v, v)) for v in chosen])  # same action never counts
        if len(query_idx) == 0:
            raise ProbeError("re-identification: none of the query videos has clips and an identity")
    queried = set(ids[query_idx])
    overlap = {str(identities[v]) for v in _with_identity(clips, identities, train_videos)} & queried
    if overlap:
        raise ProbeError(
            f"re-identification: {len(overlap)} people are both queried and in the metric's training "
            "videos; the learned metric would have seen them"
        )
    means = video_means(clips, chosen)
    attackers = {"cosine": _retrieve(l2_normalise(means), ids, owner, query_idx)}
    skipped: dict[str, str] = {}
    fitted = fit_identity_metric(clips, identities, train_videos) if train_videos else None
    people = 0
    if fitted is not None:
        mean, projection, people = fitted
        attackers["lda"] = _retrieve(l2_normalise((means - mean) @ projection), ids, owner, query_idx)
    else:
        skipped["lda"] = (
            "no training videos of people other than the queried ones"
            if not train_videos
            else "fewer than two unqueried people have more than one training video"
        )
    best = max(attackers, key=lambda name: attackers[name].top1)
    best_emb = l2_normalise(means) if best == "cosine" else l2_normalise((means - mean) @ projection)
    intervals = _intervals(best_emb, ids, owner, query_idx, resamples, seed)
    return ReidResult(best, attackers[best], attackers, people, protocol, skipped, intervals)


def _intervals(
    emb: np.ndarray, ids: np.ndarray, owner: np.ndarray, query_idx: np.ndarray, resamples: int, seed: int
) -> dict[str, tuple[float, float]]:
    """Bootstrap over the queried people of the per-query top-1 hits and APs: mean over each resample."""
    from pipeline.probes.bootstrap import interval, resample_rows

    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    per_query = retrieval_per_query(rank_by_cosine(index, emb[query_idx]), ids, owner, query_idx)
    has_match = [bool(np.any((owner != owner[i]) & (ids == ids[i]))) for i in query_idx]
    _, group = np.unique(ids[query_idx][has_match], return_inverse=True)
    if resamples == 0 or len(per_query) == 0:
        return {}
    draws = resample_rows(group.astype(np.int64), resamples, seed)
    return {
        "top1": interval(np.array([per_query[d, 0].mean() for d in draws])),
        "map": interval(np.array([per_query[d, 1].mean() for d in draws])),
    }


def _retrieve(emb: np.ndarray, ids: np.ndarray, owner: np.ndarray, query_idx: np.ndarray) -> RetrievalMetrics:
    """Exact cosine retrieval of unit rows ``emb`` (V, K) for the rows ``query_idx``, among all rows
    except those of the query's ``owner`` group, in query blocks."""
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    block = max(1, QUERY_BLOCK // len(owner))  # a full ranking is (Q, N): bound what is held at once
    parts = []
    for start in range(0, len(query_idx), block):
        queries = query_idx[start : start + block]
        parts.append(retrieval_per_query(rank_by_cosine(index, emb[queries]), ids, owner, queries))
    return summarise_retrieval(np.concatenate(parts), len(owner))
