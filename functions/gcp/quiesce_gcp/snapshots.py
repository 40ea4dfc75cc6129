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
`poll_durable`.

Status is read in bulk: `take_many` (the engine hands it every machine of a run at once) creates
every disk's snapshot concurrently, then reads all their states with ONE snapshots.list per
project and round, filtered on the run's labels (`quiesce-managed`, `quiesce-run`; one request
per 500 snapshots), instead of a get per snapshot and operation; `wait_durable` does the same
for the run's pending snapshots. A snapshot the listing does not show (not visible yet, or
gone) is asked about by itself: its createSnapshot operation (an error there fails the disk),
else the snapshot. Every read while polling is retried with the core's backoff: a rate limit
during the freeze must not fail a disk (and with it the machine's other snapshots).

Tags: the core recognises its snapshots by the tags of `quiesce.tags` (`quiesce:run-id`,
`quiesce:recovery-point`, ...) and their exact values (run ids hold uppercase letters). A label
value allows only lowercase letters, digits, `_` and `-` (63 characters at most), so each tag
is a label (`quiesce-run`, `quiesce-point`, ...) holding its value lowercased, which the API's
filters select on, and the snapshot's `description` holds the exact values as JSON. The refs
`take` and `find` return carry both: the labels as the snapshot holds them and the core's tags
with their exact values. An exact value is believed only when its label agrees with it, so a
snapshot relabelled by hand is never taken for another run's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from quiesce.durability import poll_durable
from quiesce.errors import ProviderError
from quiesce.ports import SnapshotCall, Snapshotter, fan_out
from quiesce.providers.registry import expect_member
from quiesce.record import SnapshotRef, SnapshotState, utcnow
from quiesce.tags import MANAGED_TAG, POINT_TAG, RUN_TAG, snapshot_tags
from quiesce_gcp.clients import (
    GcpClients,
    carries,
    label_filter,
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
RUN_LABEL = "quiesce-run"
#: The label that holds each of the core's tags (lowercased; the description holds it exact).
TAG_LABELS: dict[str, str] = {
    MANAGED_TAG: MANAGED_LABEL,
    "quiesce:policy": "quiesce-policy",
    "quiesce:group": "quiesce-group",
    "quiesce:member": "quiesce-member",
    RUN_TAG: RUN_LABEL,
    POINT_TAG: "quiesce-point",
    "quiesce:consistency": "quiesce-consistency",
    "quiesce:machine": "quiesce-machine",
}
METHOD = "gce-snapshot"
METHOD_GUEST_FLUSH = "gce-guest-flush"
#: How long `take` waits for a point in time before it gives up on a disk.
TAKE_TIMEOUT_SECONDS = 600.0

_LABEL_UNSAFE = re.compile(r"[^a-z0-9_-]")


def label_value(value: str) -> str:
    """A label value: lowercase letters, digits, `_` and `-`, at most 63 characters."""
    return _LABEL_UNSAFE.sub("_", value.lower())[:63]


def tag_labels(tags: Mapping[str, str]) -> dict[str, str]:
    """The labels of the core's `tags`: each under its label key, its value lowercased."""
    return {TAG_LABELS[k]: label_value(v) for k, v in tags.items() if k in TAG_LABELS}


def tag_description(tags: Mapping[str, str], keys: Mapping[str, str] = TAG_LABELS) -> str:
    """A resource's description: the core's tags (those of `keys`) with their exact values,
    as compact JSON."""
    return json.dumps(
        {k: v for k, v in tags.items() if k in keys}, sort_keys=True, separators=(",", ":")
    )


def exact_tags(
    labels: Mapping[str, str], description: str, keys: Mapping[str, str] = TAG_LABELS
) -> dict[str, str]:
    """The core's tags of a resource (those of `keys`: tag -> label), with the exact values its
    description holds, each only where the resource's label agrees with it. A description
    that is not ours gives none."""
    try:
        held = json.loads(description) if description else {}
    except ValueError:
        return {}
    if not isinstance(held, dict):
        return {}
    return {
        tag: value
        for tag, label in keys.items()
        if isinstance(value := held.get(tag), str) and labels.get(label) == label_value(value)
    }


def asked_tags(policy: str, group: str, run_id: str | None = None) -> dict[str, str]:
    """The core's tags a `find` asks for, with their exact values."""
    asked = {"quiesce:policy": policy, "quiesce:group": group}
    if run_id is not None:
        asked[RUN_TAG] = run_id
    return asked


def wanted_labels(asked: Mapping[str, str]) -> dict[str, str]:
    """The labels a `find` selects on: Quiesce's own, with the asked tags lowercased."""
    return {MANAGED_LABEL: "true", **tag_labels(asked)}


def contradicts(exact: Mapping[str, str], asked: Mapping[str, str]) -> bool:
    """Whether a resource's exact tags name another policy, group or run than the asked ones
    (a name that differs only in case is another one); a tag it does not hold contradicts
    nothing."""
    return any(exact.get(tag, value) != value for tag, value in asked.items())


def listed_tags(
    labels: Mapping[str, str],
    description: str,
    asked: Mapping[str, str],
    keys: Mapping[str, str] = TAG_LABELS,
) -> dict[str, str] | None:
    """The core's tags, exact (exact_tags), of a resource a `find` listed for the `asked` tags
    (asked_tags); None when it is not one asked for: it lacks a wanted label (wanted_labels;
    the list filter is the server's), or an exact value names another policy, group or run."""
    if not carries(labels, wanted_labels(asked)):
        return None
    exact = exact_tags(labels, description, keys)
    return None if contradicts(exact, asked) else exact


def find_projects(
    projects: Mapping[str, Sequence[str]], group: str, default: str | None
) -> list[str]:
    """The projects a `find` looks in for `group`: the group's own, else the default one."""
    return list(projects.get(group) or ([default] if default else []))


def refuse_unmanaged(labels: Mapping[str, str], what: str) -> None:
    """Refuses (NotManaged) to delete `what` unless it is labelled as Quiesce's own."""
    if labels.get(MANAGED_LABEL) != "true":
        raise ProviderError(
            f"{what} is not labelled {MANAGED_LABEL}=true: not deleting it", code="NotManaged"
        )


#: Every snapshot Quiesce creates is named with this prefix: infra/gcp grants deleting and
#: labelling snapshots only on names that start with it.
SNAPSHOT_PREFIX = "q-"


def snapshot_name(run_id: str, machine_id: str, disk: str) -> str:
    """A deterministic, valid snapshot name (^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$)."""
    digest = hashlib.sha256(f"{run_id}|{machine_id}|{disk}".encode()).hexdigest()[:20]
    stem = re.sub(r"[^a-z0-9-]", "-", disk.rsplit("/", 1)[-1].lower())[:36].strip("-")
    return f"{SNAPSHOT_PREFIX}{stem}-{digest}" if stem else f"{SNAPSHOT_PREFIX}{digest}"


@dataclass
class _Disk:
    """One disk's snapshot while `take_many` waits for its point in time."""

    slot: int  # which call it is of
    disk_url: str
    project: str = ""
    zone: str = ""
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # the core's, exact
    started: datetime = field(default_factory=utcnow)
    op: compute_v1.Operation | None = None
    snap: compute_v1.Snapshot | None = None
    fixed: datetime | None = None
    error: BaseException | None = None


class GceSnapshotter(GceDiskRestore, Snapshotter):
    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "take": [
            Permission("compute.disks.createSnapshot", DISK),
            Permission("compute.snapshots.create", SNAPSHOT),
            Permission("compute.snapshots.setLabels", SNAPSHOT, scope=QUIESCE_SNAPSHOTS),
            Permission("compute.snapshots.list", "projects/*"),
            Permission("compute.snapshots.get", SNAPSHOT),
            Permission("compute.zoneOperations.get", ZONE_OPERATION),
        ],
        "wait_durable": [
            Permission("compute.snapshots.list", "projects/*"),
            Permission("compute.snapshots.get", SNAPSHOT),
        ],
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
        return tag_labels(snapshot_tags(call))

    def take(self, call: SnapshotCall) -> list[SnapshotRef]:
        (result,) = self.take_many([call])
        if isinstance(result, BaseException):
            raise result
        return result

    def take_many(self, calls: Sequence[SnapshotCall]) -> list[list[SnapshotRef] | BaseException]:
        """Every disk of every call at once; then their states, one listing per round."""
        jobs = [(i, disk) for i, call in enumerate(calls) for disk in call.machine.volumes]
        created = fan_out(lambda job: self._create(calls[job[0]], job[1], job[0]), jobs)
        disks = [
            _Disk(i, disk_url, error=outcome) if isinstance(outcome, BaseException) else outcome
            for (i, disk_url), outcome in zip(jobs, created, strict=True)
        ]
        self._until_fixed([d for d in disks if d.error is None])
        results: list[list[SnapshotRef] | BaseException] = []
        for i, call in enumerate(calls):
            mine = [d for d in disks if d.slot == i]
            if not mine:
                results.append(
                    ProviderError(
                        f"{call.machine.machine_id}: no disks to snapshot", code="NoDisks"
                    )
                )
                continue
            refs = [self._ref(call, d) for d in mine if d.error is None]
            errors = [d.error for d in mine if d.error is not None]
            results.append(self._failed(call, refs, errors, len(mine)) if errors else refs)
        return results

    def _failed(
        self, call: SnapshotCall, refs: list[SnapshotRef], errors: list[BaseException], count: int
    ) -> ProviderError:
        """The machine's error. Its snapshots that were taken are deleted: the engine only
        knows the refs we return, and we return none."""
        for ref in refs:
            try:
                self.delete(ref)
            except Exception as exc:  # best effort; reported in the error below
                log.warning("cannot delete %s after a failed take: %s", ref.id, exc)
        first = errors[0]
        code = getattr(first, "code", None)
        error = ProviderError(
            f"{call.machine.machine_id}: {len(errors)} of {count} disk snapshots failed: "
            f"{error_message(first)}",
            code=code if isinstance(code, str) else "SnapshotFailed",
        )
        error.__cause__ = first
        return error

    def _create(self, call: SnapshotCall, disk_url: str, slot: int) -> _Disk:
        """Asks for one disk's snapshot; a repeated create (409) follows the one there."""
        project, zone, disk = parse_zonal(disk_url)
        name = snapshot_name(call.run_id, call.machine.machine_id, disk_url)
        tags = snapshot_tags(call)
        labels = tag_labels(tags)
        request = compute_v1.CreateSnapshotDiskRequest(
            project=project,
            zone=zone,
            disk=disk,
            snapshot_resource=compute_v1.Snapshot(
                name=name, labels=labels, description=tag_description(tags)
            ),
        )
        if self._guest_flush(call):
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
        return _Disk(slot, disk_url, project, zone, name, labels, tags, started, op)

    def _until_fixed(self, disks: Sequence[_Disk]) -> None:
        """Reads the disks' snapshots, one listing per project and run each round, until each
        is in a state of `fixed_when` (its `snap` and `fixed` set) or failed (its `error`)."""
        deadline = self.clock() + self.take_timeout
        while True:
            pending = [d for d in disks if d.snap is None and d.error is None]
            if not pending:
                return
            listings = self._listings({(d.project, d.labels[RUN_LABEL]) for d in pending})
            unseen = []
            for d in pending:
                listing = listings[(d.project, d.labels[RUN_LABEL])]
                if isinstance(listing, BaseException):
                    d.error = listing  # a rate limit outlasted the backoff: as a get would
                elif d.name in listing:
                    self._saw(d, listing[d.name])
                else:
                    unseen.append(d)
            for d, outcome in zip(unseen, fan_out(self._alone, unseen), strict=True):
                if isinstance(outcome, BaseException):
                    d.error = outcome
                elif outcome is not None:
                    self._saw(d, outcome)
            if all(d.snap is not None or d.error is not None for d in pending):
                return
            if self.clock() >= deadline:
                for d in pending:
                    if d.snap is None and d.error is None:
                        d.error = ProviderError(
                            f"snapshot {d.name}: not in {sorted(self.fixed_when)} after "
                            f"{self.take_timeout:g}s",
                            code="SnapshotTimeout",
                        )
                return
            self.sleep(self.poll_interval)

    def _saw(self, disk: _Disk, snap: compute_v1.Snapshot) -> None:
        if snap.status in self.fixed_when:
            disk.snap, disk.fixed = snap, utcnow()
        elif snap.status == "FAILED":
            disk.error = ProviderError(f"snapshot {disk.name} FAILED", code="SnapshotFailed")

    def _alone(self, disk: _Disk) -> compute_v1.Snapshot | None:
        """A snapshot the listing did not show: its operation's error fails it; else the
        snapshot itself (None while it is not there)."""
        if disk.op is not None and disk.op.status != compute_v1.Operation.Status.DONE:
            disk.op = self._operation(disk.project, disk.zone, disk.op.name)
        if disk.op is not None and disk.op.status == compute_v1.Operation.Status.DONE:
            error = operation_error(disk.op)
            if error:
                raise ProviderError(
                    f"snapshot {disk.name}: the operation failed: {error}", code="SnapshotFailed"
                )
        return self._get(disk.project, disk.name)

    def _ref(self, call: SnapshotCall, disk: _Disk) -> SnapshotRef:
        snap, fixed = disk.snap, disk.fixed
        assert snap is not None
        assert fixed is not None
        tags = {**disk.labels, **disk.tags}
        # What the operation reports: the snapshot's own guestFlush flag.
        tags["guest-flush"] = "true" if snap.guest_flush else "false"
        tags["status"] = snap.status
        ready = snap.status == "READY"
        return SnapshotRef(
            id=snap.name,
            provider="gcp",
            machine_id=call.machine.machine_id,
            volume=disk.disk_url,
            method=METHOD_GUEST_FLUSH if self._guest_flush(call) else METHOD,
            state=SnapshotState.COMPLETED if ready else SnapshotState.PENDING,
            started_at=disk.started,
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

    def _listings(
        self, runs: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, compute_v1.Snapshot] | BaseException]:
        """Quiesce's snapshots of each (project, run label) by name, or the error that listing
        met after its retries: one snapshots.list each (a request per page of 500), at once."""
        keys = sorted(runs)
        return dict(zip(keys, fan_out(self._list_run, keys), strict=True))

    def _list_run(self, key: tuple[str, str]) -> dict[str, compute_v1.Snapshot]:
        project, run = key
        wanted = {MANAGED_LABEL: "true", RUN_LABEL: run}
        request = compute_v1.ListSnapshotsRequest(project=project, filter=label_filter(wanted))
        found = self.backoff.call(
            lambda: list(self.clients.snapshots().list(request=request, retry=None)),
            what=f"snapshots.list {project} {RUN_LABEL}={run}",
        )
        return {s.name: s for s in found if carries(s.labels, wanted)}

    def wait_durable(self, snapshots: Sequence[SnapshotRef], timeout: float) -> list[SnapshotRef]:
        seen: dict[str, compute_v1.Snapshot] = {}

        def states(pending: Sequence[SnapshotRef]) -> dict[str, SnapshotState]:
            """Every pending snapshot's state: one listing per project and run, and a get for
            a snapshot without its run's label or that its listing does not show. A failed
            read leaves it pending; a vanished snapshot is failed."""
            where = {ref.id: parse_global(ref.location) for ref in pending}
            runs = {ref.id: (where[ref.id][0], ref.tags.get(RUN_LABEL, "")) for ref in pending}
            listings = self._listings({run for run in runs.values() if run[1]})
            outcomes: dict[str, object] = {}
            for ref in pending:
                listing = listings.get(runs[ref.id])
                if isinstance(listing, BaseException):
                    outcomes[ref.id] = listing
                elif listing is not None and where[ref.id][1] in listing:
                    outcomes[ref.id] = listing[where[ref.id][1]]
            unseen = [ref for ref in pending if ref.id not in outcomes]
            polls = fan_out(lambda ref: self._get(*where[ref.id]), unseen)
            outcomes.update((ref.id, poll) for ref, poll in zip(unseen, polls, strict=True))
            found: dict[str, SnapshotState] = {}
            for ref in pending:
                outcome = outcomes[ref.id]
                if isinstance(outcome, BaseException):
                    log.warning("polling %s failed: %s", ref.id, error_message(outcome))
                elif outcome is None:
                    found[ref.id] = SnapshotState.FAILED
                elif isinstance(outcome, compute_v1.Snapshot):
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

    def check(self, snapshot: SnapshotRef) -> None:
        """Raises unless the snapshot is still there and READY: before a restore creates
        anything (quiesce.restore.check_complete), so one deleted since is refused by name."""
        project, name = parse_global(snapshot.location) if snapshot.location else ("", "")
        if not project:
            raise ProviderError(f"snapshot {snapshot.id}: no location", code="BadResourceUrl")
        try:
            live = self._get(project, name)
        except gexc.GoogleAPICallError as exc:
            raise ProviderError(
                f"{snapshot.id}: could not read the snapshot: {error_message(exc)}",
                code="CheckFailed",
            ) from exc
        status = live.status if live is not None else ""
        if live is None or status != "READY":
            raise ProviderError(
                f"{snapshot.id}: the snapshot is "
                f"{'gone' if live is None else status or 'in an unknown state'} in {project}",
                code="NotRestorable",
            )

    def delete(self, snapshot: SnapshotRef) -> None:
        project, name = parse_global(snapshot.location) if snapshot.location else ("", "")
        if not project:
            raise ProviderError(f"snapshot {snapshot.id}: no location", code="BadResourceUrl")
        client = self.clients.snapshots()
        snap = self._get(project, name)
        if snap is None:
            return
        refuse_unmanaged(snap.labels, f"snapshot {name}")
        try:
            self.backoff.call(
                lambda: client.delete_unary(project=project, snapshot=name, retry=None),
                retry_on=MUTATION_RETRYABLE,
                what=f"snapshots.delete {name}",
            )
        except gexc.NotFound:
            return

    def find(self, policy: str, group: str, run_id: str | None = None) -> list[SnapshotRef]:
        """Quiesce's snapshots of the group (and run), selected by their labels; each ref's
        tags are the snapshot's labels and the core's tags with their exact values. A snapshot
        whose exact value differs from the one asked for (a policy, group or run whose name
        differs only in case) is not the one asked for."""
        asked = asked_tags(policy, group, run_id)
        wanted = wanted_labels(asked)
        out: list[SnapshotRef] = []
        for project in find_projects(self.projects, group, self.default_project):
            request = compute_v1.ListSnapshotsRequest(project=project, filter=label_filter(wanted))
            found = self.backoff.call(
                lambda r=request: list(  # type: ignore[misc]
                    self.clients.snapshots().list(request=r, retry=None)
                ),
                what=f"snapshots.list {project}",
            )
            for snap in found:
                exact = listed_tags(snap.labels, snap.description, asked)
                if exact is not None:
                    out.append(_found(snap, exact))
        return out


def _found(snap: compute_v1.Snapshot, exact: Mapping[str, str]) -> SnapshotRef:
    """The ref of a snapshot `find` listed."""
    created = _created(snap.creation_timestamp)
    return SnapshotRef(
        id=snap.name,
        provider="gcp",
        machine_id=exact.get("quiesce:machine") or snap.labels.get("quiesce-machine", ""),
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
        tags={**snap.labels, **exact},
    )


def _created(timestamp: str) -> datetime:
    """A snapshot's creationTimestamp (RFC 3339); now when it is missing or unreadable."""
    try:
        when = datetime.fromisoformat(timestamp) if timestamp else None
    except ValueError:
        when = None
    return when if when is not None and when.tzinfo is not None else utcnow()


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
