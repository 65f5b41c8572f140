"""Input manifests (design §3.1): one row per video or image, read from CSV/Parquet or made from a folder."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from stores.errors import ManifestError

SPLITS = ("train", "val", "test")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CSV_EXTENSIONS = (".csv",)
PARQUET_EXTENSIONS = (".parquet", ".pq")
PRIVATE_PREFIX = "private_"

# Columns whose text must never be re-typed by CSV inference ("007" must stay "007").
_STRING_COLUMNS = ("video_id", "path", "split", "action", "segments", "anomaly_segments")
_SEGMENTS_EXAMPLE = '[{"start": 0.0, "end": 2.5, "label": "run"}]'
_ANOMALY_EXAMPLE = "[[12.0, 15.5]] (or [] for a normal video, empty for a video outside the anomaly task)"


# --- public helpers ------------------------------------------------------------------------------------


def parse_segments(text: str | None) -> list[tuple[float, float, str]]:
    """`segments` JSON → [(start_s, end_s, label), …]; None → []."""
    try:
        return _parse_segments(text)
    except ValueError as e:
        raise ManifestError(f"segments {text!r}: {e}; write a JSON list like {_SEGMENTS_EXAMPLE}") from e


def parse_anomaly_segments(text: str | None) -> list[tuple[float, float]] | None:
    """`anomaly_segments` JSON → [(start_s, end_s), …]; "[]" → [] (normal); None → None (not in the task)."""
    try:
        return _parse_anomaly_segments(text)
    except ValueError as e:
        raise ManifestError(
            f"anomaly_segments {text!r}: {e}; write a JSON list like {_ANOMALY_EXAMPLE}"
        ) from e


def private_columns(table: pa.Table) -> list[str]:
    """Names of the private attribute columns (`private_*`), in table order."""
    return [name for name in table.column_names if name.startswith(PRIVATE_PREFIX)]


# --- reading and writing -------------------------------------------------------------------------------


def read_manifest(path: str | Path) -> pa.Table:
    """Read and validate a CSV/Parquet manifest; `path` comes back absolute and `split` always present."""
    file = Path(path)
    if not file.is_file():
        raise ManifestError(f"{file}: manifest not found; pass an existing .csv or .parquet file")
    suffix = file.suffix.lower()
    if suffix in CSV_EXTENSIONS:
        table = _read_csv(file)
    elif suffix in PARQUET_EXTENSIONS:
        table = _read_parquet(file)
    else:
        raise ManifestError(f"{file}: unsupported manifest extension {suffix!r}; use .csv or .parquet")
    return _validate(table, file)


def write_manifest(table: pa.Table, path: str | Path) -> None:
    """Write a manifest as Parquet (.parquet/.pq) or CSV (.csv); replaces the file atomically."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in CSV_EXTENSIONS + PARQUET_EXTENSIONS:
        raise ManifestError(f"{file}: unsupported manifest extension {suffix!r}; use .csv or .parquet")
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
    if suffix in CSV_EXTENSIONS:
        pacsv.write_csv(table, tmp)
    else:
        pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, file)


def manifest_from_folder(folder: str | Path, media: Literal["videos", "images"]) -> pa.Table:
    """Manifest of every video (or image) file under `folder`, recursively, sorted; no labels, split null."""
    root = Path(folder)
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder; pass the folder that holds the {media}")
    extensions = VIDEO_EXTENSIONS if media == "videos" else IMAGE_EXTENSIONS
    files = sorted(_media_files(root, extensions))
    if not files:
        raise ManifestError(
            f"{root}: no {media} found (looked for {', '.join(extensions)} recursively); "
            "check the folder or pass a manifest instead"
        )
    ids = [rel.with_suffix("").as_posix().replace("/", "__") for rel in files]
    seen: dict[str, Path] = {}
    for video_id, rel in zip(ids, files, strict=True):
        if video_id in seen:
            raise ManifestError(
                f"{root}: {seen[video_id]} and {rel} both give video_id {video_id!r}; "
                "rename one of them or write a manifest with explicit ids"
            )
        seen[video_id] = rel
    return pa.table(
        {
            "video_id": pa.array(ids, pa.string()),
            "path": pa.array([str((root / rel).resolve()) for rel in files], pa.string()),
            "split": pa.nulls(len(files), pa.string()),
        }
    )


