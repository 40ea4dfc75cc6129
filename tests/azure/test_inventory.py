"""AzureInventory through the real Compute client against the fake ARM server."""

from __future__ import annotations

from typing import Any

import pytest

from quiesce.errors import ProviderError
from quiesce_azure.clients import CredentialClients
from quiesce_azure.inventory import AzureInventory
from quiesce_azure.member import AzureMember
from quiesce_azure.retry import Backoff

from .conftest import Sleeps
from .fake_arm import RG, SUB, FakeArm


def member(select: dict[str, Any], **extra: Any) -> AzureMember:
    return AzureMember.model_validate(
        {
            "name": "db",
            "provider": "azure",
            "subscription": SUB,
            "resource_group": RG,
            "select": select,
            **extra,
        }
    )


def test_by_names_gives_vm_ids_disks_and_attributes(
    arm: FakeArm, clients: CredentialClients
) -> None:
    vm = arm.add_vm("db-1", data_disks=2)
    arm.add_vm("db-2")
    machines = AzureInventory(clients).resolve(member({"vm_names": ["db-1"]}))
    assert len(machines) == 1
    m = machines[0]
    assert m.provider == "azure"
    assert m.machine_id == vm["id"]
    prefix = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/disks"
    assert m.volumes == (f"{prefix}/db-1-os", f"{prefix}/db-1-data0", f"{prefix}/db-1-data1")
    assert m.attributes == {
        "subscription": SUB,
        "resource_group": RG,
        "vm_name": "db-1",
        "os": "linux",
        "location": "westeurope",
    }


def test_by_tags_filters_the_resource_group(arm: FakeArm, clients: CredentialClients) -> None:
    arm.add_vm("api-1", tags={"app": "orders", "tier": "api"})
    arm.add_vm("api-2", tags={"app": "orders", "tier": "api"}, os="Windows")
    arm.add_vm("web-1", tags={"app": "orders", "tier": "web"})
    arm.add_vm("api-x", tags={"app": "orders", "tier": "api"}, rg="other-rg")
    machines = AzureInventory(clients).resolve(member({"tags": {"app": "orders", "tier": "api"}}))
    assert [m.attributes["vm_name"] for m in machines] == ["api-1", "api-2"]
    assert [m.attributes["os"] for m in machines] == ["linux", "windows"]


def test_missing_vm_and_no_match_are_provider_errors(
    arm: FakeArm, clients: CredentialClients
) -> None:
    arm.add_vm("db-1")
    with pytest.raises(ProviderError, match="db-9") as missing:
        AzureInventory(clients).resolve(member({"vm_names": ["db-1", "db-9"]}))
    assert missing.value.code == "NotFound"
    with pytest.raises(ProviderError, match="no VM") as none:
        AzureInventory(clients).resolve(member({"tags": {"app": "nothing"}}))
    assert none.value.code == "NoInstances"


def test_throttled_list_is_retried_after_retry_after(
    arm: FakeArm, clients: CredentialClients, sleeps: Sleeps
) -> None:
    arm.add_vm("db-1", tags={"app": "orders"})
    arm.throttle("GET", r"/virtualMachines$", count=2, retry_after="7")
    inventory = AzureInventory(clients, backoff=Backoff(sleep=sleeps))
    machines = inventory.resolve(member({"tags": {"app": "orders"}}))
    assert [m.attributes["vm_name"] for m in machines] == ["db-1"]
    assert sleeps.waits == [7.0, 7.0]


def test_throttling_that_never_ends_is_a_provider_error_after_the_attempts(
    arm: FakeArm, clients: CredentialClients, sleeps: Sleeps
) -> None:
    arm.add_vm("db-1")
    arm.throttle("GET", r"/virtualMachines/db-1$", count=10, retry_after="1")
    inventory = AzureInventory(clients, backoff=Backoff(attempts=3, sleep=sleeps))
    with pytest.raises(ProviderError) as err:
        inventory.resolve(member({"vm_names": ["db-1"]}))
    assert "after 3 attempts" in str(err.value)
    assert len(sleeps.waits) == 2
