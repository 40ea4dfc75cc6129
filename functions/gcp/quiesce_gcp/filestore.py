"""Filestore members: an instance snapshot taken inside the group's freeze.

THE RULE: a Filestore snapshot is the state of the instance's file share when the snapshot
is created (NFSv3 semantics: writes the instance acknowledged as stable, or followed by an
acknowledged COMMIT, before the snapshot began are in it). Google documents no moment at which
the point is fixed short of the snapshot being READY, so `take` creates the snapshot
(instances.snapshots.create, labelled as Quiesce's) and returns only once it is READY: the
freeze lasts that long (snapshot creation copies no data and usually takes under two minutes,
per the service's documentation; set the group's `max_freeze_seconds` accordingly). A READY
snapshot is stored on the instance, so `wait_durable` completes it at once.

Snapshots exist only on zonal, regional and enterprise instances, live on the instance (losing
the instance loses them) and count against its capacity as the share changes. Filestore
backups, which are regional copies, are not offered: a backup copies the share over an
interval (Google asks applications to be paused throughout), so it is not one point in time.

Restore: Filestore cannot create an instance from a snapshot. Reverting the instance to the
snapshot (instances.revert) is irreversible (later writes and newer snapshots are deleted), so
`cloud_restore` runs it only for members with `allow_revert: true`; the plan always shows it,
and how to copy files back from the share's `.snapshot/<name>` folder instead.

Tags: as for disk snapshots (quiesce_gcp.snapshots), each of the core's tags is a label holding
its value lowercased (what `find` filters on), and the snapshot's `description` (2048 characters
at most; the tags take a few hundred) holds their exact values as JSON. The refs `take` and
`find` return carry both; an exact value is believed only where its label agrees with it, so
the orphan sweep recognises a run's leftover snapshots (run ids hold uppercase letters) and
never a snapshot relabelled by hand.

Retention deletes only snapshots labelled quiesce-managed=true and named with Quiesce's prefix.
The client is google-cloud-filestore's CloudFilestoreManagerClient over REST.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shlex
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from google.api_core import exceptions as gexc

from quiesce.durability import poll_durable
from quiesce.errors import ProviderError
from quiesce.policy.model import MemberBase
from quiesce.ports import (
    CloudRestore,
    Inventory,
    Machine,
    PointMethod,
    RestoreStep,
    SnapshotCall,
    Snapshotter,
)
from quiesce.providers.registry import expect_member
from quiesce.record import SnapshotRef, SnapshotState, utcnow
from quiesce.tags import snapshot_tags
from quiesce_gcp.managed_spec import FilestoreMember
from quiesce_gcp.permissions import (
    FILESTORE_INSTANCE,
    FILESTORE_OPERATION,
    FILESTORE_SNAPSHOT,
    RESTORE,
    Permission,
)
from quiesce_gcp.retry import MUTATION_RETRYABLE, Backoff, error_message, read_failed
from quiesce_gcp.snapshots import (
    SNAPSHOT_PREFIX,
    asked_tags,
    listed_tags,
    refuse_unmanaged,
    tag_description,
    tag_labels,
    wanted_labels,
)

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.cloud.filestore_v1 import CloudFilestoreManagerClient, Instance, Snapshot

log = logging.getLogger(__name__)

METHOD = "filestore-snapshot"
#: The snapshot states in which its point in time is known to be fixed.
FIXED_WHEN: frozenset[str] = frozenset({"READY"})
TAKE_TIMEOUT_SECONDS = 300.0
#: Tiers without snapshots.
NO_SNAPSHOTS = ("BASIC_HDD", "BASIC_SSD", "STANDARD", "PREMIUM")

_RESOURCE = re.compile(
    r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/instances/(?P<instance>[^/]+)"
    r"(/snapshots/(?P<snapshot>[^/]+))?$"
)


class FilestoreClients:
    """One Filestore client (REST), built lazily; `endpoint` "http://HOST:PORT" (tests) is
    called without credentials."""

    def __init__(self, credentials: Credentials | None = None, *, endpoint: str | None = None):
        self.credentials = credentials
        self.endpoint = endpoint
        self._lock = threading.Lock()
        self._client: CloudFilestoreManagerClient | None = None

    def filestore(self) -> CloudFilestoreManagerClient:
        with self._lock:
            if self._client is None:
                from google.cloud.filestore_v1 import CloudFilestoreManagerClient

                options = {"api_endpoint": self.endpoint} if self.endpoint else None
                credentials = self.credentials
                if credentials is None and (self.endpoint or "").startswith("http://"):
                    # A plain-http endpoint is a local emulator: Google's own are https.
                    from google.auth.credentials import AnonymousCredentials

                    credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
                self._client = CloudFilestoreManagerClient(
                    credentials=credentials, client_options=options, transport="rest"
                )
            return self._client


def snapshot_id(run_id: str, instance: str) -> str:
    """A deterministic snapshot id (lowercase letters, digits, hyphens; starts with a letter)."""
    digest = hashlib.sha256(f"{run_id}|{instance}".encode()).hexdigest()[:20]
    return f"{SNAPSHOT_PREFIX}{digest}"


def parse(name: str) -> dict[str, str]:
    match = _RESOURCE.search(name)
    if match is None:
        raise ProviderError(f"not a Filestore resource name: {name!r}", code="BadResourceUrl")
    return {k: v for k, v in match.groupdict().items() if v is not None}


def _state(snapshot: Snapshot) -> str:
    return snapshot.state.name if snapshot.state else "STATE_UNSPECIFIED"


class _Reads:
    clients: FilestoreClients
    backoff: Backoff

    def _instance(self, member: FilestoreMember) -> Instance:
        client = self.clients.filestore()
        try:
            return self.backoff.call(
                lambda: client.get_instance(name=member.resource, retry=None),
                what=f"instances.get {member.resource}",
            )
        except gexc.GoogleAPICallError as exc:
            raise read_failed(member.name, f"Filestore instance {member.resource}", exc) from exc

    def _checked(self, member: FilestoreMember) -> Instance:
        found = self._instance(member)
        tier = found.tier.name if found.tier else ""
        if tier in NO_SNAPSHOTS:
            raise ProviderError(
                f"member {member.name!r}: Filestore instance {member.resource} is of tier "
                f"{tier}, which has no snapshots (zonal, regional and enterprise tiers have)",
                code="SnapshotsUnsupported",
            )
        return found

    def _snapshot(self, name: str) -> Snapshot | None:
        client = self.clients.filestore()
        try:
            return self.backoff.call(
                lambda: client.get_snapshot(name=name, retry=None),
                what=f"snapshots.get {name}",
            )
        except gexc.NotFound:
            return None


class FilestoreInventory(_Reads, Inventory):
    """The member's instance as one Machine (machine_id: its resource name)."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "resolve": [Permission("file.instances.get", FILESTORE_INSTANCE)],
    }

    def __init__(self, clients: FilestoreClients, *, backoff: Backoff | None = None) -> None:
        self.clients = clients
        self.backoff = backoff or Backoff()

    def resolve(self, spec: MemberBase) -> list[Machine]:
        member = expect_member(spec, FilestoreMember)
        found = self._checked(member)
        shares = [s.name for s in found.file_shares]
        return [
            Machine(
                provider="gcp-filestore",
                member=member.name,
                machine_id=member.resource,
                volumes=(member.instance,),
                attributes={
                    "project": member.project,
                    "location": member.location,
                    "tier": found.tier.name if found.tier else "",
                    "shares": ",".join(shares),
                },
            )
        ]


