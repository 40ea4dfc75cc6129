"""Cloud SQL members: point-in-time recovery to the group's restore time `T`.

THE RULE: a Cloud SQL instance with point-in-time recovery (automated backups plus binary logs
for MySQL, transaction logs for PostgreSQL and SQL Server) can be cloned to any instant of its
log retention window. Its point is `pitr`: `take` only checks, inside the freeze, that the
instance exists and that point-in-time recovery is on (one instances.get), and returns a
reference without a restore time; the engine stamps the group's `T` on it. After the thaw,
`wait_durable` polls instances.getLatestRecoveryTime until the latest recovery time has
reached `T` (it trails the present by the time the service takes to archive the logs), then
the reference is completed. Restore clones the instance at `T` (instances.clone with
cloneContext.pointInTime) into a new instance.

Resolution: the API takes an RFC 3339 timestamp with fractional seconds, but MySQL's binary
log events carry whole-second timestamps, so Quiesce restores every engine at whole seconds
(`RESOLUTION_SECONDS`): the engine chooses a whole-second `T` and holds the freeze until it
has passed (at most one second, half of one on average).

Outcomes of the wait, per reference:

- the latest recovery time reached `T`: completed;
- point-in-time recovery was turned off meanwhile, or `T` fell before the earliest recovery
  time: failed, with the reason (the service can no longer restore to `T`);
- the latest recovery time had not reached `T` when the group's durability timeout ran out:
  failed, with the latest time seen (the logs may still arrive; Quiesce cannot vouch for it);
- a `T` that is not a whole second (a coarser resolution was not honoured): completed but
  reported `crash`, restored to the whole second before it.

Nothing is created by a backup, so there is nothing to delete: `delete` of a `pitr` reference
is a no-op and `find` lists nothing; automated backups are never touched.

The client is google-cloud-sql's SqlInstancesServiceClient (gRPC); `endpoint`
"http://HOST:PORT" connects without TLS (tests use a local fake).
"""

from __future__ import annotations

import logging
import re
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

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
from quiesce.record import Consistency, SnapshotRef, SnapshotState, utcnow
from quiesce_gcp.managed_spec import CloudSqlMember
from quiesce_gcp.permissions import RESTORE, SQL_INSTANCE, Permission
from quiesce_gcp.retry import MUTATION_RETRYABLE, Backoff, error_message, read_failed

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.cloud.sqladmin_v1 import DatabaseInstance, SqlInstancesServiceClient

log = logging.getLogger(__name__)

METHOD = "cloudsql-pitr"
#: The restore API's resolution Quiesce uses (see the module's docstring).
RESOLUTION_SECONDS = 1.0
#: How often `wait_durable` asks for the latest recovery time.
POLL_SECONDS = 10.0


class SqlClients:
    """One Cloud SQL Admin client, built lazily (thread-safe, shared by the adapters)."""

    def __init__(self, credentials: Credentials | None = None, *, endpoint: str | None = None):
        self.credentials = credentials
        self.endpoint = endpoint
        self._lock = threading.Lock()
        self._instances: SqlInstancesServiceClient | None = None

    def instances(self) -> SqlInstancesServiceClient:
        with self._lock:
            if self._instances is None:
                self._instances = self._build()
            return self._instances

    def _build(self) -> SqlInstancesServiceClient:
        from google.cloud.sqladmin_v1 import SqlInstancesServiceClient
        from google.cloud.sqladmin_v1.services.sql_instances_service.transports import (
            SqlInstancesServiceGrpcTransport,
        )

        endpoint = self.endpoint
        if endpoint and endpoint.startswith("http://"):
            import grpc  # type: ignore[import-untyped]

            channel = grpc.insecure_channel(endpoint.removeprefix("http://").rstrip("/"))
            return SqlInstancesServiceClient(
                transport=SqlInstancesServiceGrpcTransport(channel=channel)
            )
        options = {"api_endpoint": endpoint} if endpoint else None
        return SqlInstancesServiceClient(credentials=self.credentials, client_options=options)


