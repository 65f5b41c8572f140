"""Decoding in worker processes, isolated per input, feeding the encoder in the main process.

Each worker takes one input at a time and streams its clips back in bounded chunks through a bounded
queue, so memory stays bounded by `workers x queue depth x chunk`, whatever the video length. A
worker that dies (a decoder crash on a corrupt stream) costs only the input it held: that input is
reported as failed and a fresh worker takes its place.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.data.clips import ClipSpec
from pipeline.data.decode import ClipChunk, MediaPlan, decode_chunks, plan_media
from pipeline.data.transforms import Preprocess
from pipeline.errors import PipelineError


@dataclass(frozen=True)
class DecodeJob:
    video_id: str
    path: str


@dataclass(frozen=True)
class Planned:
    video_id: str
    plan: MediaPlan


@dataclass(frozen=True)
class Chunk:
    video_id: str
    chunk: ClipChunk


@dataclass(frozen=True)
class Done:
    video_id: str


@dataclass(frozen=True)
class Failed:
    video_id: str
    reason: str


Event = Planned | Chunk | Done | Failed


@dataclass(frozen=True)
class DecodeSettings:
    spec: ClipSpec
    preprocess: Preprocess
    reader: str = "decord"
    chunk: int = 16


def decode_one(job: DecodeJob, settings: DecodeSettings) -> Iterator[Event]:
    """All events of one input; a failure becomes a `Failed` event, never an exception."""
    try:
        plan = plan_media(job.path, settings.spec, settings.reader)
        yield Planned(job.video_id, plan)
        for chunk in decode_chunks(job.path, plan, settings.preprocess, settings.chunk, settings.reader):
            yield Chunk(job.video_id, chunk)
        yield Done(job.video_id)
    except PipelineError as err:
        yield Failed(job.video_id, str(err))
    except (OSError, ValueError, RuntimeError, MemoryError, IndexError) as err:
        yield Failed(job.video_id, f"{type(err).__name__}: {err}")


def _worker(worker_id: int, jobs: Any, events: Any, settings: DecodeSettings) -> None:
    while True:
        job = jobs.get()
        if job is None:
            return
        events.put(("start", worker_id, job.video_id))
        for event in decode_one(job, settings):
            events.put(("event", worker_id, event))


def decode_inline(jobs: list[DecodeJob], settings: DecodeSettings) -> Iterator[Event]:
    """Decode in this process, one input after another (no isolation; for tests and debugging)."""
    for job in jobs:
        yield from decode_one(job, settings)


def decode_in_workers(
    jobs: list[DecodeJob], settings: DecodeSettings, workers: int, depth: int = 4
) -> Iterator[Event]:
    """Decode `jobs` in `workers` processes; events of different inputs interleave, those of one input
    arrive in order. Ends when every job has produced a `Done` or `Failed`."""
    ctx = mp.get_context("spawn")
    job_q: Any = ctx.Queue()
    event_q: Any = ctx.Queue(maxsize=max(2, workers * depth))
    for job in jobs:
        job_q.put(job)
    procs: dict[int, Any] = {}
    holding: dict[int, str] = {}  # worker id -> video id it is decoding
    next_id = 0

    def start_worker() -> None:
        nonlocal next_id
        proc = ctx.Process(target=_worker, args=(next_id, job_q, event_q, settings), daemon=True)
        proc.start()
        procs[next_id] = proc
        next_id += 1

    for _ in range(min(workers, len(jobs))):
        start_worker()
    remaining = {j.video_id for j in jobs}
    last_check = time.monotonic()
    try:
        while remaining:
            try:
                tag, worker_id, payload = event_q.get(timeout=0.5)
            except queue.Empty:
                tag = None
            if tag is None or time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                yield from _reap_dead(procs, holding, remaining, start_worker)
            if tag is None:
                continue
            if tag == "start":
                holding[worker_id] = payload
                continue
            event: Event = payload
            if event.video_id not in remaining:
                continue  # already reported failed: its worker died with events still queued
            if isinstance(event, Done | Failed):
                remaining.discard(event.video_id)
                holding.pop(worker_id, None)
            yield event
    finally:
        for _ in procs:
            job_q.put(None)
        for proc in procs.values():
            proc.join(timeout=2)
            if proc.is_alive():
                proc.terminate()


def _reap_dead(
    procs: dict[int, Any], holding: dict[int, str], remaining: set[str], start_worker: Any
) -> Iterator[Event]:
    for worker_id, proc in list(procs.items()):
        if proc.is_alive():
            continue
        del procs[worker_id]
        video_id = holding.pop(worker_id, None)
        if video_id is not None and video_id in remaining:
            remaining.discard(video_id)
            yield Failed(video_id, f"decoder crashed (worker exit code {proc.exitcode})")
        if remaining:
            start_worker()
