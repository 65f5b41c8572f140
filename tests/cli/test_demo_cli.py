"""What `aam-pipeline demo` tells the user to run afterwards."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from cli.demo import duckdb_query


def test_the_printed_query_reads_data_files_only(tmp_path: Path) -> None:
    """A published root also holds side tables that are Parquet files (the index, the Zarr copy's
    tables); the query must not read them (docs/data-teams.md)."""
    partition = tmp_path / "dataset=demo" / "encoder=tiny" / "adapter=sha-0123456789ab"
    (partition / "_index").mkdir(parents=True)
    rows = pa.table(
        {
            "video_id": ["v1", "v2"],
            "clip_index": [0, 0],
            "emb": pa.array([[1.0, 0.0], [0.0, 1.0]], pa.list_(pa.float32())),
        }
    )
    pq.write_table(rows, partition / "part-00000.parquet")
    pq.write_table(
        pa.table({"faiss_id": [0, 1], "clip_id": ["a", "b"]}), partition / "_index" / "ids.parquet"
    )

    got = duckdb.sql(duckdb_query(tmp_path, 2)).fetchall()
    assert sorted((v, c, list(e)) for v, c, e in got) == [("v1", 0, [1.0, 0.0]), ("v2", 0, [0.0, 1.0])]
