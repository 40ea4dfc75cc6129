from __future__ import annotations

from datetime import timedelta

from quiesce.engine import run_group
from quiesce.engine.retention import expired
from quiesce.policy import Retention
from quiesce.record import Consistency, RecoveryPoint, utcnow
from tests.engine.conftest import group_policy
from tests.fakes import World


def point(name: str, age_days: float) -> RecoveryPoint:
    return RecoveryPoint(
        id=name,
        policy="p",
        group="g",
        run_id=name,
        created_at=utcnow() - timedelta(days=age_days),
        consistency=Consistency.APPLICATION,
        freeze_window_ms=1,
        skew_ms=1,
        members=[],
    )


def test_keep_last_keeps_the_newest_points() -> None:
    points = [point(f"p{i}", i) for i in range(5)]
    chosen = expired(points, Retention(keep_last=2), utcnow())
    assert [(p.id, why) for p, why in chosen] == [
        ("p2", "keep_last=2"),
        ("p3", "keep_last=2"),
        ("p4", "keep_last=2"),
    ]


def test_max_age_deletes_old_points_but_never_the_newest() -> None:
    points = [point("old", 40), point("older", 50)]
    chosen = expired(points, Retention(max_age_days=30), utcnow())
    assert [p.id for p, _ in chosen] == ["older"]


def test_retention_deletes_old_points_and_their_snapshots_after_a_run(world: World) -> None:
    policy = group_policy(1, retention={"keep_last": 2})
    records = [run_group(policy, "g", world.backends) for _ in range(4)]
    kept = [p.id for p in world.state.list_points("p", "g")]
    assert kept == [records[3].recovery_point, records[2].recovery_point]
    assert len(world.snapshots.store) == 2
    assert world.bus.types().count("quiesce.point.deleted") == 2
