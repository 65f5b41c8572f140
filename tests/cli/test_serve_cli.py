"""`aam-pipeline serve`: a refresh picks up videos added to the watched manifest and publishes only
those (`--once`, embedded); no server configured (exit 2); and (slow) the scheduled deployment on a
real `prefect server start`, whose schedule survives a restart of the serving process."""

from __future__ import annotations

import os

# Before Prefect is imported anywhere: no analytics, time for a first server start on 2 busy cores.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from flows.orchestrate import stage_available
from stores.latent_cache import LatentCache
from tests.cli.test_run_cli import encoder_args, invoke, labelled, write_rows

__all__ = ["labelled"]  # the session fixture, shared with test_run_cli

EXE = Path(sys.executable).with_name("aam-pipeline")


def published_videos(work: Path) -> set[str]:
    """The owner's ids of the published videos (published ids are pseudonyms under the store's key)."""
    import pyarrow.parquet as pq

    from stores.pseudonyms import default_key_location, load_key, pseudonym

    files = list((work / "published").glob("dataset=*/encoder=*/adapter=*/part-*.parquet"))
    published = {v for f in files for v in pq.read_table(f, columns=["video_id"])["video_id"].to_pylist()}
    store = work / "latents.zarr"
    key = load_key(default_key_location(str(store)), create=False)
    ids = LatentCache.open(store).read(arrays=False).videos["video_id"].to_pylist()
    return {v for v in ids if pseudonym(key, v) in published}


def test_help_has_examples() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    for text in ("--cron", "--interval", "--once", "--workdir", "PREFECT_API_URL", "Examples", "Exits 2"):
        assert text in result.output


def test_serve_without_a_prefect_server_exits_2(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    (tmp_path / "v").mkdir()
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        result = invoke("serve", "--videos", tmp_path / "v", "--workdir", tmp_path / "w")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "prefect server start" in lines[0] and "PREFECT_API_URL" in lines[0]


def test_a_prefect_server_that_does_not_answer_exits_2(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    (tmp_path / "v").mkdir()
    dead = f"http://127.0.0.1:{_free_port()}/api"
    with temporary_settings(updates={PREFECT_API_URL: dead}):
        for verb in ("serve", "run"):
            result = invoke(verb, "--videos", tmp_path / "v", "--workdir", tmp_path / "w")
            assert result.exit_code == 2, result.output
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and dead in lines[0] and "does not answer" in lines[0], result.stderr


def test_refresh_picks_up_added_videos_and_publishes_only_those(
    labelled: tuple[Path, list[dict[str, object]]], script_encoder: Path, tmp_path: Path
) -> None:
    _, rows = labelled
    manifest = tmp_path / "watched.parquet"
    work = tmp_path / "work"
    args = ["serve", "--once", "--manifest", manifest, "--workdir", work, *encoder_args(script_encoder)]
    args += ["--epochs", "2", "--videos-per-part", "8", "--no-gate"]  # a 2-epoch adapter is not private

    write_rows(rows[:30], manifest)
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    stages = json.loads((work / "run.json").read_text())["stages"]
    assert set(stages) == {"extract", "train-adapter", "anonymize"}  # no probe/report when serving
    assert stages["extract"]["ok"] == 30
    adapter = (work / "adapter" / "adapter.json").read_bytes() if stage_available("anonymize") else b""
    if stage_available("anonymize"):
        assert len(published_videos(work)) == 30

    write_rows(rows, manifest)  # six new videos arrive
    second = invoke(*args)
    assert second.exit_code == 0, second.output
    stages = json.loads((work / "run.json").read_text())["stages"]
    assert (stages["extract"]["ok"], stages["extract"]["skipped"], stages["extract"]["units"]) == (6, 30, 1)
    assert LatentCache.open(work / "latents.zarr").read(arrays=False).videos.num_rows == 36
    if stage_available("anonymize"):
        assert stages["train-adapter"]["kept"] is True
        assert (work / "adapter" / "adapter.json").read_bytes() == adapter  # the adapter is kept
        assert (stages["anonymize"]["videos_added"], stages["anonymize"]["videos_skipped"]) == (6, 30)
        assert published_videos(work) == {str(r["video_id"]) for r in rows}


# --- a real Prefect server --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate: Callable[[], Any], timeout: float, what: str, logs: list[Path]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """`prefect server start` with its own PREFECT_HOME; yields the environment that points at it."""
    port = _free_port()
    env = os.environ | {
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PREFECT_UI_ENABLED": "false",
    }
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", "127.0.0.1",
             "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        import httpx

        def healthy() -> bool:
            try:
                return httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(healthy, 180, "the Prefect server", [log])
        yield env
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _serve(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([str(EXE), *args], stdout=out, stderr=subprocess.STDOUT, env=env)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _deployment(env: dict[str, str], name: str) -> dict[str, Any] | None:
    import httpx

    response = httpx.get(f"{env['PREFECT_API_URL']}/deployments/name/aam-refresh/{name}", timeout=10)
    return response.json() if response.status_code == 200 else None


@pytest.mark.slow
def test_scheduled_runs_pick_up_new_videos_and_survive_a_restart(
    prefect_server: dict[str, str],
    labelled: tuple[Path, list[dict[str, object]]],
    script_encoder: Path,
    tmp_path: Path,
) -> None:
    _, rows = labelled
    manifest = tmp_path / "watched.parquet"
    work = tmp_path / "work"
    settings = tmp_path / "serve.yaml"
    settings.write_text("stages: [extract]\nextract:\n  static_frames: 2\n")  # the scheduling is tested here
    args = [
        "serve",
        "--manifest",
        str(manifest),
        "--workdir",
        str(work),
        "--name",
        "watch",
        "--interval",
        "10",
    ]
    args += [*encoder_args(script_encoder), "--config", str(settings)]
    log = tmp_path / "serve.log"
    write_rows(rows[:6], manifest)

    def videos_done() -> int:
        try:
            return LatentCache.open(work / "latents.zarr").read(arrays=False).videos.num_rows
        except Exception:  # not created yet, or being created
            return 0

    serving = _serve(args, prefect_server, log)
    try:
        _wait(lambda: videos_done() == 6, 240, "the first scheduled run", [log])
    finally:
        _stop(serving)
    deployment = _deployment(prefect_server, "watch")
    assert deployment is not None
    assert not deployment["paused"] and all(s["active"] for s in deployment["schedules"]), deployment

    write_rows(rows[:9], manifest)  # three new videos arrive while nothing serves
    serving = _serve(args, prefect_server, log)
    try:
        _wait(lambda: videos_done() == 9, 240, "a scheduled run after the restart", [log])
    finally:
        _stop(serving)
    record = json.loads((work / "run.json").read_text())
    assert record["stages"]["extract"]["ok"] == 3 or record["stages"]["extract"]["skipped"] == 9
