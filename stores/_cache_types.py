"""The latent cache's data types: store attributes, what one work unit writes, what a reader gets."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pydantic

SCHEMA_VERSION = 1

# Side tables: these columns are required (and cast to these types); extra columns pass through.
VIDEOS_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("kind", pa.string()),  # "video" | "image"
        ("status", pa.string()),  # "ok" | "error"
        ("num_frames", pa.int32()),
        ("fps", pa.float32()),
    ]
)
CLIPS_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("clip_index", pa.int32()),
        ("frame_start", pa.int32()),
        ("frame_stop", pa.int32()),  # exclusive
        ("frame_step", pa.int32()),
        ("t_start_s", pa.float32()),
        ("t_end_s", pa.float32()),
    ]
)
STATIC_CLIPS_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("static_index", pa.int32()),
        ("frame_index", pa.int32()),
        ("t_s", pa.float32()),
    ]
)
ERRORS_SCHEMA = pa.schema([("video_id", pa.string()), ("path", pa.string()), ("reason", pa.string())])


class CacheAttrs(pydantic.BaseModel, frozen=True, extra="forbid"):
    """What produced the embeddings of a store; two stores with different attrs never mix."""

    encoder_id: str
    weights_sha256: str
    dim: int = pydantic.Field(gt=0)
    pooling: str
    dtype: Literal["float32", "float16"] = "float32"
    preprocessing: dict[str, Any]
    tokens: tuple[pydantic.PositiveInt, pydantic.PositiveInt] | None = None  # (T', D)

    @pydantic.field_validator("preprocessing")
    @classmethod
    def _plain_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Stored attrs come back from JSON, so compare in JSON form: tuples become lists, NaN is refused.
        try:
            plain: dict[str, Any] = json.loads(json.dumps(value, allow_nan=False, sort_keys=True))
        except (TypeError, ValueError) as e:
            raise ValueError(f"preprocessing must be plain JSON (numbers, strings, lists, dicts): {e}") from e
        return plain


@dataclass
class PartData:
    """Everything one work unit (a batch of videos) produced; rows of `motion`/`tokens` follow `clips`."""

    videos: pa.Table  # VIDEOS_SCHEMA + manifest columns; one row per input video (ok or error)
    clips: pa.Table  # CLIPS_SCHEMA; one row per motion clip
    motion: np.ndarray  # (n, D)
    static_clips: pa.Table  # STATIC_CLIPS_SCHEMA; one row per static clip
    static: np.ndarray  # (m, D)
    errors: pa.Table  # ERRORS_SCHEMA; one row per video of the unit that failed
    tokens: np.ndarray | None = None  # (n, T', D) when the store keeps temporal tokens


@dataclass
class CacheView:
    """A consistent snapshot of the trusted parts: each clip once, rows sorted by video then clip index."""

    attrs: CacheAttrs
    videos: pa.Table  # one row per video that completed ok, sorted by video_id; manifest labels included
    clips: pa.Table  # CLIPS_SCHEMA, sorted by (video_id, clip_index)
    motion: np.ndarray  # (N, D) float32 aligned with clips; (0, D) when read with arrays=False
    static_clips: pa.Table  # STATIC_CLIPS_SCHEMA, sorted by (video_id, static_index)
    static: np.ndarray  # (M, D) float32 aligned with static_clips; (0, D) when read with arrays=False
    tokens: np.ndarray | None  # (N, T', D) float32, or None when the store keeps none or arrays=False
    errors: pa.Table  # ERRORS_SCHEMA: videos whose latest attempt failed, with that attempt's reason
