"""Copies in another region, a group launched from a point in isolation, verified, measured and
torn down, and the drill that does all of it on a schedule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from quiesce.drill import run_drill
from quiesce.engine import run_group
from quiesce.errors import NotFoundError, QuiesceError
from quiesce.group_restore import cleanup_restore, restore_group
from quiesce.policy import Policy
from quiesce.record import SnapshotState
from quiesce.triggers.event import TriggerEvent
from quiesce.triggers.router import fire
from tests.fakes import World, make_world

HOOKS = {
    "pre": {"run": ["/hooks/pre"], "timeout_seconds": 1},
    "post": {"run": ["/hooks/post"]},
    "verify": {"run": ["/hooks/verify"]},
}


def policy(keep_last: int | None = 2, **group: Any) -> Policy:
    return Policy.model_validate(
        {
            "version": 1,
            "name": "shop",
            "groups": {
                "orders": {
                    "members": [
                        {"name": "db", "provider": "local", "volumes": ["/d/db"], "hooks": HOOKS},
                        {"name": "app", "provider": "local", "volumes": ["/d/app"], "hooks": HOOKS},
                    ],
                    "restore": {"network": "net-isolated", "security_groups": ["sg-drill"]},
                    "copies": [
                        {
                            "region": "dr-region",
                            "keep_last": keep_last,
                            "restore": {"network": "net-dr"},
                        }
                    ],
                    **group,
                }
            },
            "triggers": [
                {"name": "monthly", "group": "orders", "schedule": "0 3 1 * *", "action": "drill"},
                {
                    "name": "dr-monthly",
                    "group": "orders",
                    "schedule": "0 4 1 * *",
                    "action": "drill",
                    "region": "dr-region",
                },
            ],
        }
    )


@pytest.fixture
def world() -> World:
    return make_world()


def backed_up(world: World, p: Policy | None = None) -> str:
    record = run_group(p or policy(), "orders", world.backends)
    assert record.recovery_point is not None, record.errors
    return record.recovery_point


def test_a_point_is_copied_to_the_group_s_region_and_tracked_as_its_replica(world: World) -> None:
    point_id = backed_up(world)

    point = world.state.get_point(point_id)
    assert point is not None
    (copy,) = point.copies
    assert copy.region == "dr-region"
    assert copy.state is SnapshotState.COMPLETED
    replicas = [s for m in copy.members for s in m.snapshots]
    assert {s.id for s in replicas} == {f"{s.id}@dr-region" for s in point.snapshots}
    assert all(s.tags["quiesce:copy-of"] in {o.id for o in point.snapshots} for s in replicas)


def test_a_copy_still_on_its_way_refuses_a_restore_there_with_its_state(world: World) -> None:
    world.snapshots.pending_regions.add("dr-region")
    point_id = backed_up(world)

    with pytest.raises(QuiesceError, match="in dr-region is pending"):
        restore_group(policy(), world.backends, point_id, region="dr-region")
    with pytest.raises(NotFoundError, match="completed copy in dr-region"):
        run_drill(policy(), "orders", world.backends, region="dr-region")
    assert world.restorer.resources == {}

    world.snapshots.pending_regions.clear()  # the copy arrives
    restored = restore_group(policy(), world.backends, point_id, region="dr-region", cleanup=True)
    assert restored.ok, restored.errors


def test_a_copy_the_region_refuses_is_recorded_failed_and_the_run_still_succeeds(
    world: World,
) -> None:
    world.snapshots.copy_refused.add("dr-region")
    record = run_group(policy(), "orders", world.backends)

    assert record.status.value == "succeeded"
    assert any("could not start" in w for w in record.warnings)
    point = world.state.get_point(record.recovery_point or "")
    assert point is not None
    assert point.copies[0].state is SnapshotState.FAILED


def test_a_group_is_launched_in_the_copy_region_verified_measured_and_left_nothing(
    world: World,
) -> None:
    point_id = backed_up(world)

    result = restore_group(policy(), world.backends, point_id, region="dr-region", cleanup=True)

    assert result.ok, result.errors
    assert result.verified is True
    assert [m.member for m in result.machines] == ["db", "app"]
    assert all(m.ready and m.verify is not None and m.verify.ok for m in result.machines)
    launched = world.restorer.launched
    assert {r.site.network for r in launched} == {"net-dr"}
    assert all(s.id.endswith("@dr-region") for r in launched for s in r.snapshots)
    assert result.rto_seconds is not None
    assert set(result.phases) == {"restore", "ready", "verify", "cleanup"}
    assert sorted(result.deleted) == sorted(result.created)
    assert world.restorer.resources == {}, "nothing left behind"
    verified_on = [m for _, k, _, m in world.log.entries if k == "verify:sent"]
    assert sorted(verified_on) == sorted(m.machine for m in result.machines)


def test_a_failed_verify_fails_the_restore_and_still_tears_it_down(world: World) -> None:
    point_id = backed_up(world)
    world.hooks.behaviour[("app", "verify")] = "fail"

    result = restore_group(policy(), world.backends, point_id, cleanup=True)

    assert result.verified is False
    assert not result.ok
    assert result.rto_seconds is None
    assert any("verify hook of app" in e for e in result.errors)
    assert world.restorer.resources == {}


def test_a_restore_interrupted_half_way_is_cleaned_up_by_its_label(world: World) -> None:
    point_id = backed_up(world)
    world.restorer.fail_launch.add("app")

    result = restore_group(policy(), world.backends, point_id)

    assert any("InsufficientInstanceCapacity" in e for e in result.errors)
    left = dict(world.restorer.resources)
    assert left
    assert set(left.values()) == {result.label}
    deleted, remaining = cleanup_restore(world.backends, result.label, [None])
    assert sorted(deleted) == sorted(left)
    assert remaining == []
    assert world.restorer.resources == {}


def test_a_copy_that_never_answers_is_reported_and_torn_down(world: World) -> None:
    point_id = backed_up(world)
    world.restorer.never_ready.add("db")

    result = restore_group(policy(), world.backends, point_id, cleanup=True, ready_timeout=1)

    assert any("did not answer" in e for e in result.errors)
    assert world.restorer.resources == {}


def test_a_drill_records_its_verdict_and_recovery_time_on_the_point_and_publishes_it(
    world: World,
) -> None:
    point_id = backed_up(world)
    event = TriggerEvent(
        kind="schedule",
        source="test",
        id="drill-1",
        time=datetime(2026, 12, 1, 3, tzinfo=UTC),
        trigger="monthly",
    )

    (outcome,) = fire(policy(), event, world.backends)

    assert outcome.action == "drilled"
    assert outcome.drill is not None
    assert outcome.drill.verdict == "passed"
    point = world.state.get_point(point_id)
    assert point is not None
    (drill,) = point.drills
    assert drill.rto_seconds is not None
    assert drill.left == []
    assert world.restorer.resources == {}
    published = [e for e in world.bus.events if e.type.startswith("quiesce.drill.")]
    assert [e.type for e in published] == ["quiesce.drill.completed"]
    assert published[0].data["recovery_point"] == point_id
    again = fire(policy(), event, world.backends)
    assert [o.action for o in again] == ["duplicate"], "a redelivered drill event drills once"


def test_a_failed_drill_is_published_as_failed(world: World) -> None:
    backed_up(world)
    world.hooks.behaviour[("db", "verify")] = "fail"

    drill = run_drill(policy(), "orders", world.backends)

    assert drill.verdict == "failed"
    assert [e.type for e in world.bus.events if e.type.startswith("quiesce.drill.")] == [
        "quiesce.drill.failed"
    ]


def test_each_region_keeps_its_copies_by_its_own_rule(world: World) -> None:
    p = policy(keep_last=1)
    first = backed_up(world, p)
    second = backed_up(world, p)

    old = world.state.get_point(first)
    new = world.state.get_point(second)
    assert old is not None
    assert new is not None
    assert old.copies == [], "the older point's copy went: keep_last=1 in dr-region"
    assert [c.region for c in new.copies] == ["dr-region"]
    assert not any(
        k.endswith("@dr-region") and first.split("/")[0] in k for k in world.snapshots.store
    )


def test_a_drill_needs_a_site_to_launch_into() -> None:
    with pytest.raises(Exception, match="needs the group's `restore:` site"):
        Policy.model_validate(
            {
                "version": 1,
                "name": "shop",
                "groups": {
                    "orders": {
                        "consistency": "crash",
                        "members": [{"name": "db", "provider": "local", "volumes": ["/d"]}],
                    }
                },
                "triggers": [
                    {"name": "d", "group": "orders", "schedule": "0 3 1 * *", "action": "drill"}
                ],
            }
        )


def test_points_show_copies_and_the_last_drill(world: World) -> None:
    from rich.console import Console

    from quiesce.cli.render import launch_summary, points_table

    point_id = backed_up(world)
    run_drill(policy(), "orders", world.backends)
    point = world.state.get_point(point_id)
    assert point is not None
    console = Console(record=True, width=300)
    console.print(points_table([point]))
    text = console.export_text()
    assert "dr-region: completed" in text
    assert f"passed in {point.drills[-1].rto_seconds:g} s" in text

    launched = restore_group(policy(), world.backends, point_id)
    console = Console(record=True, width=300)
    launch_summary(console, launched)
    shown = console.export_text()
    assert f"label {launched.label}" in shown
    assert f"quiesce restore-cleanup POLICY {launched.label}" in shown
    cleanup_restore(world.backends, launched.label, [None])


@pytest.mark.parametrize(("inspect_on", "args"), [(None, ()), ("i-inspect", ("/dev/sdf",))])
def test_a_verify_hook_gets_one_restore_path_at_most(
    world: World, inspect_on: str | None, args: tuple[str, ...]
) -> None:
    """The guest protocol carries one restore path: none on a launched copy (it is the
    machine), the first restored volume's place on an inspection machine."""
    site = {"network": "net-isolated", **({"inspect_on": inspect_on} if inspect_on else {})}
    p = policy(restore=site)
    point_id = backed_up(world, p)

    restore_group(p, world.backends, point_id, cleanup=True)

    verifies = [c for c in world.hooks.calls if c.phase == "verify"]
    assert verifies
    assert {c.extra_args for c in verifies} == {args}
