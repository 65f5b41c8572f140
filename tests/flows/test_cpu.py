"""CPU settings for extraction: the heap policy (freed memory kept, so reused buffers do not page-fault
back in), passive OpenMP waiting, and how decode workers and torch threads share the cores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from flows.cpu import freed_memory_kept
from flows.decode_pool import DecodeJob, DecodeSettings, Failed, decode_in_workers
from flows.extract import ExtractConfig, decode_worker_count, encoder_threads
from pipeline.data.clips import ClipSpec
from pipeline.data.decode import FrameSize

ROOT = Path(__file__).resolve().parents[2]

# A forward pass's pattern: large arrays of mixed sizes (20, 4, 20, 4 MB) alive at once, touched, then
# all freed; 20 rounds. Prints the minor page faults of the last 19.
FAULTS = """
import resource, sys
import numpy as np
from flows.cpu import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
def round():
    arrays = [np.ones(mb << 18, np.float32) for mb in (20, 4, 20, 4)]
    del arrays
round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(19):
    round()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str, **env: str) -> tuple[bool, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=clean | env,
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_freed_memory_is_reused_without_page_faults() -> None:
    kept, faults = _faults("keep")
    _, default_faults = _faults("default")
    assert kept
    # With glibc's defaults the heap is trimmed or mmapped afresh: about 48,000 pages (190 MB) faulted
    # in again on the development machine; none once the heap keeps them.
    assert default_faults > 19 * 1000
    assert faults < 500


def test_a_malloc_setting_of_the_user_wins() -> None:
    kept, _ = _faults("keep", MALLOC_TRIM_THRESHOLD_="131072")
    assert not kept


def report_heap_policy(job: DecodeJob, settings: DecodeSettings) -> Any:
    """A decode function (run in a worker) that reports whether the worker keeps freed memory."""
    yield Failed(job.video_id, f"kept={freed_memory_kept()}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_decode_workers_keep_freed_memory() -> None:
    settings = DecodeSettings(ClipSpec(static_frames=1), FrameSize(32, 32))
    events = list(decode_in_workers([DecodeJob("a", "a.mp4")], settings, 1, decode=report_heap_policy))
    assert [e.reason for e in events if isinstance(e, Failed)] == ["kept=True"]


def test_openmp_threads_wait_passively_unless_the_user_says_otherwise() -> None:
    code = "import os, flows, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = [sys.executable, "-c", code]
    assert subprocess.run(run, capture_output=True, text=True, cwd=ROOT, env=env).stdout.strip() == "PASSIVE"
    mine = subprocess.run(
        run, capture_output=True, text=True, cwd=ROOT, env=env | {"OMP_WAIT_POLICY": "ACTIVE"}
    )
    assert mine.stdout.strip() == "ACTIVE"


def _encoder(encoder_id: str, device: str = "cpu") -> Any:
    return SimpleNamespace(encoder_id=encoder_id, device=torch.device(device))


@pytest.mark.parametrize(
    ("encoder_id", "device", "workers"),
    [
        ("tiny", "cpu", 8),  # a small 3-D CNN: half the cores decode
        ("torchscript:enc.pt", "cpu", 8),
        ("videomae:/models/videomae-base", "cpu", 1),  # the encoder needs every core but one
        ("vjepa2:facebook/vjepa2", "cpu", 1),
        ("videomae:/models/videomae-base", "cuda", 15),  # with a GPU every core but one decodes
    ],
)
def test_decode_workers_by_encoder_and_device(
    monkeypatch: pytest.MonkeyPatch, encoder_id: str, device: str, workers: int
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    encoder = _encoder(encoder_id, device)
    assert decode_worker_count(ExtractConfig(), encoder, 100) == workers
    assert decode_worker_count(ExtractConfig(), encoder, 3) == min(workers, 3)
    assert decode_worker_count(ExtractConfig(decode_workers=5), encoder, 100) == 5  # --decode-workers


def test_encoder_threads_are_the_cores_the_decode_workers_leave(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(16)
        assert encoder_threads(_encoder("tiny"), 8) == 8
        assert encoder_threads(_encoder("videomae:x"), 1) == 15
        assert encoder_threads(_encoder("tiny"), 16) == 1  # never none
        assert encoder_threads(_encoder("tiny"), 0) == 16  # decoding inline: torch's own setting
        assert encoder_threads(_encoder("tiny", "cuda"), 15) == 16
        torch.set_num_threads(4)  # OMP_NUM_THREADS or torch.set_num_threads lower it
        assert encoder_threads(_encoder("tiny"), 8) == 4
    finally:
        torch.set_num_threads(before)
