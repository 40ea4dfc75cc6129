"""The orphan sweep keeps the replicas a point records on Azure: a restore point copied to
another region is listed by `find` under the id the point records, so the sweep (on its own and
at the start of the next run) deletes nothing; once the point is unlisted it deletes them."""

from __future__ import annotations

import pytest

from quiesce.engine import run_group
from quiesce.engine.orphans import sweep_orphans
from quiesce.policy.model import Policy
from quiesce.ports import Backends
from quiesce.record import RunStatus
from quiesce.tags import COPY_OF_TAG

from .fake_arm import FakeArm
from .test_drill_end_to_end import DR, backed_up, backends, copies_finish, policy


@pytest.fixture
def group(arm: FakeArm) -> tuple[Policy, Backends]:
    arm.add_vm("db-1", data_disks=1)
    arm.add_vm("app-1", data_disks=2)
    pol = policy()
    return pol, backends(arm, pol)


def copied(arm: FakeArm, pol: Policy, be: Backends) -> tuple[str, set[str]]:
    """A point backed up and copied to the other region: its id and its replicas' ids."""
    point = backed_up(arm, pol, be)
    copies_finish(arm)
    (copy,) = point.copies
    assert copy.region == DR
    return point.id, {s.id for m in copy.members for s in m.snapshots}


def test_recorded_replicas_are_found_under_their_recorded_ids_and_kept(
    arm: FakeArm, group: tuple[Policy, Backends]
) -> None:
    pol, be = group
    _, replicas = copied(arm, pol, be)
    found = be.providers["azure"].snapshots.find("shop", "orders")
    assert replicas <= {r.id for r in found if r.tags.get(COPY_OF_TAG)}
    before = arm.resources()

    deleted, problems = sweep_orphans(pol, be)
    again = run_group(pol, "orders", be)  # whose start sweeps too

    assert (deleted, problems) == ([], [])
    assert again.status is RunStatus.SUCCEEDED, again.errors
    assert set(before) <= set(arm.resources())


def test_replicas_of_a_point_no_longer_listed_are_deleted(
    arm: FakeArm, group: tuple[Policy, Backends]
) -> None:
    pol, be = group
    point_id, replicas = copied(arm, pol, be)
    be.state.delete_point(point_id)  # unlisted; its deletes never happened

    deleted, problems = sweep_orphans(pol, be)

    assert problems == []
    assert replicas <= set(deleted)
    assert replicas.isdisjoint(arm.resources())
