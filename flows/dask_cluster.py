"""The Dask cluster that extraction work units run on: a running scheduler (`address`) or a local one
started for the run (`workers`), and the GPU check that runs before any work is submitted.

GPU workers advertise a `GPU=1` resource (`dask worker --resources GPU=1`); GPU work units are
annotated with it, so each GPU runs one unit at a time. A unit annotated with a resource no worker has
waits forever in Dask, so `check_gpu` refuses such a run up front. Guide: docs/orchestration.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.errors import ConfigError

GPU = "GPU"
# Worker processes must be allowed children: each work unit decodes in its own processes.
NOT_DAEMONIC = {"distributed.worker.daemon": False}
# A nanny starts its worker with MALLOC_TRIM_THRESHOLD_=65536 (distributed.nanny.pre-spawn-environ), to
# hand freed memory back to the OS after many small tasks. A work unit allocates and frees the same
# large buffers for every batch: with that setting (which also switches off flows.cpu.keep_freed_memory,
# as a user's MALLOC_* setting does), 2 local workers spent 255 s of 665 s of extraction CPU in the
# kernel, page-faulting them back in (docs/orchestration.md).
NANNY_ENVIRON = "distributed.nanny.pre-spawn-environ"
HEAP_TRIM = "MALLOC_TRIM_THRESHOLD_"

logger = logging.getLogger(__name__)


class DaskSettings(BaseModel):
    """Where extraction work units run: nowhere special (None, None: in the flow's process), on the
    scheduler at `address`, or on `workers` local worker processes started for the run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str | None = Field(None, description="tcp://HOST:PORT of a running dask scheduler")
    workers: int | None = Field(None, ge=1, description="start a local cluster of this many processes")
    gpu: bool | None = Field(
        None,
        description="units need a GPU worker; None = when the device asks for CUDA, or with device "
        "auto when the cluster has GPU workers",
    )
    wait_for_workers_s: float = Field(30.0, gt=0, description="how long to wait for a first worker")

    @model_validator(mode="after")
    def _one_cluster(self) -> DaskSettings:
        if self.address is not None and self.workers is not None:
            raise ValueError("give --dask-address or --dask-workers, not both")
        return self

    @property
    def enabled(self) -> bool:
        return self.address is not None or self.workers is not None


@dataclass(frozen=True)
class ClusterInfo:
    """What the run needs to know about its cluster."""

    address: str
    workers: int
    gpu_workers: int  # workers advertising a GPU resource
    local: bool  # started for this run


def wants_cuda(device: str) -> bool | None:
    """True when `device` names CUDA, False for the CPU, None for `auto` (decided by the hardware)."""
    if device.startswith("cuda"):
        return True
    return None if device == "auto" else False


def local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def gpu_units(settings: DaskSettings, device: str, cluster: ClusterInfo) -> bool:
    """Whether work units are annotated with GPU=1 on `cluster`; ConfigError (before anything is
    submitted) when they need a GPU worker and the cluster has none."""
    need = settings.gpu if settings.gpu is not None else wants_cuda(device)
    if need is None:  # device auto: use the GPUs the cluster has
        return cluster.gpu_workers > 0
    if need and cluster.gpu_workers == 0:
        where = "this machine has no CUDA device" if cluster.local else "no worker advertises one"
        raise ConfigError(
            f"GPU work units need a worker with a {GPU} resource and the dask cluster at {cluster.address} "
            f"has none among its {cluster.workers} worker(s) ({where}); start GPU workers with "
            f"`dask worker {cluster.address} --resources {GPU}=1`, or pass --device cpu"
        )
    return need


def inspect(client: Any, local: bool) -> ClusterInfo:
    """Workers and GPU workers of the cluster `client` is connected to."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    gpu = sum(1 for w in workers.values() if (w.get("resources") or {}).get(GPU, 0) >= 1)
    return ClusterInfo(address=client.scheduler.address, workers=len(workers), gpu_workers=gpu, local=local)


@contextlib.contextmanager
def dask_cluster(settings: DaskSettings, device: str = "auto") -> Iterator[ClusterInfo]:
    """Connect to the scheduler at `settings.address`, or start `settings.workers` local worker
    processes (one thread each; GPU=1 each when the device asks for CUDA and this machine has GPUs) for
    the duration of the block. ConfigError when nothing answers or no worker joins in time."""
    import dask
    from distributed import Client, LocalCluster

    if not settings.enabled:
        raise ConfigError("no dask cluster configured; pass --dask-address or --dask-workers")
    environ = {k: v for k, v in dask.config.get(NANNY_ENVIRON, {}).items() if k != HEAP_TRIM}
    with dask.config.set({**NOT_DAEMONIC, NANNY_ENVIRON: environ}):
        if settings.workers is not None:
            n, resources = settings.workers, None
            cuda = wants_cuda(device) if settings.gpu is None else settings.gpu
            gpus = local_gpus() if cuda is not False else 0
            if gpus:
                n, resources = min(n, gpus), {GPU: 1}
            with _quiet("distributed"):
                cluster = LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    resources=resources,
                    dashboard_address=":0",
                    silence_logs=logging.WARNING,
                )
                with cluster, Client(cluster) as client:
                    yield inspect(client, local=True)
            return
        assert settings.address is not None
        try:
            client = Client(settings.address, timeout=settings.wait_for_workers_s)
        except OSError as err:
            raise ConfigError(
                f"no dask scheduler answers at {settings.address} ({err}); start one with "
                "`dask scheduler` or check --dask-address"
            ) from None
        with client:
            try:
                client.wait_for_workers(1, timeout=settings.wait_for_workers_s)
            except TimeoutError:
                raise ConfigError(
                    f"the dask scheduler at {settings.address} has no worker (waited "
                    f"{settings.wait_for_workers_s:.0f} s); start one with `dask worker {settings.address}`"
                ) from None
            info = inspect(client, local=False)
        yield info


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Warnings and errors only from logger `name` for the block (a local cluster's scheduler and
    nannies log every worker and client they see)."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def worker_device(device: str) -> str:
    """The device a work unit uses on this Dask worker: with several local GPUs and no
    CUDA_VISIBLE_DEVICES, worker k of a local cluster takes GPU k (each has GPU=1)."""
    if device not in ("auto", "cuda") or os.environ.get("CUDA_VISIBLE_DEVICES"):
        return device
    try:
        from distributed import get_worker

        worker = get_worker()
    except ValueError:  # not on a dask worker
        return device
    if worker.state.total_resources.get(GPU, 0) < 1 or not isinstance(worker.name, int):
        return device
    gpus = local_gpus()
    return f"cuda:{worker.name % gpus}" if gpus > 1 else device


def keep_heap_on_worker() -> bool:
    """`flows.cpu.keep_freed_memory` in this process, also on a Dask worker whose nanny set its default
    MALLOC_TRIM_THRESHOLD_ (workers started with `dask worker`): that setting is dropped from this
    process's environment first, so the decode processes it starts keep freed memory too. A value that
    is not the nanny's stays, and wins. True when in effect."""
    import dask

    from flows.cpu import keep_freed_memory

    nanny = (dask.config.get(NANNY_ENVIRON, None) or {}).get(HEAP_TRIM)
    if nanny is not None and os.environ.get(HEAP_TRIM) == str(nanny):
        try:
            from distributed import get_worker

            get_worker()
            del os.environ[HEAP_TRIM]
        except ValueError:  # not on a dask worker: the user's own setting
            pass
    return keep_freed_memory()


def host_share() -> int:
    """The cores one unit may use here: this machine's cores divided among the Dask workers running on
    it (all of them outside a Dask worker)."""
    cores = os.cpu_count() or 1
    try:
        from distributed import get_client, get_worker

        worker = get_worker()
    except ValueError:  # not on a dask worker
        return cores
    try:
        workers = get_client().scheduler_info(n_workers=-1)["workers"].values()
    except (OSError, TimeoutError) as err:
        logger.warning("could not list the Dask workers on this host (%s); assuming one", err)
        return cores
    peers = sum(1 for w in workers if w.get("host") == worker.ip)
    return max(1, cores // max(1, peers))


def preflight(dask: DaskSettings, device: str) -> ClusterInfo | None:
    """Check the Dask cluster before Prefect starts: a scheduler that answers, a worker, a GPU worker
    when units need one. ConfigError, in seconds, otherwise."""
    if dask.address is None:
        need = dask.gpu if dask.gpu is not None else wants_cuda(device)
        if dask.workers is not None and need and not local_gpus():
            raise ConfigError(
                f"--dask-workers with GPU work units (--device {device}) needs a CUDA device on this "
                "machine; pass --device cpu or --dask-address of a cluster with GPU workers"
            )
        return None
    with dask_cluster(dask, device) as cluster:
        gpu_units(dask, device, cluster)
    return cluster
