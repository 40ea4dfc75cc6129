"""The Snapshotter contract: what every provider's snapshots (local folders, EBS, Azure disks and
restore points, persistent-disk snapshots) and the engine's fake must do, written once.

A provider's test module subclasses SnapshotterContract and provides a `harness` fixture: a
SnapshotHarness that makes machines to snapshot and can look behind the snapshotter's back.
Where a backend cannot express a case, its harness says so (`cannot`), and the case is skipped
with that reason.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod

import pytest

from quiesce.errors import ProviderError
from quiesce.ports import Machine, SnapshotCall, Snapshotter
from quiesce.record import SnapshotRef, SnapshotState
from quiesce.tags import MANAGED_TAG, POINT_TAG, RUN_TAG

POLICY = "shop"
GROUP = "orders"
RUN_1 = "20261129T100000Z-aaa111"
RUN_2 = "20261129T110000Z-bbb222"


class SnapshotHarness(ABC):
    """One provider's snapshotter, and what a test needs around it."""

    snapshotter: Snapshotter
    #: The cases this backend cannot express, each with the reason.
    cannot: dict[str, str] = {}
    #: The `quiesce:` tags of `take`'s refs this backend keeps nowhere, each with the reason:
    #: `find` leaves them out rather than guess them.
    unkept_tags: dict[str, str] = {}

    @abstractmethod
    def machine(self, name: str) -> Machine:
        """A new machine of member `db` of group `orders`, with at least one volume."""

    @abstractmethod
    def call(self, machine: Machine, run_id: str) -> SnapshotCall:
        """The engine's call to snapshot `machine` for `run_id` (policy `shop`, group `orders`)."""

    @abstractmethod
    def exists(self, snapshot: SnapshotRef) -> bool:
        """Whether the snapshot is still in the backend (asked without the snapshotter)."""

    def volumes(self, machine: Machine) -> list[str]:
        """The volumes `take` snapshots, in order: each of the machine's, unless the backend
        snapshots a machine as one (then the harness names what its refs say)."""
        return sorted(machine.volumes)

    def foreign(self, machine: Machine) -> SnapshotRef:
        """A snapshot of one of the machine's volumes that Quiesce did not make, as a ref a
        confused caller could hand to `delete`."""
        raise NotImplementedError


def _skip_unless(harness: SnapshotHarness, case: str) -> None:
    if case in harness.cannot:
        pytest.skip(harness.cannot[case])


class SnapshotterContract:
    """Subclass it (as Test...) next to a `harness` fixture."""

    def test_take_snapshots_every_volume_and_marks_them_quiesce_s_own(
        self, harness: SnapshotHarness
    ) -> None:
        machine = harness.machine("db-1")

        refs = harness.snapshotter.take(harness.call(machine, RUN_1))

        assert sorted(r.volume for r in refs) == harness.volumes(machine)
        for ref in refs:
            assert ref.provider == machine.provider
            assert ref.machine_id == machine.machine_id
            assert ref.started_at <= ref.fixed_at
            assert ref.state in (SnapshotState.PENDING, SnapshotState.COMPLETED)
            assert harness.exists(ref)
        assert {r.id for r in harness.snapshotter.find(POLICY, GROUP, RUN_1)} == {
            r.id for r in refs
        }

    def test_take_many_answers_every_call_in_order_with_that_call_s_snapshots(
        self, harness: SnapshotHarness
    ) -> None:
        machine = harness.machine("db-1")
        runs = [RUN_1, RUN_2]

        outcomes = harness.snapshotter.take_many([harness.call(machine, run) for run in runs])

        assert len(outcomes) == len(runs)
        for run, refs in zip(runs, outcomes, strict=True):
            assert not isinstance(refs, BaseException), refs
            assert sorted(r.volume for r in refs) == harness.volumes(machine)
            assert all(r.machine_id == machine.machine_id and harness.exists(r) for r in refs)
            assert {r.id for r in harness.snapshotter.find(POLICY, GROUP, run)} == {
                r.id for r in refs
            }

    def test_wait_durable_completes_every_snapshot(self, harness: SnapshotHarness) -> None:
        refs = harness.snapshotter.take(harness.call(harness.machine("db-1"), RUN_1))

        done = harness.snapshotter.wait_durable(refs, timeout=60)

        assert [r.id for r in done] == [r.id for r in refs]
        assert all(r.state is SnapshotState.COMPLETED and r.durable_at for r in done)

    def test_find_gives_back_the_exact_quiesce_tags_take_gave(
        self, harness: SnapshotHarness
    ) -> None:
        """What the orphan sweep and the closers go by: a snapshot found is recognised by the
        core's tags (quiesce.tags) with the values the run gave, uppercase letters and all."""
        machine = harness.machine("db-1")
        call = harness.call(machine, RUN_1)
        assert call.run_id != call.run_id.lower()

        taken = harness.snapshotter.take(call)
        found = {r.id: r for r in harness.snapshotter.find(POLICY, GROUP, RUN_1)}

        identity = {
            MANAGED_TAG: "true",
            "quiesce:policy": POLICY,
            "quiesce:group": GROUP,
            RUN_TAG: call.run_id,
            POINT_TAG: call.recovery_point,
        }
        assert not set(identity) & set(harness.unkept_tags)
        assert set(found) == {r.id for r in taken}
        for ref in taken:
            given = {k: v for k, v in ref.tags.items() if k.startswith("quiesce:")}
            back = {k: v for k, v in found[ref.id].tags.items() if k.startswith("quiesce:")}
            assert given.items() >= identity.items()
            kept = {k: v for k, v in given.items() if k not in harness.unkept_tags}
            assert back == kept, (ref.id, back, kept)

    def test_find_lists_the_group_s_snapshots_and_one_run_s_when_asked(
        self, harness: SnapshotHarness
    ) -> None:
        machine = harness.machine("db-1")
        first = harness.snapshotter.take(harness.call(machine, RUN_1))
        second = harness.snapshotter.take(harness.call(machine, RUN_2))

        found = harness.snapshotter.find(POLICY, GROUP)
        of_run_2 = harness.snapshotter.find(POLICY, GROUP, RUN_2)

        assert {r.id for r in found} == {r.id for r in first + second}
        assert {r.id for r in of_run_2} == {r.id for r in second}
        assert harness.snapshotter.find(POLICY, "other-group") == []

    def test_delete_removes_a_snapshot_and_deleting_it_again_is_quiet(
        self, harness: SnapshotHarness
    ) -> None:
        refs = harness.snapshotter.take(harness.call(harness.machine("db-1"), RUN_1))
        done = harness.snapshotter.wait_durable(refs, timeout=60)
        gone, kept = done[0], done[1:]

        harness.snapshotter.delete(gone)
        harness.snapshotter.delete(gone)

        assert not harness.exists(gone)
        assert {r.id for r in harness.snapshotter.find(POLICY, GROUP, RUN_1)} == {
            r.id for r in kept
        }

    def test_a_snapshot_quiesce_did_not_make_is_never_found_nor_deleted(
        self, harness: SnapshotHarness
    ) -> None:
        _skip_unless(harness, "foreign")
        machine = harness.machine("db-1")
        ours = harness.snapshotter.take(harness.call(machine, RUN_1))
        foreign = harness.foreign(machine)

        assert foreign.id not in {r.id for r in harness.snapshotter.find(POLICY, GROUP)}
        with contextlib.suppress(ProviderError):  # refused, with a reason; or quietly kept
            harness.snapshotter.delete(foreign)
        assert harness.exists(foreign)
        assert all(harness.exists(r) for r in ours)
