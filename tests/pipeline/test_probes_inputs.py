"""Probe inputs: Clips validation and grouping, label lookup, missing values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.probes.inputs import Clips, ProbeError, encode_labels, is_missing, labelled_videos


def clips3() -> Clips:
    emb = np.arange(10, dtype=np.float32).reshape(5, 2)
    return Clips(emb, np.array(["b", "a", "b", "a", "c"]), np.array([1, 1, 0, 0, 0]), np.zeros(5), np.ones(5))


def test_rows_by_video_sorted_by_clip_index() -> None:
    c = clips3()
    assert {k: v.tolist() for k, v in c.rows_by_video.items()} == {"a": [3, 1], "b": [2, 0], "c": [4]}
    assert c.rows(["c", "zzz", "a"]).tolist() == [4, 3, 1]
    assert c.rows([]).dtype == np.int64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"emb": np.zeros(5)}, r"must be \(N, D\)"),
        ({"index": np.zeros(4)}, "Clips.index must have shape"),
        ({"t_end": None}, "both t_start and t_end"),
        ({"emb": np.full((5, 2), np.nan)}, "NaN or inf"),
    ],
)
def test_clips_are_validated(change: dict[str, object], message: str) -> None:
    c = clips3()
    fields = {"emb": c.emb, "video_id": c.video_id, "index": c.index, "t_start": c.t_start, "t_end": c.t_end}
    with pytest.raises(ProbeError, match=message):
        Clips(**{**fields, **change})  # type: ignore[arg-type]


def test_times_need_clip_times() -> None:
    c = clips3()
    assert c.times(np.array([0]))[1].tolist() == [1.0]
    with pytest.raises(ProbeError, match="needs clip times"):
        Clips(c.emb, c.video_id, c.index).times(np.array([0]))


def test_labelled_videos_skip_missing_labels_and_videos_without_clips() -> None:
    labels = {"a": "x", "b": None, "c": math.nan, "d": "y"}
    splits = {"a": "train", "b": "train", "c": "train", "d": "train"}
    assert labelled_videos(clips3(), labels, splits, "train") == ["a"]
    assert is_missing("") and is_missing(None) and is_missing(float("nan"))
    assert not is_missing([]) and not is_missing(0)


def test_encode_labels_compares_as_str() -> None:
    assert encode_labels([1, "0", 1], ["0", "1"]).tolist() == [1, 0, 1]
    with pytest.raises(ProbeError, match="not one of the classes"):
        encode_labels(["2"], ["0", "1"])
