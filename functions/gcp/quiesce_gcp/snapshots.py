"""Persistent disk snapshots: one per disk of each machine, labelled as Quiesce's own.

Every disk of a machine gets disks.createSnapshot at once (with guestFlush for `guest_flush`
members). The snapshot's name is derived from run, machine and disk, so a repeated create
finds the one already there (409) instead of making a second.

THE RULE (`fixed_when`): Compute Engine snapshots go CREATING -> UPLOADING -> READY. The point in
time is taken to be fixed when the snapshot leaves CREATING, i.e. the first time it is seen in a
state of `fixed_when` (default UPLOADING or READY): `take` returns then, and the engine thaws.
Google documents no stronger statement (see docs/gcp.md); to be conservative, construct the
snapshotter with fixed_when=frozenset({"READY"}) and the freeze lasts until the upload is done.
`wait_durable` waits for READY (FAILED -> failed) after the thaw, through the core's
`poll_durable`. Every read while polling (snapshots.get, zoneOperations.get) is retried with the
core's backoff: a rate limit during the freeze must not fail a disk (and with it the machine's
other snapshots).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import ClassVar

from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from quiesce.durability import poll_durable
from quiesce.errors import ProviderError
from quiesce.ports import Machine, SnapshotCall, Snapshotter, fan_out
from quiesce.providers.registry import expect_member
from quiesce.record import SnapshotRef, SnapshotState, utcnow
from quiesce_gcp.clients import (
    GcpClients,
    operation_error,
    parse_global,
    parse_zonal,
)
from quiesce_gcp.disk_restore import GceDiskRestore
from quiesce_gcp.member import GcpMember
from quiesce_gcp.permissions import (
    DISK,
    QUIESCE_SNAPSHOTS,
    SNAPSHOT,
    ZONE_OPERATION,
    Permission,
)
from quiesce_gcp.retry import MUTATION_RETRYABLE, Backoff, error_message

log = logging.getLogger(__name__)

#: The snapshot states in which its point in time is fixed (see THE RULE above).
FIXED_WHEN: frozenset[str] = frozenset({"UPLOADING", "READY"})
MANAGED_LABEL = "quiesce-managed"
METHOD = "gce-snapshot"
METHOD_GUEST_FLUSH = "gce-guest-flush"
#: How long `take` waits for a point in time before it gives up on a disk.
TAKE_TIMEOUT_SECONDS = 600.0

_LABEL_UNSAFE = re.compile(r"[^a-z0-9_-]")


def label_value(value: str) -> str:
    """A label value: lowercase letters, digits, `_` and `-`, at most 63 characters."""
    return _LABEL_UNSAFE.sub("_", value.lower())[:63]


#: Every snapshot Quiesce creates is named with this prefix: infra/gcp grants deleting and
#: labelling snapshots only on names that start with it.
SNAPSHOT_PREFIX = "q-"


def snapshot_name(run_id: str, machine_id: str, disk: str) -> str:
    """A deterministic, valid snapshot name (^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$)."""
    digest = hashlib.sha256(f"{run_id}|{machine_id}|{disk}".encode()).hexdigest()[:20]
    stem = re.sub(r"[^a-z0-9-]", "-", disk.rsplit("/", 1)[-1].lower())[:36].strip("-")
    return f"{SNAPSHOT_PREFIX}{stem}-{digest}" if stem else f"{SNAPSHOT_PREFIX}{digest}"


class GceSnapshotter(GceDiskRestore, Snapshotter):
    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "take": [
            Permission("compute.disks.createSnapshot", DISK),
            Permission("compute.snapshots.create", SNAPSHOT),
            Permission("compute.snapshots.setLabels", SNAPSHOT, scope=QUIESCE_SNAPSHOTS),
            Permission("compute.snapshots.get", SNAPSHOT),
            Permission("compute.zoneOperations.get", ZONE_OPERATION),
        ],
        "wait_durable": [Permission("compute.snapshots.get", SNAPSHOT)],
        "delete": [
            Permission("compute.snapshots.get", SNAPSHOT),
            Permission(
                "compute.snapshots.delete",
                SNAPSHOT,
                {"resource.labels.quiesce-managed": "true"},
                scope=QUIESCE_SNAPSHOTS,
            ),
        ],
        "find": [Permission("compute.snapshots.list", "projects/*")],
    }

    def __init__(
        self,
        clients: GcpClients,
        *,
        projects: Mapping[str, Sequence[str]] | None = None,
        default_project: str | None = None,
        fixed_when: Collection[str] = FIXED_WHEN,
        poll_interval: float = 0.5,
        take_timeout: float = TAKE_TIMEOUT_SECONDS,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = clients
        self.projects = dict(projects or {})  # by group: where `find` looks
        self.default_project = default_project
        self.fixed_when = frozenset(fixed_when)
        self.poll_interval = poll_interval
        self.take_timeout = take_timeout
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self.clock = clock

    # ------------------------------------------------------------------------------ take

    def _guest_flush(self, call: SnapshotCall) -> bool:
        return expect_member(call.spec, GcpMember).hook_channel == "guest_flush"

    def labels(self, call: SnapshotCall) -> dict[str, str]:
        return {
            MANAGED_LABEL: "true",
            "quiesce-policy": label_value(call.policy),
            "quiesce-group": label_value(call.group),
            "quiesce-member": label_value(call.member),
            "quiesce-run": label_value(call.run_id),
            "quiesce-point": label_value(call.recovery_point),
            "quiesce-consistency": label_value(call.consistency),
            "quiesce-machine": label_value(call.machine.machine_id),
        }

    def take(self, call: SnapshotCall) -> list[SnapshotRef]:
        if not call.machine.volumes:
            raise ProviderError(f"{call.machine.machine_id}: no disks to snapshot", code="NoDisks")
        results = fan_out(lambda disk: self._take_one(call, disk), list(call.machine.volumes))
        refs = [r for r in results if isinstance(r, SnapshotRef)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            # The engine only knows the refs we return: delete this machine's others here.
            for ref in refs:
                try:
                    self.delete(ref)
                except Exception as exc:  # best effort; reported in the error below
                    log.warning("cannot delete %s after a failed take: %s", ref.id, exc)
            first = errors[0]
            raise ProviderError(
                f"{call.machine.machine_id}: {len(errors)} of {len(results)} disk snapshots "
                f"failed: {error_message(first)}",
                code=getattr(first, "code", "SnapshotFailed")
                if isinstance(getattr(first, "code", None), str)
                else "SnapshotFailed",
            ) from first
        return refs

    def _take_one(self, call: SnapshotCall, disk_url: str) -> SnapshotRef:
        project, zone, disk = parse_zonal(disk_url)
        name = snapshot_name(call.run_id, call.machine.machine_id, disk_url)
        flush = self._guest_flush(call)
        labels = self.labels(call)
        request = compute_v1.CreateSnapshotDiskRequest(
            project=project,
            zone=zone,
            disk=disk,
            snapshot_resource=compute_v1.Snapshot(name=name, labels=labels),
        )
        if flush:
            request.guest_flush = True
        started = utcnow()
        op: compute_v1.Operation | None
        try:
            op = self.backoff.call(
                lambda: self.clients.disks().create_snapshot_unary(request=request, retry=None),
                retry_on=MUTATION_RETRYABLE,
                what=f"disks.createSnapshot {disk}",
            )
        except gexc.Conflict:
            op = None  # created by an earlier attempt: follow that snapshot
        except gexc.GoogleAPICallError as exc:
            raise ProviderError(
                f"disks.createSnapshot {project}/{zone}/{disk}: {error_message(exc)}",
                code=type(exc).__name__,
            ) from exc
        snap = self._until(project, zone, name, op, self.fixed_when, self.take_timeout)
        fixed = utcnow()
        return self._ref(call.machine, disk_url, snap, started, fixed, flush, labels)

    def _until(
        self,
        project: str,
        zone: str,
        name: str,
        op: compute_v1.Operation | None,
        states: frozenset[str],
        timeout: float,
    ) -> compute_v1.Snapshot:
        """Polls the snapshot (and its operation) until it is in one of `states`."""
        deadline = self.clock() + timeout
        while True:
            if op is not None and op.status != compute_v1.Operation.Status.DONE:
                op = self._operation(project, zone, op.name)
            if op is not None and op.status == compute_v1.Operation.Status.DONE:
                error = operation_error(op)
                if error:
                    raise ProviderError(
                        f"snapshot {name}: the operation failed: {error}", code="SnapshotFailed"
                    )
            snap = self._get(project, name)
            if snap is not None:
                if snap.status in states:
                    return snap
                if snap.status == "FAILED":
                    raise ProviderError(f"snapshot {name} FAILED", code="SnapshotFailed")
            if self.clock() >= deadline:
                raise ProviderError(
                    f"snapshot {name}: not in {sorted(states)} after {timeout:g}s",
                    code="SnapshotTimeout",
                )
            self.sleep(self.poll_interval)

    def _ref(
        self,
        machine: Machine,
        disk_url: str,
        snap: compute_v1.Snapshot,
        started: datetime,
        fixed: datetime,
        flush: bool,
        labels: dict[str, str],
    ) -> SnapshotRef:
        tags = dict(labels)
        # What the operation reports: the snapshot's own guestFlush flag.
        tags["guest-flush"] = "true" if snap.guest_flush else "false"
        tags["status"] = snap.status
        ready = snap.status == "READY"
        return SnapshotRef(
            id=snap.name,
            provider="gcp",
            machine_id=machine.machine_id,
            volume=disk_url,
            method=METHOD_GUEST_FLUSH if flush else METHOD,
            state=SnapshotState.COMPLETED if ready else SnapshotState.PENDING,
            started_at=started,
            fixed_at=fixed,
            durable_at=fixed if ready else None,
            size_bytes=(snap.storage_bytes or None) if ready else None,
            location=snap.self_link,
            tags=tags,
        )

    # ------------------------------------------------------------------------------ after

    def _operation(self, project: str, zone: str, name: str) -> compute_v1.Operation:
        return self.backoff.call(
            lambda: self.clients.zone_operations().get(
                project=project, zone=zone, operation=name, retry=None
            ),
            what=f"zoneOperations.get {name}",
        )

    def _get(self, project: str, name: str) -> compute_v1.Snapshot | None:
        """The snapshot (None when it is gone), rate limits and outages retried with backoff."""
        try:
            return self.backoff.call(
                lambda: self.clients.snapshots().get(project=project, snapshot=name, retry=None),
                what=f"snapshots.get {name}",
            )
        except gexc.NotFound:
            return None

    def wait_durable(self, snapshots: Sequence[SnapshotRef], timeout: float) -> list[SnapshotRef]:
        seen: dict[str, compute_v1.Snapshot] = {}

        def states(pending: Sequence[SnapshotRef]) -> dict[str, SnapshotState]:
            """Every pending snapshot's state, asked concurrently; a failed poll leaves it
            pending, a vanished snapshot is failed."""
            found: dict[str, SnapshotState] = {}
            polls = fan_out(lambda ref: self._get(*parse_global(ref.location)), pending)
            for ref, outcome in zip(pending, polls, strict=True):
                if isinstance(outcome, BaseException):
                    log.warning("polling %s failed: %s", ref.id, error_message(outcome))
                elif outcome is None:
                    found[ref.id] = SnapshotState.FAILED
                else:
                    seen[ref.id] = outcome
                    if outcome.status in _DURABILITY:
                        found[ref.id] = _DURABILITY[outcome.status]
            return found

        done = poll_durable(
            snapshots,
            timeout,
            states,
            clock=self.clock,
            sleep=self.sleep,
            interval=self.poll_interval,
        )
        return [_observed(ref, seen.get(ref.id)) for ref in done]

    def delete(self, snapshot: SnapshotRef) -> None:
        project, name = parse_global(snapshot.location) if snapshot.location else ("", "")
        if not project:
            raise ProviderError(f"snapshot {snapshot.id}: no location", code="BadResourceUrl")
        client = self.clients.snapshots()
        snap = self._get(project, name)
        if snap is None:
            return
        if snap.labels.get(MANAGED_LABEL) != "true":
            raise ProviderError(
                f"snapshot {name} is not labelled {MANAGED_LABEL}=true: not deleting it",
                code="NotManaged",
            )
        try:
            self.backoff.call(
                lambda: client.delete_unary(project=project, snapshot=name, retry=None),
                retry_on=MUTATION_RETRYABLE,
                what=f"snapshots.delete {name}",
            )
        except gexc.NotFound:
            return

    def find(self, policy: str, group: str, run_id: str | None = None) -> list[SnapshotRef]:
        wanted = {
            MANAGED_LABEL: "true",
            "quiesce-policy": label_value(policy),
            "quiesce-group": label_value(group),
        }
        if run_id is not None:
            wanted["quiesce-run"] = label_value(run_id)
        out: list[SnapshotRef] = []
        projects = self.projects.get(group) or (
            [self.default_project] if self.default_project else []
        )
        for project in projects:
            request = compute_v1.ListSnapshotsRequest(
                project=project, filter=" ".join(f'(labels.{k} = "{v}")' for k, v in wanted.items())
            )
            found = self.backoff.call(
                lambda r=request: list(  # type: ignore[misc]
                    self.clients.snapshots().list(request=r, retry=None)
                ),
                what=f"snapshots.list {project}",
            )
            for snap in found:
                if any(snap.labels.get(k) != v for k, v in wanted.items()):
                    continue
                created = utcnow()
                out.append(
                    SnapshotRef(
                        id=snap.name,
                        provider="gcp",
                        machine_id=snap.labels.get("quiesce-machine", ""),
                        volume=snap.source_disk,
                        method=METHOD_GUEST_FLUSH if snap.guest_flush else METHOD,
                        state={
                            "READY": SnapshotState.COMPLETED,
                            "FAILED": SnapshotState.FAILED,
                            "DELETING": SnapshotState.DELETED,
                        }.get(snap.status, SnapshotState.PENDING),
                        started_at=created,
                        fixed_at=created,
                        location=snap.self_link,
                        tags=dict(snap.labels),
                    )
                )
        return out


#: What a snapshot's status says of its durability (other statuses: still pending).
_DURABILITY = {"READY": SnapshotState.COMPLETED, "FAILED": SnapshotState.FAILED}


def _observed(ref: SnapshotRef, snap: compute_v1.Snapshot | None) -> SnapshotRef:
    """`ref` with what its last poll showed: its status, and its size once READY."""
    if snap is None or ref.state is SnapshotState.PENDING:
        return ref
    update: dict[str, object] = {"tags": {**ref.tags, "status": snap.status}}
    if ref.state is SnapshotState.COMPLETED:
        update["size_bytes"] = snap.storage_bytes or None
    return ref.model_copy(update=update)
