"""Azure's managed databases in a recovery point: PostgreSQL and MySQL flexible servers and Azure
SQL databases, all restored by point-in-time restore (`pitr`) to the group's `T`.

These services back up continuously (daily snapshots or full/differential backups, and the
transaction log) and restore a new server or database to any second of the retention window:
`createMode: PointInTimeRestore` with `pointInTimeUTC` (PostgreSQL), `restorePointInTime`
(MySQL, Azure SQL). Quiesce sends whole seconds (the CLI and the portal take whole seconds, and
so the `T` recorded is exactly the `T` sent): resolution 1 s.

How the wait for restorability is decided: the services expose when the window starts
(`earliestRestoreDate`) but not how far it reaches: their transaction log backups trail the
present by a delay the documentation bounds (PostgreSQL: up to 15 minutes; MySQL: every 5
minutes; Azure SQL: every 5 to 10 minutes), and a restore asked for a later time is refused.
So `wait_durable` waits until `T` plus that delay (the member's `restorable_lag_seconds`, by
default the documented bound) has passed, then reads the resource again: still there, still
restorable, `earliestRestoreDate` not past `T` → completed. A `T` the wait cannot reach within
the durability timeout, or a resource that can no longer restore to it, is FAILED with a note
saying why. `take` only checks the resource (it exists, it is not a read replica or
geo-secondary, which have no backups of their own, it has a restorable backup) and returns a
pending reference; the engine stamps `T` on it.

Nothing here creates a backup, so nothing is listed or deleted: `find` lists nothing, and
`delete` of a `pitr` reference is a no-op (the automated backups are the service's own and
never touched).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from azure.core.exceptions import AzureError, ResourceNotFoundError

from quiesce.errors import ProviderError
from quiesce.policy.model import MemberBase
from quiesce.ports import (
    CloudRestore,
    Machine,
    PointMethod,
    RestoreStep,
    SnapshotCall,
    Snapshotter,
)
from quiesce.providers.registry import expect_member
from quiesce.record import SnapshotRef, SnapshotState, utcnow
from quiesce.tags import snapshot_tags
from quiesce_azure.clients import dig, parse_time
from quiesce_azure.managed import ManagedClients, raw
from quiesce_azure.managed_member import (
    AzureMysqlMember,
    AzurePostgresMember,
    AzureSqlMember,
)
from quiesce_azure.permissions import Permission
from quiesce_azure.retry import Backoff, error_code, error_message, read_failed

log = logging.getLogger(__name__)

#: The restore APIs take ISO 8601 times; Quiesce sends whole seconds.
RESOLUTION_SECONDS = 1.0
LAG_TAG = "azure:restorable-lag-seconds"
RESOURCE_TAG = "azure:resource"


@dataclass(frozen=True)
class Service:
    """What differs between the three database services."""

    provider: str
    label: str
    client: str  # ManagedClients.service kind
    namespace: str  # the resource type, e.g. Microsoft.DBforPostgreSQL/flexibleServers
    lag_seconds: float
    lag_source: str
    time_field: str  # the restore time's property in the create body
    source_field: str  # the source's property in the create body
    cli: str
    model: type[MemberBase]

    @property
    def method(self) -> str:
        return f"{self.provider}-pitr"


POSTGRES = Service(
    provider="azure-postgres",
    label="PostgreSQL flexible server",
    client="postgres",
    namespace="Microsoft.DBforPostgreSQL/flexibleServers",
    lag_seconds=900,
    lag_source="its WAL is archived when a segment fills; the documented delay is up to 15 min",
    time_field="pointInTimeUTC",
    source_field="sourceServerResourceId",
    cli="az postgres flexible-server restore",
    model=AzurePostgresMember,
)
MYSQL = Service(
    provider="azure-mysql",
    label="MySQL flexible server",
    client="mysql",
    namespace="Microsoft.DBforMySQL/flexibleServers",
    lag_seconds=300,
    lag_source="its transaction log is backed up every 5 min",
    time_field="restorePointInTime",
    source_field="sourceServerResourceId",
    cli="az mysql flexible-server restore",
    model=AzureMysqlMember,
)
SQL = Service(
    provider="azure-sql",
    label="Azure SQL database",
    client="sql",
    namespace="Microsoft.Sql/servers",
    lag_seconds=600,
    lag_source="its transaction log is backed up every 5 to 10 min",
    time_field="restorePointInTime",
    source_field="sourceDatabaseId",
    cli="az sql db restore",
    model=AzureSqlMember,
)

#: Flexible server states in which the service takes backups and can restore.
READY_STATES = {"ready", "updating", "starting"}
#: Azure SQL database statuses that restore.
ONLINE_STATUSES = {"online", "paused", "autoclosed", "resuming", "scaling"}

RESOURCE_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"(?P<ns>Microsoft\.[^/]+/[^/]+)/(?P<server>[^/]+)(?:/databases/(?P<db>[^/]+))?$",
    re.IGNORECASE,
)


def whole_seconds(moment: datetime) -> str:
    """`T` as the restore APIs are sent it: ISO 8601, UTC, whole seconds."""
    if moment.microsecond:
        raise ProviderError(
            f"restore time {moment.isoformat()} is not a whole second: the {RESOLUTION_SECONDS:g} "
            "s resolution Quiesce declared for this service was not used",
            code="BadRestoreTime",
        )
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def restorable_name(name: str) -> str:
    """A server or database name the services accept: lower-case letters, digits, hyphens,
    3 to 63 characters (the CloudRestore name is shortened to fit)."""
    cleaned = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")
    cleaned = re.sub(r"-{2,}", "-", cleaned)[:63].rstrip("-")
    return cleaned if len(cleaned) >= 3 else f"{cleaned}-restored"[:63]


class DatabaseSnapshotter(Snapshotter):
    """The Snapshotter port over one database service's point-in-time restore (one subclass
    per service, each declaring its own permissions)."""

    SERVICE: ClassVar[Service]

    def __init__(
        self,
        clients: ManagedClients,
        *,
        backoff: Backoff | None = None,
        now: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.service = self.SERVICE
        self.clients = clients
        self.backoff = backoff or Backoff(sleep=sleep)
        self.now = now
        self.sleep = sleep

    # ------------------------------------------------------------------------------ resources

    def resource_id(self, member: MemberBase) -> str:
        m: Any = expect_member(member, self.service.model)
        base = (
            f"/subscriptions/{m.subscription}/resourceGroups/{m.resource_group}/providers/"
            f"{self.service.namespace}/{m.server}"
        )
        return f"{base}/databases/{m.database}" if isinstance(m, AzureSqlMember) else base

    def _read(self, resource_id: str) -> dict[str, Any]:
        """The resource as ARM sends it (ResourceNotFoundError when it is gone)."""
        match = RESOURCE_ID.match(resource_id)
        if not match:
            raise ProviderError(f"{resource_id!r} is not a {self.service.label}", code="BadId")
        client = self.clients.service(self.service.client, match["sub"])
        if self.service is SQL:
            return self.backoff.call(
                lambda: client.databases.get(match["rg"], match["server"], match["db"], cls=raw),
                what=f"GET {self.service.label} {match['db']}",
            )
        return self.backoff.call(
            lambda: client.servers.get(match["rg"], match["server"], cls=raw),
            what=f"GET {self.service.label} {match['server']}",
        )

    def unrestorable(self, resource: dict[str, Any]) -> str | None:
        """Why point-in-time restore cannot be used for this resource now, or None."""
        props = resource.get("properties") or {}
        label = self.service.label
        if self.service is SQL:
            secondary = str(props.get("secondaryType") or "")
            if secondary:
                return (
                    f"it is a {secondary} secondary: point-in-time restore works only on the "
                    "primary database (name the primary in the policy)"
                )
            status = str(props.get("status") or "Online")
            if status.lower() not in ONLINE_STATUSES:
                return f"its status is {status}: point-in-time restore needs it online"
        else:
            role = str(
                props.get("replicationRole") or dig(props, "replica", "role") or "None"
            ).lower()
            if role in ("replica", "asyncreplica", "geoasyncreplica"):
                return (
                    f"it is a read replica ({role}): a replica has no backups of its own, so "
                    "point-in-time restore is not available (name the primary server)"
                )
            state = str(props.get("state") or "Ready")
            if state.lower() not in READY_STATES:
                return (
                    f"its state is {state}: the {label} takes no backups and cannot be "
                    "restored to a new point in time unless it is Ready"
                )
            retention = dig(props, "backup", "backupRetentionDays")
            if isinstance(retention, int) and retention < 1:
                return "its backup retention is 0 days: point-in-time restore is disabled"
        earliest = props.get("earliestRestoreDate") or dig(props, "backup", "earliestRestoreDate")
        if not earliest:
            return (
                "it has no restorable backup yet (no earliestRestoreDate: its first backup has "
                "not completed)"
            )
        return None

    def _refusal(self, name: str, resource_id: str, reason: str) -> ProviderError:
        return ProviderError(
            f"member {name!r}: {self.service.label} {resource_id.rsplit('/', 1)[-1]} cannot be "
            f"restored to the group's point in time: {reason}",
            code="PitrUnavailable",
        )

    def locate(self, member: MemberBase) -> Machine:
        """The member's resource as a Machine; refuses one that cannot be restored to `T`
        (the check `quiesce plan` and `validate` show, and `take` repeats)."""
        resource_id = self.resource_id(member)
        resource = self._checked(member.name, resource_id)
        return Machine(
            provider=self.service.provider,
            member=member.name,
            machine_id=str(resource.get("id") or resource_id),
            volumes=(resource_id.rsplit("/", 1)[-1],),
            attributes={"location": str(resource.get("location") or "")},
        )

    def _checked(self, member: str, resource_id: str) -> dict[str, Any]:
        try:
            resource = self._read(resource_id)
        except ResourceNotFoundError as exc:
            raise ProviderError(
                f"member {member!r}: {self.service.label} {resource_id} was not found",
                code="NotFound",
            ) from exc
        except AzureError as exc:
            raise read_failed(member, resource_id, exc) from exc
        reason = self.unrestorable(resource)
        if reason is not None:
            raise self._refusal(member, resource_id, reason)
        return resource

    def lag(self, member: MemberBase) -> float:
        value = getattr(member, "restorable_lag_seconds", None)
        return float(value) if value is not None else self.service.lag_seconds

    # ------------------------------------------------------------------------------ the port

    def point_method(self, spec: MemberBase) -> PointMethod:
        return PointMethod(
            "pitr",
            RESOLUTION_SECONDS,
            f"point-in-time restore of the {self.service.label} to the group's T (whole "
            f"seconds); restorable {self.lag(spec):g} s after T ({self.service.lag_source})",
        )

    def describe(self, machine: Machine) -> dict[str, str]:
        return {
            volume: (
                f"pitr: point-in-time restore to T, {RESOLUTION_SECONDS:g} s resolution; "
                f"durable once restorable ({self.service.lag_source})"
            )
            for volume in machine.volumes
        }

    def take(self, call: SnapshotCall) -> list[SnapshotRef]:
        resource_id = self.resource_id(call.spec)
        self._checked(call.member, resource_id)
        started = utcnow()
        tags = snapshot_tags(call)
        tags[LAG_TAG] = f"{self.lag(call.spec):g}"
        tags[RESOURCE_TAG] = resource_id
        return [
            SnapshotRef(
                id=f"{call.machine.machine_id}#pitr:{call.recovery_point}",
                provider=self.service.provider,
                machine_id=call.machine.machine_id,
                volume=call.machine.volumes[0] if call.machine.volumes else resource_id,
                method=self.service.method,
                state=SnapshotState.PENDING,
                started_at=started,
                fixed_at=started,
                location=resource_id,
                tags=tags,
                point="pitr",
            )
        ]

    def wait_durable(self, snapshots: Sequence[SnapshotRef], timeout: float) -> list[SnapshotRef]:
        deadline = self.now() + timedelta(seconds=timeout)
        return [self._await(ref, deadline) for ref in snapshots]

    def _await(self, ref: SnapshotRef, deadline: datetime) -> SnapshotRef:
        if ref.point != "pitr" or ref.state is not SnapshotState.PENDING:
            return ref
        moment = ref.restore_time
        if moment is None:
            return _failed(ref, "no restore time was chosen for this point-in-time member")
        lag = float(ref.tags.get(LAG_TAG) or self.service.lag_seconds)
        ready = moment + timedelta(seconds=lag)
        if ready > deadline:
            return _failed(
                ref,
                f"the {self.service.label} is restorable to {moment.isoformat()} only from "
                f"about {ready.isoformat()} ({lag:g} s later: {self.service.lag_source}), after "
                "the durability timeout: raise the group's durability_timeout_seconds",
            )
        while (left := (ready - self.now()).total_seconds()) > 0:
            self.sleep(left)
        reason = self._not_restorable(ref, moment)
        if reason is not None:
            return _failed(ref, reason)
        return ref.model_copy(update={"state": SnapshotState.COMPLETED, "durable_at": self.now()})

    def check(self, snapshot: SnapshotRef) -> None:
        """Raises unless the service can still restore a `pitr` reference to its T: before a
        restore creates anything (quiesce.restore.check_complete), so a point whose database
        was deleted, or whose T has left the retention window, is refused with the reason."""
        if snapshot.point != "pitr":
            return
        moment = snapshot.restore_time
        reason = (
            "no restore time was recorded for this point-in-time member"
            if moment is None
            else self._not_restorable(snapshot, moment)
        )
        if reason is not None:
            raise ProviderError(f"{snapshot.id}: {reason}", code="NotRestorable")

    def _not_restorable(self, ref: SnapshotRef, moment: datetime) -> str | None:
        """Why the service cannot restore the reference's resource to `moment` now, or None."""
        resource_id = ref.tags.get(RESOURCE_TAG) or ref.location
        try:
            resource = self._read(resource_id)
        except ResourceNotFoundError:
            return f"{resource_id} is gone: it cannot be restored to T"
        except AzureError as exc:
            return f"could not read {resource_id}: {error_message(exc)}"
        reason = self.unrestorable(resource)
        if reason is not None:
            return f"it can no longer be restored to T: {reason}"
        props = resource.get("properties") or {}
        earliest = parse_time(
            props.get("earliestRestoreDate") or dig(props, "backup", "earliestRestoreDate")
        )
        if earliest is not None and earliest > moment:
            return (
                f"its retention window now starts at {earliest.isoformat()}, after T "
                f"{moment.isoformat()}"
            )
        return None

    def delete(self, snapshot: SnapshotRef) -> None:
        """A point-in-time reference names no backup of Quiesce's: nothing to delete (the
        service's automated backups expire with its retention)."""
        return None

    def find(self, policy: str, group: str, run_id: str | None = None) -> list[SnapshotRef]:
        return []

    # ------------------------------------------------------------------------------ restore

    def plan_cloud_restore(self, request: CloudRestore) -> RestoreStep:
        return self._step(request)[0]

    def cloud_restore(self, request: CloudRestore) -> RestoreStep:
        step, match, target, body = self._step(request)
        client = self.clients.service(self.service.client, match["sub"])
        rg, server = match["rg"], match["server"]
        source = self._checked(request.member, step.parameters["source"])
        body["location"] = str(source.get("location") or "")
        try:
            if self.service is SQL:
                self.backoff.call(
                    lambda: client.databases.begin_create_or_update(
                        rg, server, target, body, polling=False
                    ),
                    what=f"restore {match['db']} to {target}",
                )
            elif self.service is POSTGRES:
                self.backoff.call(
                    lambda: client.servers.begin_create_or_update(rg, target, body, polling=False),
                    what=f"restore {server} to {target}",
                )
            else:
                self.backoff.call(
                    lambda: client.servers.begin_create(rg, target, body, polling=False),
                    what=f"restore {server} to {target}",
                )
        except AzureError as exc:
            raise ProviderError(
                f"member {request.member!r}: the point-in-time restore of "
                f"{step.parameters['source']} to {step.parameters[self.service.time_field]} was "
                f"refused: {error_message(exc)}",
                code=error_code(exc) or "RestoreFailed",
            ) from exc
        step.created = [step.parameters["target"]]
        return step

    def _step(
        self, request: CloudRestore
    ) -> tuple[RestoreStep, re.Match[str], str, dict[str, Any]]:
        ref = request.snapshot
        moment = request.restore_time or ref.restore_time
        if moment is None:
            raise ProviderError(
                f"member {request.member!r}: {ref.id} has no restore time: this point in time "
                "cannot be restored",
                code="NoRestoreTime",
            )
        source_id = ref.tags.get(RESOURCE_TAG) or ref.location or ref.machine_id
        match = RESOURCE_ID.match(source_id)
        if not match:
            raise ProviderError(f"{source_id!r} is not a {self.service.label}", code="BadId")
        if request.zone:
            raise ProviderError(
                f"member {request.member!r}: a point-in-time restore of a {self.service.label} "
                "stays in its region (a geo-restore is another operation)",
                code="RestoreUnsupported",
            )
        target = restorable_name(request.name)
        when = whole_seconds(moment)
        rg, server = match["rg"], match["server"]
        prefix = f"/subscriptions/{match['sub']}/resourceGroups/{rg}/providers/"
        if self.service is SQL:
            target_id = f"{prefix}{self.service.namespace}/{server}/databases/{target}"
            command = (
                f"{self.service.cli} --resource-group {rg} --server {server} --name "
                f"{match['db']} --dest-name {target} --time {when}"
            )
        else:
            target_id = f"{prefix}{self.service.namespace}/{target}"
            command = (
                f"{self.service.cli} --resource-group {rg} --name {target} --source-server "
                f"{source_id} --restore-time {when}"
            )
        body: dict[str, Any] = {
            "properties": {
                "createMode": "PointInTimeRestore",
                self.service.source_field: source_id,
                self.service.time_field: when,
            }
        }
        step = RestoreStep(
            member=request.member,
            snapshot=ref.id,
            action=f"PUT {self.service.namespace} (createMode PointInTimeRestore)",
            parameters={
                "source": source_id,
                "target": target_id,
                "createMode": "PointInTimeRestore",
                self.service.time_field: when,
            },
            command=command,
        )
        return step, match, target, body


