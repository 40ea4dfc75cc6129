"""Azure inventory: the VMs an Azure member stands for, with their managed disks.

A member selects VMs of its resource group by name (one GET each) or by tags (one paged list of
the resource group, filtered here: every tag must match). Each VM becomes one Machine whose
`machine_id` is the VM's full ARM id (it carries subscription, resource group and name, so a
machine rebuilt from a run record can still be reached) and whose volumes are the ARM ids of its
managed disks: the OS disk first, then the data disks by LUN.
"""

from __future__ import annotations

from typing import Any, ClassVar

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from quiesce.errors import ProviderError
from quiesce.policy.model import MemberBase
from quiesce.ports import Inventory, Machine
from quiesce.providers.registry import expect_member
from quiesce_azure.clients import AzureClientFactory, as_json, dig, parse_vm_id
from quiesce_azure.member import AzureMember
from quiesce_azure.permissions import Permission
from quiesce_azure.retry import Backoff, error_code, error_message

PROVIDER = "azure"


def selector_text(member: AzureMember) -> str:
    if member.select.vm_names:
        return "VM names " + ", ".join(member.select.vm_names)
    tags = member.select.tags or {}
    return "tags " + ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))


def vm_disks(vm: dict[str, Any]) -> tuple[str, ...]:
    """The managed disk ids of a VM (JSON): the OS disk, then data disks by LUN."""
    disks: list[str] = []
    os_disk = dig(vm, "properties", "storageProfile", "osDisk", "managedDisk", "id")
    if os_disk:
        disks.append(str(os_disk))
    data = dig(vm, "properties", "storageProfile", "dataDisks") or []
    for disk in sorted(data, key=lambda d: int(d.get("lun", 0))):
        disk_id = dig(disk, "managedDisk", "id")
        if disk_id:
            disks.append(str(disk_id))
    return tuple(disks)


def vm_os(vm: dict[str, Any], default: str) -> str:
    os_type = str(dig(vm, "properties", "storageProfile", "osDisk", "osType") or "").lower()
    return os_type if os_type in ("linux", "windows") else default


class AzureInventory(Inventory):
    """Resolves Azure members with virtualMachines GET (by names) or list (by tags)."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "resolve": [Permission("Microsoft.Compute/virtualMachines/read", "resource_group")],
    }

    def __init__(self, clients: AzureClientFactory, *, backoff: Backoff | None = None) -> None:
        self.clients = clients
        self.backoff = backoff or Backoff()

    def resolve(self, spec: MemberBase) -> list[Machine]:
        member = expect_member(spec, AzureMember)
        try:
            vms = self._by_names(member) if member.select.vm_names else self._by_tags(member)
        except HttpResponseError as exc:
            raise ProviderError(
                f"member {member.name!r}: listing VMs of resource group {member.resource_group} "
                f"for {selector_text(member)} failed: {error_message(exc)}",
                code=error_code(exc) or "ListFailed",
            ) from exc
        if not vms:
            raise ProviderError(
                f"member {member.name!r}: no VM in resource group {member.resource_group} "
                f"matches {selector_text(member)}",
                code="NoInstances",
            )
        return [self._machine(member, vm) for vm in sorted(vms, key=lambda v: str(v.get("id")))]

    def _by_names(self, member: AzureMember) -> list[dict[str, Any]]:
        client = self.clients.compute(member.subscription)
        found: list[dict[str, Any]] = []
        missing: list[str] = []
        for name in member.select.vm_names or []:
            try:
                vm = self.backoff.call(
                    lambda name=name: client.virtual_machines.get(  # type: ignore[misc]
                        member.resource_group, name
                    ),
                    what=f"GET virtual machine {name}",
                )
            except ResourceNotFoundError:
                missing.append(name)
                continue
            found.append(as_json(vm))
        if missing:
            raise ProviderError(
                f"member {member.name!r}: VM(s) {', '.join(missing)} not found in resource group "
                f"{member.resource_group} of subscription {member.subscription}",
                code="NotFound",
            )
        return found

    def _by_tags(self, member: AzureMember) -> list[dict[str, Any]]:
        client = self.clients.compute(member.subscription)
        wanted = member.select.tags or {}

        def listing() -> list[dict[str, Any]]:
            return [as_json(vm) for vm in client.virtual_machines.list(member.resource_group)]

        vms = self.backoff.call(listing, what=f"list VMs of {member.resource_group}")
        return [
            vm for vm in vms if all((vm.get("tags") or {}).get(k) == v for k, v in wanted.items())
        ]

    def _machine(self, member: AzureMember, vm: dict[str, Any]) -> Machine:
        machine_id = str(vm.get("id") or "")
        ref = parse_vm_id(machine_id)
        return Machine(
            provider=PROVIDER,
            member=member.name,
            machine_id=machine_id,
            volumes=vm_disks(vm),
            attributes={
                "subscription": ref.subscription,
                "resource_group": ref.resource_group,
                "vm_name": str(vm.get("name") or ref.name),
                "os": vm_os(vm, member.os),
                "location": str(vm.get("location") or ""),
            },
        )
