"""Group restores and drills on Azure: VMs launched from restore points or incremental snapshots
into an isolated subnet (or their disks attached to an inspection VM), and their removal.

`launch` (one machine of a recovery point):

1. reads the source: a restore point (`$expand=instanceView`) or each incremental snapshot, and
   refuses one whose copy to the target region is still replicating (`CopyPending`). A restore
   point records the VM's size, OS type and each disk's LUN itself (`sourceMetadata`, written by
   the platform when it was taken), so a VM is relaunched even when the original is gone; disk
   snapshots do not, so the original VM is read for its size and LUNs at launch time (gone:
   `NoMachineShape`, the OS disk and LUN order then cannot be known for sure);
2. creates one managed disk per disk restore point (`createOption: Restore`) or snapshot
   (`Copy`), in the source's region (the copy's, when restoring a copy) and the site's `zone`
   (or the original's zone when restoring in its own region; none otherwise: a regional VM),
   and waits until each is provisioned;
3. either (site `inspect_on`) attaches them as data disks of that VM at free LUNs
   (`mounts`: original disk id → `/dev/disk/azure/scsi1/lun<n>`, Azure's udev link on Linux),
   or creates a NIC in the site's subnet (`network`: a subnet resource id) with the site's NSG
   (`security_groups`: at most one, a NIC has one) and no public IP, and a VM of the
   original's size with the OS disk attached (`createOption: Attach`, no OS profile: the disk
   is a copy of a provisioned OS) and the data disks at their original LUNs, so every disk is
   where it was and no `mounts` are recorded. The VM's PUT is
   accepted, not awaited: `wait_ready` follows it.

Everything made carries `quiesce:restore=<label>` and `quiesce:restore-of=<original VM id>` and
lives in the original VM's resource group (a resource group holds resources of every region),
and its id is in `RestoredMachine.created` as soon as ARM accepted it; a failure part-way names
what was made, and `cleanup` finds it by the tag anyway.

`wait_ready` reads the VM's instance view until provisioning has succeeded and the VM agent
reports Ready (`vmAgent.statuses`), which is what Run Command needs: the verify hooks then run
through the same RunCommandHookRunner as backups, addressed by the new VM's ARM id.

`cleanup` lists, in every resource group of the policy's Azure members, the VMs, NICs and disks
tagged `quiesce:restore=<label>`, and deletes VMs first (their disks are detached, not deleted,
by ARM), then NICs, then disks; a tagged disk still attached to an untagged VM (an inspection VM)
is detached from it first. Nothing without the tag is deleted. ARM lists by resource group, not
by region, so `regions` does not narrow it: one label is one restore, wherever it went.

NICs are Microsoft.Network resources: they are sent through the Compute client's pipeline
(`send_request`: same credential, retries, endpoint) with Microsoft.Network's API version, so no
network SDK is needed.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.mgmt.compute import models
from azure.mgmt.core.exceptions import ARMErrorFormat

from quiesce.errors import ProviderError
from quiesce.ports import Cleanup, Machine, MachineRestore, RestoredMachine, Restorer
from quiesce.record import SnapshotRef, SnapshotState
from quiesce_azure.clients import (
    RESTORE_POINT_ID,
    SNAPSHOT_ID,
    AzureClientFactory,
    VmRef,
    as_json,
    dig,
    parse_vm_id,
)
from quiesce_azure.copies import restore_point_state
from quiesce_azure.permissions import Permission, Scope
from quiesce_azure.retry import Backoff, error_code, error_message

log = logging.getLogger(__name__)

RESTORE_TAG = "quiesce:restore"
RESTORE_OF_TAG = "quiesce:restore-of"
NETWORK_API_VERSION = "2024-05-01"

SUBNET_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/"
    r"virtualNetworks/[^/]+/subnets/[^/]+$",
    re.IGNORECASE,
)
NSG_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/"
    r"networkSecurityGroups/[^/]+$",
    re.IGNORECASE,
)
RESOURCE_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"(?P<type>[^/]+/[^/]+)/(?P<name>[^/]+)$",
    re.IGNORECASE,
)

_RG: Scope = "resource_group"
#: What the drill function's identity needs (infra/azure: the drill role); the backup
#: functions are never granted these.
LAUNCH_PERMISSIONS = [
    Permission("Microsoft.Compute/virtualMachines/read", _RG),
    Permission("Microsoft.Compute/restorePointCollections/restorePoints/read", _RG),
    Permission(
        "Microsoft.Compute/restorePointCollections/restorePoints/diskRestorePoints/read", _RG
    ),
    Permission("Microsoft.Compute/snapshots/read", _RG),
    Permission("Microsoft.Compute/disks/read", _RG),
    Permission("Microsoft.Compute/disks/write", _RG, {"tag": f"{RESTORE_TAG}=<label>"}),
    Permission("Microsoft.Network/networkInterfaces/read", _RG),
    Permission("Microsoft.Network/networkInterfaces/write", _RG, {"tag": f"{RESTORE_TAG}=<label>"}),
    Permission("Microsoft.Network/networkInterfaces/join/action", _RG),
    Permission(
        "Microsoft.Compute/virtualMachines/write",
        _RG,
        {"tag": f"{RESTORE_TAG}=<label>", "or": "the site's inspect_on VM (attach)"},
    ),
    # On the site's subnet and network security group (granted there, not on the groups).
    Permission("Microsoft.Network/virtualNetworks/subnets/join/action", "resource"),
    Permission("Microsoft.Network/networkSecurityGroups/join/action", "resource"),
]
READY_PERMISSIONS = [
    Permission("Microsoft.Compute/virtualMachines/read", _RG),
    Permission("Microsoft.Compute/virtualMachines/instanceView/read", _RG),
]
CLEANUP_PERMISSIONS = [
    Permission("Microsoft.Compute/virtualMachines/read", _RG),
    Permission("Microsoft.Compute/virtualMachines/delete", _RG, {"tag": f"{RESTORE_TAG}=<label>"}),
    Permission("Microsoft.Compute/virtualMachines/write", _RG, {"detach": "tagged disks only"}),
    Permission("Microsoft.Network/networkInterfaces/read", _RG),
    Permission(
        "Microsoft.Network/networkInterfaces/delete", _RG, {"tag": f"{RESTORE_TAG}=<label>"}
    ),
    Permission("Microsoft.Compute/disks/read", _RG),
    Permission("Microsoft.Compute/disks/delete", _RG, {"tag": f"{RESTORE_TAG}=<label>"}),
]


def drill_permissions() -> list[Permission]:
    """Everything the drill function's identity is granted (infra/azure/drill.tf): the
    restorer's, the verify hooks' (Run Command on the copies) and the reads that refresh a
    copy's state. tests/azure/test_permissions.py compares the Terraform with this list."""
    from quiesce_azure.hooks import RUN_PERMISSIONS
    from quiesce_azure.snapshots import AzureSnapshotter

    found = [p for perms in AzureRestorer.DRILL_PERMISSIONS.values() for p in perms]
    return found + RUN_PERMISSIONS + AzureSnapshotter.PERMISSIONS["wait_durable"]