class FilestoreSnapshotter(_Reads, Snapshotter):
    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "take": [
            Permission("file.instances.get", FILESTORE_INSTANCE),
            Permission("file.snapshots.create", FILESTORE_SNAPSHOT),
            Permission("file.snapshots.get", FILESTORE_SNAPSHOT),
            Permission("file.operations.get", FILESTORE_OPERATION),
        ],
        "wait_durable": [Permission("file.snapshots.get", FILESTORE_SNAPSHOT)],
        "delete": [
            Permission("file.snapshots.get", FILESTORE_SNAPSHOT),
            # Filestore resource names are not recognised by IAM Conditions: the adapter
            # refuses to delete a snapshot without Quiesce's label and name prefix.
            Permission(
                "file.snapshots.delete",
                FILESTORE_SNAPSHOT,
                {"resource.labels.quiesce-managed": "true"},
            ),
        ],
        "find": [Permission("file.snapshots.list", FILESTORE_INSTANCE)],
        # Before anything is created: is the snapshot still there, READY?
        "check": [Permission("file.snapshots.get", FILESTORE_SNAPSHOT, scope=RESTORE)],
        "cloud_restore": [Permission("file.instances.revert", FILESTORE_INSTANCE, scope=RESTORE)],
    }

    def __init__(
        self,
        clients: FilestoreClients,
        *,
        instances: Mapping[str, Sequence[str]] | None = None,
        revertible: Collection[str] = (),
        fixed_when: Collection[str] = FIXED_WHEN,
        poll_interval: float = 1.0,
        take_timeout: float = TAKE_TIMEOUT_SECONDS,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = clients
        self.instances = dict(instances or {})  # by group: where `find` looks
        self.revertible = frozenset(revertible)  # instance resource names with allow_revert
        self.fixed_when = frozenset(fixed_when)
        self.poll_interval = poll_interval
        self.take_timeout = take_timeout
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self.clock = clock

    def point_method(self, spec: MemberBase) -> PointMethod:
        return PointMethod("snapshot", 0.0, "Filestore instance snapshot, READY inside the freeze")

    def describe(self, machine: Machine) -> dict[str, str]:
        return {
            volume: "snapshot: instances.snapshots.create, the freeze held until it is READY"
            for volume in machine.volumes
        }

    def labels(self, call: SnapshotCall) -> dict[str, str]:
        return tag_labels(snapshot_tags(call))

    # ------------------------------------------------------------------------------ take

    def take(self, call: SnapshotCall) -> list[SnapshotRef]:
        from google.cloud.filestore_v1 import Snapshot

        member = expect_member(call.spec, FilestoreMember)
        started = utcnow()
        sid = snapshot_id(call.run_id, member.resource)
        name = f"{member.resource}/snapshots/{sid}"
        tags = snapshot_tags(call)
        labels = tag_labels(tags)
        client = self.clients.filestore()
        op_name: str | None = None
        try:
            op = self.backoff.call(
                lambda: client.create_snapshot(
                    parent=member.resource,
                    snapshot=Snapshot(labels=labels, description=tag_description(tags)),
                    snapshot_id=sid,
                    retry=None,
                ),
                retry_on=MUTATION_RETRYABLE,
                what=f"snapshots.create {name}",
            )
            op_name = op.operation.name
        except gexc.AlreadyExists:
            pass  # created by an earlier attempt: follow that snapshot
        except gexc.GoogleAPICallError as exc:
            raise ProviderError(
                f"snapshots.create {name}: {error_message(exc)}", code=type(exc).__name__
            ) from exc
        snap = self._until(name, op_name)
        fixed = utcnow()
        return [
            SnapshotRef(
                id=sid,
                provider="gcp-filestore",
                machine_id=member.resource,
                volume=member.instance,
                method=METHOD,
                state=SnapshotState.COMPLETED,
                started_at=started,
                fixed_at=fixed,
                durable_at=fixed,
                size_bytes=snap.filesystem_used_bytes or None,
                location=name,
                tags={**labels, **tags, "state": _state(snap)},
            )
        ]

    def _until(self, name: str, op_name: str | None) -> Snapshot:
        """Polls the snapshot (and its operation) until it is in one of `fixed_when`."""
        client = self.clients.filestore()
        deadline = self.clock() + self.take_timeout
        while True:
            if op_name is not None:
                op = self.backoff.call(
                    lambda n=op_name: client.get_operation(  # type: ignore[misc]
                        request={"name": n}, retry=None
                    ),
                    what=f"operations.get {op_name}",
                )
                if op.done and op.HasField("error"):
                    raise ProviderError(
                        f"snapshot {name}: the operation failed: {op.error.message}",
                        code="SnapshotFailed",
                    )
                if op.done:
                    op_name = None
            snap = self._snapshot(name)
            if snap is not None and _state(snap) in self.fixed_when:
                return snap
            if self.clock() >= deadline:
                raise ProviderError(
                    f"snapshot {name}: not in {sorted(self.fixed_when)} after "
                    f"{self.take_timeout:g}s",
                    code="SnapshotTimeout",
                )
            self.sleep(self.poll_interval)

    # ------------------------------------------------------------------------------ after

    def wait_durable(self, snapshots: Sequence[SnapshotRef], timeout: float) -> list[SnapshotRef]:
        def states(pending: Sequence[SnapshotRef]) -> dict[str, SnapshotState]:
            found: dict[str, SnapshotState] = {}
            for ref in pending:
                try:
                    snap = self._snapshot(ref.location)
                except Exception as exc:
                    log.warning("polling %s failed: %s", ref.id, error_message(exc))
                    continue
                if snap is None:
                    found[ref.id] = SnapshotState.FAILED
                elif _state(snap) == "READY":
                    found[ref.id] = SnapshotState.COMPLETED
            return found

        return poll_durable(
            snapshots,
            timeout,
            states,
            clock=self.clock,
            sleep=self.sleep,
            interval=self.poll_interval,
        )

    def check(self, snapshot: SnapshotRef) -> None:
        """Raises unless the Filestore snapshot is still there and READY: before a restore
        reverts or creates anything (quiesce.restore.check_complete)."""
        try:
            snap = self._snapshot(snapshot.location)
        except gexc.GoogleAPICallError as exc:
            raise ProviderError(
                f"{snapshot.id}: could not read the Filestore snapshot: {error_message(exc)}",
                code="CheckFailed",
            ) from exc
        if snap is None or _state(snap) != "READY":
            state = "gone" if snap is None else _state(snap) or "in an unknown state"
            raise ProviderError(
                f"{snapshot.id}: the Filestore snapshot is {state}", code="NotRestorable"
            )

    def delete(self, snapshot: SnapshotRef) -> None:
        name = snapshot.location
        parts = parse(name)
        if not parts.get("snapshot", "").startswith(SNAPSHOT_PREFIX):
            raise ProviderError(
                f"Filestore snapshot {name} is not named like Quiesce's: not deleting it",
                code="NotManaged",
            )
        snap = self._snapshot(name)
        if snap is None:
            return
        refuse_unmanaged(snap.labels, f"Filestore snapshot {name}")
        client = self.clients.filestore()
        try:
            self.backoff.call(
                lambda: client.delete_snapshot(name=name, retry=None),
                retry_on=MUTATION_RETRYABLE,
                what=f"snapshots.delete {name}",
            )
        except gexc.NotFound:
            return

    def find(self, policy: str, group: str, run_id: str | None = None) -> list[SnapshotRef]:
        """Quiesce's snapshots of the group's instances (and run), selected by their labels;
        each ref's tags are the snapshot's labels and the core's tags with their exact values
        (from its description, where the labels agree). A snapshot whose exact value differs
        from the one asked for (a name that differs only in case) is not the one asked for."""
        asked = asked_tags(policy, group, run_id)
        wanted = wanted_labels(asked)
        client = self.clients.filestore()
        out: list[SnapshotRef] = []
        for instance in self.instances.get(group, []):
            request = {
                "parent": instance,
                "filter": " AND ".join(f'labels.{k}="{v}"' for k, v in wanted.items()),
            }
            found = self.backoff.call(
                lambda r=request: list(  # type: ignore[misc]
                    client.list_snapshots(request=r, retry=None)
                ),
                what=f"snapshots.list {instance}",
            )
            for snap in found:
                exact = listed_tags(snap.labels, snap.description, asked)
                if exact is None:
                    continue
                created = utcnow()
                out.append(
                    SnapshotRef(
                        id=snap.name.rsplit("/", 1)[-1],
                        provider="gcp-filestore",
                        machine_id=instance,
                        volume=instance.rsplit("/", 1)[-1],
                        method=METHOD,
                        state={
                            "READY": SnapshotState.COMPLETED,
                            "DELETING": SnapshotState.DELETED,
                        }.get(_state(snap), SnapshotState.PENDING),
                        started_at=created,
                        fixed_at=created,
                        location=snap.name,
                        tags={**snap.labels, **exact},
                    )
                )
        return out

    # ------------------------------------------------------------------------------ restore

    def plan_cloud_restore(self, request: CloudRestore) -> RestoreStep:
        parts = parse(request.snapshot.location)
        instance = request.snapshot.location.rsplit("/snapshots/", 1)[0]
        sid = parts["snapshot"]
        revert = instance in self.revertible
        command = shlex.join(
            [
                "gcloud", "filestore", "instances", "revert", parts["instance"],
                f"--project={parts['project']}", f"--location={parts['location']}",
                f"--target-snapshot={sid}",
            ]
        )  # fmt: skip
        if not revert:
            command = (
                f"# not run: member {request.member!r} has no allow_revert (a revert deletes "
                f"every later write and newer snapshot). Either {command}, or mount the share "
                f"and copy the files back from its .snapshot/{sid}/ folder"
            )
        return RestoreStep(
            member=request.member,
            snapshot=request.snapshot.id,
            action="instances.revert" if revert else "instances.revert (not allowed)",
            parameters={"name": instance, "targetSnapshotId": sid},
            command=command,
        )

    def cloud_restore(self, request: CloudRestore) -> RestoreStep:
        step = self.plan_cloud_restore(request)
        instance = step.parameters["name"]
        if instance not in self.revertible:
            raise ProviderError(
                f"member {request.member!r}: restoring Filestore snapshot "
                f"{step.parameters['targetSnapshotId']} reverts instance {instance} in place, "
                "deleting every later write and every newer snapshot; set allow_revert: true "
                "on the member to allow it, or copy the files back from the share's "
                f".snapshot/{step.parameters['targetSnapshotId']}/ folder",
                code="RevertNotAllowed",
            )
        from google.cloud.filestore_v1 import RevertInstanceRequest

        client = self.clients.filestore()
        call = RevertInstanceRequest(
            name=instance, target_snapshot_id=step.parameters["targetSnapshotId"]
        )
        try:
            self.backoff.call(
                lambda: client.revert_instance(request=call, retry=None),
                retry_on=MUTATION_RETRYABLE,
                what=f"instances.revert {instance}",
            )
        except gexc.GoogleAPICallError as exc:
            raise ProviderError(
                f"instances.revert {instance}: {error_message(exc)}", code=type(exc).__name__
            ) from exc
        step.created.append(instance)
        return step
