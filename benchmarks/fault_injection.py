"""Fault injection over extract and anonymize: kill -9 at every write, two writers at once, a full and a
read-only filesystem, fixed / changed / removed inputs, and every published byte scanned for what must
never leave the private store. Prints one summary line of counts (docs/latent-cache.md, "Faults").

    python benchmarks/fault_injection.py [--out bench-out/faults] [--quick]

Each kill runs the stage in a child process that dies (os._exit(137), what kill -9 leaves) at its Nth
write; the stage is then rerun and compared with a clean run. Counts: faults injected, runs recovered,
clips lost, clips duplicated, stale clips served, raw rows published, private hits in published bytes,
tracebacks. Filesystem faults need root (tmpfs mounts) and are skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "cli.main"]
VIDEOS = 14  # of the tiny preset: enough for every split and label, seconds to extract
EXTRACT = {"encoder": "tiny", "static_frames": 2, "videos_per_part": 4, "decode_workers": 0, "device": "cpu"}
# The functions through which extract and publish change files: a child dies at the Nth call of any.
WRITES = (
    "stores.latent_cache.LatentCache.write_part",
    "stores._fs.StoreRoot.write_json",
    "stores._fs.StoreRoot.write_table",
    "stores._fs.StoreRoot.remove_tree",
    "stores._published_extras.write_bytes",
    "stores._atomic.link_files",
    "stores._atomic.exchange",
)


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
            if f.name != "skipped":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


# --- children that die at their Nth write --------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import importlib, os, sys
    kill_at, stage, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    calls = [0]

    def wrap(function):
        def killing(*a, **k):
            calls[0] += 1
            if calls[0] == kill_at:
                os._exit(137)
            return function(*a, **k)
        return killing

    for name in WRITES:
        module, _, attr = name.rpartition(".")
        try:
            owner = importlib.import_module(module)
        except ModuleNotFoundError:
            module, _, cls = module.rpartition(".")
            owner = getattr(importlib.import_module(module), cls)
        if hasattr(owner, attr):
            setattr(owner, attr, wrap(getattr(owner, attr)))
    from cli.main import app
    sys.argv = ["aam-pipeline", stage, *args]
    app()
    """
)


