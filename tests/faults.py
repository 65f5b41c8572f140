"""Reusable fault injection: stop a stage right after its Nth write, as `kill -9` would, mount a full or
read-only filesystem, and count what a resumed store lost, duplicated or kept stale against a clean run.

Kill points: `python -m tests.faults STAGE N COUNT_FILE -- <aam-pipeline args>` runs the CLI in this
process with every write function of STAGE (`WRITES`) wrapped; after the Nth write returns the process
ends with `os._exit(137)` (no cleanup, no flush: what SIGKILL leaves). N = 0 kills nothing and writes the
number of writes to COUNT_FILE, so a test first counts the writes of a clean run and then kills at each.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

KILLED = 137  # the exit status a killed child reports here, as a shell shows SIGKILL

# The functions through which each stage changes the disk ("module:attribute.path").
WRITES: dict[str, list[str]] = {
    "extract": [
        "stores._fs:StoreRoot.write_json",
        "stores._fs:StoreRoot.write_table",
        "stores._parts:_write_array",
        "stores._fs:StoreRoot.rename_dir",
        "stores._fs:StoreRoot.remove_tree",
    ],
    "train-adapter": [
        "pathlib:Path.write_text",
        "pipeline.adapter.checkpoint:_write_durably",
        "os:replace",
    ],
    "anonymize": [
        "stores._published_extras:write_bytes",
        "stores._fs:StoreRoot.write_json",
        "stores._fs:StoreRoot.remove_tree",
        "stores._fs:StoreRoot.rename_dir",
        "stores._atomic:link_files",
        "stores._atomic:fsync_tree",
        "stores._atomic:exchange",
        "stores._atomic:fsync_dir",
        "stores.pseudonyms:_write_private",
    ],
}


def install(stage: str, stop_at: int, count_file: str) -> None:
    """Wrap the write functions of `stage`; end the process after write number `stop_at` (0: never)."""
    state = {"count": 0}
    for target in WRITES[stage]:
        module_name, path = target.split(":")
        owner: Any = importlib.import_module(module_name)
        *outer, name = path.split(".")
        for part in outer:
            owner = getattr(owner, part)
        original = getattr(owner, name)

        def wrapper(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            result = _original(*args, **kwargs)
            state["count"] += 1
            if state["count"] == stop_at:
                os._exit(KILLED)
            return result

        setattr(owner, name, wrapper)
    import atexit

    atexit.register(lambda: Path(count_file).write_text(str(state["count"])))


def run_killed(
    stage: str, stop_at: int, args: list[str], count_file: Path, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run `aam-pipeline ARGS` in a child process that stops after write `stop_at` (0: never)."""
    command = [sys.executable, "-m", "tests.faults", stage, str(stop_at), str(count_file), "--", *args]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)


def run_stage(stage: str, stop_at: int, args: list[str], count_file: Path, timeout: float = 300) -> int:
    """`run_killed`, asserting the child either finished or was stopped (no other exit, no traceback)."""
    done = run_killed(stage, stop_at, args, count_file, timeout)
    if done.returncode not in (0, KILLED) or "Traceback" in done.stderr:
        raise AssertionError(
            f"{stage} stopped at write {stop_at}: exit {done.returncode}\n{done.stderr[-3000:]}"
        )
    return done.returncode


@dataclass
class Damage:
    """What a resumed store holds wrong against a clean run's store (all must be 0)."""

    lost: int = 0  # clips of the clean run missing
    duplicated: int = 0  # clips served more than once
    stale: int = 0  # clips whose embedding differs from the clean run's (or that it does not have)

    def __add__(self, other: Damage) -> Damage:
        return Damage(self.lost + other.lost, self.duplicated + other.duplicated, self.stale + other.stale)


def _keyed(view: Any, table: str, rows: str, index: str) -> tuple[Counter[tuple[str, int]], dict[Any, bytes]]:
    columns = getattr(view, table)
    keys = list(zip(columns["video_id"].to_pylist(), columns[index].to_pylist(), strict=True))
    values = np.ascontiguousarray(getattr(view, rows))
    return Counter(keys), {k: values[i].tobytes() for i, k in enumerate(keys)}


def compare_views(clean: Any, resumed: Any) -> Damage:
    """Compare two `CacheView`s clip by clip (motion and static), embeddings bit for bit."""
    damage = Damage()
    for table, rows, index in (("clips", "motion", "clip_index"), ("static_clips", "static", "static_index")):
        clean_keys, clean_rows = _keyed(clean, table, rows, index)
        got_keys, got_rows = _keyed(resumed, table, rows, index)
        damage.lost += sum(1 for k in clean_keys if k not in got_keys)
        damage.duplicated += sum(n - 1 for n in got_keys.values() if n > 1)
        damage.stale += sum(1 for k, v in got_rows.items() if clean_rows.get(k) != v)
    return damage


# --- filesystems ---------------------------------------------------------------------------------------


def mount_tmpfs(target: Path, options: str) -> bool:
    """Mount a tmpfs at `target` (e.g. options "size=48k" or "size=1m,ro"); False where not permitted."""
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
    return done.returncode == 0


def umount(target: Path) -> None:
    subprocess.run(["umount", str(target)], capture_output=True, check=False)


@contextmanager
def tmpfs(target: Path, options: str) -> Iterator[Path | None]:
    """A tmpfs at `target` for the block, or None where this process may not mount (not root)."""
    if not mount_tmpfs(target, options):
        yield None
        return
    try:
        yield target
    finally:
        umount(target)


if __name__ == "__main__":
    stage, stop_at, count_file, separator, *cli_args = sys.argv[1:]
    assert separator == "--", "usage: python -m tests.faults STAGE N COUNT_FILE -- ARGS"
    install(stage, int(stop_at), count_file)
    from cli.main import app

    app(cli_args, prog_name="aam-pipeline")
