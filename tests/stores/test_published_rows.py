"""publish_rows: embeddings fetched one data file at a time give the files `publish` gives in memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stores.errors import StoreError
from stores.published import publish, publish_rows, read_published
from tests.stores.test_published_support import DIM, clips_and_emb, make_info, partition, video_ids


def _files(folder: Path) -> dict[str, bytes]:
    """Every file but the writer lock and the two that carry timestamps."""
    skip = {"_manifest.json", "README.md"}
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip and not p.name.startswith(".")
    }


def _manifest(folder: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((partition(folder) / "_manifest.json").read_text())
    for key in ("created_at", "updated_at"):
        record.pop(key)
    for p in record["publications"]:
        p.pop("created_at")
    return record


class Fetch:
    """An embedding source over an array that records how many rows each call asked for."""

    def __init__(self, emb: np.ndarray) -> None:
        self.emb, self.calls = emb, []  # type: ignore[var-annotated]

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        assert np.all(np.diff(positions) > 0)  # ascending: sequential reads of a spill
        self.calls.append(len(positions))
        return self.emb[positions]


def test_fetched_one_file_at_a_time_the_files_are_those_of_publish(tmp_path: Path) -> None:
    clips, emb = clips_and_emb(video_ids(12))
    order = np.random.default_rng(0).permutation(clips.num_rows)  # input rows in no particular order
    clips, emb = clips.take(order), emb[order]
    publish(tmp_path / "memory", make_info(), clips, emb, rows_per_file=7)
    fetch = Fetch(emb)
    result = publish_rows(tmp_path / "lazy", make_info(), clips, fetch, DIM, rows_per_file=7)
    assert _files(tmp_path / "lazy") == _files(tmp_path / "memory")
    assert _manifest(tmp_path / "lazy") == _manifest(tmp_path / "memory")
    assert max(fetch.calls) <= 7 and sum(fetch.calls) == clips.num_rows  # never more than a file
    assert len(result.files_added) == len(fetch.calls) > 1


def test_appends_fetch_only_new_and_compared_rows_and_refuse_changes(tmp_path: Path) -> None:
    first, emb_first = clips_and_emb(video_ids(6))
    both, emb_both = clips_and_emb(video_ids(10))
    publish(tmp_path / "memory", make_info(), first, emb_first, rows_per_file=6)
    publish(tmp_path / "memory", make_info(), both, emb_both, mode="append", rows_per_file=6)
    publish_rows(tmp_path / "lazy", make_info(), first, Fetch(emb_first), DIM, rows_per_file=6)
    fetch = Fetch(emb_both)
    result = publish_rows(tmp_path / "lazy", make_info(), both, fetch, DIM, mode="append", rows_per_file=6)
    assert result.videos_added == 4 and result.videos_skipped == 6
    assert _files(tmp_path / "lazy") == _files(tmp_path / "memory")
    assert max(fetch.calls) <= 6  # the published rows are compared one published file at a time
    changed = emb_both.copy()
    changed[0] += 0.5
    changed[0] /= np.linalg.norm(changed[0])
    before = _files(tmp_path / "lazy")
    with pytest.raises(StoreError, match="1 already published videos come back"):
        publish_rows(tmp_path / "lazy", make_info(), both, Fetch(changed), DIM, mode="append")
    assert _files(tmp_path / "lazy") == before


def test_a_bad_fetched_row_fails_the_publish_and_leaves_nothing(tmp_path: Path) -> None:
    clips, emb = clips_and_emb(video_ids(6))
    bad = emb.copy()
    bad[-1, 0] = np.nan  # in the last file: earlier files were already written to the work folder
    with pytest.raises(StoreError, match="NaN or inf"):
        publish_rows(tmp_path, make_info(), clips, Fetch(bad), DIM, rows_per_file=3)
    assert not partition(tmp_path).exists()
    with pytest.raises(StoreError, match="no published partition"):
        read_published(tmp_path)
    with pytest.raises(StoreError, match="one row per requested position"):
        publish_rows(tmp_path, make_info(), clips, lambda p: emb[p][:, :3], DIM)
