"""Ec2Inventory: a member's instances (by ids or tags) with their EBS volumes, against moto."""

from __future__ import annotations

from typing import Any

import pytest

from quiesce.errors import ProviderError
from quiesce.policy.model import LocalMember
from quiesce_aws.clients import SessionClients
from quiesce_aws.inventory import Ec2Inventory
from quiesce_aws.member import AwsMember

from .conftest import REGION, Fleet, Sleeps, Wire, quick_backoff


def member(**fields: Any) -> AwsMember:
    data: dict[str, Any] = {"name": "db", "provider": "aws", "region": REGION, **fields}
    return AwsMember.model_validate(data)


def test_a_member_resolves_by_instance_ids_to_machines_with_their_ebs_volumes(
    clients: SessionClients, fleet: Fleet
) -> None:
    first, second = fleet.launch(2, data_volumes=2)
    fleet.launch(1)  # not selected

    machines = Ec2Inventory(clients).resolve(member(select={"instance_ids": [second, first]}))

    assert [m.machine_id for m in machines] == sorted([first, second])
    for m in machines:
        assert m.provider == "aws"
        assert m.member == "db"
        assert sorted(m.volumes) == fleet.volumes(m.machine_id)
        assert len(m.volumes) == 3  # root and two data volumes


def test_a_member_resolves_by_tags_to_every_instance_carrying_all_of_them(
    clients: SessionClients, fleet: Fleet
) -> None:
    wanted = fleet.launch(3, tags={"app": "orders", "tier": "db"})
    fleet.launch(2, tags={"app": "orders", "tier": "web"})
    fleet.launch(1, tags={"app": "billing", "tier": "db"})

    machines = Ec2Inventory(clients).resolve(
        member(select={"tags": {"app": "orders", "tier": "db"}})
    )

    assert sorted(m.machine_id for m in machines) == sorted(wanted)


def test_tag_selection_is_paginated(clients: SessionClients, fleet: Fleet, wire: Wire) -> None:
    wanted = [i for _ in range(7) for i in fleet.launch(1, tags={"app": "orders"})]
    calls = wire.sent(clients.ec2(REGION), "DescribeInstances")

    machines = Ec2Inventory(clients, page_size=5).resolve(
        member(select={"tags": {"app": "orders"}})
    )

    assert sorted(m.machine_id for m in machines) == sorted(wanted)
    assert len(calls) >= 2
    assert all(c["MaxResults"] == 5 for c in calls)
    assert "NextToken" in calls[-1]


def test_terminated_instances_are_left_out(clients: SessionClients, fleet: Fleet) -> None:
    alive, gone = fleet.launch(2, tags={"app": "orders"})
    fleet.ec2.terminate_instances(InstanceIds=[gone])

    by_tags = Ec2Inventory(clients).resolve(member(select={"tags": {"app": "orders"}}))
    by_ids = Ec2Inventory(clients).resolve(member(select={"instance_ids": [alive, gone]}))

    assert [m.machine_id for m in by_tags] == [alive]
    assert [m.machine_id for m in by_ids] == [alive]


def test_stopped_instances_are_kept_because_their_volumes_can_be_snapshotted(
    clients: SessionClients, fleet: Fleet
) -> None:
    (stopped,) = fleet.launch(1)
    fleet.ec2.stop_instances(InstanceIds=[stopped])

    (found,) = Ec2Inventory(clients).resolve(member(select={"instance_ids": [stopped]}))

    assert found.attributes["state"] == "stopped"


def test_exclude_boot_volume_leaves_the_root_volume_out(
    clients: SessionClients, fleet: Fleet
) -> None:
    (instance,) = fleet.launch(1, data_volumes=2)
    root = fleet.root(instance)

    (with_root,) = Ec2Inventory(clients).resolve(member(select={"instance_ids": [instance]}))
    (without,) = Ec2Inventory(clients).resolve(
        member(select={"instance_ids": [instance]}, exclude_boot_volume=True)
    )

    assert root in with_root.volumes
    assert root not in without.volumes
    assert sorted(without.volumes) == sorted(set(fleet.volumes(instance)) - {root})
    assert without.attributes["exclude_boot_volume"] == "true"


def test_attributes_carry_region_os_state_and_availability_zone(
    clients: SessionClients, fleet: Fleet
) -> None:
    (linux,) = fleet.launch(1)
    (windows,) = fleet.launch(1, windows=True)

    machines = Ec2Inventory(clients).resolve(member(select={"instance_ids": [linux, windows]}))
    by_id = {m.machine_id: m.attributes for m in machines}

    assert by_id[linux]["region"] == REGION
    assert by_id[linux]["os"] == "linux"
    assert by_id[windows]["os"] == "windows"
    assert by_id[linux]["state"] == "running"
    assert by_id[linux]["availability_zone"] == f"{REGION}a"


def test_no_matching_instance_is_an_error_naming_the_member_and_the_selector(
    clients: SessionClients, fleet: Fleet
) -> None:
    fleet.launch(1, tags={"app": "billing"})

    with pytest.raises(ProviderError) as caught:
        Ec2Inventory(clients).resolve(member(select={"tags": {"app": "orders", "tier": "db"}}))

    assert caught.value.code == "NoInstances"
    message = str(caught.value)
    assert "'db'" in message
    assert "app=orders" in message
    assert "tier=db" in message
    assert REGION in message


def test_an_unknown_instance_id_is_an_error_naming_the_member(clients: SessionClients) -> None:
    with pytest.raises(ProviderError) as caught:
        Ec2Inventory(clients).resolve(member(select={"instance_ids": ["i-0123456789abcdef0"]}))

    assert "'db'" in str(caught.value)
    assert "i-0123456789abcdef0" in str(caught.value)


def test_a_throttled_describe_is_retried_with_backoff(
    clients: SessionClients, fleet: Fleet, wire: Wire, sleeps: Sleeps
) -> None:
    (instance,) = fleet.launch(1)
    left = wire.fail(clients.ec2(REGION), "DescribeInstances", "RequestLimitExceeded", times=2)

    machines = Ec2Inventory(clients, backoff=quick_backoff(sleeps)).resolve(
        member(select={"instance_ids": [instance]})
    )

    assert [m.machine_id for m in machines] == [instance]
    assert left == [0]
    assert sleeps.waits == [0.05, 0.1]


def test_a_member_of_another_provider_is_refused(clients: SessionClients) -> None:
    local = LocalMember(name="db", provider="local", volumes=["/data"])

    with pytest.raises(ProviderError) as caught:
        Ec2Inventory(clients).resolve(local)

    assert caught.value.code == "WrongProvider"
