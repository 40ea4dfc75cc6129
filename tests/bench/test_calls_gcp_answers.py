"""The GCP call benchmark's account of hook answers: per phase, the reads and how long the
agents took to answer, from the fake's request log and journal (no emulator needed)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import calls_gcp


class Compute:
    """What AnswerTimes wraps: the fake's request log and its journal."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.journal: list[str] = []

    def note(self, line: str) -> None:
        self.journal.append(line)


def read(compute: Any, vm: str) -> None:
    compute.requests.append(("GET", f"projects/p/zones/z/instances/{vm}/getGuestAttributes"))


def test_reads_and_delays_are_split_by_each_vms_pre_and_post_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter([10.0, 10.1, 10.5, 10.6, 11.0, 11.2, 20.0, 20.4, 20.5, 20.9])
    monkeypatch.setattr(calls_gcp.time, "monotonic", lambda: next(clock))
    compute = Compute()
    times = calls_gcp.AnswerTimes(compute)

    compute.note("setMetadata a")  # 10.0: a's pre command
    read(compute, "a")  # 10.1: nothing yet
    compute.note("answer a pre")  # 10.5
    read(compute, "a")  # 10.6: the answer
    compute.note("setMetadata b")  # 11.0: b's pre command
    read(compute, "b")  # 11.2: never answered
    compute.note("setMetadata a")  # 20.0: a's post command
    compute.requests.append(("POST", "projects/p/zones/z/instances/a/setMetadata"))  # untimed
    read(compute, "a")  # 20.4
    compute.note("answer a post")  # 20.5
    read(compute, "a")  # 20.9

    summary = times.summary(since=0.0)

    assert summary["pre"] == {"hooks": 2, "reads": 3, "answer_delay_s": [0.5, 0.5, 0.5]}
    assert summary["post"] == {"hooks": 1, "reads": 2, "answer_delay_s": [0.5, 0.5, 0.5]}
    # the log and journal themselves are kept as the fake keeps them
    assert compute.journal[0] == "setMetadata a"
    assert len(compute.requests) == 6


def test_only_what_came_after_the_counted_runs_start_is_summed() -> None:
    compute = Compute()
    times = calls_gcp.AnswerTimes(compute)
    compute.note("setMetadata a")
    read(compute, "a")
    since = time.monotonic()
    compute.note("setMetadata a")
    compute.note("answer a pre")
    read(compute, "a")

    summary = times.summary(since)

    assert summary["pre"]["hooks"] == 1
    assert summary["pre"]["reads"] == 1
    assert "post" not in summary