@dataclass
class DiskSource:
    """One disk to restore: where from, and where it sat on the original VM."""

    source: str  # a disk restore point or snapshot id
    option: str  # Restore | Copy
    original: str  # the original managed disk's id ("" when unknown)
    lun: int | None  # None: the OS disk
    os_type: str | None = None


@dataclass
class Shape:
    """What a copy of the VM needs: region, size, OS and disks."""

    location: str
    vm_size: str | None
    os_type: str
    disks: list[DiskSource] = field(default_factory=list)
    zone: str | None = None


class AzureRestorer(Restorer):
    """The Restorer port over managed disks, NICs and VMs."""

    #: Declared under their own name: they go to the drill identity's role, never to the backup
    #: functions' (tests/azure/test_permissions.py keeps the two apart).
    DRILL_PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "launch": LAUNCH_PERMISSIONS,
        "wait_ready": READY_PERMISSIONS,
        "cleanup": CLEANUP_PERMISSIONS,
    }

    def __init__(
        self,
        clients: AzureClientFactory,
        *,
        scopes: Iterable[tuple[str, str]] = (),
        backoff: Backoff | None = None,
        poll_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.clients = clients
        #: (subscription, resource group) of every Azure member: where restores are made.
        self.scopes = sorted({(s.lower(), r.lower()) for s, r in scopes})
        self.backoff = backoff or Backoff(sleep=sleep)
        self.poll_interval = poll_interval
        self.clock = clock
        self.sleep = sleep

    # ------------------------------------------------------------------------------ launch

    def launch(self, request: MachineRestore) -> RestoredMachine:
        vm = parse_vm_id(request.machine_id)
        site = request.site
        if not request.snapshots:
            raise ProviderError(
                f"member {request.member!r}: {vm.name} has no snapshot in point "
                f"{request.point} to restore",
                code="NoSnapshots",
            )
        if site.inspect_on is None:
            _check_site(site.network, site.security_groups)
        restored = RestoredMachine(
            member=request.member,
            source=request.machine_id,
            machine=Machine(provider="azure", member=request.member, machine_id=""),
        )
        try:
            shape = self._shape(request, vm)
            if request.region and request.region.lower() != shape.location.lower():
                raise ProviderError(
                    f"member {request.member!r}: the snapshots of {vm.name} are in "
                    f"{shape.location}, not {request.region}: restore the copy in "
                    f"{request.region}",
                    code="WrongRegion",
                )
            zone = site.zone or shape.zone
            tags = {
                RESTORE_TAG: request.label,
                RESTORE_OF_TAG: request.machine_id[:256],
                "quiesce:recovery-point": request.point[:256],
                "quiesce:member": request.member,
            }
            base = _base_name(vm.name, request.label, request.machine_id)
            disks = self._create_disks(vm, shape, base, zone, tags, restored)
            if site.inspect_on:
                self._attach(request, shape, disks, restored)
            else:
                self._launch_vm(request, vm, shape, base, zone, tags, disks, restored)
        except ProviderError as exc:
            raise _part_way(exc, restored) from exc
        except AzureError as exc:
            failure = ProviderError(
                f"member {request.member!r}: restoring {vm.name} failed: {error_message(exc)}",
                code=error_code(exc) or "RestoreFailed",
            )
            raise _part_way(failure, restored) from exc
        return restored

    def _shape(self, request: MachineRestore, vm: VmRef) -> Shape:
        points = [s for s in request.snapshots if RESTORE_POINT_ID.match(s.id)]
        if points:
            return self._point_shape(request, points[0], vm)
        return self._snapshot_shape(request, vm)

    def _point_shape(self, request: MachineRestore, ref: SnapshotRef, vm: VmRef) -> Shape:
        match = RESTORE_POINT_ID.match(ref.id)
        assert match is not None
        compute = self.clients.compute(match["sub"])
        try:
            point = as_json(
                self.backoff.call(
                    lambda: compute.restore_points.get(
                        match["rg"], match["coll"], match["name"], expand="instanceView"
                    ),
                    what=f"GET restore point {match['name']}",
                )
            )
        except ResourceNotFoundError as exc:
            raise ProviderError(
                f"member {request.member!r}: restore point {ref.id} is gone", code="NotFound"
            ) from exc
        _refuse_pending(request, ref, restore_point_state(point), _replicated(point))
        meta = dig(point, "properties", "sourceMetadata") or {}
        profile = meta.get("storageProfile") or {}
        os_disk = profile.get("osDisk") or {}
        disks = [
            DiskSource(
                str(dig(os_disk, "diskRestorePoint", "id") or ""),
                "Restore",
                str(dig(os_disk, "managedDisk", "id") or ""),
                None,
                os_disk.get("osType"),
            )
        ] + [
            DiskSource(
                str(dig(d, "diskRestorePoint", "id") or ""),
                "Restore",
                str(dig(d, "managedDisk", "id") or ""),
                int(d.get("lun") or 0),
            )
            for d in profile.get("dataDisks") or []
        ]
        location = str(meta.get("location") or "")
        return Shape(
            location=location,
            vm_size=dig(meta, "hardwareProfile", "vmSize"),
            os_type=str(os_disk.get("osType") or "Linux"),
            disks=[d for d in disks if d.source],
            zone=self._original_zone(vm, location),
        )

    def _snapshot_shape(self, request: MachineRestore, vm: VmRef) -> Shape:
        original = self._original(vm)
        profile = dig(original, "properties", "storageProfile") or {}
        luns = {
            str(dig(d, "managedDisk", "id") or "").lower(): int(d.get("lun") or 0)
            for d in profile.get("dataDisks") or []
        }
        os_id = str(dig(profile, "osDisk", "managedDisk", "id") or "").lower()
        location = ""
        disks: list[DiskSource] = []
        for ref in request.snapshots:
            match = SNAPSHOT_ID.match(ref.id)
            if match is None:
                raise ProviderError(
                    f"{ref.id!r} is neither a snapshot nor a restore point id",
                    code="BadSnapshotId",
                )
            compute = self.clients.compute(match["sub"])
            try:
                snap = as_json(
                    self.backoff.call(
                        lambda c=compute, m=match: c.snapshots.get(m["rg"], m["name"]),  # type: ignore[misc]
                        what=f"GET snapshot {match['name']}",
                    )
                )
            except ResourceNotFoundError as exc:
                raise ProviderError(
                    f"member {request.member!r}: snapshot {ref.id} is gone", code="NotFound"
                ) from exc
            from quiesce_azure.snapshots import _snapshot_state

            percent = dig(snap, "properties", "completionPercent")
            _refuse_pending(request, ref, _snapshot_state(snap), percent)
            location = location or str(snap.get("location") or "")
            disk = ref.volume.lower()
            os_type = dig(snap, "properties", "osType")
            if original:
                lun = None if disk == os_id else luns.get(disk)
                if lun is None and disk != os_id:
                    raise ProviderError(
                        f"member {request.member!r}: {ref.volume} is no longer a disk of "
                        f"{vm.name}, so its LUN is unknown",
                        code="NoMachineShape",
                    )
            else:
                lun = None
            disks.append(DiskSource(ref.id, "Copy", ref.volume, lun, os_type))
        if not original:
            raise ProviderError(
                f"member {request.member!r}: {vm.name} is gone and disk snapshots do not record "
                "its size or its disks' LUNs: restore its disks with `quiesce restore "
                "--in-cloud` and attach them, or use restore points (snapshot: restore_point), "
                "which record both",
                code="NoMachineShape",
            )
        os_disks = [d for d in disks if d.lun is None]
        if len(os_disks) != 1:
            raise ProviderError(
                f"member {request.member!r}: the point has {len(os_disks)} snapshots of "
                f"{vm.name}'s OS disk; a VM needs exactly one",
                code="NoMachineShape",
            )
        return Shape(
            location=location,
            vm_size=dig(original, "properties", "hardwareProfile", "vmSize"),
            os_type=str(dig(profile, "osDisk", "osType") or os_disks[0].os_type or "Linux"),
            disks=os_disks + sorted((d for d in disks if d.lun is not None), key=_lun),
            zone=_first(original.get("zones"))
            if str(original.get("location") or "").lower() == location.lower()
            else None,
        )

    def _original(self, vm: VmRef) -> dict[str, Any]:
        compute = self.clients.compute(vm.subscription)
        try:
            return as_json(
                self.backoff.call(
                    lambda: compute.virtual_machines.get(vm.resource_group, vm.name),
                    what=f"GET virtual machine {vm.name}",
                )
            )
        except ResourceNotFoundError:
            return {}

    def _original_zone(self, vm: VmRef, location: str) -> str | None:
        """The original VM's zone when restoring in its region (None: gone, or elsewhere)."""
        original = self._original(vm)
        if str(original.get("location") or "").lower() != location.lower():
            return None
        return _first(original.get("zones"))

    def _create_disks(
        self,
        vm: VmRef,
        shape: Shape,
        base: str,
        zone: str | None,
        tags: dict[str, str],
        restored: RestoredMachine,
    ) -> list[tuple[DiskSource, str]]:
        """Starts every disk's create, then waits for each: (source, new disk id)."""
        compute = self.clients.compute(vm.subscription)
        pollers = []
        for disk in shape.disks:
            suffix = "os" if disk.lun is None else f"lun{disk.lun}"
            name = f"{base}-{suffix}"
            body: dict[str, Any] = {
                "location": shape.location,
                "tags": {**tags, "quiesce:restored-from": disk.source[-256:]},
                "properties": {
                    "creationData": {"createOption": disk.option, "sourceResourceId": disk.source}
                },
            }
            if zone:
                body["zones"] = [zone]
            if disk.lun is None:
                body["properties"]["osType"] = shape.os_type
            poller = self.backoff.call(
                lambda name=name, body=body: compute.disks.begin_create_or_update(  # type: ignore[misc]
                    vm.resource_group, name, models.Disk(body)
                ),
                what=f"create disk {name}",
            )
            disk_id = _compute_id(vm, "disks", name)
            restored.created.append(disk_id)
            pollers.append((disk, disk_id, poller))
        made = []
        for disk, disk_id, poller in pollers:
            result = as_json(poller.result())
            state = str(dig(result, "properties", "provisioningState") or "Succeeded")
            if state.lower() != "succeeded":
                raise ProviderError(f"disk {disk_id} ended {state}", code="DiskFailed")
            made.append((disk, disk_id))
        return made

    def _attach(
        self,
        request: MachineRestore,
        shape: Shape,
        disks: list[tuple[DiskSource, str]],
        restored: RestoredMachine,
    ) -> None:
        """Attaches the restored disks to the inspection VM at its free LUNs."""
        target = parse_vm_id(str(request.site.inspect_on))
        compute = self.clients.compute(target.subscription)
        try:
            found = as_json(
                self.backoff.call(
                    lambda: compute.virtual_machines.get(target.resource_group, target.name),
                    what=f"GET virtual machine {target.name}",
                )
            )
        except ResourceNotFoundError as exc:
            raise ProviderError(
                f"restore.inspect_on: {request.site.inspect_on} was not found", code="NotFound"
            ) from exc
        location = str(found.get("location") or "")
        if location.lower() != shape.location.lower():
            raise ProviderError(
                f"restore.inspect_on: {target.name} is in {location}, the restored disks in "
                f"{shape.location}: name an inspection VM in {shape.location}",
                code="WrongRegion",
            )
        profile = dig(found, "properties", "storageProfile") or {}
        data_disks = list(profile.get("dataDisks") or [])
        used = {int(d.get("lun") or 0) for d in data_disks}
        free = (n for n in range(64) if n not in used)
        for disk, disk_id in disks:
            lun = next(free)
            data_disks.append(
                {"lun": lun, "createOption": "Attach", "managedDisk": {"id": disk_id}}
            )
            restored.mounts[disk.original or disk_id] = device(lun, shape.os_type)
        body = {
            "location": location,
            "properties": {"storageProfile": {**profile, "dataDisks": data_disks}},
        }
        poller = self.backoff.call(
            lambda: compute.virtual_machines.begin_create_or_update(
                target.resource_group, target.name, models.VirtualMachine(body)
            ),
            what=f"attach restored disks to {target.name}",
        )
        poller.result()
        restored.machine = _restored_machine(request, target, location, shape.os_type, disks)

    def _launch_vm(
        self,
        request: MachineRestore,
        vm: VmRef,
        shape: Shape,
        base: str,
        zone: str | None,
        tags: dict[str, str],
        disks: list[tuple[DiskSource, str]],
        restored: RestoredMachine,
    ) -> None:
        if not shape.vm_size:
            raise ProviderError(
                f"member {request.member!r}: the size of {vm.name} is not known",
                code="NoMachineShape",
            )
        site = request.site
        nic_name = f"{base}-nic"
        nic_path = (
            f"/subscriptions/{vm.subscription}/resourceGroups/{vm.resource_group}/providers/"
            f"Microsoft.Network/networkInterfaces/{nic_name}"
        )
        nic_props: dict[str, Any] = {
            "ipConfigurations": [
                {
                    "name": "ipconfig1",
                    "properties": {
                        "subnet": {"id": site.network},
                        "privateIPAllocationMethod": "Dynamic",
                        "primary": True,
                    },
                }
            ]
        }
        if site.security_groups:
            nic_props["networkSecurityGroup"] = {"id": site.security_groups[0]}
        nic = self._network(
            vm.subscription,
            "PUT",
            nic_path,
            {"location": shape.location, "tags": tags, "properties": nic_props},
        )
        nic_id = str(nic.get("id") or nic_path)
        restored.created.append(nic_id)
        self._wait_nic(vm.subscription, nic_path, nic)
        os_disk = next(d for d in disks if d[0].lun is None)
        vm_name = _vm_name(base, shape.os_type)
        body: dict[str, Any] = {
            "location": shape.location,
            "tags": tags,
            "properties": {
                "hardwareProfile": {"vmSize": shape.vm_size},
                "storageProfile": {
                    "osDisk": {
                        "osType": shape.os_type,
                        "createOption": "Attach",
                        "managedDisk": {"id": os_disk[1]},
                    },
                    "dataDisks": [
                        {"lun": d.lun, "createOption": "Attach", "managedDisk": {"id": disk_id}}
                        for d, disk_id in disks
                        if d.lun is not None
                    ],
                },
                "networkProfile": {
                    "networkInterfaces": [{"id": nic_id, "properties": {"primary": True}}]
                },
            },
        }
        if zone:
            body["zones"] = [zone]
        compute = self.clients.compute(vm.subscription)
        self.backoff.call(
            lambda: compute.virtual_machines.begin_create_or_update(
                vm.resource_group, vm_name, models.VirtualMachine(body), polling=False
            ),
            what=f"create virtual machine {vm_name}",
        )
        new = VmRef(vm.subscription, vm.resource_group, vm_name)
        restored.created.append(new.id)
        # no mounts: the copy's disks sit at the LUNs they had on the original
        restored.machine = _restored_machine(request, new, shape.location, shape.os_type, disks)

    # ------------------------------------------------------------------------------ ready

    def wait_ready(self, restored: RestoredMachine, timeout: float) -> None:
        vm = parse_vm_id(restored.machine.machine_id)
        compute = self.clients.compute(vm.subscription)
        deadline = self.clock() + timeout
        last = "no instance view yet"
        while True:
            try:
                view = as_json(
                    self.backoff.call(
                        lambda: compute.virtual_machines.instance_view(vm.resource_group, vm.name),
                        what=f"GET instance view of {vm.name}",
                    )
                )
            except ResourceNotFoundError as exc:
                raise ProviderError(
                    f"member {restored.member!r}: the restored VM {vm.name} is gone",
                    code="NotFound",
                ) from exc
            except AzureError as exc:
                raise ProviderError(
                    f"member {restored.member!r}: reading {vm.name} failed: {error_message(exc)}",
                    code=error_code(exc) or "ReadFailed",
                ) from exc
            codes = [str(s.get("code") or "") for s in view.get("statuses") or []]
            failed = [c for c in codes if c.lower().startswith("provisioningstate/failed")]
            if failed:
                raise ProviderError(
                    f"member {restored.member!r}: the restored VM {vm.name} failed to "
                    f"provision ({failed[0]})",
                    code="ProvisioningFailed",
                )
            provisioned = any(c.lower() == "provisioningstate/succeeded" for c in codes)
            agent = [s for s in dig(view, "vmAgent", "statuses") or [] if isinstance(s, dict)]
            if provisioned and any(_agent_ready(s) for s in agent):
                return
            if agent:
                last = f"VM agent: {agent[0].get('displayStatus') or agent[0].get('code')}"
            elif not provisioned:
                last = "still provisioning"
            if self.clock() >= deadline:
                raise ProviderError(
                    f"member {restored.member!r}: the restored VM {vm.name} was not ready for "
                    f"Run Command within {timeout:g}s ({last})",
                    code="NotReady",
                )
            self.sleep(self.poll_interval)

    # ------------------------------------------------------------------------------ cleanup

    def cleanup(self, label: str, regions: Sequence[str | None]) -> Cleanup:
        done = Cleanup()
        vms: list[dict[str, Any]] = []
        nics: list[dict[str, Any]] = []
        disks: list[dict[str, Any]] = []
        for sub, rg in self.scopes:
            try:
                vms += self._tagged(self._list_vms(sub, rg), label)
                nics += self._tagged(self._list_nics(sub, rg), label)
                disks += self._tagged(self._list_disks(sub, rg), label)
            except (AzureError, ProviderError) as exc:
                done.left.append(
                    f"/subscriptions/{sub}/resourceGroups/{rg}: could not list what restore "
                    f"{label} made there: {error_message(exc)}"
                )
        pending = []
        for vm in vms:  # VMs first: they hold the NICs and disks
            vm_id = str(vm["id"])
            ref = parse_vm_id(vm_id)
            compute = self.clients.compute(ref.subscription)
            try:
                pending.append(
                    (
                        vm_id,
                        self.backoff.call(
                            lambda c=compute, r=ref: c.virtual_machines.begin_delete(  # type: ignore[misc]
                                r.resource_group, r.name
                            ),
                            what=f"delete virtual machine {ref.name}",
                        ),
                    )
                )
            except ResourceNotFoundError:
                done.deleted.append(vm_id)
            except (AzureError, ProviderError) as exc:
                done.left.append(f"{vm_id}: {error_message(exc)}")
        for vm_id, poller in pending:
            try:
                poller.result()
                done.deleted.append(vm_id)
            except ResourceNotFoundError:
                done.deleted.append(vm_id)
            except (AzureError, ProviderError) as exc:
                done.left.append(f"{vm_id}: {error_message(exc)}")
        for nic in nics:
            nic_id = str(nic["id"])
            try:
                self._delete_nic(nic_id)
                done.deleted.append(nic_id)
            except (AzureError, ProviderError) as exc:
                done.left.append(f"{nic_id}: {error_message(exc)}")
        for disk in disks:
            disk_id = str(disk["id"])
            try:
                self._delete_disk(disk, label)
                done.deleted.append(disk_id)
            except (AzureError, ProviderError) as exc:
                done.left.append(f"{disk_id}: {error_message(exc)}")
        return done

    @staticmethod
    def _tagged(resources: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
        return [r for r in resources if (r.get("tags") or {}).get(RESTORE_TAG) == label]

    def _list_vms(self, sub: str, rg: str) -> list[dict[str, Any]]:
        compute = self.clients.compute(sub)
        return self.backoff.call(
            lambda: [as_json(v) for v in compute.virtual_machines.list(rg)],
            what=f"list virtual machines of {rg}",
        )

    def _list_disks(self, sub: str, rg: str) -> list[dict[str, Any]]:
        compute = self.clients.compute(sub)
        return self.backoff.call(
            lambda: [as_json(d) for d in compute.disks.list_by_resource_group(rg)],
            what=f"list disks of {rg}",
        )

    def _list_nics(self, sub: str, rg: str) -> list[dict[str, Any]]:
        path = (
            f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/"
            "networkInterfaces"
        )
        found: list[dict[str, Any]] = []
        page: dict[str, Any] = self._network(sub, "GET", path)
        while True:
            found += page.get("value") or []
            link = page.get("nextLink")
            if not link:
                return found
            page = self._network(sub, "GET", str(link), versioned=False)

    def _delete_nic(self, nic_id: str) -> None:
        match = RESOURCE_ID.match(nic_id)
        sub = match["sub"] if match else ""
        try:
            self._network(sub, "DELETE", nic_id)
        except ResourceNotFoundError:
            return
        deadline = self.clock() + 300
        while True:  # a DELETE may be accepted (202) and carried out after
            try:
                self._network(sub, "GET", nic_id)
            except ResourceNotFoundError:
                return
            if self.clock() >= deadline:
                raise ProviderError(f"{nic_id} was still there 300s after its DELETE")
            self.sleep(self.poll_interval)

    def _delete_disk(self, disk: dict[str, Any], label: str) -> None:
        match = RESOURCE_ID.match(str(disk["id"]))
        assert match is not None
        compute = self.clients.compute(match["sub"])
        owner = str(disk.get("managedBy") or "")
        if owner:
            self._detach(owner, str(disk["id"]), label)
        try:
            poller = self.backoff.call(
                lambda: compute.disks.begin_delete(match["rg"], match["name"]),
                what=f"delete disk {match['name']}",
            )
            poller.result()
        except ResourceNotFoundError:
            return

    def _detach(self, vm_id: str, disk_id: str, label: str) -> None:
        """Detaches a restored (tagged) disk from the VM it is attached to: an inspection VM,
        which is itself left alone."""
        vm = parse_vm_id(vm_id)
        compute = self.clients.compute(vm.subscription)
        try:
            found = as_json(
                self.backoff.call(
                    lambda: compute.virtual_machines.get(vm.resource_group, vm.name),
                    what=f"GET virtual machine {vm.name}",
                )
            )
        except ResourceNotFoundError:
            return
        if (found.get("tags") or {}).get(RESTORE_TAG) == label:
            return  # our own VM, being deleted: the disk is freed with it
        profile = dig(found, "properties", "storageProfile") or {}
        kept = [
            d
            for d in profile.get("dataDisks") or []
            if str(dig(d, "managedDisk", "id") or "").lower() != disk_id.lower()
        ]
        body = {
            "location": found.get("location"),
            "properties": {"storageProfile": {**profile, "dataDisks": kept}},
        }
        self.backoff.call(
            lambda: compute.virtual_machines.begin_create_or_update(
                vm.resource_group, vm.name, models.VirtualMachine(body)
            ),
            what=f"detach {disk_id.rsplit('/', 1)[-1]} from {vm.name}",
        ).result()

    # ------------------------------------------------------------------------------ network

    def _network(
        self,
        subscription: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        versioned: bool = True,
    ) -> dict[str, Any]:
        """One Microsoft.Network request through the Compute client's ARM pipeline."""
        client = self.clients.compute(subscription)
        url = f"{path}?api-version={NETWORK_API_VERSION}" if versioned else path

        def send() -> dict[str, Any]:
            request = HttpRequest(method, url, json=body) if body is not None else None
            response = client.send_request(request or HttpRequest(method, url))
            if response.status_code == 404:
                raise ResourceNotFoundError(response=response, error_format=ARMErrorFormat)
            if response.status_code >= 400:
                raise HttpResponseError(response=response, error_format=ARMErrorFormat)
            text = response.text()
            if not text:
                return {}
            out: dict[str, Any] = response.json()
            return out

        return self.backoff.call(send, what=f"{method} {path.rsplit('/', 1)[-1]}")

    def _wait_nic(self, subscription: str, path: str, nic: dict[str, Any]) -> None:
        deadline = self.clock() + 300
        while True:
            state = str(dig(nic, "properties", "provisioningState") or "").lower()
            if state == "succeeded":
                return
            if state == "failed":
                raise ProviderError(f"network interface {path} failed", code="NicFailed")
            if self.clock() >= deadline:
                raise ProviderError(f"network interface {path} was not ready in 300s")
            self.sleep(self.poll_interval)
            nic = self._network(subscription, "GET", path)


# ------------------------------------------------------------------------------ helpers


def device(lun: int, os_type: str) -> str:
    """Where a data disk at `lun` shows on the VM: Azure's udev rules link it as
    /dev/disk/azure/scsi1/lun<n> on Linux (an absolute path, which a verify hook receives as
    its restore path); on Windows it is a disk at that LUN."""
    if os_type.lower() == "windows":
        return f"LUN {lun}"
    return f"/dev/disk/azure/scsi1/lun{lun}"


def _check_site(network: str, security_groups: Sequence[str]) -> None:
    if not SUBNET_ID.match(network):
        raise ProviderError(
            f"restore.network: {network!r} is not a subnet's resource id (/subscriptions/…/"
            "resourceGroups/…/providers/Microsoft.Network/virtualNetworks/…/subnets/…)",
            code="BadSite",
        )
    if len(security_groups) > 1:
        raise ProviderError(
            f"restore.security_groups: an Azure NIC takes one network security group, "
            f"{len(security_groups)} are named",
            code="BadSite",
        )
    for nsg in security_groups:
        if not NSG_ID.match(nsg):
            raise ProviderError(
                f"restore.security_groups: {nsg!r} is not a network security group's resource id",
                code="BadSite",
            )


def _refuse_pending(
    request: MachineRestore, ref: SnapshotRef, state: SnapshotState, percent: Any
) -> None:
    if state is SnapshotState.COMPLETED:
        return
    where = ref.tags.get("quiesce:region") or request.region or "its region"
    if state is SnapshotState.PENDING:
        done = f" ({float(percent):g} % copied)" if isinstance(percent, int | float) else ""
        raise ProviderError(
            f"member {request.member!r}: {ref.id} is not complete in {where} yet{done}: the "
            "copy is still pending; restore it once `quiesce points` shows the copy completed",
            code="CopyPending",
        )
    raise ProviderError(
        f"member {request.member!r}: {ref.id} failed in {where}: it cannot be restored",
        code="SnapshotFailed",
    )


def _replicated(point: dict[str, Any]) -> float | None:
    percents = [
        float(p)
        for d in dig(point, "properties", "instanceView", "diskRestorePoints") or []
        if isinstance(p := dig(d, "replicationStatus", "completionPercent"), int | float)
    ]
    return min(percents) if percents else None


def _agent_ready(status: dict[str, Any]) -> bool:
    code = str(status.get("code") or "").lower()
    return code == "provisioningstate/succeeded" or str(status.get("displayStatus")) == "Ready"


def _part_way(exc: ProviderError, restored: RestoredMachine) -> ProviderError:
    if not restored.created:
        return exc
    return ProviderError(
        f"{exc} (made before the failure, tagged for cleanup: {', '.join(restored.created)})",
        code=exc.code,
    )


def _base_name(vm: str, label: str, machine_id: str) -> str:
    """`<vm>-<label>-<6 hex>`: unique to the restore and the machine, ARM-safe, short enough
    for `-os`, `-lun63` and `-nic` to follow."""
    digest = hashlib.sha256(f"{label}\n{machine_id}".encode()).hexdigest()[:6]
    stem = re.sub(r"[^A-Za-z0-9-]", "-", f"{vm}-{label}")[:48].strip("-")
    return f"{stem}-{digest}"


def _vm_name(base: str, os_type: str) -> str:
    """Linux VM names may have 64 characters; Windows ones 15."""
    if os_type.lower() == "windows":
        return "qr" + hashlib.sha256(base.encode()).hexdigest()[:13]
    return base[:64]


def _compute_id(vm: VmRef, kind: str, name: str) -> str:
    return (
        f"/subscriptions/{vm.subscription}/resourceGroups/{vm.resource_group}/providers/"
        f"Microsoft.Compute/{kind}/{name}"
    )


def _restored_machine(
    request: MachineRestore,
    vm: VmRef,
    location: str,
    os_type: str,
    disks: list[tuple[DiskSource, str]],
) -> Machine:
    """The machine a restore gives back: `vm` (a launched copy or the inspection VM) with the
    restored disks as its volumes."""
    return Machine(
        provider="azure",
        member=request.member,
        machine_id=vm.id,
        volumes=tuple(disk_id for _, disk_id in disks),
        attributes={
            "subscription": vm.subscription,
            "resource_group": vm.resource_group,
            "vm_name": vm.name,
            "os": os_type.lower(),
            "location": location,
            "restore": request.label,
        },
    )


def _first(values: Any) -> str | None:
    return str(values[0]) if isinstance(values, list) and values else None


def _lun(disk: DiskSource) -> int:
    return -1 if disk.lun is None else disk.lun
