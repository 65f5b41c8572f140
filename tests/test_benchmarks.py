"""The seed-sweep benchmark's helpers: variant parsing and the mean ± sd summary."""

from __future__ import annotations

import pytest

from benchmarks.adapter_seeds import figures, parse_variant, summarise


def test_variant_spec_parses_names_and_typed_options() -> None:
    assert parse_variant("default") == ("default", {})
    assert parse_variant("wide:erase_dims=112,erase_clip_dims=0,erase_static=true") == (
        "wide",
        {"erase_dims": 112, "erase_clip_dims": 0, "erase_static": True},
    )


def test_summary_is_mean_and_sd_over_seeds_and_drops_figures_missing_in_a_run() -> None:
    runs = {"a": [{"x": 1.0, "y": None}, {"x": 3.0, "y": 2.0}]}
    table = summarise(runs)
    assert table["a"]["x"] == pytest.approx((2.0, 2**0.5))
    assert "y" not in table["a"]


def test_figures_reads_metrics_and_removed_leakage_of_one_set() -> None:
    report = {
        "metrics": [
            {"key": "action_top1", "values": {"s": 0.9}},
            {"key": "bias_delta", "values": {"s": 0.1}},
            {"key": "reid_map", "values": {"s": 0.2}},  # not a target figure: left out
        ],
        "leakage_worst": [{"view": "motion", "attribute": "gender", "removed_worst": {"s": 0.8}}],
    }
    assert figures(report, "s") == {"action top-1": 0.9, "bias gap": 0.1, "removed motion: gender": 0.8}
