"""Fault injection over extract, train-adapter and anonymize: a kill at every write of each, two writers
of each at once, a full and a read-only filesystem under each, fixed / changed / removed inputs, and
every published byte scanned for what must never leave the private store. Prints a line per scenario
and one summary line of counts (recorded in docs/latent-cache.md, "Faults").

    python benchmarks/fault_injection.py [--out bench-out/faults] [--quick] [--only SCENARIO ...]

A kill runs the stage in a child process (`tests/faults.py`) that ends with os._exit(137), what
kill -9 leaves, right after its Nth write; a clean run first counts the stage's writes, then every write
(--quick: the first, middle and last) is killed at in turn. After each kill the stage is rerun and
compared with the clean run: extract's store clip by clip and bit for bit, the adapter's weights
checksum, the published rows and embeddings (and whether a glob reader sees unlisted rows).

Counts: faults injected, runs recovered (the rerun, or the refused writer's turn, completed as a clean
run would), clips lost, clips duplicated, stale clips served, raw rows published, private hits in
published bytes, tracebacks. Lost, duplicated, stale, raw, private and tracebacks must all be 0.
Filesystem faults need root (tmpfs mounts) and are skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults import KILLED, compare_views, run_killed  # noqa: E402

VIDEOS = 14  # of the tiny preset: every split and label, seconds to extract
BUSY = 2  # the exit status of a refused second writer (and of every one-line error)
Run = subprocess.CompletedProcess[str]


@dataclass
class Counts:
    faults: int = 0
    recovered: int = 0
    clips_lost: int = 0
    clips_duplicated: int = 0
    stale_clips: int = 0
    raw_rows_published: int = 0
    private_hits: int = 0
    tracebacks: int = 0
    skipped: str = ""

    def add(self, other: Counts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class Work:
    """The scenarios' shared inputs under one folder: the manifest, a clean store, adapter, publication."""

    def __init__(self, root: Path, quick: bool) -> None:
        self.root, self.quick = root, quick
        self.manifest = self._data()
        self.clean = root / "clean.zarr"
        self.adapter = root / "adapter"
        self.reference = root / "published-reference"
        self._count = root / "writes"
        self.writes: dict[str, int] = {}
        if not self.clean.exists():
            self.writes["extract"] = self.counted("extract", self.extract_args(self.manifest, self.clean))
        if not (self.adapter / "adapter.json").exists():
            self.writes["train-adapter"] = self.counted("train-adapter", self.train_args(self.adapter))
        if not self.reference.exists():
            self.writes["anonymize"] = self.counted("anonymize", self.anonymize_args(self.reference))

    def _data(self) -> Path:
        """A manifest of VIDEOS tiny-preset videos (every split, all labels), rendered once."""
        manifest = self.root / "data" / "small.parquet"
        if manifest.is_file():
            return manifest
        from flows.synth import synth_benchmark

        table = pq.read_table(synth_benchmark(self.root / "data", preset="tiny", seed=0).manifest)
        by_split: dict[str, list[int]] = {}
        for i, (task, split) in enumerate(
            zip(table["task"].to_pylist(), table["split"].to_pylist(), strict=True)
        ):
            if task == "action":
                by_split.setdefault(split, []).append(i)
        keep = by_split.get("train", [])[:6] + by_split.get("val", [])[:2] + by_split.get("test", [])[:6]
        pq.write_table(table.take(sorted(keep)[:VIDEOS]), manifest)
        return manifest

    def counted(self, stage: str, args: list[str]) -> int:
        """Run `stage` once without a kill; the number of writes it made."""
        done = run_killed(stage, 0, args, self._count)
        if done.returncode:
            raise SystemExit(f"the clean {stage} run failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        return int(self._count.read_text())

    def writes_of(self, stage: str, args: list[str]) -> int:
        if stage not in self.writes:
            scratch = self.root / f"count-{stage}"
            shutil.rmtree(scratch, ignore_errors=True)
            self.writes[stage] = self.counted(stage, args(scratch) if callable(args) else args)
            shutil.rmtree(scratch, ignore_errors=True)
        return self.writes[stage]

    def kill_points(self, stage: str, args: Callable[[Path], list[str]]) -> list[int]:
        n = self.writes_of(stage, args)
        return sorted({1, (n + 1) // 2, n}) if self.quick else list(range(1, n + 1))

    def extract_args(self, manifest: Path, store: Path) -> list[str]:
        return [
            "extract", "--manifest", str(manifest), "--out", str(store), "--static-frames", "2",
            "--videos-per-part", "4", "--decode-workers", "0", "--device", "cpu",
        ]  # fmt: skip

    def train_args(self, out: Path) -> list[str]:
        return [
            "train-adapter",
            "--store",
            str(self.clean),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--threads",
            "1",
        ]

    def anonymize_args(self, out: Path, *extra: str) -> list[str]:
        return [
            "anonymize", "--store", str(self.clean), "--adapter", str(self.adapter), "--out", str(out),
            "--no-gate", "--faiss-index", "flat", *extra,
        ]  # fmt: skip

    def run(self, args: list[str]) -> Run:
        return run_killed(args[0], 0, args, self._count)

    def popen(self, args: list[str]) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "tests.faults", args[0], "0", str(self.root / "unused"), "--", *args]
        return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def fresh(self, name: str) -> Path:
        path = self.root / name
        shutil.rmtree(path, ignore_errors=True)
        return path


def _tracebacks(*runs: Run | tuple[str, str]) -> int:
    texts = [r.stdout + r.stderr if isinstance(r, subprocess.CompletedProcess) else r[0] + r[1] for r in runs]
    return sum("Traceback" in t for t in texts)


def _one_line(run: Run) -> bool:
    """The run ended with exit 2 and one `error: ...` line, not a traceback."""
    lines = run.stderr.strip().splitlines()
    return run.returncode == BUSY and bool(lines) and lines[-1].startswith("error: ") and not _tracebacks(run)


def _store_damage(clean: Path, store: Path) -> Counts:
    from stores.latent_cache import LatentCache

    damage = compare_views(LatentCache.open(clean).read(), LatentCache.open(store).read())
    return Counts(clips_lost=damage.lost, clips_duplicated=damage.duplicated, stale_clips=damage.stale)


def _adapter_damage(work: Work, out: Path) -> Counts:
    """A rerun's adapter against the clean one: a different checksum serves stale weights."""
    from pipeline.adapter.checkpoint import adapter_checksum, load_adapter

    load_adapter(out, expect_encoder_id=None, expect_dim=None)
    return Counts(stale_clips=int(adapter_checksum(out) != adapter_checksum(work.adapter)))


def _published_damage(work: Work, out: Path) -> Counts:
    """Published rows and embeddings against the reference publication, and unlisted rows a glob sees."""
    from stores.published import read_published

    want_rows, want_emb = read_published(work.reference)
    rows, emb = read_published(out)
    ids = {(r["video_id"], r["clip_index"]) for r in rows.select(["video_id", "clip_index"]).to_pylist()}
    want = {
        (r["video_id"], r["clip_index"]) for r in want_rows.select(["video_id", "clip_index"]).to_pylist()
    }
    return Counts(
        clips_lost=len(want - ids),
        clips_duplicated=rows.num_rows - len(ids) + _glob_unlisted(out),
        stale_clips=int(emb.shape != want_emb.shape or not np.array_equal(emb, want_emb)),
    )


def _glob_unlisted(out: Path) -> int:
    """Rows a glob reader sees beyond those the manifests list (a half-committed publish)."""
    import duckdb

    from stores.published import published_partitions

    pattern = f"{out}/dataset=*/encoder=*/adapter=*/part-*.parquet"
    if not list(out.glob("dataset=*/encoder=*/adapter=*/part-*.parquet")):
        return 0
    seen = int(duckdb.sql(f"SELECT count(*) FROM read_parquet('{pattern}')").fetchall()[0][0])
    return abs(seen - sum(p.rows for p in published_partitions(out)))


# --- kills at every write ------------------------------------------------------------------------------


def _kills(
    work: Work, stage: str, args: Callable[[Path], list[str]], name: str, judge: Callable[[Path], Counts]
) -> Counts:
    counts = Counts()
    for at in work.kill_points(stage, args):
        target = work.fresh(f"{name}-kill-{at}")
        killed = run_killed(stage, at, args(target), work.root / "unused")
        counts.tracebacks += _tracebacks(killed)
        if killed.returncode != KILLED:
            continue  # finished before its Nth write (the count differs run to run): nothing injected
        counts.faults += 1
        again = work.run(args(target))
        counts.tracebacks += _tracebacks(again)
        if again.returncode == 0:
            counts.recovered += 1
            counts.add(judge(target))
        shutil.rmtree(target, ignore_errors=True)
    return counts


def extract_kills(work: Work) -> Counts:
    return _kills(
        work,
        "extract",
        lambda store: work.extract_args(work.manifest, store),
        "extract",
        lambda store: _store_damage(work.clean, store),
    )


def train_adapter_kills(work: Work) -> Counts:
    return _kills(work, "train-adapter", work.train_args, "adapter", lambda out: _adapter_damage(work, out))


def anonymize_kills(work: Work) -> Counts:
    return _kills(
        work, "anonymize", work.anonymize_args, "published", lambda out: _published_damage(work, out)
    )


def extract_inputs(work: Work) -> Counts:
    """A video that failed and is fixed, one whose file changes, one that is removed."""
    table = pq.read_table(work.manifest)
    folder = work.fresh("inputs")
    (folder / "videos").mkdir(parents=True)
    paths = []
    for p in table["path"].to_pylist():
        shutil.copy2(work.manifest.parent / p, folder / "videos" / Path(p).name)
        paths.append(f"videos/{Path(p).name}")
    table = table.set_column(table.column_names.index("path"), "path", pa.array(paths))
    manifest, store, reference = folder / "m.parquet", folder / "store.zarr", folder / "reference.zarr"
    pq.write_table(table, manifest)
    broken, changed, removed = (folder / p for p in paths[:3])
    good = broken.read_bytes()
    broken.write_bytes(good[: len(good) // 3])  # a truncated upload: the video fails
    runs = [work.run(work.extract_args(manifest, store))]
    broken.write_bytes(good)  # fixed
    shutil.copy2(folder / paths[3], changed)  # and another file replaced by other content
    runs.append(work.run(work.extract_args(manifest, store)))
    runs.append(work.run(work.extract_args(manifest, reference)))  # a clean run on the inputs as they are now
    counts = Counts(faults=2, recovered=2 * (runs[1].returncode == 0))
    counts.add(_store_damage(reference, store))
    removed.unlink()
    runs.append(work.run(work.extract_args(manifest, store)))
    from stores.latent_cache import LatentCache

    served = LatentCache.open(store).read().clips["video_id"].to_pylist()
    gone = table["video_id"][2].as_py()
    counts.faults += 1
    counts.recovered += runs[-1].returncode in (0, 3)  # 3: done, with videos that failed
    counts.stale_clips += served.count(gone)  # a removed file's old clips must not be served
    counts.tracebacks += _tracebacks(*runs)
    return counts


# --- two writers at once -------------------------------------------------------------------------------


def _two_writers(work: Work, first: list[str], second: list[str]) -> tuple[Counts, list[int]]:
    """Start both at once; a refused one (exit 2) runs again after. (counts, exit codes)."""
    procs = [work.popen(first), work.popen(second)]
    outs = [p.communicate(timeout=900) for p in procs]
    codes = [p.returncode for p in procs]
    counts = Counts(faults=1, tracebacks=_tracebacks(*outs))
    turns = [work.run(a) for a, c in zip((first, second), codes, strict=True) if c == BUSY]
    counts.tracebacks += _tracebacks(*turns)
    if all(c in (0, BUSY) for c in codes) and all(t.returncode == 0 for t in turns):
        counts.recovered += 1
    return counts, codes


def concurrent_extract(work: Work) -> Counts:
    """Two `extract` runs with different manifests (halves of one) on one store."""
    table = pq.read_table(work.manifest)
    halves = []
    for k, half in enumerate((table.slice(0, len(table) // 2), table.slice(len(table) // 2))):
        halves.append(work.manifest.parent / f"half{k}.parquet")
        pq.write_table(half, halves[-1])
    store = work.fresh("two-writers.zarr")
    counts, _ = _two_writers(work, *(work.extract_args(h, store) for h in halves))
    counts.add(_store_damage(work.clean, store))
    return counts


def concurrent_train_adapter(work: Work) -> Counts:
    out = work.fresh("adapter-two")
    counts, _ = _two_writers(work, work.train_args(out), work.train_args(out))
    counts.add(_adapter_damage(work, out))
    return counts


def concurrent_anonymize(work: Work) -> Counts:
    """Two publishes of one partition at once, then two appends to it at once."""
    out = work.fresh("published-two")
    total = Counts()
    for _ in ("new", "append"):
        counts, _codes = _two_writers(work, work.anonymize_args(out), work.anonymize_args(out))
        counts.add(_published_damage(work, out))
        total.add(counts)
    return total


# --- full and read-only filesystems --------------------------------------------------------------------


@contextmanager
def _mounted(target: Path, options: str) -> Iterator[bool]:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
    try:
        yield done.returncode == 0
    finally:
        if done.returncode == 0:
            subprocess.run(["umount", str(target)], capture_output=True, check=False)


def _filesystems(
    work: Work, name: str, args: Callable[[Path], list[str]], full: str, judge: Callable[[Path], Counts]
) -> Counts:
    """The stage writing into a full tmpfs (then room is made and it reruns) and a read-only one."""
    counts = Counts()
    for kind, options in (("full", f"size={full}"), ("read-only", "size=1m,ro")):
        target = work.root / f"fs-{name}-{kind}"
        with _mounted(target, options) as mounted:
            if not mounted:
                counts.skipped = f"{name} filesystems (cannot mount a tmpfs: needs root); "
                return counts
            run = work.run(args(target / "out"))
            counts.faults += 1
            counts.tracebacks += _tracebacks(run)
            if not _one_line(run):
                continue
            if kind == "read-only":
                counts.recovered += 1  # nothing to recover: one line, nothing written
                continue
            subprocess.run(["mount", "-o", "remount,size=256m", str(target)], check=True)  # room made
            again = work.run(args(target / "out"))
            counts.tracebacks += _tracebacks(again)
            if again.returncode == 0:
                counts.recovered += 1
                counts.add(judge(target / "out"))
    return counts


def extract_filesystems(work: Work) -> Counts:
    return _filesystems(
        work,
        "extract",
        lambda store: work.extract_args(work.manifest, store),
        "64k",
        lambda store: _store_damage(work.clean, store),
    )


def train_adapter_filesystems(work: Work) -> Counts:
    return _filesystems(work, "train-adapter", work.train_args, "8k", lambda out: _adapter_damage(work, out))


def anonymize_filesystems(work: Work) -> Counts:
    return _filesystems(
        work, "anonymize", work.anonymize_args, "48k", lambda out: _published_damage(work, out)
    )


# --- what the published folder holds -------------------------------------------------------------------


def published_scan(work: Work) -> Counts:
    """A publication with a Zarr copy, scanned by `scan_published`."""
    published = work.fresh("published-scan")
    run = work.run(work.anonymize_args(published, "--zarr-copy"))
    counts = scan_published(published, work.clean, work.root)
    counts.tracebacks += _tracebacks(run)
    return counts


def scan_published(published: Path, store: Path, private_root: Path) -> Counts:
    """Every published byte (Parquet, card, manifest, faiss index, Zarr copy) against private column
    names and values, source paths (and `private_root`), original ids and raw embeddings; and every
    published row against the raw cache's rows (within 1e-4 relative distance of one counts as raw)."""
    from stores.latent_cache import LatentCache
    from stores.published import read_published

    view = LatentCache.open(store).read()
    private = [c for c in view.videos.column_names if c.startswith("private_")]
    anywhere = {b"private_", str(private_root).encode(), b".mp4", *(c.encode() for c in private)}
    values: set[bytes] = set()
    for column in ("video_id", "path", *private):
        if column in view.videos.column_names:
            values |= {str(v).encode() for v in view.videos[column].to_pylist() if len(str(v)) >= 4}
    # A value counts as a whole word: a pattern named "checks" inside zarr's "checksum" is no leak.
    patterns = [re.compile(re.escape(n)) for n in anywhere]
    patterns += [re.compile(rb"(?<![A-Za-z0-9_])" + re.escape(v) + rb"(?![A-Za-z0-9_])") for v in values]
    raw_rows = np.concatenate([view.motion, view.static]).astype(np.float32)
    raw_bytes = {r.tobytes()[:16] for r in raw_rows}
    counts = Counts()
    for path in (p for p in published.rglob("*") if p.is_file() and not p.name.startswith(".lock-")):
        data = path.read_bytes()
        counts.private_hits += sum(bool(p.search(data)) for p in patterns)
        counts.raw_rows_published += sum(r in data for r in raw_bytes)
    _, emb = read_published(published)
    distance = np.linalg.norm(emb[:, None, :] - raw_rows[None, :, :], axis=2).min(axis=1)
    counts.raw_rows_published += int((distance <= 1e-4 * np.linalg.norm(emb, axis=1)).sum())
    return counts


SCENARIOS: dict[str, Callable[[Work], Counts]] = {
    "extract-kills": extract_kills,
    "extract-inputs": extract_inputs,
    "concurrent-extract": concurrent_extract,
    "extract-filesystems": extract_filesystems,
    "train-adapter-kills": train_adapter_kills,
    "concurrent-train-adapter": concurrent_train_adapter,
    "train-adapter-filesystems": train_adapter_filesystems,
    "anonymize-kills": anonymize_kills,
    "concurrent-anonymize": concurrent_anonymize,
    "anonymize-filesystems": anonymize_filesystems,
    "published-scan": published_scan,
}


def summary(counts: Counts) -> str:
    line = (
        f"faults injected {counts.faults}, runs recovered {counts.recovered}, "
        f"clips lost {counts.clips_lost}, clips duplicated {counts.clips_duplicated}, "
        f"stale clips served {counts.stale_clips}, "
        f"raw rows published {counts.raw_rows_published}, private hits {counts.private_hits}, "
        f"tracebacks {counts.tracebacks}"
    )
    return line + (f"; skipped: {counts.skipped.rstrip('; ')}" if counts.skipped else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "faults", help="work folder")
    parser.add_argument("--quick", action="store_true", help="three kill points per stage, not every write")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these scenarios")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Work(args.out.resolve(), args.quick)
    total = Counts()
    for name, scenario in SCENARIOS.items():
        if args.only and name not in args.only:
            continue
        started = time.perf_counter()
        counts = scenario(work)
        total.add(counts)
        print(f"{name:26s} {summary(counts)} ({time.perf_counter() - started:.0f} s)", flush=True)
    print(summary(total))
    bad = total.clips_lost + total.clips_duplicated + total.stale_clips + total.raw_rows_published
    return int(bool(bad + total.private_hits + total.tracebacks) or total.recovered < total.faults)


if __name__ == "__main__":
    sys.exit(main())
