"""Fixtures of the CLI tests: the extraction tests' test encoder and small videos."""

from __future__ import annotations

from tests.flows.conftest import script_encoder, small_videos

__all__ = ["script_encoder", "small_videos"]
