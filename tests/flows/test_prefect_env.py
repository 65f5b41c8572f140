"""The temporary Prefect server a run starts when none is configured."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from flows import prefect_env


class FakeServer:
    """Stands in for Prefect's SubprocessASGIServer: records the settings it was started under."""

    started_with: ClassVar[list[bool]] = []

    def __init__(self) -> None:
        self.running = False
        self.api_url = "http://127.0.0.1:1/api"

    def start(self, timeout: int) -> None:
        from prefect.settings import PREFECT_SERVER_ANALYTICS_ENABLED

        assert timeout >= prefect_env.MIN_STARTUP_TIMEOUT_S
        FakeServer.started_with.append(bool(PREFECT_SERVER_ANALYTICS_ENABLED.value()))
        self.running = True


def test_the_temporary_server_sends_no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.server.api import server
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings

    monkeypatch.setattr(server, "SubprocessASGIServer", FakeServer)
    monkeypatch.setattr(prefect_env, "configured_api_url", lambda: None)
    monkeypatch.setattr(prefect_env.atexit, "register", lambda *a: None)
    monkeypatch.delenv(prefect_env.ANALYTICS, raising=False)
    FakeServer.started_with = []
    ambient: dict[Any, Any] = {PREFECT_SERVER_ANALYTICS_ENABLED: True}
    with temporary_settings(updates=ambient):  # as on a machine where nobody turned it off
        with prefect_env.prefect_api() as (url, embedded):
            assert (url, embedded) == ("http://127.0.0.1:1/api", True)
            assert PREFECT_API_URL.value() == url
        assert PREFECT_SERVER_ANALYTICS_ENABLED.value() is True  # only the server's start was changed
    assert FakeServer.started_with == [False]
