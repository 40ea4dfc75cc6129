"""Restore points and incremental disk snapshots of Azure VMs.

Per member (`snapshot` in the policy):

* `restore_point`: one VM restore point covering all managed disks, in a restore point
  collection Quiesce manages per VM (`quiesce-<vm>`, tagged quiesce:managed=true; created on
  first use). A snapshotter remembers the collections it has seen tagged as Quiesce's (read,
  created, or listed by `find`), so a run reads a VM's collection at most once per process and
  usually not at all (the orphan sweep at the start of a run lists them); a restore point PUT
  that meets a remembered collection gone (404) reads or creates it again and retries once.
  Windows VMs ask for ApplicationConsistent (VSS through the VM's extension);
  Linux VMs for CrashConsistent, because Quiesce's own hooks make them application-consistent.
  The level the platform reports is kept in the ref's tags (azure:consistency-mode).
  Restore points carry no tags of their own: the collection's tags and the restore point's name
  (the recovery point id, `rp-<run id>`) identify them; `find` gives back their policy, group,
  member, machine, recovery point and run exactly as `take` tagged them, but not the consistency
  a Linux run recorded (kept nowhere on the restore point).
* `disk_snapshots`: one incremental snapshot per managed disk (createOption Copy), tagged.

`take` returns when the point in time is fixed by THE RULE below; `wait_durable` then polls
until the data is durable (a snapshot's completionPercent reaches 100; a restore point is
durable when it has Succeeded, which `take` has seen already: its ref comes back completed, and
no further read is made). Only Quiesce-tagged snapshots and restore points of Quiesce's
collections are ever deleted.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.mgmt.compute import models

from quiesce.durability import PollsDurability
from quiesce.errors import ProviderError
from quiesce.ports import CloudRestore, Machine, RestoreStep, SnapshotCall, Snapshotter, fan_out
from quiesce.providers.registry import expect_member
from quiesce.record import Consistency, SnapshotRef, SnapshotState, utcnow
from quiesce.tags import MANAGED_TAG, POINT_TAG, RUN_TAG, snapshot_tags
from quiesce_azure.clients import (
    RESTORE_POINT_ID,
    SNAPSHOT_ID,
    AzureClientFactory,
    VmRef,
    as_json,
    dig,
    parse_time,
    parse_vm_id,
    provisioning_state,
)
from quiesce_azure.copies import COPY_PERMISSIONS, copy_to_region, restore_point_state
from quiesce_azure.member import AzureMember
from quiesce_azure.permissions import Permission
from quiesce_azure.retry import Backoff, delete_failed, error_code, error_message, read_failed

log = logging.getLogger(__name__)

PROVIDER = "azure"
GIB = 1024**3

METHOD_RESTORE_POINT = "restore_point"
METHOD_SNAPSHOT = "incremental_snapshot"
#: A restore point's ref stands for every managed disk of the VM.
ALL_DISKS = "*"
#: How the engine's recovery point ids (a restore point's name) begin, before the run id.
POINT_PREFIX = "rp-"

# THE RULE: when a point in time counts as fixed (and so when the engine may thaw).
# No Azure document states when the point in time of a snapshot or restore point we create
# ourselves is fixed. Quiesce takes it as fixed when the ARM create operation (the PUT's
# long-running operation) reports Succeeded: `take` blocks until then, so the post hooks run
# after it. To change the rule (for example to thaw as soon as the PUT is accepted), change it
# here and only here.
POINT_IN_TIME_FIXED_STATE = "Succeeded"


def point_in_time_is_fixed(create_operation_status: str | None) -> bool:
    """THE RULE (see above): the create operation's final status fixes the point in time."""
    return (create_operation_status or "").lower() == POINT_IN_TIME_FIXED_STATE.lower()


CONSISTENCY_MODES = {"windows": "ApplicationConsistent", "linux": "CrashConsistent"}
PLATFORM_LEVELS = {
    "applicationconsistent": "application",
    "filesystemconsistent": "crash",
    "crashconsistent": "crash",
}