def _failed(ref: SnapshotRef, note: str) -> SnapshotRef:
    return ref.model_copy(update={"state": SnapshotState.FAILED, "note": note})


def _reads(action: str) -> dict[str, list[Permission]]:
    """What the Function App calls: a read to check the resource (take, and the end of the wait
    for restorability). A `pitr` reference deletes and lists nothing."""
    return {
        "take": [Permission(action)],
        "wait_durable": [Permission(action)],
        "delete": [],
        "find": [],
    }


def _restores(resource: str) -> dict[str, list[Permission]]:
    """What `quiesce restore --in-cloud --execute` calls (an operator's, not the Function App's):
    a read to check that the source can still be restored to T, then the restore."""
    return {
        "check": [Permission(f"{resource}/read")],
        "cloud_restore": [Permission(f"{resource}/read"), Permission(f"{resource}/write")],
    }


class PostgresSnapshotter(DatabaseSnapshotter):
    """PostgreSQL flexible servers."""

    SERVICE = POSTGRES
    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = _reads(
        "Microsoft.DBforPostgreSQL/flexibleServers/read"
    )
    RESTORE_PERMISSIONS: ClassVar[dict[str, list[Permission]]] = _restores(
        "Microsoft.DBforPostgreSQL/flexibleServers"
    )


class MysqlSnapshotter(DatabaseSnapshotter):
    """MySQL flexible servers."""

    SERVICE = MYSQL
    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = _reads(
        "Microsoft.DBforMySQL/flexibleServers/read"
    )
    RESTORE_PERMISSIONS: ClassVar[dict[str, list[Permission]]] = _restores(
        "Microsoft.DBforMySQL/flexibleServers"
    )


class SqlSnapshotter(DatabaseSnapshotter):
    """Azure SQL databases."""

    SERVICE = SQL
    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = _reads(
        "Microsoft.Sql/servers/databases/read"
    )
    RESTORE_PERMISSIONS: ClassVar[dict[str, list[Permission]]] = _restores(
        "Microsoft.Sql/servers/databases"
    )


#: The snapshotter of each database provider.
SNAPSHOTTERS: dict[str, type[DatabaseSnapshotter]] = {
    "azure-postgres": PostgresSnapshotter,
    "azure-mysql": MysqlSnapshotter,
    "azure-sql": SqlSnapshotter,
}