def _child(kill_at: int, stage: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    code = f"WRITES = {WRITES!r}\n{CHILD}"
    return subprocess.run(
        [sys.executable, "-c", code, str(kill_at), stage, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def _tracebacks(*runs: subprocess.CompletedProcess[str]) -> int:
    return sum("Traceback" in (r.stderr + r.stdout) for r in runs)


# --- data ----------------------------------------------------------------------------------------------


def _data(work: Path) -> Path:
    """A manifest of VIDEOS tiny-preset videos (every split, all labels), rendered once."""
    manifest = work / "data" / "small.parquet"
    if manifest.is_file():
        return manifest
    from flows.synth import synth_benchmark

    synth = synth_benchmark(work / "data", preset="tiny", seed=0)
    table = pq.read_table(synth.manifest)
    trimmed = [i for i, t in enumerate(table["task"].to_pylist()) if t == "action"]
    by_split: dict[str, list[int]] = {}
    for i in trimmed:
        by_split.setdefault(table["split"][i].as_py(), []).append(i)
    keep = sorted(by_split.get("train", [])[:6] + by_split.get("val", [])[:2] + by_split.get("test", [])[:6])
    pq.write_table(table.take(keep[:VIDEOS]), manifest)
    return manifest


def _extract_args(manifest: Path, store: Path) -> list[str]:
    args = [
        "--manifest",
        str(manifest),
        "--out",
        str(store),
        "--static-frames",
        str(EXTRACT["static_frames"]),
    ]
    return [*args, "--videos-per-part", str(EXTRACT["videos_per_part"]), "--device", "cpu"]


def _keys(
    store: Path,
) -> tuple[Counter[tuple[str, int]], Counter[tuple[str, int]], dict[tuple[str, int], bytes]]:
    from stores.latent_cache import LatentCache

    view = LatentCache.open(store).read()
    motion = list(zip(view.clips["video_id"].to_pylist(), view.clips["clip_index"].to_pylist(), strict=True))
    static = list(
        zip(
            view.static_clips["video_id"].to_pylist(),
            view.static_clips["static_index"].to_pylist(),
            strict=True,
        )
    )
    emb = {k: view.motion[i].tobytes() for i, k in enumerate(motion)}
    emb |= {("static", *k): view.static[i].tobytes() for i, k in enumerate(static)}  # type: ignore[misc]
    return Counter(motion), Counter(static), emb


def _compare(clean: Path, store: Path) -> Counts:
    want_m, want_s, want_e = _keys(clean)
    got_m, got_s, got_e = _keys(store)
    counts = Counts()
    for want, got in ((want_m, got_m), (want_s, got_s)):
        counts.clips_lost += sum((want - got).values())
        counts.clips_duplicated += sum(c - 1 for c in got.values() if c > 1)
    counts.stale_clips += sum(1 for k, v in got_e.items() if k in want_e and want_e[k] != v)
    return counts


# --- scenarios -----------------------------------------------------------------------------------------


def extract_kills(work: Path, quick: bool) -> Counts:
    manifest, clean = _data(work), work / "clean.zarr"
    if not clean.exists():
        _cli("extract", *_extract_args(manifest, clean))
    counts = Counts()
    for kill_at in range(1, 4 if quick else 40):
        store = work / f"extract-kill-{kill_at}.zarr"
        shutil.rmtree(store, ignore_errors=True)
        run = _child(kill_at, "extract", _extract_args(manifest, store))
        if run.returncode != 137:
            counts.tracebacks += _tracebacks(run)
            break  # the run finished before its Nth write: every write point was hit
        counts.faults += 1
        again = _cli("extract", *_extract_args(manifest, store))
        counts.tracebacks += _tracebacks(again)
        if again.returncode in (0, 3):
            counts.recovered += 1
            counts.add(_compare(clean, store))
        shutil.rmtree(store, ignore_errors=True)
    return counts


def extract_inputs(work: Path, quick: bool) -> Counts:
    """A video that failed and is fixed, one whose file changes, one that is removed."""
    manifest = _data(work)
    table = pq.read_table(manifest)
    folder = work / "inputs"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "videos").mkdir(parents=True)
    source = manifest.parent
    paths = []
    for p in table["path"].to_pylist():
        shutil.copy2(source / p, folder / "videos" / Path(p).name)
        paths.append(f"videos/{Path(p).name}")
    table = table.set_column(table.column_names.index("path"), "path", pa.array(paths))
    pq.write_table(table, folder / "m.parquet")
    store, counts = folder / "store.zarr", Counts()
    broken, changed = folder / paths[0], folder / paths[1]
    good = broken.read_bytes()
    broken.write_bytes(good[: len(good) // 3])  # a truncated upload
    runs = [_cli("extract", *_extract_args(folder / "m.parquet", store))]
    broken.write_bytes(good)  # fixed
    shutil.copy2(folder / paths[2], changed)  # and another file replaced by other content
    counts.faults += 2
    runs.append(_cli("extract", *_extract_args(folder / "m.parquet", store)))
    reference = folder / "reference.zarr"
    runs.append(_cli("extract", *_extract_args(folder / "m.parquet", reference)))  # a clean run now
    if runs[-2].returncode == 0:
        counts.recovered += 2
    counts.add(_compare(reference, store))
    (folder / paths[3]).unlink()  # removed
    counts.faults += 1
    removed = _cli("extract", *_extract_args(folder / "m.parquet", store))
    counts.recovered += removed.returncode in (0, 3)
    counts.tracebacks += _tracebacks(*runs, removed)
    return counts


def concurrent_extract(work: Path, quick: bool) -> Counts:
    manifest, clean = _data(work), work / "clean.zarr"
    table = pq.read_table(manifest)
    halves = [table.slice(0, len(table) // 2), table.slice(len(table) // 2)]
    store = work / "two-writers.zarr"
    shutil.rmtree(store, ignore_errors=True)
    files = []
    for k, half in enumerate(halves):
        pq.write_table(half, manifest.parent / f"half{k}.parquet")
        files.append(manifest.parent / f"half{k}.parquet")
    procs = [
        subprocess.Popen(
            [*CLI, "extract", *_extract_args(f, store)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in files
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    counts = Counts(faults=1, tracebacks=sum("Traceback" in o + e for o, e in outs))
    for f, p in zip(files, procs, strict=True):
        if p.returncode == 2:  # refused: the second writer waits its turn
            counts.tracebacks += _tracebacks(_cli("extract", *_extract_args(f, store)))
    counts.recovered += 1
    counts.add(_compare(clean, store))
    return counts


def _published(work: Path) -> tuple[Path, Path, Path]:
    """(store, adapter, published) of the clean store, published once with --no-gate."""
    clean, adapter, published = work / "clean.zarr", work / "adapter", work / "published"
    if not clean.exists():
        _cli("extract", *_extract_args(_data(work), clean))
    if not (adapter / "adapter.json").exists():
        _cli(
            "train-adapter", "--store", str(clean), "--out", str(adapter), "--epochs", "2", "--device", "cpu"
        )
    return clean, adapter, published


def _anonymize_args(store: Path, adapter: Path, out: Path) -> list[str]:
    return [
        "--store",
        str(store),
        "--adapter",
        str(adapter),
        "--out",
        str(out),
        "--no-gate",
        "--faiss-index",
        "flat",
    ]


def anonymize_kills(work: Path, quick: bool) -> Counts:
    store, adapter, _ = _published(work)
    reference = work / "published-reference"
    shutil.rmtree(reference, ignore_errors=True)
    _cli("anonymize", *_anonymize_args(store, adapter, reference))
    from stores.published import read_published

    want = read_published(reference)
    counts = Counts()
    for kill_at in range(1, 4 if quick else 30):
        out = work / f"published-kill-{kill_at}"
        shutil.rmtree(out, ignore_errors=True)
        run = _child(kill_at, "anonymize", _anonymize_args(store, adapter, out))
        if run.returncode != 137:
            counts.tracebacks += _tracebacks(run)
            break
        counts.faults += 1
        counts.clips_duplicated += _glob_mismatch(out)
        again = _cli("anonymize", *_anonymize_args(store, adapter, out))
        counts.tracebacks += _tracebacks(again)
        if again.returncode == 0:
            counts.recovered += 1
            rows, emb = read_published(out)
            counts.clips_lost += max(0, want[0].num_rows - rows.num_rows)
            counts.clips_duplicated += max(0, rows.num_rows - want[0].num_rows) + _glob_mismatch(out)
            counts.stale_clips += int(not np.array_equal(emb, want[1]))
        shutil.rmtree(out, ignore_errors=True)
    return counts


def _glob_mismatch(out: Path) -> int:
    """Rows a glob reader sees beyond those the manifests list (a half-committed publish)."""
    import duckdb

    from stores.published import published_partitions

    files = list(out.glob("dataset=*/encoder=*/adapter=*/part-*.parquet"))
    if not files:
        return 0
    seen = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{out}/dataset=*/encoder=*/adapter=*/part-*.parquet')"
    )
    listed = sum(p.rows for p in published_partitions(out))
    return abs(int(seen.fetchall()[0][0]) - listed)


def concurrent_anonymize(work: Path, quick: bool) -> Counts:
    store, adapter, _ = _published(work)
    out = work / "published-two"
    shutil.rmtree(out, ignore_errors=True)
    args = [*CLI, "anonymize", *_anonymize_args(store, adapter, out)]
    procs = [
        subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    counts = Counts(faults=1, tracebacks=sum("Traceback" in o + e for o, e in outs))
    if any(p.returncode == 0 for p in procs) and all(p.returncode in (0, 2) for p in procs):
        counts.recovered += 1
    counts.clips_duplicated += _glob_mismatch(out)
    return counts


def anonymize_filesystems(work: Path, quick: bool) -> Counts:
    store, adapter, _ = _published(work)
    counts = Counts()
    for name, options in (("full", "size=48k"), ("read-only", "size=1m,ro")):
        target = work / f"fs-{name}"
        target.mkdir(exist_ok=True)
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True
        )
        if mounted.returncode:
            counts.skipped += f"{name} filesystem (cannot mount tmpfs: {mounted.stderr.strip()[:60]}); "
            continue
        try:
            run = _cli("anonymize", *_anonymize_args(store, adapter, target / "pub"))
            counts.faults += 1
            counts.tracebacks += _tracebacks(run)
            counts.recovered += run.returncode == 2 and run.stderr.strip().count("\n") == 0
            counts.clips_duplicated += _glob_mismatch(target / "pub") if (target / "pub").exists() else 0
        finally:
            subprocess.run(["umount", str(target)], capture_output=True, check=False)
    return counts


def published_scan(work: Path, quick: bool) -> Counts:
    """Every published byte against private columns and values, source paths, original ids, raw rows."""
    store, adapter, published = _published(work)
    if not published.exists():
        _cli("anonymize", *_anonymize_args(store, adapter, published), "--zarr-copy")
    from stores.latent_cache import LatentCache

    view = LatentCache.open(store).read()
    needles = [b"private_", str(ROOT).encode(), str(work).encode(), b".mp4"]
    needles += [str(v).encode() for v in view.videos["video_id"].to_pylist()]
    needles += [str(v).encode() for v in view.videos["private_identity"].to_pylist()]
    raw = [view.motion[i].tobytes()[:16] for i in range(len(view.motion))]
    raw += [view.static[i].tobytes()[:16] for i in range(len(view.static))]
    counts = Counts()
    for path in (p for p in published.rglob("*") if p.is_file() and not p.name.startswith(".lock-")):
        data = path.read_bytes()
        counts.private_hits += sum(n in data for n in set(needles))
        counts.raw_rows_published += sum(r in data for r in raw)
    return counts


SCENARIOS: dict[str, Callable[[Path, bool], Counts]] = {
    "extract-kills": extract_kills,
    "extract-inputs": extract_inputs,
    "concurrent-extract": concurrent_extract,
    "anonymize-kills": anonymize_kills,
    "concurrent-anonymize": concurrent_anonymize,
    "anonymize-filesystems": anonymize_filesystems,
    "published-scan": published_scan,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "faults", help="work folder")
    parser.add_argument("--quick", action="store_true", help="three kill points per stage, not every write")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these scenarios")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    total = Counts()
    for name, scenario in SCENARIOS.items():
        if args.only and name not in args.only:
            continue
        started = time.perf_counter()
        counts = scenario(args.out.resolve(), args.quick)
        total.add(counts)
        total.skipped += counts.skipped
        shown = ", ".join(
            f"{f.name} {getattr(counts, f.name)}" for f in fields(counts) if f.name != "skipped"
        )
        print(
            f"{name:22s} {shown}{'; skipped: ' + counts.skipped if counts.skipped else ''} "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    print(
        f"faults injected {total.faults}, runs recovered {total.recovered}, clips lost {total.clips_lost}, "
        f"clips duplicated {total.clips_duplicated}, stale clips served {total.stale_clips}, "
        f"raw rows published {total.raw_rows_published}, private hits {total.private_hits}, "
        f"tracebacks {total.tracebacks}" + (f"; skipped: {total.skipped}" if total.skipped else "")
    )


if __name__ == "__main__":
    main()
