"""GceSnapshotter against the fake Compute API: the point-in-time rule, durability, failures,
labels, find and delete."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from quiesce.errors import ProviderError
from quiesce.ports import Machine, SnapshotCall
from quiesce.record import SnapshotState
from quiesce.tags import POINT_TAG, RUN_TAG, snapshot_tags
from quiesce_gcp.clients import GcpClients
from quiesce_gcp.member import GcpMember
from quiesce_gcp.retry import Backoff
from quiesce_gcp.snapshots import FIXED_WHEN, GceSnapshotter, label_value, snapshot_name

from .conftest import PROJECT, ZONE
from .fake_compute import FakeCompute


def machine(compute: FakeCompute, name: str = "db-vm", data_disks: int = 1) -> Machine:
    inst = compute.add_instance(PROJECT, ZONE, name, data_disks=data_disks)
    return Machine(
        "gcp",
        "db",
        name,
        tuple(d["source"] for d in inst["disks"]),
        {"project": PROJECT, "zone": ZONE},
    )


def member_of(m: Machine) -> GcpMember:
    """The policy member a machine stands for, as declared."""
    return GcpMember.model_validate(
        {
            "name": m.member,
            "provider": "gcp",
            "project": PROJECT,
            "zone": ZONE,
            "select": {"instances": [m.machine_id]},
        }
    )


def call(
    m: Machine, run_id: str = "20261129T100000Z-ABC123", point: str = "rp-1", member: str = "db"
) -> SnapshotCall:
    return SnapshotCall(
        run_id, "Shop", "orders", member, m, point, "application", spec=member_of(m)
    )


def snapper(clients: GcpClients, **kw: object) -> GceSnapshotter:
    return GceSnapshotter(clients, poll_interval=0.0, **kw)  # type: ignore[arg-type]


def test_take_returns_when_the_snapshots_leave_creating(
    compute: FakeCompute, clients: GcpClients
) -> None:
    assert frozenset({"UPLOADING", "READY"}) == FIXED_WHEN
    refs = snapper(clients).take(call(machine(compute)))
    assert len(refs) == 2
    for ref in refs:
        assert ref.state is SnapshotState.PENDING
        assert ref.tags["status"] == "UPLOADING"
        assert ref.fixed_at >= ref.started_at
        assert ref.location.endswith(f"projects/{PROJECT}/global/snapshots/{ref.id}")
        assert ref.method == "gce-snapshot"
    labels = compute.snapshots[(PROJECT, refs[0].id)]["labels"]
    assert labels == {
        "quiesce-managed": "true",
        "quiesce-policy": "shop",
        "quiesce-group": "orders",
        "quiesce-member": "db",
        "quiesce-run": "20261129t100000z-abc123",
        "quiesce-point": "rp-1",
        "quiesce-consistency": "application",
        "quiesce-machine": "db-vm",
    }


def test_fixed_when_is_configurable(compute: FakeCompute, clients: GcpClients) -> None:
    refs = snapper(clients, fixed_when={"READY"}).take(call(machine(compute)))
    assert all(r.state is SnapshotState.COMPLETED and r.durable_at for r in refs)


def test_wait_durable_waits_for_ready(compute: FakeCompute, clients: GcpClients) -> None:
    s = snapper(clients)
    refs = s.take(call(machine(compute)))
    done = s.wait_durable(refs, timeout=10)
    assert [r.state for r in done] == [SnapshotState.COMPLETED] * 2
    assert all(r.durable_at is not None and r.size_bytes == 1048576 for r in done)


def test_wait_durable_reports_a_failed_snapshot(compute: FakeCompute, clients: GcpClients) -> None:
    s = snapper(clients)
    refs = s.take(call(machine(compute)))
    compute.snapshots[(PROJECT, refs[0].id)]["status"] = "FAILED"
    done = s.wait_durable(refs, timeout=10)
    assert done[0].state is SnapshotState.FAILED
    assert done[1].state is SnapshotState.COMPLETED


def test_a_failed_operation_fails_take_and_cleans_up_the_machines_other_snapshots(
    compute: FakeCompute, clients: GcpClients
) -> None:
    compute.fail_disks.add("db-vm-data1")
    with pytest.raises(ProviderError) as err:
        snapper(clients).take(call(machine(compute)))
    assert "I/O error" in str(err.value)
    assert compute.snapshots == {}


def test_names_are_valid_and_labels_are_sanitized() -> None:
    name = snapshot_name("R.1", "vm", f"projects/p/zones/z/disks/{'D' * 80}")
    assert len(name) <= 63
    assert name[0].isalpha()
    assert name == name.lower()
    assert label_value("Run.ID:" + "x" * 80) == "run_id_" + "x" * 56


def test_find_and_delete_only_touch_quiesce_snapshots(
    compute: FakeCompute, clients: GcpClients
) -> None:
    s = GceSnapshotter(clients, projects={"orders": [PROJECT]}, poll_interval=0.0)
    m = machine(compute)
    first = s.take(call(m, "run-a"))
    s.take(call(m, "run-b"))
    assert len(s.find("Shop", "orders")) == 4
    found = s.find("Shop", "orders", "run-a")
    assert sorted(r.id for r in found) == sorted(r.id for r in first)
    # Someone else's snapshot with the same name pattern is never deleted.
    compute.snapshots[(PROJECT, first[0].id)]["labels"] = {"team": "other"}
    with pytest.raises(ProviderError) as err:
        s.delete(first[0])
    assert err.value.code == "NotManaged"
    s.delete(first[1])
    s.delete(first[1])  # gone already: not an error
    assert (PROJECT, first[1].id) not in compute.snapshots


def test_a_rate_limited_poll_during_take_is_retried_and_keeps_every_snapshot(
    compute: FakeCompute, clients: GcpClients
) -> None:
    """A 429 while polling during the freeze used to fail that disk and delete the others."""
    waits: list[float] = []
    s = snapper(clients, backoff=Backoff(sleep=waits.append, random=lambda: 0.5))
    compute.throttle("GET", r"/global/snapshots$", count=2)  # the run's listing

    refs = s.take(call(machine(compute)))

    assert len(refs) == 2
    assert len(compute.snapshots) == 2
    assert len(waits) == 2  # each refusal waited once, by the core's backoff


def test_a_rate_limited_poll_while_waiting_for_durability_is_retried(
    compute: FakeCompute, clients: GcpClients
) -> None:
    waits: list[float] = []
    s = snapper(clients, backoff=Backoff(sleep=waits.append, random=lambda: 0.5))
    refs = s.take(call(machine(compute)))
    compute.throttle("GET", r"/global/snapshots$", count=1)  # the run's listing

    done = s.wait_durable(refs, timeout=10)

    assert [r.state for r in done] == [SnapshotState.COMPLETED] * 2
    assert all(r.tags["status"] == "READY" and r.size_bytes == 1048576 for r in done)
    assert waits == [0.05]  # the core's backoff: half of its first step


# ------------------------------------------------------------------------------ exact tags


def core(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if k.startswith("quiesce:")}


def test_the_exact_tag_values_are_kept_in_the_description_and_come_back_from_find(
    compute: FakeCompute, clients: GcpClients
) -> None:
    """Labels hold lowercased values only; the core recognises a snapshot by the exact ones."""
    s = GceSnapshotter(clients, projects={"orders": [PROJECT]}, poll_interval=0.0)
    taking = call(machine(compute), "20261202T040000Z-AbC123", "rp-20261202T040000Z-AbC123")

    taken = s.take(taking)

    for ref in taken:
        held = compute.snapshots[(PROJECT, ref.id)]
        assert json.loads(held["description"]) == snapshot_tags(taking)
        assert held["labels"]["quiesce-run"] == "20261202t040000z-abc123"
        assert core(ref.tags) == snapshot_tags(taking)
        assert ref.tags["quiesce-run"] == "20261202t040000z-abc123"  # the labels too
    found = s.find("Shop", "orders", "20261202T040000Z-AbC123")
    assert sorted(r.id for r in found) == sorted(r.id for r in taken)
    for ref in found:
        assert ref.tags[RUN_TAG] == "20261202T040000Z-AbC123"
        assert ref.tags[POINT_TAG] == "rp-20261202T040000Z-AbC123"
        assert ref.tags["quiesce:policy"] == "Shop"
        assert ref.machine_id == "db-vm"
        created = compute.snapshots[(PROJECT, ref.id)]["creationTimestamp"]
        assert ref.started_at == ref.fixed_at == datetime.fromisoformat(created)


def test_a_run_whose_id_differs_only_in_case_is_another_run(
    compute: FakeCompute, clients: GcpClients
) -> None:
    s = GceSnapshotter(clients, projects={"orders": [PROJECT]}, poll_interval=0.0)
    m = machine(compute)
    upper = s.take(call(m, "20261202T040000Z-ABC123"))
    lower = s.take(call(m, "20261202t040000z-abc123"))  # the same labels

    assert sorted(r.id for r in s.find("Shop", "orders", "20261202T040000Z-ABC123")) == sorted(
        r.id for r in upper
    )
    assert sorted(r.id for r in s.find("Shop", "orders", "20261202t040000z-abc123")) == sorted(
        r.id for r in lower
    )
    assert s.find("shop", "orders") == []  # the policy is `Shop`
    assert len(s.find("Shop", "orders")) == 4


def test_an_exact_value_its_label_disagrees_with_is_not_believed(
    compute: FakeCompute, clients: GcpClients
) -> None:
    """A snapshot relabelled into another run by hand, or one whose description is not ours,
    carries no core tag it cannot prove: the orphan sweep then never takes it for a run's."""
    s = GceSnapshotter(clients, projects={"orders": [PROJECT]}, poll_interval=0.0)
    m = machine(compute)
    relabelled, foreign = s.take(call(m, "20261202T040000Z-ABC123"))
    compute.snapshots[(PROJECT, relabelled.id)]["labels"]["quiesce-run"] = "20261203t000000z-x"
    compute.snapshots[(PROJECT, foreign.id)]["description"] = "nightly backup (by hand)"

    (moved,) = s.find("Shop", "orders", "20261203T000000Z-X")
    (plain,) = s.find("Shop", "orders", "20261202T040000Z-ABC123")

    assert moved.id == relabelled.id
    assert RUN_TAG not in moved.tags  # the description says another run: not believed
    assert moved.tags[POINT_TAG] == "rp-1"  # its label still agrees
    assert plain.id == foreign.id
    assert core(plain.tags) == {}
    assert plain.tags["quiesce-run"] == "20261202t040000z-abc123"


def test_labels_the_api_would_refuse_are_never_sent(
    compute: FakeCompute, clients: GcpClients
) -> None:
    """The fake refuses labels as the API does (uppercase, `:`, over 63 characters)."""
    s = snapper(clients)
    long_member = "Member.Of:" + "X" * 80
    taking = call(machine(compute), "20261202T040000Z-ABC123", member=long_member)

    (ref, _) = s.take(taking)

    held = compute.snapshots[(PROJECT, ref.id)]
    assert held["labels"]["quiesce-member"] == label_value(long_member)
    assert ref.tags["quiesce:member"] == long_member
