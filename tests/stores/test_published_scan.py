"""What never leaves: every published file, read as bytes and decoded, names no private thing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from stores.errors import StoreError
from stores.published import publish
from tests.stores.test_published_support import clips_and_emb, make_info, video_ids

# A latent cache's private side, as the anonymize flow would hold it next to the clips.
PRIVATE = {
    "private_gender": ["female", "male"],
    "private_skin_tone": ["skin-tone-5", "skin-tone-2"],
    "private_identity": ["alice-example", "bob-example"],
}
SOURCE_ROOT = "/srv/cameras/ward-7"


def _cache_like(videos: list[str]) -> tuple[pa.Table, pa.Table, np.ndarray]:
    """(videos with paths and private labels, clips, anonymized embeddings)."""
    labels = {k: [values[i % 2] for i in range(len(videos))] for k, values in PRIVATE.items()}
    table = pa.table(
        {
            "video_id": videos,
            "path": [f"{SOURCE_ROOT}/{v}.mp4" for v in videos],
            **labels,
            "action": ["walk"] * len(videos),
        }
    )
    clips, emb = clips_and_emb(videos)
    return table, clips, emb


def _needles(videos: pa.Table) -> list[bytes]:
    words = ["private_", "path", SOURCE_ROOT, "ward-7", ".mp4"]
    words += [v for values in PRIVATE.values() for v in values]
    return [w.lower().encode() for w in words]


def _decoded_text(path: Path) -> str:
    """What a reader of the file sees: JSON as text; for Parquet the schema, metadata and string values."""
    if path.suffix == ".json":
        return json.dumps(json.loads(path.read_text()))
    if path.suffix != ".parquet":
        return ""
    file = pq.ParquetFile(path)
    schema = file.schema_arrow
    parts = [str(schema), *(f.name for f in schema)]
    for key, value in (file.metadata.metadata or {}).items():
        parts.append(key.decode())
        # ARROW:schema is a base64 IPC schema: its field names are not visible in the raw bytes.
        if key == b"ARROW:schema":
            parts.append(str(pa.ipc.read_schema(pa.py_buffer(base64.b64decode(value)))))
        else:
            parts.append(value.decode())
    table = file.read()
    for name in table.column_names:
        if pa.types.is_string(table.schema.field(name).type):
            parts.extend(pc.unique(table[name]).to_pylist())
    return "\n".join(parts)


def test_no_published_file_names_private_things(tmp_path: Path) -> None:
    videos, clips, emb = _cache_like(video_ids(6))
    out = tmp_path / "published"
    # The flow hands over only the public columns; the writer would refuse anything else.
    first = clips.filter(pc.is_in(clips["video_id"], pa.array(video_ids(4))))
    publish(
        out, make_info(), first, emb[: first.num_rows], faiss_index="flat", zarr_copy=True, rows_per_file=4
    )
    publish(out, make_info(), clips, emb, mode="append", rows_per_file=4)
    publish(out, make_info("v2"), clips, emb, dtype="float16", faiss_index="ivf")

    files = [p for p in sorted(out.rglob("*")) if p.is_file()]
    kinds = {p.suffix or p.name for p in files}
    assert {".parquet", ".json", ".faiss"} <= kinds and any("_zarr" in p.parts for p in files)
    needles = _needles(videos)
    for path in files:
        found = _found(path, needles)
        assert not found, f"{path.relative_to(out)} contains {found}"

    # The scanner itself sees private names inside Parquet (even in the base64 Arrow schema) and JSON.
    pq.write_table(videos, tmp_path / "videos.parquet", compression="zstd")
    assert _found(tmp_path / "videos.parquet", needles) == [n.decode() for n in needles]
    (tmp_path / "m.json").write_text(json.dumps({"note": "alice-example"}))
    assert _found(tmp_path / "m.json", needles) == ["alice-example"]


def _found(path: Path, needles: list[bytes]) -> list[str]:
    raw = path.read_bytes().lower()
    text = _decoded_text(path).lower().encode()
    return [n.decode() for n in needles if n in raw or n in text]


@pytest.mark.parametrize("column", [*PRIVATE, "path"])
def test_cache_columns_handed_over_by_mistake_are_refused(tmp_path: Path, column: str) -> None:
    videos, clips, emb = _cache_like(video_ids(2))
    joined = clips.join(videos.select(["video_id", column]), "video_id")
    with pytest.raises(StoreError, match="never published"):
        publish(tmp_path / "published", make_info(), joined, emb)
    assert not (tmp_path / "published").exists()
