"""Manifest contract (design §3.1): reading, validation messages, folder manifests, writing."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stores.errors import ManifestError
from stores.manifest import (
    manifest_from_folder,
    parse_anomaly_segments,
    parse_segments,
    private_columns,
    read_manifest,
    write_manifest,
)

SEGMENTS = json.dumps([{"start": 0.0, "end": 2.5, "label": "run"}, {"start": 3, "end": 4, "label": "jump"}])
GOOD_CSV = (
    "video_id,path,split,action,segments,anomaly_segments,private_gender,private_skin_tone,bias_split\n"
    f'007,clips/a.mp4,train,run,"{SEGMENTS.replace(chr(34), chr(34) * 2)}",[],F,3,skewed\n'
    "008,/data/b.mp4,,walk,,,M,1,balanced\n"
    '009,../c.mp4,test,run,,"[[1.5, 2.0]]",F,,balanced\n'
)


def _write(tmp_path: Path, text: str, name: str = "manifest.csv") -> Path:
    path = tmp_path / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_csv_manifest_is_typed_and_paths_resolved(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD_CSV)
    table = read_manifest(path)
    rows = table.to_pylist()
    assert [r["video_id"] for r in rows] == ["007", "008", "009"]  # leading zeros kept
    assert rows[0]["path"] == str(tmp_path / "data" / "clips" / "a.mp4")
    assert rows[1]["path"] == "/data/b.mp4"
    assert rows[2]["path"] == str(tmp_path / "c.mp4")
    assert [r["split"] for r in rows] == ["train", None, "test"]
    assert [r["anomaly_segments"] for r in rows] == ["[]", None, "[[1.5, 2.0]]"]
    assert rows[2]["private_skin_tone"] is None and table.schema.field("private_skin_tone").type == pa.int64()
    assert [r["bias_split"] for r in rows] == ["skewed", "balanced", "balanced"]
    assert parse_segments(rows[0]["segments"]) == [(0.0, 2.5, "run"), (3.0, 4.0, "jump")]
    assert private_columns(table) == ["private_gender", "private_skin_tone"]


def test_parquet_manifest_casts_ids_and_adds_split(tmp_path: Path) -> None:
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"video_id": [1, 2], "path": ["x.mp4", "y.mp4"], "private_age": [30, 40]}), path)
    table = read_manifest(path)
    assert table["video_id"].to_pylist() == ["1", "2"]
    assert table["path"].to_pylist() == [str(tmp_path / "x.mp4"), str(tmp_path / "y.mp4")]
    assert table["split"].to_pylist() == [None, None]
    assert table["private_age"].to_pylist() == [30, 40]


def test_urls_are_left_as_they_are(tmp_path: Path) -> None:
    path = _write(tmp_path, "video_id,path\na,s3://bucket/a.mp4\n")
    assert read_manifest(path)["path"].to_pylist() == ["s3://bucket/a.mp4"]


BAD_CSVS = {
    "missing video_id": ("path\na.mp4\n", "'video_id'"),
    "missing path": ("video_id\na\n", "'path'"),
    "empty video_id": ("video_id,path\n,a.mp4\n", "'video_id'"),
    "duplicate video_id": ("video_id,path\na,a.mp4\nb,b.mp4\na,c.mp4\n", "'video_id'"),
    "empty path": ("video_id,path\na,\n", "'path'"),
    "bad split": ("video_id,path,split\na,a.mp4,training\n", "'split'"),
    "segments not json": ("video_id,path,segments\na,a.mp4,nope\n", "'segments'"),
    "segments reversed": (
        'video_id,path,segments\na,a.mp4,"[{""start"": 3, ""end"": 1, ""label"": ""x""}]"\n',
        "'segments'",
    ),
    "segment without label": (
        'video_id,path,segments\na,a.mp4,"[{""start"": 0, ""end"": 1}]"\n',
        "'segments'",
    ),
    "segments not a list": ('video_id,path,segments\na,a.mp4,"{""start"": 0}"\n', "'segments'"),
    "anomaly not pairs": ('video_id,path,anomaly_segments\na,a.mp4,"[[1, 2, 3]]"\n', "'anomaly_segments'"),
    "anomaly negative": ('video_id,path,anomaly_segments\na,a.mp4,"[[-1, 2]]"\n', "'anomaly_segments'"),
    "anomaly text times": ('video_id,path,anomaly_segments\na,a.mp4,"[[""1"", 2]]"\n', "'anomaly_segments'"),
    "repeated column": ("video_id,path,split,split\na,a.mp4,train,val\n", "'split'"),
    "private float": ("video_id,path,private_age\na,a.mp4,31.5\n", "'private_age'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSVS))
def test_bad_manifest_names_file_and_column(tmp_path: Path, case: str) -> None:
    text, column = BAD_CSVS[case]
    path = _write(tmp_path, text)
    with pytest.raises(ManifestError) as excinfo:
        read_manifest(path)
    message = str(excinfo.value)
    assert str(path) in message and column in message


def test_bad_row_message_names_the_video(tmp_path: Path) -> None:
    path = _write(tmp_path, "video_id,path,split\nok1,a.mp4,train\nclip-42,b.mp4,dev\n")
    with pytest.raises(
        ManifestError, match=r"row 2 \(video_id 'clip-42'\), column 'split'.*train, val, test"
    ):
        read_manifest(path)


def test_duplicate_message_points_at_first_row(tmp_path: Path) -> None:
    path = _write(tmp_path, "video_id,path\na,a.mp4\nb,b.mp4\na,c.mp4\n")
    with pytest.raises(ManifestError, match=r"row 3.*duplicate of row 1"):
        read_manifest(path)


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("segments", pa.array([[{"start": 0.0, "end": 1.0, "label": "x"}]])),
        ("action", pa.array([1.5])),
        ("private_flag", pa.array([[1]])),
    ],
)
def test_parquet_column_types_are_checked(tmp_path: Path, column: str, values: pa.Array) -> None:
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"video_id": ["a"], "path": ["a.mp4"], column: values}), path)
    with pytest.raises(ManifestError, match=f"'{column}'"):
        read_manifest(path)


def test_parquet_integer_actions_and_boolean_private_columns_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"video_id": ["a"], "path": ["a.mp4"], "action": [3], "private_x": [True]}), path)
    table = read_manifest(path)
    assert table["action"].to_pylist() == ["3"] and table["private_x"].to_pylist() == [1]


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "nope.csv")
    path = _write(tmp_path, "video_id,path\n", name="m.json")
    with pytest.raises(ManifestError, match=r"\.csv or \.parquet"):
        read_manifest(path)


def test_parse_helpers() -> None:
    assert parse_segments(None) == []
    assert parse_anomaly_segments(None) is None
    assert parse_anomaly_segments("[]") == []
    assert parse_anomaly_segments("[[1, 2.5]]") == [(1.0, 2.5)]
    with pytest.raises(ManifestError, match="start < end"):
        parse_anomaly_segments("[[2, 2]]")
    with pytest.raises(ManifestError, match="label"):
        parse_segments('[{"start": 0, "end": 1, "label": 3}]')


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def test_folder_manifest_of_videos(tmp_path: Path) -> None:
    _touch(tmp_path, "b.mp4", "a/x.MKV", "a/y.webm", "notes.txt", "._b.mp4", ".cache/z.mp4", "img.jpg")
    table = manifest_from_folder(tmp_path, "videos")
    assert table["video_id"].to_pylist() == ["a__x", "a__y", "b"]
    assert table["path"].to_pylist() == [str(tmp_path / p) for p in ("a/x.MKV", "a/y.webm", "b.mp4")]
    assert table["split"].null_count == 3


def test_folder_manifest_of_images(tmp_path: Path) -> None:
    _touch(tmp_path, "p/1.png", "p/2.jpeg", "v.mp4")
    assert manifest_from_folder(tmp_path, "images")["video_id"].to_pylist() == ["p__1", "p__2"]


def test_folder_manifest_errors(tmp_path: Path) -> None:
    _touch(tmp_path, "readme.txt")
    with pytest.raises(ManifestError, match="no videos found"):
        manifest_from_folder(tmp_path, "videos")
    _touch(tmp_path, "a/b.mp4", "a__b.mov")
    with pytest.raises(ManifestError, match="'a__b'"):
        manifest_from_folder(tmp_path, "videos")
    with pytest.raises(ManifestError, match="not a folder"):
        manifest_from_folder(tmp_path / "missing", "videos")


@pytest.mark.parametrize("name", ["out.csv", "out.parquet"])
def test_write_then_read_round_trips(tmp_path: Path, name: str) -> None:
    table = read_manifest(_write(tmp_path, GOOD_CSV))
    out = tmp_path / "written" / name
    write_manifest(table, out)
    again = read_manifest(out)
    assert again.to_pylist() == table.to_pylist()


def test_write_refuses_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="extension"):
        write_manifest(pa.table({"video_id": ["a"], "path": ["/a.mp4"]}), tmp_path / "m.txt")


def test_pandas_float_private_labels_with_missing_values_are_nullable_integers(tmp_path: Path) -> None:
    # pandas writes an integer column that has missing values as float64: 3.0, NaN
    path = tmp_path / "m.parquet"
    ages = pa.array([3.0, float("nan"), 41.0])
    pq.write_table(
        pa.table({"video_id": ["a", "b", "c"], "path": ["a.mp4", "b.mp4", "c.mp4"], "private_age": ages}),
        path,
    )
    column = read_manifest(path).column("private_age")
    assert column.type == pa.int64()
    assert column.to_pylist() == [3, None, 41]


@pytest.mark.parametrize("values", [[3.5, float("nan")], [float("inf"), 1.0]])
def test_float_private_labels_that_are_not_whole_numbers_are_refused(
    tmp_path: Path, values: list[float]
) -> None:
    path = tmp_path / "m.parquet"
    pq.write_table(
        pa.table({"video_id": ["a", "b"], "path": ["a.mp4", "b.mp4"], "private_age": values}), path
    )
    with pytest.raises(ManifestError, match=r"'private_age'.*strings or integers"):
        read_manifest(path)


def test_a_csv_that_is_not_utf8_is_one_manifest_error(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes("video_id,path\nok,a.mp4\njos\xe9,b.mp4\n".encode("latin-1"))
    with pytest.raises(ManifestError, match=r"m\.csv: not UTF-8 text .* on line 3\); save the CSV as UTF-8"):
        read_manifest(path)