def _name(text: str, limit: int = 80) -> str:
    """An ARM resource name: letters, digits, _ . - ; at most `limit` characters."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:limit].rstrip(".-")


def collection_name(vm_name: str) -> str:
    return _name(f"quiesce-{vm_name}")


class AzureSnapshotter(PollsDurability, Snapshotter):
    """The Snapshotter port over VM restore points and incremental managed-disk snapshots."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "take": [
            Permission("Microsoft.Compute/virtualMachines/read"),
            Permission("Microsoft.Compute/restorePointCollections/read"),
            Permission(
                "Microsoft.Compute/restorePointCollections/write",
                conditions={"tag": f"{MANAGED_TAG}=true"},
            ),
            Permission("Microsoft.Compute/restorePointCollections/restorePoints/write"),
            Permission("Microsoft.Compute/restorePointCollections/restorePoints/read"),
            Permission("Microsoft.Compute/disks/read"),
            Permission(
                "Microsoft.Compute/snapshots/write", conditions={"tag": f"{MANAGED_TAG}=true"}
            ),
            Permission("Microsoft.Compute/snapshots/read"),
        ],
        "wait_durable": [
            Permission("Microsoft.Compute/snapshots/read"),
            Permission("Microsoft.Compute/restorePointCollections/restorePoints/read"),
        ],
        "delete": [
            Permission("Microsoft.Compute/snapshots/read"),
            Permission(
                "Microsoft.Compute/snapshots/delete", conditions={"tag": f"{MANAGED_TAG}=true"}
            ),
            Permission("Microsoft.Compute/restorePointCollections/read"),
            Permission(
                "Microsoft.Compute/restorePointCollections/restorePoints/delete",
                conditions={"collection tag": f"{MANAGED_TAG}=true"},
            ),
        ],
        "find": [
            Permission("Microsoft.Compute/snapshots/read"),
            Permission("Microsoft.Compute/restorePointCollections/read"),
            Permission("Microsoft.Compute/restorePointCollections/restorePoints/read"),
        ],
        "copy_to_region": COPY_PERMISSIONS,
    }

    #: `quiesce restore --execute` (run by an operator, not granted to the Function App).
    RESTORE_PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        # Before anything is created: is each snapshot or restore point still there, done?
        "check": [
            Permission("Microsoft.Compute/snapshots/read"),
            Permission("Microsoft.Compute/restorePointCollections/restorePoints/read"),
        ],
        "cloud_restore": [
            Permission("Microsoft.Compute/snapshots/read"),
            Permission("Microsoft.Compute/restorePointCollections/restorePoints/read"),
            Permission(
                "Microsoft.Compute/restorePointCollections/restorePoints/diskRestorePoints/read"
            ),
            Permission("Microsoft.Compute/disks/write"),
        ],
    }

    def __init__(
        self,
        clients: AzureClientFactory,
        *,
        scopes: Mapping[str, Sequence[tuple[str, str]]] | None = None,
        backoff: Backoff | None = None,
        poll_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.clients = clients
        self.scopes = dict(scopes or {})  # by group: the (subscription, resource group)s
        self.backoff = backoff or Backoff(sleep=sleep)
        self.poll_interval = poll_interval
        self.clock = clock
        self.sleep = sleep
        #: (subscription, resource group, name), lower case, of collections seen tagged as
        #: Quiesce's: restore points go into them without reading them again.
        self._collections: set[tuple[str, str, str]] = set()
        self._collections_lock = threading.Lock()

    # ------------------------------------------------------------------------------ the port

    def take(self, call: SnapshotCall) -> list[SnapshotRef]:
        vm = parse_vm_id(call.machine.machine_id)
        member = expect_member(call.spec, AzureMember)
        mode = member.snapshot
        os_name = call.machine.attributes.get("os") or member.os
        try:
            location = call.machine.attributes.get("location") or self._vm_location(vm)
            if mode == "disk_snapshots":
                return self._take_disks(call, vm, location)
            return self._take_restore_point(call, vm, location, os_name)
        except AzureError as exc:
            raise ProviderError(
                f"member {call.member!r}: {mode} of {vm.name} failed: {error_message(exc)}",
                code=error_code(exc) or "SnapshotFailed",
            ) from exc

    def states(self, pending: Sequence[SnapshotRef]) -> dict[str, SnapshotState]:
        """Every pending snapshot's state, asked concurrently; a failed poll leaves it pending."""
        states: dict[str, SnapshotState] = {}
        for ref, outcome in zip(pending, fan_out(self._durability, pending), strict=True):
            if isinstance(outcome, BaseException):
                log.warning("polling %s failed: %s", ref.id, outcome)
            else:
                states[ref.id] = outcome
        return states

    def check(self, snapshot: SnapshotRef) -> None:
        """Raises unless the snapshot or restore point is still there and done: before a
        restore creates anything (quiesce.restore.check_complete), so one deleted since is
        refused by name."""
        try:
            state = self._durability(snapshot)
        except AzureError as exc:
            raise ProviderError(
                f"{snapshot.id}: could not read it: {error_message(exc)}", code="CheckFailed"
            ) from exc
        if state is not SnapshotState.COMPLETED:
            raise ProviderError(
                f"{snapshot.id}: it is "
                f"{'gone or failed' if state is SnapshotState.FAILED else state.value}",
                code="NotRestorable",
            )

    def delete(self, snapshot: SnapshotRef) -> None:
        try:
            if match := RESTORE_POINT_ID.match(snapshot.id):
                self._delete_restore_point(snapshot, match)
            elif match := SNAPSHOT_ID.match(snapshot.id):
                self._delete_snapshot(snapshot, match)
            else:
                raise ProviderError(
                    f"{snapshot.id!r} is neither a snapshot nor a restore point id",
                    code="BadSnapshotId",
                )
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise delete_failed(snapshot.id, exc) from exc

    def find(self, policy: str, group: str, run_id: str | None = None) -> list[SnapshotRef]:
        wanted = {MANAGED_TAG: "true", "quiesce:policy": policy, "quiesce:group": group}
        found: list[SnapshotRef] = []
        for subscription, rg in self.scopes.get(group, ()):
            compute = self.clients.compute(subscription)
            snaps = self.backoff.call(
                lambda compute=compute, rg=rg: [  # type: ignore[misc]
                    as_json(s) for s in compute.snapshots.list_by_resource_group(rg)
                ],
                what=f"list snapshots of {rg}",
            )
            for snap in snaps:
                tags = snap.get("tags") or {}
                if not all(tags.get(k) == v for k, v in wanted.items()):
                    continue
                if run_id is not None and tags.get("quiesce:run-id") != run_id:
                    continue
                found.append(self._snapshot_ref(snap, tags))
            collections = self.backoff.call(
                lambda compute=compute, rg=rg: [  # type: ignore[misc]
                    as_json(c) for c in compute.restore_point_collections.list(rg)
                ],
                what=f"list restore point collections of {rg}",
            )
            for coll in collections:
                tags = coll.get("tags") or {}
                if tags.get(MANAGED_TAG) == "true":
                    self._remember(subscription, rg, str(coll.get("name") or ""))
                if not all(tags.get(k) == v for k, v in wanted.items()):
                    continue
                full = as_json(
                    self.backoff.call(
                        lambda compute=compute, rg=rg, c=coll: (  # type: ignore[misc]
                            compute.restore_point_collections.get(
                                rg, str(c.get("name")), expand="restorePoints"
                            )
                        ),
                        what="GET restore point collection",
                    )
                )
                for point in dig(full, "properties", "restorePoints") or []:
                    name = str(point.get("name") or "")
                    if run_id is not None and run_id not in name:
                        continue
                    found.append(self._restore_point_ref(point, tags))
        return sorted(found, key=lambda r: (r.started_at, r.id))

    def copy_to_region(
        self, snapshot: SnapshotRef, region: str, key: str | None, tags: dict[str, str]
    ) -> SnapshotRef:
        """A restore point copied into a collection in `region`, an incremental snapshot by
        CopyStart (quiesce_azure.copies); returns the replica, pending."""
        return copy_to_region(self, snapshot, region, key, tags)

    def describe(self, machine: Machine) -> dict[str, str]:
        return {volume: "restore_point or incremental_snapshot" for volume in machine.volumes}

    # ------------------------------------------------------------------------------ restore points

    def _take_restore_point(
        self, call: SnapshotCall, vm: VmRef, location: str, os_name: str
    ) -> list[SnapshotRef]:
        compute = self.clients.compute(vm.subscription)
        known = self._known(vm)
        coll = collection_name(vm.name) if known else self._ensure_collection(call, vm, location)
        name = _name(call.recovery_point)
        mode = CONSISTENCY_MODES.get(os_name, "CrashConsistent")
        started = utcnow()

        def create() -> Any:
            return self.backoff.call(
                lambda: compute.restore_points.begin_create(
                    vm.resource_group, coll, name, {"properties": {"consistencyMode": mode}}
                ),
                what=f"create restore point {name} of {vm.name}",
            )

        try:
            poller = create()
        except ResourceNotFoundError:
            if not known:
                raise
            # The remembered collection is gone: read (or create) it again, once.
            self._forget(vm)
            coll = self._ensure_collection(call, vm, location)
            poller = create()
        point = as_json(poller.result())
        status = str(dig(point, "properties", "provisioningState") or poller.status())
        if not point_in_time_is_fixed(status):
            raise ProviderError(
                f"member {call.member!r}: restore point {name} of {vm.name} ended {status}",
                code="RestorePointFailed",
            )
        fixed = utcnow()
        reported = str(dig(point, "properties", "consistencyMode") or mode)
        tags = snapshot_tags(call)
        tags["azure:consistency-mode"] = reported
        platform_level: Consistency | None = None
        if os_name == "windows":
            # VSS made it application-consistent only if the platform says so.
            platform_level = Consistency(PLATFORM_LEVELS.get(reported.lower(), "crash"))
            tags["quiesce:consistency"] = platform_level.value
        point_id = str(point.get("id") or "") or (
            f"/subscriptions/{vm.subscription}/resourceGroups/{vm.resource_group}/providers/"
            f"Microsoft.Compute/restorePointCollections/{coll}/restorePoints/{name}"
        )
        return [
            SnapshotRef(
                id=point_id,
                provider=PROVIDER,
                machine_id=call.machine.machine_id,
                volume=ALL_DISKS,
                method=METHOD_RESTORE_POINT,
                # Succeeded (THE RULE) is also what makes a restore point durable.
                state=SnapshotState.COMPLETED,
                started_at=started,
                fixed_at=fixed,
                durable_at=fixed,
                location=point_id,
                tags=tags,
                reported_consistency=platform_level,
            )
        ]

    def _key(self, subscription: str, rg: str, name: str) -> tuple[str, str, str]:
        return (subscription.lower(), rg.lower(), name.lower())

    def _remember(self, subscription: str, rg: str, name: str) -> None:
        with self._collections_lock:
            self._collections.add(self._key(subscription, rg, name))

    def _known(self, vm: VmRef) -> bool:
        key = self._key(vm.subscription, vm.resource_group, collection_name(vm.name))
        with self._collections_lock:
            return key in self._collections

    def _forget(self, vm: VmRef) -> None:
        key = self._key(vm.subscription, vm.resource_group, collection_name(vm.name))
        with self._collections_lock:
            self._collections.discard(key)

    def _ensure_collection(self, call: SnapshotCall, vm: VmRef, location: str) -> str:
        """The VM's Quiesce-managed restore point collection, created when missing (and
        remembered either way)."""
        compute = self.clients.compute(vm.subscription)
        name = collection_name(vm.name)
        try:
            existing = as_json(
                self.backoff.call(
                    lambda: compute.restore_point_collections.get(vm.resource_group, name),
                    what=f"GET restore point collection {name}",
                )
            )
        except ResourceNotFoundError:
            existing = {}
        if existing:
            if (existing.get("tags") or {}).get(MANAGED_TAG) != "true":
                raise ProviderError(
                    f"restore point collection {name} in {vm.resource_group} exists but is not "
                    f"tagged {MANAGED_TAG}=true: Quiesce does not write into it",
                    code="NotManaged",
                )
            self._remember(vm.subscription, vm.resource_group, name)
            return name
        tags = {
            MANAGED_TAG: "true",
            "quiesce:policy": call.policy,
            "quiesce:group": call.group,
            "quiesce:member": call.member,
            "quiesce:machine": call.machine.machine_id,
        }
        body = {"location": location, "tags": tags, "properties": {"source": {"id": vm.id}}}
        self.backoff.call(
            lambda: compute.restore_point_collections.create_or_update(
                vm.resource_group, name, models.RestorePointCollection(body)
            ),
            what=f"create restore point collection {name}",
        )
        self._remember(vm.subscription, vm.resource_group, name)
        return name

    def _delete_restore_point(self, ref: SnapshotRef, match: re.Match[str]) -> None:
        compute = self.clients.compute(match["sub"])
        rg, coll, name = match["rg"], match["coll"], match["name"]
        collection = as_json(
            self.backoff.call(
                lambda: compute.restore_point_collections.get(rg, coll),
                what=f"GET restore point collection {coll}",
            )
        )
        if (collection.get("tags") or {}).get(MANAGED_TAG) != "true":
            raise ProviderError(
                f"refusing to delete restore point {ref.id}: its collection is not tagged "
                f"{MANAGED_TAG}=true, so Quiesce did not make it",
                code="NotManaged",
            )
        poller = self.backoff.call(
            lambda: compute.restore_points.begin_delete(rg, coll, name),
            what=f"delete restore point {name}",
        )
        poller.result()

    def _restore_point_ref(self, point: dict[str, Any], tags: dict[str, str]) -> SnapshotRef:
        created = dig(point, "properties", "timeCreated")
        when = parse_time(created) or utcnow()
        state = provisioning_state(dig(point, "properties", "provisioningState"))
        name = str(point.get("name") or "")
        ref_tags = dict(tags)
        ref_tags[POINT_TAG] = name
        if name.startswith(POINT_PREFIX):  # the engine's point ids: rp-<run id>
            ref_tags[RUN_TAG] = name.removeprefix(POINT_PREFIX)
        mode = dig(point, "properties", "consistencyMode")
        if mode:
            ref_tags["azure:consistency-mode"] = str(mode)
        return SnapshotRef(
            id=str(point.get("id") or ""),
            provider=PROVIDER,
            machine_id=tags.get("quiesce:machine", ""),
            volume=ALL_DISKS,
            method=METHOD_RESTORE_POINT,
            state=state,
            started_at=when,
            fixed_at=when,
            location=str(point.get("id") or ""),
            tags=ref_tags,
        )

    # ------------------------------------------------------------------------------ snapshots

    def _take_disks(self, call: SnapshotCall, vm: VmRef, location: str) -> list[SnapshotRef]:
        disks = list(call.machine.volumes)
        if not disks:
            raise ProviderError(
                f"member {call.member!r}: {vm.name} has no managed disk to snapshot",
                code="NoVolumes",
            )
        outcomes = fan_out(lambda disk: self._take_disk(call, vm, location, disk), disks)
        refs: list[SnapshotRef] = []
        errors: list[str] = []
        for disk, outcome in zip(disks, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                errors.append(f"{disk.rsplit('/', 1)[-1]}: {error_message(outcome)}")
            else:
                refs.append(outcome)
        if errors:
            raise ProviderError(
                f"member {call.member!r}: snapshots of {vm.name} failed: "
                + "; ".join(errors)
                + (f" ({len(refs)} other disk(s) were snapshotted)" if refs else ""),
                code="SnapshotFailed",
            )
        return refs

    def _take_disk(self, call: SnapshotCall, vm: VmRef, location: str, disk: str) -> SnapshotRef:
        compute = self.clients.compute(vm.subscription)
        name = _name(f"{disk.rsplit('/', 1)[-1]}-{call.recovery_point}")
        tags = snapshot_tags(call)
        tags["quiesce:disk"] = disk
        body = {
            "location": location,
            "tags": tags,
            "properties": {
                "creationData": {"createOption": "Copy", "sourceResourceId": disk},
                "incremental": True,
            },
        }
        started = utcnow()
        poller = self.backoff.call(
            lambda: compute.snapshots.begin_create_or_update(
                vm.resource_group, name, models.Snapshot(body)
            ),
            what=f"create snapshot {name}",
        )
        snap = as_json(poller.result())
        status = str(dig(snap, "properties", "provisioningState") or poller.status())
        if not point_in_time_is_fixed(status):
            raise ProviderError(f"snapshot {name} ended {status}", code="SnapshotFailed")
        fixed = utcnow()
        ref = self._snapshot_ref(snap, tags)
        return ref.model_copy(
            update={"started_at": started, "fixed_at": fixed, "state": SnapshotState.PENDING}
        )

    def _snapshot_ref(self, snap: dict[str, Any], tags: dict[str, str]) -> SnapshotRef:
        created = parse_time(dig(snap, "properties", "timeCreated")) or utcnow()
        size = dig(snap, "properties", "diskSizeGB")
        snap_id = str(snap.get("id") or "")
        return SnapshotRef(
            id=snap_id,
            provider=PROVIDER,
            machine_id=tags.get("quiesce:machine", ""),
            volume=str(
                dig(snap, "properties", "creationData", "sourceResourceId")
                or tags.get("quiesce:disk", "")
            ),
            method=METHOD_SNAPSHOT,
            state=_snapshot_state(snap),
            started_at=created,
            fixed_at=created,
            size_bytes=int(size) * GIB if isinstance(size, int | float) else None,
            location=snap_id,
            tags=dict(tags),
        )

    def _delete_snapshot(self, ref: SnapshotRef, match: re.Match[str]) -> None:
        compute = self.clients.compute(match["sub"])
        rg, name = match["rg"], match["name"]
        live = as_json(
            self.backoff.call(lambda: compute.snapshots.get(rg, name), what=f"GET snapshot {name}")
        )
        if (live.get("tags") or {}).get(MANAGED_TAG) != "true":
            raise ProviderError(
                f"refusing to delete snapshot {ref.id}: it is not tagged {MANAGED_TAG}=true, so "
                "Quiesce did not make it",
                code="NotManaged",
            )
        poller = self.backoff.call(
            lambda: compute.snapshots.begin_delete(rg, name), what=f"delete snapshot {name}"
        )
        poller.result()

    # ------------------------------------------------------------------------------ restore

    def plan_cloud_restore(self, request: CloudRestore) -> RestoreStep:
        """New managed disks from a snapshot (createOption Copy) or from each disk restore
        point of a restore point (createOption Restore), in the source's location (and
        `request.zone`, when given). Reads the snapshot or restore point; creates nothing."""
        return self._restore_plan(request)[0]

    def cloud_restore(self, request: CloudRestore) -> RestoreStep:
        """Starts creating the disks `plan_cloud_restore` describes; returns once ARM accepted
        every PUT (the disks finish provisioning on their own)."""
        step, rg, sub, bodies = self._restore_plan(request)
        compute = self.clients.compute(sub)
        created: list[str] = []
        try:
            for name, body in bodies.items():
                self.backoff.call(
                    lambda name=name, body=body: compute.disks.begin_create_or_update(  # type: ignore[misc]
                        rg, name, models.Disk(body), polling=False
                    ),
                    what=f"create disk {name}",
                )
                created.append(
                    f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/"
                    f"disks/{name}"
                )
        except AzureError as exc:
            done = f" (created before: {', '.join(created)})" if created else ""
            raise ProviderError(
                f"member {request.member!r}: creating a disk from {request.snapshot.id} failed: "
                f"{error_message(exc)}{done}",
                code=error_code(exc) or "RestoreFailed",
            ) from exc
        step.created = created
        return step

    def _restore_plan(
        self, request: CloudRestore
    ) -> tuple[RestoreStep, str, str, dict[str, dict[str, Any]]]:
        ref = request.snapshot
        base = _name(request.name, limit=70)
        bodies: dict[str, dict[str, Any]] = {}
        try:
            if match := SNAPSHOT_ID.match(ref.id):
                sub, rg, snap_name = match["sub"], match["rg"], match["name"]
                compute = self.clients.compute(sub)
                snap = as_json(
                    self.backoff.call(
                        lambda: compute.snapshots.get(rg, snap_name), what="GET snapshot"
                    )
                )
                bodies[base] = _disk_body(
                    str(snap.get("location") or ""), "Copy", ref.id, request.zone
                )
                action = "PUT Microsoft.Compute/disks (createOption Copy from the snapshot)"
            elif match := RESTORE_POINT_ID.match(ref.id):
                sub, rg, coll, rp_name = match["sub"], match["rg"], match["coll"], match["name"]
                compute = self.clients.compute(sub)
                point = as_json(
                    self.backoff.call(
                        lambda: compute.restore_points.get(rg, coll, rp_name),
                        what="GET restore point",
                    )
                )
                meta = dig(point, "properties", "sourceMetadata") or {}
                location = str(meta.get("location") or "")
                disks = [("os", dig(meta, "storageProfile", "osDisk"))] + [
                    (f"lun{d.get('lun')}", d)
                    for d in dig(meta, "storageProfile", "dataDisks") or []
                ]
                for suffix, disk in disks:
                    source = dig(disk, "diskRestorePoint", "id")
                    if source:
                        name = _name(f"{base}-{suffix}")
                        bodies[name] = _disk_body(location, "Restore", str(source), request.zone)
                if not bodies:
                    raise ProviderError(
                        f"restore point {ref.id} lists no disk restore point to restore",
                        code="RestoreUnsupported",
                    )
                action = (
                    "PUT Microsoft.Compute/disks (createOption Restore from each disk restore "
                    "point)"
                )
            else:
                raise ProviderError(
                    f"{ref.id!r} is neither a snapshot nor a restore point id",
                    code="BadSnapshotId",
                )
        except ResourceNotFoundError as exc:
            raise ProviderError(
                f"member {request.member!r}: {ref.id} is gone: it cannot be restored",
                code="NotFound",
            ) from exc
        except AzureError as exc:
            raise read_failed(request.member, ref.id, exc) from exc
        zone = f" --zone {request.zone}" if request.zone else ""
        step = RestoreStep(
            member=request.member,
            snapshot=ref.id,
            action=action,
            parameters={
                "resource_group": rg,
                "disks": ",".join(bodies),
                "sources": ",".join(
                    b["properties"]["creationData"]["sourceResourceId"] for b in bodies.values()
                ),
            },
            command=" && ".join(
                f"az disk create --resource-group {rg} --name {name} --source "
                f"{body['properties']['creationData']['sourceResourceId']}{zone}"
                for name, body in bodies.items()
            ),
        )
        return step, rg, sub, bodies

    # ------------------------------------------------------------------------------ helpers

    def _durability(self, ref: SnapshotRef) -> SnapshotState:
        try:
            if match := RESTORE_POINT_ID.match(ref.id):
                compute = self.clients.compute(match["sub"])
                rg, coll, name = match["rg"], match["coll"], match["name"]
                point = as_json(
                    self.backoff.call(
                        lambda: compute.restore_points.get(rg, coll, name, expand="instanceView"),
                        what="GET restore point",
                    )
                )
                # a copy in another region is durable once every disk is replicated
                return restore_point_state(point)
            if match := SNAPSHOT_ID.match(ref.id):
                compute = self.clients.compute(match["sub"])
                rg, name = match["rg"], match["name"]
                snap = as_json(
                    self.backoff.call(
                        lambda: compute.snapshots.get(rg, name),
                        what="GET snapshot",
                    )
                )
                return _snapshot_state(snap)
        except ResourceNotFoundError:
            return SnapshotState.FAILED
        return SnapshotState.FAILED

    def _vm_location(self, vm: VmRef) -> str:
        compute = self.clients.compute(vm.subscription)
        found = self.backoff.call(
            lambda: compute.virtual_machines.get(vm.resource_group, vm.name),
            what=f"GET virtual machine {vm.name}",
        )
        return str(as_json(found).get("location") or "")


def _snapshot_state(snap: dict[str, Any]) -> SnapshotState:
    """An incremental snapshot is durable when Succeeded and its background copy is done."""
    state = provisioning_state(dig(snap, "properties", "provisioningState"))
    if state is not SnapshotState.COMPLETED:
        return state
    percent = dig(snap, "properties", "completionPercent")
    if percent is not None and float(percent) < 100:
        return SnapshotState.PENDING
    return SnapshotState.COMPLETED


def _disk_body(location: str, option: str, source: str, zone: str | None) -> dict[str, Any]:
    """A managed disk created from a snapshot (Copy) or a disk restore point (Restore)."""
    body: dict[str, Any] = {
        "location": location,
        "tags": {"quiesce:restored-from": source[-256:]},
        "properties": {"creationData": {"createOption": option, "sourceResourceId": source}},
    }
    if zone:
        body["zones"] = [zone]
    return body
