"""Decoding in worker processes, isolated per input, feeding the encoder in the main process.

Each worker owns one pipe to this process and decodes one input at a time, streaming its clips back in
bounded chunks with blocking sends. A thread here receives from every pipe into a bounded queue, so
decoding goes on while the caller encodes. Memory stays bounded by `(workers x (depth + 2)) x chunk`,
whatever the video length.

A worker that dies (a decoder crash on a corrupt stream) costs only the input it held: that input is
reported as failed and a fresh worker takes the next one. Workers share no queue or lock, so a death
in the middle of a send cannot lose or garble another input's events, and every event a worker sent
before it died is delivered. Workers never import torch (decoding does not need it): they start fast.

A process that runs one extraction after another (a Dask worker running work units) may keep the
workers of a finished run for the next run with the same settings (`keep_decoders`): starting them
afresh costs a new interpreter and its imports for every unit.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue
import signal
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from flows.cpu import keep_freed_memory
from pipeline.data.clips import ClipSpec
from pipeline.data.decode import ClipChunk, FrameSize, MediaPlan, decode_chunks, plan_media
from pipeline.errors import PipelineError


@dataclass(frozen=True)
class DecodeJob:
    video_id: str
    path: str
    static_frames: int | None = None  # static clips of this input; None = the settings' ClipSpec's


def job_spec(job: DecodeJob, spec: ClipSpec) -> ClipSpec:
    """The clip placement of one input: `spec` with the job's own number of static frames."""
    if job.static_frames is None or job.static_frames == spec.static_frames:
        return spec
    return spec.model_copy(update={"static_frames": job.static_frames})


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
    frame: FrameSize
    reader: str = "pyav"
    chunk: int = 16


DecodeFn = Callable[[DecodeJob, DecodeSettings], Iterator[Event]]


def decode_one(job: DecodeJob, settings: DecodeSettings) -> Iterator[Event]:
    """All events of one input; a failure becomes a `Failed` event, never an exception."""
    try:
        plan = plan_media(job.path, job_spec(job, settings.spec), settings.reader)
        yield Planned(job.video_id, plan)
        for chunk in decode_chunks(job.path, plan, settings.frame, settings.chunk, settings.reader):
            yield Chunk(job.video_id, chunk)
        yield Done(job.video_id)
    except PipelineError as err:
        yield Failed(job.video_id, str(err))
    except (OSError, ValueError, RuntimeError, MemoryError, IndexError) as err:
        yield Failed(job.video_id, f"{type(err).__name__}: {err}")


def decode_inline(
    jobs: list[DecodeJob], settings: DecodeSettings, decode: DecodeFn = decode_one
) -> Generator[Event, None, None]:
    """Decode in this process, one input after another (no isolation; for tests and debugging)."""
    for job in jobs:
        yield from decode(job, settings)


def decode_in_workers(
    jobs: list[DecodeJob],
    settings: DecodeSettings,
    workers: int,
    depth: int = 4,
    decode: DecodeFn = decode_one,
) -> Generator[Event, None, None]:
    """Decode `jobs` in `workers` spawned processes; events of different inputs interleave, those of one
    input arrive in order. Ends when every job has produced a `Done` or `Failed`.

    `decode` runs in the workers (a module-level function, so that it pickles by name). Closing the
    generator early stops the workers."""
    if not jobs:
        return
    events: queue.Queue[Any] = queue.Queue(maxsize=max(2, workers * depth))
    pool = _Pool(jobs, settings, max(1, workers), decode, events)
    thread = threading.Thread(target=pool.run, name="aam-decode-pool", daemon=True)
    thread.start()
    try:
        while True:
            item = events.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        pool.stopping.set()
        thread.join()
        pool.shutdown()


_END = object()

# Workers of finished pools, kept for the next pool of this process with the same settings and decode
# function (`keep_decoders`); at most `_IDLE_MAX` of them. Daemonic: they end with this process.
_IDLE: list[tuple[DecodeSettings, DecodeFn, _Worker]] = []
_IDLE_LOCK = threading.Lock()
_IDLE_MAX = 0


def keep_decoders(workers: int) -> None:
    """Keep up to `workers` decode processes of each finished run of this process for the next run with
    the same settings (0: stop them at the end of every run, the default). A Dask worker runs one work
    unit after another; each unit's run starting its decode processes afresh cost a new interpreter and
    its imports, about 1 s of CPU a unit on a 2-core machine (docs/orchestration.md)."""
    global _IDLE_MAX
    with _IDLE_LOCK:
        _IDLE_MAX = max(0, workers)
        while len(_IDLE) > _IDLE_MAX:
            _stop(_IDLE.pop()[2])


def _take_idle(settings: DecodeSettings, decode: DecodeFn) -> _Worker | None:
    """A kept worker for these settings that is alive with nothing unread; None when there is none."""
    with _IDLE_LOCK:
        while True:
            k = next((k for k, (s, d, _) in enumerate(_IDLE) if s == settings and d is decode), None)
            if k is None:
                return None
            worker = _IDLE.pop(k)[2]
            if worker.proc.is_alive() and not worker.conn.poll():
                return worker
            _stop(worker)


def _keep_idle(settings: DecodeSettings, decode: DecodeFn, worker: _Worker) -> bool:
    """Keep a worker that finished its jobs for a later pool; False when there is no room."""
    with _IDLE_LOCK:
        if len(_IDLE) >= _IDLE_MAX or not worker.proc.is_alive():
            return False
        worker.job = None
        _IDLE.append((settings, decode, worker))
        return True