def _media_files(root: Path, extensions: tuple[str, ...]) -> list[Path]:
    # Hidden files are skipped: macOS leaves "._clip.mp4" resource forks next to real videos.
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith(".") and name.lower().endswith(extensions):
                found.append((Path(folder) / name).relative_to(root))
    return found


def _read_csv(file: Path) -> pa.Table:
    try:
        with open(file, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
            for _ in f:  # the whole file must be UTF-8, not only its header
                pass
    except UnicodeDecodeError as e:
        line = _line_of(file, e)
        raise ManifestError(
            f"{file}: not UTF-8 text (byte {e.object[e.start : e.start + 1]!r} on line {line}); "
            "save the CSV as UTF-8 (e.g. `iconv -f latin1 -t utf-8`) or write the manifest as Parquet"
        ) from None
    options = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in header if name in _STRING_COLUMNS},
        strings_can_be_null=True,
        null_values=[""],
    )
    try:
        return pacsv.read_csv(file, convert_options=options)
    except pa.ArrowInvalid as e:
        raise ManifestError(f"{file}: not a readable CSV manifest ({e}); fix the file") from e


def _line_of(file: Path, e: UnicodeDecodeError) -> int:
    # the decoder reports an offset within its chunk; find the first bad line from the bytes themselves
    for number, raw in enumerate(file.read_bytes().splitlines(), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return number
    return 1


def _read_parquet(file: Path) -> pa.Table:
    try:
        return pq.read_table(file)
    except pa.ArrowException as e:
        raise ManifestError(f"{file}: not a readable Parquet manifest ({e}); fix the file") from e


# --- validation ----------------------------------------------------------------------------------------


def _validate(table: pa.Table, file: Path) -> pa.Table:
    table = _decode_dictionaries(table)
    for name in ("video_id", "path"):
        if name not in table.column_names:
            raise ManifestError(
                f"{file}: required column {name!r} is missing (columns: {', '.join(table.column_names)}); "
                "add it — every row needs a unique video_id and a path"
            )
    for name in table.column_names:
        if table.column_names.count(name) > 1:
            raise ManifestError(f"{file}: column {name!r} appears twice; keep one")
    table = _set(table, "video_id", _as_string(table, "video_id", file))
    ids = table.column("video_id").to_pylist()
    _check_ids(ids, file)
    table = _set(table, "path", _resolved_paths(table, ids, file))
    if "split" not in table.column_names:
        table = table.append_column("split", pa.nulls(table.num_rows, pa.string()))
    table = _set(table, "split", _as_string(table, "split", file))
    _check_values(table, ids, file, "split", _split_problem, "use one of train, val, test, or leave it empty")
    if "action" in table.column_names:
        table = _set(table, "action", _as_string(table, "action", file, allow_int=True))
    for name, parse, example in (
        ("segments", _parse_segments, _SEGMENTS_EXAMPLE),
        ("anomaly_segments", _parse_anomaly_segments, _ANOMALY_EXAMPLE),
    ):
        if name in table.column_names:
            table = _set(table, name, _as_string(table, name, file))
            _check_values(table, ids, file, name, _problem_of(parse), f"write a JSON list like {example}")
    for name in private_columns(table):
        table = _set(table, name, _private_column(table, name, file))
    return table


def _decode_dictionaries(table: pa.Table) -> pa.Table:
    # pandas categoricals arrive as dictionary arrays; the contract is about the values.
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(f.type.value_type))
    return table


def _set(table: pa.Table, name: str, column: pa.ChunkedArray | pa.Array) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, column)


def _as_string(table: pa.Table, name: str, file: Path, *, allow_int: bool = False) -> pa.ChunkedArray:
    column = table.column(name)
    kind = column.type
    if pa.types.is_string(kind):
        return column
    if pa.types.is_large_string(kind) or pa.types.is_null(kind) or pa.types.is_string_view(kind):
        return column.cast(pa.string())
    if pa.types.is_integer(kind) and (allow_int or name in ("video_id", "path")):
        return column.cast(pa.string())
    raise ManifestError(
        f"{file}: column {name!r} has type {kind}; it must hold strings — quote or convert it"
    )


def _row(file: Path, index: int, ids: list[Any]) -> str:
    video_id = ids[index]
    label = f"video_id {video_id!r}" if video_id not in (None, "") else "no video_id"
    return f"{file}: row {index + 1} ({label})"


