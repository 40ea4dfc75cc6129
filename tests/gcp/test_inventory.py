"""GceInventory against the fake Compute API through the real google-cloud-compute client."""

from __future__ import annotations

import pytest

from quiesce.errors import ProviderError
from quiesce_gcp.clients import GcpClients
from quiesce_gcp.inventory import GceInventory, label_filter
from quiesce_gcp.member import GcpMember

from .conftest import PROJECT, ZONE
from .fake_compute import FakeCompute


def member(**select: object) -> GcpMember:
    return GcpMember.model_validate(
        {"name": "db", "provider": "gcp", "project": PROJECT, "zone": ZONE, "select": select}
    )


def test_instances_by_name_become_machines_with_their_disks(
    compute: FakeCompute, clients: GcpClients
) -> None:
    compute.add_instance(PROJECT, ZONE, "db-1", data_disks=2)
    compute.add_instance(PROJECT, ZONE, "db-2")
    machines = GceInventory(clients).resolve(member(instances=["db-2", "db-1"]))
    assert [m.machine_id for m in machines] == ["db-1", "db-2"]
    first = machines[0]
    assert first.provider == "gcp"
    assert first.member == "db"
    assert [v.rsplit("/", 1)[1] for v in first.volumes] == ["db-1-boot", "db-1-data1", "db-1-data2"]
    assert first.volumes[0].endswith(f"projects/{PROJECT}/zones/{ZONE}/disks/db-1-boot")
    assert first.attributes["project"] == PROJECT
    assert first.attributes["zone"] == ZONE
    assert first.attributes["os"] == "linux"
    assert first.attributes["hook_channel"] == "agent"


def test_instances_by_labels_must_carry_all_of_them(
    compute: FakeCompute, clients: GcpClients
) -> None:
    compute.add_instance(PROJECT, ZONE, "a", labels={"app": "orders", "tier": "db"})
    compute.add_instance(PROJECT, ZONE, "b", labels={"app": "orders", "tier": "web"})
    compute.add_instance(PROJECT, ZONE, "c", labels={"app": "orders", "tier": "db"})
    machines = GceInventory(clients).resolve(member(labels={"app": "orders", "tier": "db"}))
    assert [m.machine_id for m in machines] == ["a", "c"]
    _, path = compute.requests[-1]
    assert path == f"projects/{PROJECT}/zones/{ZONE}/instances"
    assert label_filter({"tier": "db", "app": "orders"}) == (
        '(labels.app = "orders") (labels.tier = "db")'
    )


def test_a_missing_instance_is_a_provider_error(clients: GcpClients) -> None:
    with pytest.raises(ProviderError) as err:
        GceInventory(clients).resolve(member(instances=["nope"]))
    assert err.value.code == "InstanceNotFound"
