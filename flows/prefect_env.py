"""Which Prefect API a run reports to: the server `PREFECT_API_URL` names (a profile setting counts),
or, with none configured, a temporary local server started for this process (embedded mode).

Prefect starts such a temporary server by itself on the first flow run, but only for the process
that asks: every Dask worker process would start its own. Starting it here and entering its URL into
the settings context means that the work units, wherever they run on this machine, report to the
same one (prefect-dask ships the settings context with each task)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, PipelineError
from stores.errors import StoreError

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State, TaskRun
    from prefect.tasks import Task

logger = logging.getLogger(__name__)

# A first start on a fresh PREFECT_HOME creates the database: 15-30 s on 2 busy cores, more than
# Prefect's default timeout of 20 s.
MIN_STARTUP_TIMEOUT_S = 120
ANALYTICS = "PREFECT_SERVER_ANALYTICS_ENABLED"  # a value the user set wins


def configured_api_url() -> str | None:
    """PREFECT_API_URL from the environment or the active Prefect profile; None when unset."""
    from prefect.settings import PREFECT_API_URL

    value = PREFECT_API_URL.value()
    return str(value) if value else None


def check_server(url: str, timeout_s: float = 10.0) -> None:
    """ConfigError, in seconds, when the Prefect API at `url` does not answer its health check."""
    import httpx

    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as err:
        raise ConfigError(
            f"the Prefect server at PREFECT_API_URL={url} does not answer ({type(err).__name__}: {err}); "
            "start it (`prefect server start`), or unset PREFECT_API_URL to run embedded"
        ) from None


@contextlib.contextmanager
def prefect_api() -> Iterator[tuple[str, bool]]:
    """Yield (API URL, embedded): the configured server, or a temporary local one (embedded = True),
    active in the settings context for the block. The temporary server stops when the process exits,
    so one process running several flows starts it once."""
    url = configured_api_url()
    if url:
        check_server(url)
        yield url, False
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    server = SubprocessASGIServer()
    if not server.running:
        timeout = max(int(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()), MIN_STARTUP_TIMEOUT_S)
        # The server's usage telemetry: nothing of a privacy tool's runs leaves the machine unasked, and
        # its heartbeat, writing while the first flow run does, printed a "database is locked" traceback.
        quiet = {} if ANALYTICS in os.environ else {PREFECT_SERVER_ANALYTICS_ENABLED: False}
        with temporary_settings(updates=quiet):
            server.start(timeout=timeout)
        # Runs before Prefect's own exit hook (registered first): stop it without the log line that
        # fails when the console is already closed (test runners, CliRunner).
        atexit.register(_stop_quietly, server)
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield server.api_url, True


def _stop_quietly(server: Any) -> None:
    logging.getLogger("prefect").disabled = True
    server.stop()


@contextlib.contextmanager
def reporting() -> Iterator[None]:
    """`prefect_api()` for a block of flow calls, saying where their runs go."""
    with prefect_api() as (url, embedded):
        logger.info("reporting to %s Prefect server at %s", "a temporary" if embedded else "the", url)
        yield


def transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """A task's `retry_condition_fn`: retry unless the failure is the project's own verdict on the
    input or settings (the same on every try)."""
    return not isinstance(getattr(state, "data", None), PipelineError | StoreError)