def _check_ids(ids: list[str | None], file: Path) -> None:
    first_row: dict[str, int] = {}
    for i, video_id in enumerate(ids):
        if video_id is None or not video_id.strip():
            raise ManifestError(f"{_row(file, i, ids)}, column 'video_id': empty; give every row a unique id")
        if video_id in first_row:
            raise ManifestError(
                f"{_row(file, i, ids)}, column 'video_id': duplicate of row {first_row[video_id] + 1}; "
                "video ids must be unique — rename or drop one"
            )
        first_row[video_id] = i


def _resolved_paths(table: pa.Table, ids: list[Any], file: Path) -> pa.Array:
    folder = file.resolve().parent
    column = _as_string(table, "path", file).to_pylist()
    resolved = []
    for i, value in enumerate(column):
        if value is None or not value.strip():
            raise ManifestError(f"{_row(file, i, ids)}, column 'path': empty; give the file of every video")
        # URLs (s3://…) are left for the decoder; only filesystem paths are resolved.
        is_url = "://" in value
        resolved.append(value if is_url else os.path.normpath(os.path.join(folder, value)))
    return pa.array(resolved, pa.string())


def _check_values(
    table: pa.Table,
    ids: list[Any],
    file: Path,
    name: str,
    problem: Callable[[str], str | None],
    advice: str,
) -> None:
    for i, value in enumerate(table.column(name).to_pylist()):
        if value is None:
            continue
        message = problem(value)
        if message is not None:
            raise ManifestError(f"{_row(file, i, ids)}, column {name!r}: {message}; {advice}")


def _split_problem(value: str) -> str | None:
    return None if value in SPLITS else f"{value!r} is not a split"


def _problem_of(parse: Callable[[str], object]) -> Callable[[str], str | None]:
    def problem(value: str) -> str | None:
        try:
            parse(value)
        except ValueError as e:
            return str(e)
        return None

    return problem


def _private_column(table: pa.Table, name: str, file: Path) -> pa.ChunkedArray:
    column = table.column(name)
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_integer(kind):
        return column
    if pa.types.is_large_string(kind) or pa.types.is_null(kind) or pa.types.is_string_view(kind):
        return column.cast(pa.string())
    if pa.types.is_boolean(kind):
        return column.cast(pa.int64())
    if pa.types.is_floating(kind) and _whole_numbers(column):
        # pandas writes an integer column with missing values as float (3.0, NaN): nullable integers
        return pc.cast(pc.if_else(pc.is_nan(column), None, column), pa.int64())
    raise ManifestError(
        f"{file}: column {name!r} has type {kind}; private_* columns must hold strings or integers "
        "— convert the values (e.g. round them or write them as text)"
    )


def _whole_numbers(column: pa.ChunkedArray) -> bool:
    values = pc.if_else(pc.is_nan(column), None, column)
    present = pc.drop_null(values)
    whole = pc.and_(pc.is_finite(present), pc.equal(pc.floor(present), present))
    return pc.all(whole).as_py() is not False


# --- JSON label parsing --------------------------------------------------------------------------------


def _json_list(text: str) -> list[Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg})") from e
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON list, got {type(value).__name__}")
    return value


def _interval(start: Any, end: Any) -> tuple[float, float]:
    for bound in (start, end):
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            raise ValueError(f"times must be numbers of seconds, got {bound!r}")
    if not 0 <= start < end:
        raise ValueError(f"need 0 <= start < end, got start={start}, end={end}")
    return float(start), float(end)


def _parse_segments(text: str | None) -> list[tuple[float, float, str]]:
    if text is None:
        return []
    parsed = []
    for item in _json_list(text):
        if not isinstance(item, dict) or set(item) != {"start", "end", "label"}:
            raise ValueError(f'each segment must be {{"start", "end", "label"}}, got {item!r}')
        if not isinstance(item["label"], str) or not item["label"]:
            raise ValueError(f"segment label must be a non-empty string, got {item['label']!r}")
        parsed.append((*_interval(item["start"], item["end"]), item["label"]))
    return parsed


def _parse_anomaly_segments(text: str | None) -> list[tuple[float, float]] | None:
    if text is None:
        return None
    parsed = []
    for item in _json_list(text):
        if not isinstance(item, list) or len(item) != 2:
            raise ValueError(f"each anomaly segment must be a [start, end] pair, got {item!r}")
        parsed.append(_interval(item[0], item[1]))
    return parsed
