"""docs/data-teams.md: every python snippet runs against a real publication and finds the right clips."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stores.published import publish
from tests.stores.test_published_support import clips_and_emb, make_info, video_ids

DOC = Path(__file__).resolve().parents[2] / "docs" / "data-teams.md"
PLACEHOLDER = re.compile(r'^PUBLISHED = "published".*$', re.MULTILINE)
QUERY = "vid-000#0"  # the clip the snippets search around: the smallest clip id, as they pick it
DIM = 16


def _snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """demo/tiny/v1 (with a flat faiss index) and a v2 beside it; returns the expected top-5."""
    out = tmp_path_factory.mktemp("docs") / "published"
    clips, emb = clips_and_emb(video_ids(12), dim=DIM, unit=False)
    publish(out, make_info("v1", normalisation="none"), clips, emb, faiss_index="flat", rows_per_file=10)
    other_clips, other = clips_and_emb(video_ids(12), dim=DIM, salt="v2", unit=False)
    publish(out, make_info("v2", normalisation="none"), other_clips, other)  # must be filtered out
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    ids = [
        f"{v}#{i}"
        for v, i in zip(clips["video_id"].to_pylist(), clips["clip_index"].to_pylist(), strict=True)
    ]
    assert min(ids) == QUERY
    scores = unit @ unit[ids.index(QUERY)]
    return out, [ids[i] for i in np.argsort(-scores)[:5]]


def _run(snippet: str, out: Path) -> dict[str, Any]:
    assert PLACEHOLDER.search(snippet), 'every snippet starts from PUBLISHED = "published"'
    code = PLACEHOLDER.sub(f"PUBLISHED = {str(out)!r}", snippet)
    namespace: dict[str, Any] = {"__name__": "docs_snippet"}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace


def test_the_page_has_one_snippet_per_reader() -> None:
    snippets = _snippets()
    assert len(snippets) == 5
    for library in ("duckdb", "polars", "pyarrow.dataset", "faiss"):
        assert sum(f"import {library}" in s for s in snippets) >= 1, library
    assert not any(re.search(r"QUERY = \"", s) for s in snippets), "no hard-coded clip ids"


@pytest.mark.parametrize("number", range(5))
def test_snippet_runs_and_answers(published: tuple[Path, list[str]], number: int) -> None:
    out, expected = published
    snippet = _snippets()[number]
    namespace = _run(snippet, out)
    if "top_k" not in namespace:  # the metadata snippet
        assert namespace["leakage"]["measured"] is True and namespace["D"] == DIM
        assert namespace["kv"]["aam.normalisation"] == "none"
        return
    assert namespace["QUERY"] == QUERY  # picked from the data, not written into the snippet
    top_k = namespace["top_k"]
    assert [clip_id for clip_id, _ in top_k] == expected
    scores = [float(score) for _, score in top_k]
    assert abs(scores[0] - 1.0) < 1e-5 and scores == sorted(scores, reverse=True)
