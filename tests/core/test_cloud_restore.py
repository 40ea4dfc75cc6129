"""A whole recovery point restored in its clouds: every step planned before anything is made,
managed members to the point's restore time T, and a failure mid-way reported with what was
made before it."""

from __future__ import annotations

import pytest

from quiesce.cloud_restore import resource_name, restore_in_cloud
from quiesce.engine import run_group
from quiesce.errors import NotFoundError, QuiesceError
from tests.engine.conftest import group_policy
from tests.fakes import World, make_world


@pytest.fixture
def backed_up() -> tuple[World, str]:
    world = make_world()
    world.snapshots.pitr["m2"] = 1.0
    record = run_group(group_policy(3, hooked=2), "g", world.backends)
    assert record.recovery_point is not None
    return world, record.recovery_point


def test_the_plan_names_every_call_and_creates_nothing(backed_up: tuple[World, str]) -> None:
    world, point_id = backed_up
    point = world.state.get_point(point_id)
    assert point is not None
    assert point.restore_time is not None

    result = restore_in_cloud(group_policy(3, hooked=2), world.backends, point_id)

    assert not result.executed
    assert result.restore_time == point.restore_time
    assert [(s.member, s.action) for s in result.steps] == [
        ("m0", "FakeCreateDisk"),
        ("m1", "FakeCreateDisk"),
        ("m2", "FakeRestoreToTime"),
    ]
    assert result.steps[2].parameters["time"] == point.restore_time.isoformat()
    assert all(s.created == [] for s in result.steps)
    assert world.snapshots.restored == []


def test_execute_makes_every_call_and_lists_what_it_created(
    backed_up: tuple[World, str],
) -> None:
    world, point_id = backed_up

    result = restore_in_cloud(
        group_policy(3, hooked=2), world.backends, point_id, execute=True, prefix="drill"
    )

    assert result.ok
    assert [s.created for s in result.steps] == [
        ["fake://drill-m0"],
        ["fake://drill-m1"],
        ["fake://drill-m2"],
    ]
    restored_db = next(r for r in world.snapshots.restored if r.member == "m2")
    assert restored_db.restore_time is not None


def test_a_member_its_provider_cannot_restore_refuses_the_point_before_anything_is_made(
    backed_up: tuple[World, str],
) -> None:
    world, point_id = backed_up
    world.snapshots.no_cloud_restore.add("m1")

    with pytest.raises(QuiesceError, match="cannot be restored in its cloud: m1"):
        restore_in_cloud(group_policy(3, hooked=2), world.backends, point_id, execute=True)

    assert world.snapshots.restored == []


def test_a_call_that_fails_stops_the_restore_and_says_what_was_made(
    backed_up: tuple[World, str],
) -> None:
    world, point_id = backed_up
    world.snapshots.cloud_restore_failing.add("m1")

    result = restore_in_cloud(group_policy(3, hooked=2), world.backends, point_id, execute=True)

    assert not result.ok
    assert result.error is not None
    assert "m1" in result.error
    assert "ThrottlingException" in result.error
    assert result.steps[0].created == [f"fake://{result.steps[0].parameters['name']}"]
    assert result.steps[1].created == []
    assert result.steps[2].created == []
    assert [r.member for r in world.snapshots.restored] == ["m0"]


def test_an_unknown_point_or_member_is_named(backed_up: tuple[World, str]) -> None:
    world, point_id = backed_up
    with pytest.raises(NotFoundError, match="'nope'"):
        restore_in_cloud(group_policy(3, hooked=2), world.backends, "nope")
    with pytest.raises(NotFoundError, match="its members: m0, m1, m2"):
        restore_in_cloud(group_policy(3, hooked=2), world.backends, point_id, member="x")


def test_resource_names_are_what_every_cloud_accepts() -> None:
    assert resource_name("restore-20261202t0400", "Orders_DB", "/dev/sdf", 1) == (
        "restore-20261202t0400-orders-db"
    )
    assert resource_name("drill", "db", "/dev/sdf", 2) == "drill-db-dev-sdf"
    assert resource_name("9x", "db", "v", 1) == "q-9x-db"


def test_points_show_t_and_each_members_method(backed_up: tuple[World, str]) -> None:
    from rich.console import Console

    from quiesce.cli.render import points_table

    world, point_id = backed_up
    point = world.state.get_point(point_id)
    assert point is not None
    assert point.restore_time is not None
    console = Console(record=True, width=250)
    console.print(points_table([point]))
    text = console.export_text()

    assert "T (pitr, UTC)" in text
    assert point.restore_time.strftime("%Y-%m-%d %H:%M:%S") in text
    assert "m2: pitr" in text
    assert "m0: snapshot" in text
