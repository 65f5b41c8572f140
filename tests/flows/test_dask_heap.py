"""Dask workers keep freed memory as `extract` does: the nanny's MALLOC_TRIM_THRESHOLD_ is left out of
local workers' environment and dropped on workers started elsewhere (flows/dask_cluster.py)."""

from __future__ import annotations

import os

import pytest

from flows import cpu, dask_cluster
from flows.dask_cluster import HEAP_TRIM, DaskSettings, keep_heap_on_worker


@pytest.fixture
def kept(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Calls of keep_freed_memory (stubbed: the real one changes this process for good)."""
    calls: list[bool] = []
    monkeypatch.setattr(cpu, "keep_freed_memory", lambda: calls.append(HEAP_TRIM not in os.environ) or True)
    return calls


def test_the_nannys_trim_threshold_is_dropped_on_a_worker(
    monkeypatch: pytest.MonkeyPatch, kept: list[bool]
) -> None:
    import distributed

    monkeypatch.setenv(HEAP_TRIM, "65536")  # what a nanny sets by default
    monkeypatch.setattr(distributed, "get_worker", lambda: object())
    assert keep_heap_on_worker() is True
    assert HEAP_TRIM not in os.environ and kept == [True]


def test_a_users_own_setting_stays(monkeypatch: pytest.MonkeyPatch, kept: list[bool]) -> None:
    import distributed

    def no_worker() -> object:
        raise ValueError("No worker found")

    monkeypatch.setenv(HEAP_TRIM, "65536")
    monkeypatch.setattr(distributed, "get_worker", no_worker)  # the same value, outside a worker
    keep_heap_on_worker()
    assert os.environ[HEAP_TRIM] == "65536"
    monkeypatch.setattr(distributed, "get_worker", lambda: object())
    monkeypatch.setenv(HEAP_TRIM, "131072")  # another value, on a worker
    keep_heap_on_worker()
    assert os.environ[HEAP_TRIM] == "131072" and kept == [False, False]


@pytest.mark.slow
def test_local_workers_start_without_the_trim_threshold() -> None:
    from distributed import get_client

    with dask_cluster.dask_cluster(DaskSettings(workers=1), device="cpu"):
        environ = get_client().run(lambda: dict(os.environ))
    (worker_env,) = environ.values()
    assert HEAP_TRIM not in worker_env
    assert worker_env.get("OMP_NUM_THREADS") == "1"  # the nanny's other settings stay
