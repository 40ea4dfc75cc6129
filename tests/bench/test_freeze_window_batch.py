"""The freeze benchmark's batch mode: its provider hands the engine batch APIs, the engine uses
them (one call per phase, no per-machine call), and `--both` reports each size in both modes.
Its numbers are measured by running the benchmark, not asserted here."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from quiesce.ports import HookCall, Machine, SnapshotCall
from quiesce.record import HookResult, SnapshotRef

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import freeze_window

QUICK = ["--latency-ms", "5", "--jitter-ms", "2", "--hook-ms", "1", "--naive-max-members", "1"]


class Counted:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches: list[tuple[str, int]] = []  # (method, calls in the batch)
        self.single: list[str] = []

    def add(self, method: str, size: int | None = None) -> None:
        with self.lock:
            if size is None:
                self.single.append(method)
            else:
                self.batches.append((method, size))


def test_both_modes_are_reported_for_each_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert freeze_window.main(["--sizes", "1,4", *QUICK, "--both", "--repeat", "2", "--json"]) == 0

    rows = json.loads(capsys.readouterr().out)

    assert [(r["members"], r["mode"]) for r in rows] == [
        (1, "per-call"),
        (1, "batch"),
        (4, "per-call"),
        (4, "batch"),
    ]
    for row in rows:
        assert row["runs"] == 2
        assert 0 < row["freeze_window_ms"] <= row["freeze_window_median_ms"]
        assert 0 <= row["skew_ms"] <= row["skew_median_ms"]


def test_batch_alone_reports_batch_rows_and_the_table_names_the_mode(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert freeze_window.main(["--sizes", "2", *QUICK, "--batch", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["mode"] for r in rows] == ["batch"]

    table = freeze_window.markdown([{**rows[0], "mode": "per-call"}, rows[0]])
    assert table.splitlines()[0].startswith("| members | mode |")
    assert [line.split("|")[2].strip() for line in table.splitlines()[2:]] == [
        "per-call",
        "batch",
    ]


def test_batch_and_both_cannot_be_asked_together(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        freeze_window.main(["--batch", "--both"])
    assert "not allowed with" in capsys.readouterr().err


def test_in_batch_mode_the_engine_makes_one_call_per_phase(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = Counted()
    hooks, snapshots = freeze_window.MODES["batch"]

    class CountedHooks(hooks):  # type: ignore[misc, valid-type]
        def run(self, call: HookCall) -> HookResult:
            seen.add("run")
            result: HookResult = super().run(call)
            return result

        def run_many(self, calls: Sequence[HookCall]) -> list[HookResult | BaseException]:
            seen.add("run_many", len(calls))
            results: list[HookResult | BaseException] = super().run_many(calls)
            return results

    class CountedSnapshots(snapshots):  # type: ignore[misc, valid-type]
        def take(self, call: SnapshotCall) -> list[SnapshotRef]:
            seen.add("take")
            refs: list[SnapshotRef] = super().take(call)
            return refs

        def take_many(
            self, calls: Sequence[SnapshotCall]
        ) -> list[list[SnapshotRef] | BaseException]:
            seen.add("take_many", len(calls))
            refs: list[list[SnapshotRef] | BaseException] = super().take_many(calls)
            return refs

    monkeypatch.setitem(freeze_window.MODES, "batch", (CountedHooks, CountedSnapshots))
    timing = freeze_window.Timing(latency_ms=5, jitter_ms=2, hook_ms=1, seed=7)

    window, skew = freeze_window.run_engine(6, timing, "batch")

    assert window > 0
    assert skew >= 0
    assert sorted(seen.batches) == [("run_many", 6), ("run_many", 6), ("take_many", 6)]
    assert seen.single == []


def test_a_batch_fixes_each_point_at_its_own_jitter_inside_one_latency() -> None:
    _, snapshots = freeze_window.MODES["batch"]
    timing = freeze_window.Timing(latency_ms=5, jitter_ms=2, hook_ms=1, seed=7)
    spec = freeze_window.policy_for(1).groups["g"].members[0]
    calls = [
        SnapshotCall(
            "r",
            "bench",
            "g",
            f"m{i}",
            Machine(provider="local", member=f"m{i}", machine_id=f"m{i}"),
            "rp",
            "app",
            spec=spec,
        )
        for i in range(5)
    ]

    out = snapshots(timing).take_many(calls)

    refs = [r for refs in out if not isinstance(refs, BaseException) for r in refs]
    assert len(refs) == 5
    started = {r.started_at for r in refs}
    assert len(started) == 1  # one call for all
    fixed = sorted((r.fixed_at - r.started_at).total_seconds() * 1000 for r in refs)
    assert 3 <= fixed[0] <= fixed[-1] <= 7  # 5 ms ± 2 ms, each its own
    assert len(set(fixed)) > 1


def test_the_thread_floor_runs_three_waves_and_reports_its_own_row(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--sizes", "4", "--latency-ms", "30", "--jitter-ms", "5", "--hook-ms", "10"]
    assert freeze_window.main([*args, "--floor", "--naive-max-members", "0", "--json"]) == 0
    rows = {r["mode"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"per-call", "thread floor"}
    floor = rows["thread floor"]
    # held after the pre hook, thawed after the slowest point in time: at least 25 ms apart
    assert floor["freeze_window_ms"] >= 25
    assert 0 <= floor["skew_ms"] <= 10 + 5  # the jitter's spread, plus scheduling


def test_the_thread_floor_parks_every_thread_until_the_previous_wave_ends() -> None:
    timing = freeze_window.Timing(latency_ms=20, jitter_ms=0, hook_ms=15, seed=1)
    before = threading.active_count()
    window, skew = freeze_window.run_floor(6, timing)
    # no thaw before every point in time: the window holds at least one latency
    assert window >= 20
    assert skew < 20
    assert threading.active_count() == before  # every floor thread ended
