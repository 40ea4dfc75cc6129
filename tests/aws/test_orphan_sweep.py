"""The orphan sweep on AWS looks in a group's copy regions too (on moto, with the backends the
functions run with): replicas the catalog holds are kept, those of a point it no longer lists
or that their finished run never recorded are deleted in their region."""

from __future__ import annotations

import pytest

from quiesce.engine import run_group
from quiesce.engine.orphans import sweep_orphans
from quiesce.record import RunStatus
from quiesce.tags import COPY_OF_TAG, REGION_TAG
from quiesce_aws.clients import SessionClients
from quiesce_aws.provider import find_regions
from quiesce_aws.snapshots import region_of

from .conftest import REGION, Fleet, Wire
from .restore_fakes import DR_REGION, leftovers
from .test_drill_end_to_end import World


@pytest.fixture
def world(clients: SessionClients, fleet: Fleet, wire: Wire) -> World:
    return World(clients, fleet, wire)


def test_find_looks_in_the_members_regions_and_the_copy_regions(
    world: World,
) -> None:
    assert find_regions(world.policy) == {"orders": sorted({REGION, DR_REGION})}
    point_id = world.back_up()

    found = world.backends.providers["aws"].snapshots.find("shop", "orders")

    replicas = set(world.replicas(point_id))
    assert {r.id for r in found if region_of(r) == DR_REGION} == replicas
    assert all(r.tags[COPY_OF_TAG] for r in found if r.id in replicas)


def test_recorded_replicas_are_kept_and_a_later_run_sweeps_nothing(
    world: World,
) -> None:
    point_id = world.back_up()
    replicas = world.replicas(point_id)

    deleted, problems = sweep_orphans(world.policy, world.backends)
    world.back_up()  # its start sweeps too

    assert (deleted, problems) == ([], [])
    assert set(replicas) <= set(leftovers(DR_REGION)["snapshots"])


def test_replicas_of_a_point_the_catalog_no_longer_lists_are_deleted_in_their_region(
    world: World,
) -> None:
    point_id = world.back_up()
    replicas = world.replicas(point_id)
    world.backends.state.delete_point(point_id)  # unlisted; its deletes never happened

    deleted, problems = sweep_orphans(world.policy, world.backends)

    assert problems == []
    assert set(replicas) <= set(deleted)
    assert set(replicas).isdisjoint(leftovers(DR_REGION)["snapshots"])


def test_a_replica_its_finished_run_never_recorded_is_deleted_by_the_next_run(
    world: World,
) -> None:
    point_id = world.back_up()
    recorded = world.replicas(point_id)
    point = world.backends.state.get_point(point_id)
    assert point is not None
    source = point.members[0].snapshots[0]
    snapshots = world.backends.providers["aws"].snapshots
    # Started as the engine starts a copy, by a run that died before saving it on the point.
    tags = {**source.tags, COPY_OF_TAG: source.id, REGION_TAG: DR_REGION}
    stray = snapshots.copy_to_region(source, DR_REGION, None, tags)
    assert stray.id in leftovers(DR_REGION)["snapshots"]
    run = world.backends.state.get_run(point.run_id)
    assert run is not None
    run.status = RunStatus.RUNNING  # while its run is going, it may still record it
    world.backends.state.save_run(run)
    assert sweep_orphans(world.policy, world.backends)[0] == []
    run.status = RunStatus.SUCCEEDED
    world.backends.state.save_run(run)

    record = run_group(world.policy, "orders", world.backends)

    assert record.status is RunStatus.SUCCEEDED, record.errors
    left = set(leftovers(DR_REGION)["snapshots"])
    assert stray.id not in left
    assert set(recorded) <= left
