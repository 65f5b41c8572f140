"""Extraction work units on a real Dask cluster: a `dask scheduler` and two `dask worker` processes
(one advertising GPU=1), flows reporting to a temporary Prefect server. A worker killed in the middle
of a run, GPU annotations, and the fail-fast check when no worker has a GPU."""

from __future__ import annotations

import os

# Before Prefect is imported anywhere: no analytics, time for a first server start on 2 busy cores.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from flows.dask_cluster import DaskSettings
from flows.extract import ExtractConfig, extract
from flows.prefect_extract import Source
from stores.latent_cache import LatentCache
from stores.manifest import manifest_from_folder
from tests.flows.extract_support import CROP, encoder_config_kwargs

DASK = Path(sys.executable).with_name("dask")


@dataclass
class Cluster:
    address: str
    scheduler_file: Path
    processes: list[subprocess.Popen[bytes]]

    def workers(self) -> dict[str, str]:
        """Worker name -> address, once both workers are up (a killed one restarts elsewhere)."""
        from distributed import Client

        with Client(scheduler_file=str(self.scheduler_file), timeout=60, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=120)
            return {w["name"]: a for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {"DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """`dask scheduler` + two `dask worker` processes (nanny, one thread each); `gpu` has GPU=1."""
    from distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    common = ["--no-dashboard", "--scheduler-file", str(scheduler_file)]
    processes = [
        _start([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", *common], folder / "s.log")
    ]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline, (folder / "s.log").read_text()
            time.sleep(0.2)
        for name, extra in (("gpu", ["--resources", "GPU=1"]), ("cpu", [])):
            worker = [str(DASK), "worker", "--nthreads", "1", "--name", name, *common, *extra]
            processes.append(_start(worker, folder / f"{name}.log"))
        with Client(scheduler_file=str(scheduler_file), timeout=60, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=120)
            address = client.scheduler.address
        yield Cluster(address, scheduler_file, processes)
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _config(script_encoder: Path, **changes: Any) -> ExtractConfig:
    return ExtractConfig(
        videos_per_part=1, static_frames=2, **(encoder_config_kwargs(script_encoder) | changes)
    )


def _assert_same_as_serial(store: Path, videos: Path, config: ExtractConfig, tmp_path: Path) -> None:
    """Every clip exactly once, bit for bit the store a plain serial extraction in this process writes
    (clips are encoded in batches of one shape, whatever the part size, worker or thread count)."""
    reference = tmp_path / "serial.zarr"
    extract(
        manifest_from_folder(videos, "videos"), reference, config.model_copy(update={"videos_per_part": 32})
    )
    got, want = LatentCache.open(store).read(), LatentCache.open(reference).read()
    keys = list(zip(got.clips["video_id"].to_pylist(), got.clips["clip_index"].to_pylist(), strict=True))
    assert len(keys) == len(set(keys)), "a clip appears twice"
    assert got.clips.select(["video_id", "clip_index"]).equals(want.clips.select(["video_id", "clip_index"]))
    assert got.videos["video_id"].to_pylist() == want.videos["video_id"].to_pylist()
    np.testing.assert_array_equal(got.motion, want.motion)
    np.testing.assert_array_equal(got.static, want.static)
    for name in ("clips", "static_clips", "videos"):
        assert getattr(got, name).equals(getattr(want, name)), name
    assert got.errors.num_rows == 0


class Killer(threading.Thread):
    """Kills (SIGKILL) the process of a Dask worker in the middle of a work unit: once a first part of
    `store` is complete and a unit has been executing on that worker for a while."""

    def __init__(self, cluster: Cluster, store: Path, after_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.cluster, self.store, self.after_s = cluster, store, after_s
        self.killed: tuple[str, str] | None = None  # (worker address, the task it was executing)
        self.stop = threading.Event()

    def run(self) -> None:
        from distributed import Client

        def executing(dask_worker: Any) -> list[str]:
            return [str(ts.key) for ts in dask_worker.state.executing]

        with Client(scheduler_file=str(self.cluster.scheduler_file), timeout=60, set_as_default=False) as c:
            pids = c.run(os.getpid)
            since: dict[tuple[str, str], float] = {}
            while not self.stop.is_set():
                now = time.monotonic()
                running = {
                    (w, k) for w, keys in c.run(executing).items() for k in keys if "extract_unit" in k
                }
                since = {wk: since.get(wk, now) for wk in running}
                parts = self.store / "parts"
                if parts.is_dir() and list(parts.glob("*/_complete.json")):
                    ripe = [wk for wk, t0 in since.items() if now - t0 >= self.after_s]
                    if ripe:
                        worker, key = ripe[0]
                        os.kill(pids[worker], signal.SIGKILL)
                        self.killed = (worker, key)
                        return
                time.sleep(0.05)


def test_worker_killed_mid_run_every_clip_once(
    cluster: Cluster, videos: Path, script_encoder: Path, tmp_path: Path
) -> None:
    """`aam-pipeline extract --dask-address`, one unit per video; a worker is killed (SIGKILL) in the
    middle of a unit. Its unit runs again elsewhere; the store ends with every clip exactly once."""
    store = tmp_path / "store.zarr"
    config = _config(script_encoder, device="cpu")
    killer = Killer(cluster, store)
    killer.start()
    try:
        result = CliRunner().invoke(
            app,
            [
                *("extract", "--videos", str(videos), "--out", str(store), "--encoder"),
                *(f"torchscript:{script_encoder}", "--crop", str(CROP), "--device", "cpu"),
                *("--static-frames", "2", "--videos-per-part", "1", "--dask-address", cluster.address),
            ],
        )
    finally:
        killer.stop.set()
        killer.join()
    assert result.exit_code == 0, result.output
    assert killer.killed is not None, "no worker was killed: the run ended before a second unit started"
    assert "6 inputs, 0 already complete, 6 extracted, 0 failed" in result.stdout, result.stdout
    assert not list((store / "parts").glob(".tmp-*")), "a dead writer's temporary part was left behind"
    _assert_same_as_serial(store, videos, config, tmp_path)


def test_gpu_units_run_only_on_gpu_workers(
    cluster: Cluster, videos: Path, script_encoder: Path, tmp_path: Path
) -> None:
    """Units annotated GPU=1 (here forced on, encoding on the CPU) go to the worker advertising it."""
    from flows.prefect_env import reporting
    from flows.prefect_extract import extract_flow

    store = tmp_path / "store.zarr"
    config = _config(script_encoder, device="cpu")
    gpu_worker = cluster.workers()["gpu"]
    with reporting():
        record = extract_flow(
            Source(kind="videos", path=str(videos)),
            str(store),
            config,
            DaskSettings(address=cluster.address, gpu=True),
        )
    assert record["cluster"]["gpu_units"] is True and record["cluster"]["gpu_workers"] == 1
    assert {u["worker"] for u in record["units"]} == {gpu_worker}
    assert record["ok"] == 6
    assert json.dumps(record["units"])  # manifests are small plain records, never arrays


def test_cuda_units_fail_fast_without_gpu_worker(videos: Path, script_encoder: Path, tmp_path: Path) -> None:
    """A cluster whose workers advertise no GPU: `--device cuda` stops at once with a clear line."""
    from distributed import LocalCluster

    store = tmp_path / "store.zarr"
    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as local:
        start = time.perf_counter()
        result = CliRunner().invoke(
            app,
            [
                "extract",
                "--videos",
                str(videos),
                "--out",
                str(store),
                "--encoder",
                f"torchscript:{script_encoder}",
                "--crop",
                str(CROP),
                "--device",
                "cuda",
                "--dask-address",
                local.scheduler_address,
            ],
        )
        seconds = time.perf_counter() - start
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "GPU" in lines[0] and "--resources GPU=1" in lines[0], result.stderr
    assert seconds < 15
    assert not store.exists()
