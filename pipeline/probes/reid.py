"""Re-identification: can a video's embedding find other videos of the same person?

Each video is represented by the mean of its clip embeddings, L2-normalised; every video is a query
against all *other* videos (exact cosine search with a faiss ``IndexFlatIP``); top-1 accuracy and mAP
of retrieving a video with the same ``private_identity``, with their random-ranking chance levels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import faiss
import numpy as np

from pipeline.probes.inputs import Clips, ProbeError, is_missing
from pipeline.probes.metrics import RetrievalMetrics, l2_normalise, retrieval_per_query, summarise_retrieval

QUERY_BLOCK = 1 << 22  # ranking entries held at once (32 MiB of int64)


def video_embeddings(clips: Clips, videos: Sequence[str]) -> np.ndarray:
    """Mean clip embedding of each video, L2-normalised: (V, D) float32."""
    means = [clips.emb[clips.rows_by_video[v]].mean(axis=0) for v in videos]
    return l2_normalise(np.stack(means)) if means else np.zeros((0, clips.dim), np.float32)


def rank_by_cosine(index: faiss.Index, queries: np.ndarray) -> np.ndarray:
    """Exact search of unit rows ``queries`` (Q, D) in ``index`` (all N items): indices (Q, N), best first."""
    _, ranking = index.search(np.ascontiguousarray(queries, dtype=np.float32), index.ntotal)
    return np.asarray(ranking, dtype=np.int64)


def probe_reid(
    clips: Clips, identities: Mapping[str, object], videos: Sequence[str] | None = None
) -> RetrievalMetrics:
    """Same-identity retrieval across videos among ``videos`` (default: every video with clips and an
    identity); a video's own clips never count as a match."""
    have = clips.rows_by_video
    chosen = sorted(videos) if videos is not None else sorted(have)
    chosen = [v for v in chosen if v in have and not is_missing(identities.get(v))]
    if len(chosen) < 2:
        raise ProbeError("re-identification needs at least two videos with clips and an identity")
    ids = np.array([str(identities[v]) for v in chosen])
    emb = video_embeddings(clips, chosen)
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    groups = np.array(chosen)  # a video is its own group: its own clips never count
    block = max(1, QUERY_BLOCK // len(chosen))  # a full ranking is (Q, N): bound what is held at once
    parts = []
    for start in range(0, len(chosen), block):
        queries = np.arange(start, min(start + block, len(chosen)))
        parts.append(retrieval_per_query(rank_by_cosine(index, emb[queries]), ids, groups, queries))
    return summarise_retrieval(np.concatenate(parts), len(chosen))