def _stop(worker: _Worker) -> None:
    with contextlib.suppress(OSError):
        worker.conn.send(None)
    worker.proc.join(timeout=5)
    if worker.proc.is_alive():
        worker.proc.terminate()
        worker.proc.join(timeout=5)
    worker.conn.close()


def _worker(conn: Connection, settings: DecodeSettings, decode: DecodeFn) -> None:
    # Ctrl-C reaches the whole process group; the parent shuts its workers down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_freed_memory()  # every chunk allocates and frees the same large arrays
    try:
        while (job := conn.recv()) is not None:
            try:
                for event in decode(job, settings):
                    conn.send(event)
            except (EOFError, OSError):
                raise
            except Exception as err:  # a bug, not a bad file: report it against this input, go on
                conn.send(Failed(job.video_id, f"unexpected {type(err).__name__} while decoding: {err}"))
    except (EOFError, OSError):  # the parent is gone or closed the pipe
        return


@dataclass
class _Worker:
    proc: BaseProcess
    conn: Connection
    job: DecodeJob | None = None


class _Pool:
    """Runs in one thread of the caller's process: starts workers, hands out jobs, relays events."""

    def __init__(
        self,
        jobs: list[DecodeJob],
        settings: DecodeSettings,
        workers: int,
        decode: DecodeFn,
        events: queue.Queue[Any],
    ) -> None:
        self.ctx = mp.get_context("spawn")
        self.todo = deque(jobs)
        self.unfinished = len(jobs)  # jobs without their Done or Failed yet
        self.settings = settings
        self.size = min(workers, len(jobs))
        self.decode = decode
        self.events = events
        self.workers: list[_Worker] = []
        self.started = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            for _ in range(self.size):
                self._start()
            while self.unfinished and not self.stopping.is_set():
                by_conn = {w.conn: w for w in self.workers}
                by_sentinel = {w.proc.sentinel: w for w in self.workers}
                for ready in wait([*by_conn, *by_sentinel], timeout=0.5):
                    if isinstance(ready, Connection):
                        worker = by_conn[ready]
                        if worker in self.workers:  # not buried earlier in this round
                            self._receive(worker)
                    elif isinstance(ready, int) and by_sentinel[ready] in self.workers:
                        self._bury(by_sentinel[ready])
            self._put(_END)
        except BaseException as err:
            self._put(err)

    def shutdown(self) -> None:
        """Stop every worker: politely after a complete run (or keep it, `keep_decoders`), at once after
        an early stop."""
        finished = not self.unfinished
        if finished:
            self.workers = [w for w in self.workers if not _keep_idle(self.settings, self.decode, w)]
        for w in self.workers:
            if finished:
                with contextlib.suppress(OSError):
                    w.conn.send(None)
            else:
                w.proc.terminate()
        for w in self.workers:
            w.proc.join(timeout=5)
            if w.proc.is_alive():
                w.proc.terminate()
                w.proc.join(timeout=5)
            w.conn.close()
        self.workers = []

    def _start(self) -> None:
        kept = _take_idle(self.settings, self.decode)
        if kept is not None:
            self.workers.append(kept)
            self._assign(kept)
            return
        parent, child = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(
            target=_worker,
            args=(child, self.settings, self.decode),
            name=f"aam-decode-{self.started}",
            daemon=True,
        )
        proc.start()
        child.close()  # so that the worker's death reads as end-of-file here
        self.started += 1
        worker = _Worker(proc, parent)
        self.workers.append(worker)
        self._assign(worker)

    def _assign(self, worker: _Worker) -> None:
        if not self.todo:
            return
        job = self.todo.popleft()
        try:
            worker.conn.send(job)
        except OSError:  # the worker is gone and never got the job: its sentinel buries it
            self.todo.appendleft(job)
            return
        worker.job = job

    def _receive(self, worker: _Worker) -> None:
        try:
            event = worker.conn.recv()
        except (EOFError, OSError):
            self._bury(worker)
            return
        self._relay(worker, event)
        if worker.job is None:
            self._assign(worker)

    def _relay(self, worker: _Worker, event: Event) -> None:
        if worker.job is None or event.video_id != worker.job.video_id:
            return  # cannot happen with a well-behaved decode function; never misattribute
        if isinstance(event, Done | Failed):
            worker.job = None
            self.unfinished -= 1
        self._put(event)

    def _bury(self, worker: _Worker) -> None:
        """A worker died: deliver what it sent completely, fail the input it held, replace it."""
        while True:
            try:
                if not worker.conn.poll():
                    break
                self._relay(worker, worker.conn.recv())
            except (EOFError, OSError):
                break
        worker.proc.join(timeout=30)  # it closed its pipe: it is exiting, if slowly on a busy machine
        if worker.proc.is_alive():
            worker.proc.kill()
            worker.proc.join()
        self.workers.remove(worker)
        worker.conn.close()
        if worker.job is not None:
            self.unfinished -= 1
            self._put(
                Failed(worker.job.video_id, f"decoder crashed (worker exit code {worker.proc.exitcode})")
            )
        if self.todo:
            self._start()

    def _put(self, item: Any) -> None:
        while not self.stopping.is_set():
            try:
                self.events.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