def _flag(value: Any) -> bool:
    """A BoolValue wrapper field as a bool (proto-plus gives a bool, or None when unset)."""
    return bool(getattr(value, "value", value))


def pitr_problem(instance: DatabaseInstance) -> str | None:
    """Why this instance cannot be restored to a point in time, or None when it can."""
    backups = instance.settings.backup_configuration
    version = instance.database_version.name if instance.database_version else ""
    if not _flag(backups.enabled):
        return "automated backups are disabled"
    if version.startswith("MYSQL"):
        if not _flag(backups.binary_log_enabled):
            return "binary logging (point-in-time recovery) is disabled"
    elif not _flag(backups.point_in_time_recovery_enabled):
        return "point-in-time recovery is disabled"
    return None


def refusal(member: str, project: str, instance: str, problem: str) -> ProviderError:
    return ProviderError(
        f"member {member!r}: Cloud SQL instance {project}/{instance} cannot be restored to a "
        f"point in time: {problem}. Enable point-in-time recovery on it (gcloud sql instances "
        f"patch {instance} --project={project} --backup-start-time=HH:MM "
        "--enable-point-in-time-recovery, or --enable-bin-log for MySQL)",
        code="PointInTimeRecoveryDisabled",
    )


def _time(ts: Any) -> datetime | None:
    """A Timestamp field as an aware datetime (None when unset)."""
    if ts is None:
        return None
    if isinstance(ts, datetime):
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    seconds = getattr(ts, "seconds", 0)
    nanos = getattr(ts, "nanos", 0)
    if not seconds and not nanos:
        return None
    return datetime.fromtimestamp(seconds + nanos / 1e9, tz=UTC)


def rfc3339(moment: datetime) -> str:
    """`moment` in RFC 3339 UTC ("Zulu"), with milliseconds only when it has a fraction."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_NAME_UNSAFE = re.compile(r"[^a-z0-9-]")


def clone_name(name: str) -> str:
    """A valid Cloud SQL instance id from `name`: lowercase letters, digits and hyphens,
    starting with a letter, at most 80 characters (so project id and name stay short)."""
    out = _NAME_UNSAFE.sub("-", name.lower()).strip("-")
    if not out or not out[0].isalpha():
        out = f"q-{out}"
    return out[:80].rstrip("-")


class _Instances:
    """What both adapters read: one instance, rate limits and outages retried."""

    clients: SqlClients
    backoff: Backoff

    def _get(self, project: str, instance: str) -> DatabaseInstance:
        client = self.clients.instances()
        return self.backoff.call(
            lambda: client.get(request={"project": project, "instance": instance}, retry=None),
            what=f"instances.get {project}/{instance}",
        )

    def _checked(self, member: CloudSqlMember) -> DatabaseInstance:
        """The member's instance; a clear ProviderError when it is missing or has no PITR."""
        try:
            found = self._get(member.project, member.instance)
        except gexc.GoogleAPICallError as exc:
            what = f"Cloud SQL instance {member.project}/{member.instance}"
            raise read_failed(member.name, what, exc) from exc
        problem = pitr_problem(found)
        if problem is not None:
            raise refusal(member.name, member.project, member.instance, problem)
        return found


