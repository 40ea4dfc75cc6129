"""poll_durable: every provider's wait for durable snapshots."""

from __future__ import annotations

from collections.abc import Sequence

from quiesce.durability import poll_durable
from quiesce.record import SnapshotRef, SnapshotState, utcnow


def ref(snapshot_id: str) -> SnapshotRef:
    now = utcnow()
    return SnapshotRef(
        id=snapshot_id,
        provider="x",
        machine_id="m",
        volume="v",
        method="m",
        started_at=now,
        fixed_at=now,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_snapshots_complete_or_fail_as_the_provider_learns_it() -> None:
    answers = iter(
        [
            {"a": SnapshotState.PENDING},
            {"a": SnapshotState.COMPLETED, "b": SnapshotState.FAILED},
        ]
    )
    asked: list[list[str]] = []

    def check(pending: Sequence[SnapshotRef]) -> dict[str, SnapshotState]:
        asked.append([s.id for s in pending])
        return next(answers)

    clock = Clock()
    out = poll_durable([ref("a"), ref("b")], 60, check, clock=clock, sleep=clock.sleep, interval=5)
    assert [(s.id, s.state) for s in out] == [
        ("a", SnapshotState.COMPLETED),
        ("b", SnapshotState.FAILED),
    ]
    assert out[0].durable_at is not None
    assert out[1].durable_at is None
    assert asked == [["a", "b"], ["a", "b"]]
    assert clock.sleeps == [5]


def test_snapshots_still_pending_at_the_deadline_come_back_pending_without_oversleeping() -> None:
    clock = Clock()
    out = poll_durable(
        [ref("a")], 12, lambda pending: {}, clock=clock, sleep=clock.sleep, interval=5
    )
    assert out[0].state is SnapshotState.PENDING
    assert clock.sleeps == [5, 5, 2]
