"""The benchmark runs end to end and reports the documented fields (its numbers are measured
by `make bench`, not asserted here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import freeze_window


def test_the_benchmark_reports_engine_and_naive_numbers_for_each_size(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--sizes", "1,3", "--latency-ms", "5", "--jitter-ms", "1", "--hook-ms", "1", "--json"]
    assert freeze_window.main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["members"] for r in rows] == [1, 3]
    for row in rows:
        assert {
            "members",
            "latency_ms",
            "freeze_window_ms",
            "skew_ms",
            "naive_freeze_window_ms",
            "naive_skew_ms",
        } <= set(row)
        assert row["freeze_window_ms"] > 0
        assert row["naive_freeze_window_ms"] > 0


def test_the_markdown_table_has_a_row_per_size() -> None:
    rows = [
        {
            "members": 10,
            "freeze_window_ms": 210.0,
            "naive_freeze_window_ms": 2100.0,
            "skew_ms": 20.0,
            "naive_skew_ms": 1900.0,
            "target_freeze_window_ms": 270,
        }
    ]
    table = freeze_window.markdown(rows)  # type: ignore[arg-type]
    assert table.splitlines()[2] == (
        "| 10 | 210.0 ms | 2,100.0 ms | 10x | 20.0 ms | 1,900.0 ms | ≤ 270 ms |"
    )
