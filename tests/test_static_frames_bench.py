"""`benchmarks/static_frames.py`: which stored static clips stand for fewer per test video."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.static_frames import kept_indices, subset_rows
from pipeline.data.clips import plan_static


@pytest.mark.parametrize("k", [1, 2, 3, 5, 10])
def test_kept_clips_are_the_stored_ones_nearest_to_what_extract_would_place(k: int) -> None:
    stored, frames = 10, 300
    kept = kept_indices(stored, k)
    assert len(kept) == k and list(kept) == sorted(set(kept.tolist()))
    placed = plan_static(frames, stored)  # the frames of the 10 stored clips
    wanted = plan_static(frames, k)  # what --static-frames-test k would decode
    assert np.abs(placed[kept] - wanted).max() <= frames / stored / 2 + 1


def test_only_test_videos_lose_clips() -> None:
    video_id = np.array(["a"] * 4 + ["t"] * 4 + ["u"] * 2)
    index = np.array([0, 1, 2, 3, 3, 2, 1, 0, 0, 1])
    rows = subset_rows(video_id, index, {"t", "u"}, k=2)
    assert list(video_id[rows]) == ["a"] * 4 + ["t"] * 2 + ["u"] * 2  # u has only 2: all kept
    assert sorted(index[rows][4:6].tolist()) == [0, 2]  # of t's 0..3, the nearest to centres 0.5, 2.5
    with pytest.raises(SystemExit):
        kept_indices(3, 4)
