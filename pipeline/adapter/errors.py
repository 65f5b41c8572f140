"""Errors of the adapter stage."""

from __future__ import annotations

from pipeline.errors import PipelineError


class AdapterError(PipelineError):
    """An adapter artifact cannot be saved, loaded or used with the data at hand."""