class CloudSqlInventory(_Instances, Inventory):
    """The member's instance as one Machine (machine_id: projects/P/instances/I); refuses an
    instance without point-in-time recovery, so `quiesce plan` says so before any run."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "resolve": [Permission("cloudsql.instances.get", SQL_INSTANCE)],
    }

    def __init__(self, clients: SqlClients, *, backoff: Backoff | None = None) -> None:
        self.clients = clients
        self.backoff = backoff or Backoff()

    def resolve(self, spec: MemberBase) -> list[Machine]:
        member = expect_member(spec, CloudSqlMember)
        found = self._checked(member)
        version = found.database_version.name if found.database_version else ""
        return [
            Machine(
                provider="gcp-sql",
                member=member.name,
                machine_id=member.resource,
                volumes=(member.instance,),
                attributes={
                    "project": member.project,
                    "instance": member.instance,
                    "region": found.region,
                    "database_version": version,
                },
            )
        ]


class CloudSqlSnapshotter(_Instances, Snapshotter):
    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "take": [Permission("cloudsql.instances.get", SQL_INSTANCE)],
        "wait_durable": [Permission("cloudsql.instances.get", SQL_INSTANCE)],
        # Before anything is created: can the instance still be restored to T?
        "check": [Permission("cloudsql.instances.get", SQL_INSTANCE, scope=RESTORE)],
        "cloud_restore": [Permission("cloudsql.instances.clone", SQL_INSTANCE, scope=RESTORE)],
    }

    def __init__(
        self,
        clients: SqlClients,
        *,
        poll_interval: float = POLL_SECONDS,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = clients
        self.poll_interval = poll_interval
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self.clock = clock

    def point_method(self, spec: MemberBase) -> PointMethod:
        return PointMethod(
            "pitr",
            RESOLUTION_SECONDS,
            "Cloud SQL point-in-time recovery: cloned at the group's T (whole seconds)",
        )

    def describe(self, machine: Machine) -> dict[str, str]:
        return {
            volume: "pitr: instances.clone at the group's T (whole seconds), once "
            "getLatestRecoveryTime has passed T"
            for volume in machine.volumes
        }

    # ------------------------------------------------------------------------------ take

    def take(self, call: SnapshotCall) -> list[SnapshotRef]:
        member = expect_member(call.spec, CloudSqlMember)
        started = utcnow()
        self._checked(member)  # exists, PITR on: the same refusal as `quiesce plan`
        return [
            SnapshotRef(
                id=f"{member.resource}@{call.recovery_point}",
                provider="gcp-sql",
                machine_id=call.machine.machine_id,
                volume=member.instance,
                method=METHOD,
                state=SnapshotState.PENDING,
                started_at=started,
                fixed_at=started,
                location=member.resource,
                point="pitr",
                tags={
                    "quiesce-policy": call.policy,
                    "quiesce-group": call.group,
                    "quiesce-member": call.member,
                    "quiesce-run": call.run_id,
                    "quiesce-point": call.recovery_point,
                },
            )
        ]

    # ------------------------------------------------------------------------------ wait

    def _latest(self, project: str, instance: str) -> tuple[datetime | None, datetime | None]:
        """(latest, earliest) recovery times."""
        client = self.clients.instances()
        answer = self.backoff.call(
            lambda: client.get_latest_recovery_time(
                request={"project": project, "instance": instance}, retry=None
            ),
            what=f"instances.getLatestRecoveryTime {project}/{instance}",
        )
        return _time(answer.latest_recovery_time), _time(answer.earliest_recovery_time)

    def wait_durable(self, snapshots: Sequence[SnapshotRef], timeout: float) -> list[SnapshotRef]:
        notes: dict[str, str] = {}
        seen: dict[str, datetime] = {}
        crash: dict[str, str] = {}

        def check(pending: Sequence[SnapshotRef]) -> dict[str, SnapshotState]:
            found: dict[str, SnapshotState] = {}
            for ref in pending:
                state = self._check(ref, notes, seen, crash)
                if state is not None:
                    found[ref.id] = state
            return found

        done = poll_durable(
            snapshots,
            timeout,
            check,
            clock=self.clock,
            sleep=self.sleep,
            interval=self.poll_interval,
        )
        out = []
        for ref in done:
            update: dict[str, object] = {}
            if ref.state is SnapshotState.PENDING and ref.point == "pitr":
                latest = seen.get(ref.id)
                update["state"] = SnapshotState.FAILED
                update["note"] = (
                    f"the latest recovery time "
                    f"({rfc3339(latest) if latest else 'unknown'}) had not reached the restore "
                    f"time {rfc3339(ref.restore_time) if ref.restore_time else '?'} after "
                    f"{timeout:g}s (durability_timeout_seconds): Cloud SQL may still archive "
                    "the logs up to it, but Quiesce cannot vouch for it"
                )
            elif ref.id in notes:
                update["note"] = notes[ref.id]
            elif ref.id in crash and ref.state is SnapshotState.COMPLETED:
                update["reported_consistency"] = Consistency.CRASH
                update["note"] = crash[ref.id]
            out.append(ref.model_copy(update=update) if update else ref)
        return out

    def _check(
        self,
        ref: SnapshotRef,
        notes: dict[str, str],
        seen: dict[str, datetime],
        crash: dict[str, str],
    ) -> SnapshotState | None:
        """One reference's state now (None: still pending)."""
        if ref.point != "pitr":
            return None
        moment = ref.restore_time
        if moment is None:
            notes[ref.id] = "no restore time was chosen for this point-in-time member"
            return SnapshotState.FAILED
        project, instance = _parse(ref.location)
        if moment.microsecond:
            crash[ref.id] = (
                f"the restore time {moment.isoformat()} is not a whole second; Cloud SQL for "
                "MySQL restores at whole seconds, so the clone is made at "
                f"{rfc3339(moment.replace(microsecond=0))}: crash-consistent"
            )
        try:
            latest, earliest = self._latest(project, instance)
        except (gexc.FailedPrecondition, gexc.InvalidArgument, gexc.NotFound) as exc:
            problem = self._problem_now(project, instance) or error_message(exc)
            notes[ref.id] = (
                f"Cloud SQL instance {project}/{instance} cannot be restored to "
                f"{rfc3339(moment)}: {problem}"
            )
            return SnapshotState.FAILED
        except Exception as exc:  # retries exhausted: ask again at the next poll
            log.warning("getLatestRecoveryTime %s/%s: %s", project, instance, exc)
            return None
        if earliest is not None and earliest > moment:
            notes[ref.id] = (
                f"the restore time {rfc3339(moment)} is before the earliest recovery time "
                f"{rfc3339(earliest)} of Cloud SQL instance {project}/{instance}"
            )
            return SnapshotState.FAILED
        if latest is None:
            return None
        seen[ref.id] = latest
        if latest >= moment:
            return SnapshotState.COMPLETED
        return None

    def check(self, snapshot: SnapshotRef) -> None:
        """Raises unless Cloud SQL can still restore a `pitr` reference to its T: before a
        restore creates anything (quiesce.restore.check_complete), so a point whose instance
        was deleted, lost point-in-time recovery, or whose T is now before the earliest
        recovery time, is refused with the reason."""
        if snapshot.point != "pitr":
            return
        moment = snapshot.restore_time
        if moment is None:
            raise ProviderError(
                f"{snapshot.id}: no restore time was recorded for this point-in-time member",
                code="NotRestorable",
            )
        project, instance = _parse(snapshot.location)
        try:
            latest, earliest = self._latest(project, instance)
        except (gexc.FailedPrecondition, gexc.InvalidArgument, gexc.NotFound) as exc:
            problem = self._problem_now(project, instance) or error_message(exc)
            raise ProviderError(
                f"{snapshot.id}: Cloud SQL instance {project}/{instance} cannot be restored to "
                f"{rfc3339(moment)}: {problem}",
                code="NotRestorable",
            ) from exc
        except Exception as exc:
            raise ProviderError(
                f"{snapshot.id}: could not ask Cloud SQL whether {project}/{instance} can "
                f"still be restored to {rfc3339(moment)}: {error_message(exc)}",
                code="CheckFailed",
            ) from exc
        if earliest is not None and earliest > moment:
            raise ProviderError(
                f"{snapshot.id}: the restore time {rfc3339(moment)} is before the earliest "
                f"recovery time {rfc3339(earliest)} of Cloud SQL instance {project}/{instance}: "
                "it has left the instance's log retention",
                code="NotRestorable",
            )
        if latest is not None and latest < moment:
            raise ProviderError(
                f"{snapshot.id}: Cloud SQL instance {project}/{instance} can be restored only "
                f"up to {rfc3339(latest)}, before the restore time {rfc3339(moment)}",
                code="NotRestorable",
            )

    def _problem_now(self, project: str, instance: str) -> str | None:
        try:
            return pitr_problem(self._get(project, instance))
        except Exception as exc:
            return error_message(exc)

    # ------------------------------------------------------------------------------ after

    def delete(self, snapshot: SnapshotRef) -> None:
        """Nothing to delete: a point-in-time reference names a time, not a backup (automated
        backups are the service's and are never touched)."""

    def find(self, policy: str, group: str, run_id: str | None = None) -> list[SnapshotRef]:
        return []

    # ------------------------------------------------------------------------------ restore

    def _clone_request(self, request: CloudRestore) -> tuple[str, str, str, datetime]:
        ref = request.snapshot
        moment = request.restore_time or ref.restore_time
        if ref.point != "pitr" or moment is None:
            raise ProviderError(
                f"{ref.id}: a Cloud SQL reference restores to the group's restore time T, and "
                "this one has none",
                code="NoRestoreTime",
            )
        project, instance = _parse(ref.location)
        return project, instance, clone_name(request.name), moment.replace(microsecond=0)

    def plan_cloud_restore(self, request: CloudRestore) -> RestoreStep:
        project, instance, name, moment = self._clone_request(request)
        parameters = {
            "project": project,
            "instance": instance,
            "destinationInstanceName": name,
            "pointInTime": rfc3339(moment),
        }
        if request.zone:
            parameters["preferredZone"] = request.zone
        command = [
            "gcloud", "sql", "instances", "clone", instance, name,
            f"--project={project}", f"--point-in-time={rfc3339(moment)}",
        ]  # fmt: skip
        if request.zone:
            command.append(f"--preferred-zone={request.zone}")
        return RestoreStep(
            member=request.member,
            snapshot=request.snapshot.id,
            action="instances.clone",
            parameters=parameters,
            command=shlex.join(command),
        )

    def cloud_restore(self, request: CloudRestore) -> RestoreStep:
        step = self.plan_cloud_restore(request)
        project, instance, name, moment = self._clone_request(request)
        from google.cloud.sqladmin_v1 import (
            CloneContext,
            InstancesCloneRequest,
            SqlInstancesCloneRequest,
        )

        context = CloneContext(destination_instance_name=name, point_in_time=moment)
        if request.zone:
            context.preferred_zone = request.zone
        call = SqlInstancesCloneRequest(
            project=project,
            instance=instance,
            body=InstancesCloneRequest(clone_context=context),
        )
        client = self.clients.instances()
        try:
            self.backoff.call(
                lambda: client.clone(request=call, retry=None),
                retry_on=MUTATION_RETRYABLE,
                what=f"instances.clone {project}/{instance}",
            )
        except gexc.GoogleAPICallError as exc:
            raise ProviderError(
                f"instances.clone {project}/{instance} at {rfc3339(moment)} -> {name}: "
                f"{error_message(exc)}",
                code=type(exc).__name__,
            ) from exc
        step.created.append(f"projects/{project}/instances/{name}")
        return step


def _parse(location: str) -> tuple[str, str]:
    match = re.fullmatch(r"projects/([^/]+)/instances/([^/]+)", location)
    if match is None:
        raise ProviderError(f"not a Cloud SQL instance name: {location!r}", code="BadResourceUrl")
    return match[1], match[2]
