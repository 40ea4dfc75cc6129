"""RDS DB instances and Aurora (or Multi-AZ) DB clusters as members of a group's recovery point.

`method: pitr` (the default): the database's automated backups restore it to any second of
its retention window up to its `LatestRestorableTime`, which RDS advances as it ships the
transaction logs to S3 (about every five minutes). `take` only checks, in one Describe call,
that the database exists and keeps automated backups, and returns a reference with
`point="pitr"`; the engine stamps the group's `T` on it (a whole second inside the quiesced
interval: RestoreTime and RestoreToTime take whole seconds). `wait_durable` then polls the
database until its `LatestRestorableTime` has passed `T`. Nothing is created, so nothing is
deleted: a `pitr` reference's `delete` is a no-op, and the automated backups are never touched.

`method: snapshot`: CreateDBSnapshot (instances) or CreateDBClusterSnapshot (clusters) inside
the freeze, tagged as Quiesce's own like the EBS snapshots; `wait_durable` polls until the
snapshot is `available`; `delete` re-reads its tags and type and refuses any snapshot that is
not a manual one tagged quiesce:managed=true (so an automated backup is never deleted).

Restores (`plan_cloud_restore` / `cloud_restore`), always as new resources next to the source:
RestoreDBInstanceToPointInTime / RestoreDBClusterToPointInTime with `T`, or
RestoreDBInstanceFromDBSnapshot / RestoreDBClusterFromSnapshot; an Aurora cluster is restored
without instances, so its writer is created with CreateDBInstance in the same step. The
source's subnet group, security groups and (Aurora) writer class were recorded when the
member was resolved, so a restore does not depend on the source still existing.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from botocore.exceptions import BotoCoreError, ClientError

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
from quiesce.tags import MANAGED_TAG, snapshot_tags
from quiesce_aws.answers import arn_region, aware
from quiesce_aws.managed_clients import RDS_THROTTLING, ManagedClients
from quiesce_aws.managed_member import AwsRdsMember
from quiesce_aws.permissions import Permission
from quiesce_aws.retry import Backoff, call_failed, error_code
from quiesce_aws.tagging import own_tags, tag_dict, tag_list

PROVIDER = "aws-rds"
GIB = 1024**3
#: RestoreTime / RestoreToTime take whole seconds (the API reference's examples and format).
RESOLUTION_SECONDS = 1.0

#: Tags on a reference (not on AWS) with what a restore needs, recorded when it was taken.
META = "quiesce:rds-"
RESTORED_FROM_TAG = "quiesce:restored-from"

INSTANCE_NOT_FOUND = frozenset({"DBInstanceNotFound", "DBInstanceNotFoundFault"})
CLUSTER_NOT_FOUND = frozenset({"DBClusterNotFoundFault", "DBClusterNotFound"})
SNAPSHOT_NOT_FOUND = frozenset(
    {"DBSnapshotNotFound", "DBSnapshotNotFoundFault", "DBClusterSnapshotNotFoundFault"}
)
#: Snapshot statuses that will never become `available`.
SNAPSHOT_FAILED = frozenset({"failed", "deleting", "deleted", "incompatible-restore"})

#: How one resource of each kind is described: (the action, the parameter that names the
#: resource, the list in the answer); the snapshots' are also how they are listed.
DESCRIBE_CALLS = {
    "instance": ("DescribeDBInstances", "DBInstanceIdentifier", "DBInstances"),
    "cluster": ("DescribeDBClusters", "DBClusterIdentifier", "DBClusters"),
    "snapshot": ("DescribeDBSnapshots", "DBSnapshotIdentifier", "DBSnapshots"),
    "cluster-snapshot": (
        "DescribeDBClusterSnapshots",
        "DBClusterSnapshotIdentifier",
        "DBClusterSnapshots",
    ),
}

DESCRIBE = [
    Permission("rds:DescribeDBInstances", "arn:aws:rds:*:*:db:*"),
    Permission("rds:DescribeDBClusters", "arn:aws:rds:*:*:cluster:*"),
]


def rds_name(text: str, limit: int = 63) -> str:
    """An RDS identifier: letters, digits and single hyphens, starting with a letter, not
    ending with a hyphen, at most `limit` characters."""
    name = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")
    if not name[:1].isalpha():
        name = f"q-{name}"
    return name[:limit].rstrip("-")


def whole_seconds(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pitr_disabled(member: AwsRdsMember) -> str:
    """The message of a `pitr` member whose database keeps no automated backups."""
    if member.kind == "instance":
        turn_on = (
            f"aws rds modify-db-instance --region {member.region} --db-instance-identifier "
            f"{member.identifier} --backup-retention-period 7 --apply-immediately"
        )
    else:
        turn_on = (
            f"aws rds modify-db-cluster --region {member.region} --db-cluster-identifier "
            f"{member.identifier} --backup-retention-period 7 --apply-immediately"
        )
    return (
        f"member {member.name!r}: DB {member.kind} {member.identifier!r} in {member.region} has "
        "automated backups turned off (backup retention period 0), so it cannot be restored to "
        f"the group's restore time (method: pitr): turn them on ({turn_on}) or set "
        "`method: snapshot` on the member"
    )


class RdsDatabases:
    """Describes one member's database (shared by the inventory and the snapshotter)."""

    def __init__(self, clients: ManagedClients, backoff: Backoff) -> None:
        self.clients = clients
        self.backoff = backoff

    def describe(self, region: str, kind: str, identifier: str) -> dict[str, Any] | None:
        """The DB instance or cluster (None: it does not exist)."""
        return self.describe_one(
            region,
            "instance" if kind == "instance" else "cluster",
            identifier,
            not_found=INSTANCE_NOT_FOUND | CLUSTER_NOT_FOUND,
            failed=f"describing DB {kind} {identifier!r} in {region} failed",
        )

    def describe_one(
        self, region: str, kind: str, identifier: str, *, not_found: frozenset[str], failed: str
    ) -> dict[str, Any] | None:
        """One resource of a kind of DESCRIBE_CALLS (None: RDS answers an error code of
        `not_found`, or nothing); another error is a ProviderError that starts with `failed`."""
        action, parameter, key = DESCRIBE_CALLS[kind]
        operation = getattr(self.clients.rds(region), _snake(action))
        try:
            page = self.backoff.call(
                lambda: operation(**{parameter: identifier}),
                retry_on=RDS_THROTTLING,
                what=f"{action} {identifier}",
            )
        except ClientError as exc:
            if error_code(exc) in not_found:
                return None
            raise call_failed(failed, exc, "DescribeFailed") from exc
        items = page.get(key, [])
        found: dict[str, Any] | None = items[0] if items else None
        return found

    def checked(self, member: AwsRdsMember) -> dict[str, Any]:
        """The member's database; a clear error when it is gone or cannot give `pitr`."""
        found = self.describe(member.region, member.kind, member.identifier)
        if found is None:
            raise ProviderError(
                f"member {member.name!r}: no DB {member.kind} {member.identifier!r} in "
                f"{member.region}",
                code="DatabaseNotFound",
            )
        if member.method == "pitr" and int(found.get("BackupRetentionPeriod") or 0) < 1:
            raise ProviderError(pitr_disabled(member), code="PitrDisabled")
        return found


class RdsInventory(Inventory):
    """Resolves an `aws-rds` member to its database (one Machine), and refuses a `pitr` member
    whose database keeps no automated backups (so `quiesce plan` says it before any run)."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {"resolve": list(DESCRIBE)}

    def __init__(self, clients: ManagedClients, *, backoff: Backoff | None = None) -> None:
        self.clients = clients
        self.databases = RdsDatabases(clients, backoff or Backoff())

    def resolve(self, member: MemberBase) -> list[Machine]:
        spec = expect_member(member, AwsRdsMember)
        found = self.databases.checked(spec)
        attributes = {
            "region": spec.region,
            "kind": spec.kind,
            "identifier": spec.identifier,
            "method": spec.method,
            "engine": str(found.get("Engine", "")),
            "status": str(found.get("DBInstanceStatus") or found.get("Status") or ""),
            "backup_retention_days": str(found.get("BackupRetentionPeriod", 0)),
            "security_groups": ",".join(
                str(g.get("VpcSecurityGroupId"))
                for g in found.get("VpcSecurityGroups", [])
                if g.get("VpcSecurityGroupId")
            ),
        }
        if spec.kind == "instance":
            subnets = found.get("DBSubnetGroup") or {}
            attributes["subnet_group"] = str(subnets.get("DBSubnetGroupName", ""))
            attributes["availability_zone"] = str(found.get("AvailabilityZone", ""))
            attributes["instance_class"] = str(found.get("DBInstanceClass", ""))
            size = found.get("AllocatedStorage")
            arn = str(found.get("DBInstanceArn", ""))
        else:
            attributes["subnet_group"] = str(found.get("DBSubnetGroup", ""))
            attributes["instance_class"] = self._writer_class(spec, found)
            size = found.get("AllocatedStorage")
            arn = str(found.get("DBClusterArn", ""))
        if size:
            attributes["size_gib"] = str(size)
        return [
            Machine(
                provider=PROVIDER,
                member=spec.name,
                machine_id=arn or spec.identifier,
                volumes=(spec.identifier,),
                attributes={k: v for k, v in attributes.items() if v},
            )
        ]

    def _writer_class(self, spec: AwsRdsMember, cluster: Mapping[str, Any]) -> str:
        """The class of an Aurora cluster's writer (what a restored cluster's writer gets); a
        Multi-AZ DB cluster says it itself."""
        if cluster.get("DBClusterInstanceClass"):
            return str(cluster["DBClusterInstanceClass"])
        writers = [
            str(m.get("DBInstanceIdentifier"))
            for m in cluster.get("DBClusterMembers", [])
            if m.get("IsClusterWriter")
        ]
        if not writers:
            return ""
        writer = self.databases.describe(spec.region, "instance", writers[0])
        return str((writer or {}).get("DBInstanceClass", ""))


class RdsSnapshotter(Snapshotter):
    """The Snapshotter port over RDS: point-in-time recovery to `T`, or DB (cluster) snapshots."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "take": [
            *DESCRIBE,
            # Only snapshots that carry quiesce:managed=true, tagged as they are created.
            Permission("rds:CreateDBSnapshot", "arn:aws:rds:*:*:db:*"),
            Permission(
                "rds:CreateDBSnapshot",
                "arn:aws:rds:*:*:snapshot:*",
                {f"aws:RequestTag/{MANAGED_TAG}": "true"},
            ),
            Permission("rds:CreateDBClusterSnapshot", "arn:aws:rds:*:*:cluster:*"),
            Permission(
                "rds:CreateDBClusterSnapshot",
                "arn:aws:rds:*:*:cluster-snapshot:*",
                {f"aws:RequestTag/{MANAGED_TAG}": "true"},
            ),
            Permission(
                "rds:AddTagsToResource",
                "arn:aws:rds:*:*:snapshot:*",
                {f"aws:RequestTag/{MANAGED_TAG}": "true"},
            ),
            Permission(
                "rds:AddTagsToResource",
                "arn:aws:rds:*:*:cluster-snapshot:*",
                {f"aws:RequestTag/{MANAGED_TAG}": "true"},
            ),
        ],
        "wait_durable": [
            *DESCRIBE,
            Permission("rds:DescribeDBSnapshots", "arn:aws:rds:*:*:snapshot:*"),
            Permission("rds:DescribeDBClusterSnapshots", "arn:aws:rds:*:*:cluster-snapshot:*"),
        ],
        "delete": [
            Permission("rds:DescribeDBSnapshots", "arn:aws:rds:*:*:snapshot:*"),
            Permission("rds:DescribeDBClusterSnapshots", "arn:aws:rds:*:*:cluster-snapshot:*"),
            Permission("rds:ListTagsForResource", "arn:aws:rds:*:*:snapshot:*"),
            Permission("rds:ListTagsForResource", "arn:aws:rds:*:*:cluster-snapshot:*"),
            Permission(
                "rds:DeleteDBSnapshot",
                "arn:aws:rds:*:*:snapshot:*",
                {f"aws:ResourceTag/{MANAGED_TAG}": "true"},
            ),
            Permission(
                "rds:DeleteDBClusterSnapshot",
                "arn:aws:rds:*:*:cluster-snapshot:*",
                {f"aws:ResourceTag/{MANAGED_TAG}": "true"},
            ),
        ],
        "find": [
            Permission("rds:DescribeDBSnapshots", "arn:aws:rds:*:*:snapshot:*"),
            Permission("rds:DescribeDBClusterSnapshots", "arn:aws:rds:*:*:cluster-snapshot:*"),
            Permission("rds:ListTagsForResource", "arn:aws:rds:*:*:snapshot:*"),
            Permission("rds:ListTagsForResource", "arn:aws:rds:*:*:cluster-snapshot:*"),
        ],
    }

    #: What whoever runs `quiesce restore --in-cloud --execute` needs (not the functions: they
    #: never restore). Restored resources are tagged quiesce:restored-from.
    RESTORE_PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        # Before anything is created: is the source still there, and T still in its window?
        "check": [
            Permission(action, "arn:aws:rds:*:*:*")
            for action in (
                "rds:DescribeDBInstances",
                "rds:DescribeDBClusters",
                "rds:DescribeDBInstanceAutomatedBackups",
                "rds:DescribeDBSnapshots",
                "rds:DescribeDBClusterSnapshots",
            )
        ],
        # A restore touches the source, the new database and the groups it joins (subnet,
        # parameter, option groups): any RDS resource of the account.
        "cloud_restore": [
            Permission("rds:RestoreDBInstanceToPointInTime", "arn:aws:rds:*:*:*"),
            Permission("rds:RestoreDBClusterToPointInTime", "arn:aws:rds:*:*:*"),
            Permission("rds:RestoreDBInstanceFromDBSnapshot", "arn:aws:rds:*:*:*"),
            Permission("rds:RestoreDBClusterFromSnapshot", "arn:aws:rds:*:*:*"),
            Permission("rds:CreateDBInstance", "arn:aws:rds:*:*:*"),
            Permission(
                "rds:AddTagsToResource",
                "arn:aws:rds:*:*:*",
                {f"aws:RequestTag/{RESTORED_FROM_TAG}": "*"},
            ),
        ],
    }

    def __init__(
        self,
        clients: ManagedClients,
        *,
        regions: Mapping[str, Sequence[str]] | None = None,
        default_region: str | None = None,
        backoff: Backoff | None = None,
        poll_interval: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.clients = clients
        self.regions = dict(regions or {})
        self.default_region = default_region
        self.backoff = backoff or Backoff(attempts=6, base=0.25, cap=4.0, sleep=sleep)
        self.databases = RdsDatabases(clients, self.backoff)
        self.poll_interval = poll_interval
        self.clock = clock
        self.sleep = sleep

    # ------------------------------------------------------------------------------ the port

    def point_method(self, spec: MemberBase) -> PointMethod:
        member = expect_member(spec, AwsRdsMember)
        if member.method == "pitr":
            return PointMethod(
                "pitr",
                RESOLUTION_SECONDS,
                "automated backups restored to the group's T (whole seconds); restorable "
                "once LatestRestorableTime passes T, about 5 minutes later",
            )
        kind = "DB cluster snapshot" if member.kind == "cluster" else "DB snapshot"
        return PointMethod("snapshot", 0.0, f"a manual {kind}, tagged quiesce:managed")

    def describe(self, machine: Machine) -> dict[str, str]:
        attrs = machine.attributes
        kind = attrs.get("kind", "instance")
        if attrs.get("method", "pitr") == "pitr":
            method = (
                f"{_method(kind, 'pitr')}: restore to T at 1 s "
                f"(automated backups kept {attrs.get('backup_retention_days', '?')} days)"
            )
        else:
            method = _method(kind, "snapshot")
        return {volume: method for volume in machine.volumes}

    def take(self, call: SnapshotCall) -> list[SnapshotRef]:
        member = expect_member(call.spec, AwsRdsMember)
        started = utcnow()
        found = self.databases.checked(member)  # the same refusal as at `quiesce plan`
        tags = snapshot_tags(call)
        meta = {f"{META}{k}": v for k, v in call.machine.attributes.items()}
        size = found.get("AllocatedStorage")
        size_bytes = int(size) * GIB if size else None
        arn = str(found.get("DBInstanceArn") or found.get("DBClusterArn") or "")
        if member.method == "pitr":
            return [
                SnapshotRef(
                    id=f"pitr:{member.kind}:{member.identifier}:{call.run_id}",
                    provider=PROVIDER,
                    machine_id=call.machine.machine_id,
                    volume=member.identifier,
                    method=_method(member.kind, "pitr"),
                    state=SnapshotState.PENDING,
                    started_at=started,
                    fixed_at=started,  # the engine fixes it at T
                    size_bytes=size_bytes,
                    location=arn,
                    tags={**tags, **meta},
                    point="pitr",
                )
            ]
        return [self._take_snapshot(call, member, tags, meta, started, size_bytes)]

    def wait_durable(self, snapshots: Sequence[SnapshotRef], timeout: float) -> list[SnapshotRef]:
        """Polls until each snapshot is available, and each `pitr` database can be restored
        to its `restore_time`; a `pitr` reference that cannot get there in time (or ever) is
        returned FAILED with the reason in its note."""
        deadline = self.clock() + timeout
        current = {s.id: s for s in snapshots}
        while True:
            pending = [s for s in current.values() if s.state is SnapshotState.PENDING]
            for ref in pending:
                current[ref.id] = self._check(ref)
            if all(s.state is not SnapshotState.PENDING for s in current.values()):
                break
            remaining = deadline - self.clock()
            if remaining <= 0:
                break
            self.sleep(min(self.poll_interval, remaining))
        for ref_id, ref in current.items():
            if ref.state is SnapshotState.PENDING and ref.point == "pitr":
                current[ref_id] = ref.model_copy(
                    update={
                        "state": SnapshotState.FAILED,
                        "note": (
                            f"LatestRestorableTime of {ref.volume} had not passed the restore "
                            f"time {_text(ref.restore_time)} after {timeout:g}s (RDS ships "
                            "transaction logs about every 5 minutes: allow the group's "
                            "durability_timeout_seconds at least 600)"
                        ),
                    }
                )
        return [current[s.id] for s in snapshots]

    def delete(self, snapshot: SnapshotRef) -> None:
        if snapshot.point == "pitr":
            return  # nothing was created: the automated backups are the database's own
        region = self._region(snapshot)
        cluster = _is_cluster_snapshot(snapshot)
        live = self._describe_snapshot(region, snapshot.id, cluster)
        if live is None:
            return
        kind = str(live.get("SnapshotType", ""))
        arn = str(live.get("DBClusterSnapshotArn") or live.get("DBSnapshotArn") or "")
        tags = self._tags(region, arn)
        if kind != "manual" or tags.get(MANAGED_TAG) != "true":
            raise ProviderError(
                f"refusing to delete RDS snapshot {snapshot.id} in {region}: it is "
                f"{'an automated backup' if kind != 'manual' else 'not tagged ' + MANAGED_TAG}"
                "=true, so Quiesce did not make it",
                code="NotManaged",
            )
        rds = self.clients.rds(region)
        try:
            if cluster:
                self.backoff.call(
                    lambda: rds.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=snapshot.id),
                    retry_on=RDS_THROTTLING,
                    what=f"DeleteDBClusterSnapshot {snapshot.id}",
                )
            else:
                self.backoff.call(
                    lambda: rds.delete_db_snapshot(DBSnapshotIdentifier=snapshot.id),
                    retry_on=RDS_THROTTLING,
                    what=f"DeleteDBSnapshot {snapshot.id}",
                )
        except ClientError as exc:
            if error_code(exc) in SNAPSHOT_NOT_FOUND:
                return
            raise call_failed(
                f"could not delete RDS snapshot {snapshot.id} in {region}",
                exc,
                "DeleteFailed",
            ) from exc

    def find(self, policy: str, group: str, run_id: str | None = None) -> list[SnapshotRef]:
        """Quiesce's manual snapshots of a group (a `pitr` reference has no resource to find)."""
        wanted = own_tags(policy, group, run_id)
        regions = self.regions.get(group) or ([self.default_region] if self.default_region else [])
        found: list[SnapshotRef] = []
        for region in regions:
            for cluster in (False, True):
                for item in self._list_manual(region, cluster):
                    tags = tag_dict(item.get("TagList"))
                    if not tags:
                        arn = item.get("DBClusterSnapshotArn") or item.get("DBSnapshotArn")
                        tags = self._tags(region, str(arn or ""))
                    if all(tags.get(k) == v for k, v in wanted.items()):
                        found.append(self._ref(region, item, tags, cluster))
        return sorted(found, key=lambda r: (r.started_at, r.id))

    # ------------------------------------------------------------------------------ restore

    def plan_cloud_restore(self, request: CloudRestore) -> RestoreStep:
        region, calls = self._restore_calls(request)
        return _step(request, region, calls)

    def _restore_calls(self, request: CloudRestore) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
        """The region and the boto3 calls (action, parameters) that restore `request`."""
        ref = request.snapshot
        meta = {k.removeprefix(META): v for k, v in ref.tags.items() if k.startswith(META)}
        region = meta.get("region") or self._region(ref)
        kind = meta.get("kind") or ("cluster" if _is_cluster_snapshot(ref) else "instance")
        name = rds_name(request.name)
        if request.zone and not request.zone.startswith(region):
            raise ProviderError(
                f"{ref.id}: RDS restores in the source's region {region}; {request.zone!r} is "
                "not one of its Availability Zones",
                code="RestoreUnsupported",
            )
        tags = {RESTORED_FROM_TAG: request.point, "quiesce:member": request.member}
        params: dict[str, Any] = {}
        if meta.get("subnet_group"):
            params["DBSubnetGroupName"] = meta["subnet_group"]
        if meta.get("security_groups"):
            params["VpcSecurityGroupIds"] = meta["security_groups"].split(",")
        calls: list[tuple[str, dict[str, Any]]] = []
        source = meta.get("identifier") or ref.volume
        if ref.point == "pitr":
            moment = request.restore_time or ref.restore_time
            if moment is None:
                raise ProviderError(
                    f"{ref.id}: no restore time was recorded for this point-in-time member",
                    code="NoRestoreTime",
                )
            if moment.microsecond:
                raise ProviderError(
                    f"{ref.id}: RDS restores to whole seconds, and {moment.isoformat()} is not one",
                    code="RestoreTimeResolution",
                )
            if kind == "instance":
                calls.append(
                    (
                        "RestoreDBInstanceToPointInTime",
                        {
                            "SourceDBInstanceIdentifier": source,
                            "TargetDBInstanceIdentifier": name,
                            "RestoreTime": moment,
                            **params,
                            **({"AvailabilityZone": request.zone} if request.zone else {}),
                        },
                    )
                )
            else:
                calls.append(
                    (
                        "RestoreDBClusterToPointInTime",
                        {
                            "SourceDBClusterIdentifier": source,
                            "DBClusterIdentifier": name,
                            "RestoreToTime": moment,
                            **params,
                            **self._cluster_class(meta),
                        },
                    )
                )
        elif kind == "instance":
            calls.append(
                (
                    "RestoreDBInstanceFromDBSnapshot",
                    {
                        "DBInstanceIdentifier": name,
                        "DBSnapshotIdentifier": ref.id,
                        **params,
                        **({"AvailabilityZone": request.zone} if request.zone else {}),
                    },
                )
            )
        else:
            calls.append(
                (
                    "RestoreDBClusterFromSnapshot",
                    {
                        "DBClusterIdentifier": name,
                        "SnapshotIdentifier": ref.id,
                        "Engine": meta.get("engine") or "aurora-postgresql",
                        **params,
                        **self._cluster_class(meta),
                    },
                )
            )
        if kind == "cluster" and _is_aurora(meta):
            if not meta.get("instance_class"):
                raise ProviderError(
                    f"{ref.id}: the Aurora cluster's writer class was not recorded, so its "
                    "writer cannot be created: restore the cluster and create an instance in it",
                    code="RestoreUnsupported",
                )
            calls.append(
                (
                    "CreateDBInstance",
                    {
                        "DBInstanceIdentifier": rds_name(f"{name}-writer"),
                        "DBClusterIdentifier": name,
                        "Engine": meta.get("engine", ""),
                        "DBInstanceClass": meta["instance_class"],
                        **({"AvailabilityZone": request.zone} if request.zone else {}),
                    },
                )
            )
        for _, call_params in calls:
            call_params["Tags"] = tag_list(tags)
        return region, calls

    def cloud_restore(self, request: CloudRestore) -> RestoreStep:
        region, calls = self._restore_calls(request)
        step = _step(request, region, calls)
        rds = self.clients.rds(region)
        for action, params in calls:
            method = getattr(rds, _snake(action))
            answer = self.backoff.call_or_raise(
                lambda method=method, params=params: method(**params),  # type: ignore[misc]
                retry_on=RDS_THROTTLING,
                what=f"{action} for {request.member}",
                failed=f"{action} of {request.snapshot.id} in {region} failed",
                code="RestoreFailed",
                hint=f" (created so far: {', '.join(step.created)})" if step.created else "",
            )
            body = answer.get("DBInstance") or answer.get("DBCluster") or {}
            step.created.append(
                str(
                    body.get("DBInstanceArn")
                    or body.get("DBClusterArn")
                    or body.get("DBInstanceIdentifier")
                    or body.get("DBClusterIdentifier")
                )
            )
        return step

    # ------------------------------------------------------------------------------ helpers

    def _take_snapshot(
        self,
        call: SnapshotCall,
        member: AwsRdsMember,
        tags: dict[str, str],
        meta: dict[str, str],
        started: datetime,
        size_bytes: int | None,
    ) -> SnapshotRef:
        rds = self.clients.rds(member.region)
        name = rds_name(f"quiesce-{member.identifier}-{call.run_id}", 255)
        try:
            if member.kind == "cluster":
                answer = self.backoff.call(
                    lambda: rds.create_db_cluster_snapshot(
                        DBClusterSnapshotIdentifier=name,
                        DBClusterIdentifier=member.identifier,
                        Tags=tag_list(tags),
                    ),
                    retry_on=RDS_THROTTLING,
                    what=f"CreateDBClusterSnapshot of {member.identifier}",
                )
                arn = str(answer["DBClusterSnapshot"].get("DBClusterSnapshotArn", ""))
            else:
                answer = self.backoff.call(
                    lambda: rds.create_db_snapshot(
                        DBSnapshotIdentifier=name,
                        DBInstanceIdentifier=member.identifier,
                        Tags=tag_list(tags),
                    ),
                    retry_on=RDS_THROTTLING,
                    what=f"CreateDBSnapshot of {member.identifier}",
                )
                arn = str(answer["DBSnapshot"].get("DBSnapshotArn", ""))
        except (ClientError, BotoCoreError) as exc:
            action = "CreateDBClusterSnapshot" if member.kind == "cluster" else "CreateDBSnapshot"
            raise call_failed(
                f"member {call.member!r}: {action} of {member.identifier} in {member.region} "
                "failed",
                exc,
                "SnapshotFailed",
            ) from exc
        return SnapshotRef(
            id=name,
            provider=PROVIDER,
            machine_id=call.machine.machine_id,
            volume=member.identifier,
            method=_method(member.kind, "snapshot"),
            state=SnapshotState.PENDING,
            started_at=started,
            fixed_at=utcnow(),
            size_bytes=size_bytes,
            location=arn,
            tags={**tags, **meta},
        )

    def _check(self, ref: SnapshotRef) -> SnapshotRef:
        """What RDS says now about one pending reference."""
        region = self._region(ref)
        if ref.point != "pitr":
            live = self._describe_snapshot(region, ref.id, _is_cluster_snapshot(ref))
            status = str((live or {}).get("Status", "")).lower()
            if live is None or status in SNAPSHOT_FAILED:
                return ref.model_copy(update={"state": SnapshotState.FAILED})
            if status == "available":
                return ref.model_copy(
                    update={"state": SnapshotState.COMPLETED, "durable_at": utcnow()}
                )
            return ref
        kind = ref.tags.get(f"{META}kind", "instance")
        identifier = ref.tags.get(f"{META}identifier", ref.volume)
        moment = ref.restore_time
        if moment is None:
            return ref.model_copy(
                update={
                    "state": SnapshotState.FAILED,
                    "note": "no restore time was chosen for this point-in-time member",
                }
            )
        found = self.databases.describe(region, kind, identifier)
        if found is None:
            return _failed(ref, f"DB {kind} {identifier} was deleted before it could be restored")
        if int(found.get("BackupRetentionPeriod") or 0) < 1:
            return _failed(
                ref,
                f"automated backups of DB {kind} {identifier} were turned off before its "
                f"LatestRestorableTime reached the restore time {_text(moment)}",
            )
        latest = aware(found.get("LatestRestorableTime"))
        if latest is not None and latest >= moment:
            return ref.model_copy(update={"state": SnapshotState.COMPLETED, "durable_at": utcnow()})
        status = str(found.get("DBInstanceStatus") or found.get("Status") or "")
        if latest is not None and status in ("stopped", "stopping"):
            # A stopped database ships no more logs: it is restorable up to when it stopped
            # (nothing was written after), never to T itself.
            return ref.model_copy(
                update={
                    "state": SnapshotState.COMPLETED,
                    "durable_at": utcnow(),
                    "restore_time": latest.replace(microsecond=0),
                    "fixed_at": latest.replace(microsecond=0),
                    "reported_consistency": Consistency.CRASH,
                    "note": (
                        f"DB {kind} {identifier} is {status}: it is restorable only up to "
                        f"{_text(latest.replace(microsecond=0))}, before the restore time "
                        f"{_text(moment)}; restored to that time, it is recorded crash-consistent"
                    ),
                }
            )
        return ref

    def check(self, snapshot: SnapshotRef) -> None:
        """Raises unless RDS can still restore the reference: before a restore creates anything
        (quiesce.restore.check_complete). A `pitr` reference needs its database, automated
        backups and a restore window that still reaches back to T (a cluster's
        EarliestRestorableTime; an instance's automated backups' RestoreWindow); a snapshot
        reference needs its snapshot, available."""
        region = self._region(snapshot)
        if snapshot.point != "pitr":
            live = self._describe_snapshot(region, snapshot.id, _is_cluster_snapshot(snapshot))
            status = str((live or {}).get("Status", "")).lower()
            if live is None or status != "available":
                raise ProviderError(
                    f"{snapshot.id}: the RDS snapshot is "
                    f"{'gone' if live is None else status or 'in an unknown state'} in {region}",
                    code="NotRestorable",
                )
            return
        kind = snapshot.tags.get(f"{META}kind", "instance")
        identifier = snapshot.tags.get(f"{META}identifier", snapshot.volume)
        moment = snapshot.restore_time
        problem = None
        found = self.databases.describe(region, kind, identifier)
        if moment is None:
            problem = "no restore time was recorded for this point-in-time member"
        elif found is None:
            problem = f"DB {kind} {identifier} is gone from {region}"
        elif int(found.get("BackupRetentionPeriod") or 0) < 1:
            problem = f"DB {kind} {identifier} keeps no automated backups any more"
        else:
            earliest = (
                aware(found.get("EarliestRestorableTime"))
                if kind == "cluster"
                else self._earliest_restorable(region, identifier)
            )
            if earliest is not None and earliest > moment:
                problem = (
                    f"the restore time {_text(moment)} is before the earliest restorable time "
                    f"{_text(earliest)} of DB {kind} {identifier}: it has left the "
                    f"{found.get('BackupRetentionPeriod')}-day backup retention"
                )
        if problem is not None:
            raise ProviderError(f"{snapshot.id}: {problem}", code="NotRestorable")

    def _earliest_restorable(self, region: str, identifier: str) -> datetime | None:
        """The start of a DB instance's restore window (its automated backups'), or None when
        RDS does not say."""
        rds = self.clients.rds(region)
        try:
            page = self.backoff.call(
                lambda: rds.describe_db_instance_automated_backups(DBInstanceIdentifier=identifier),
                retry_on=RDS_THROTTLING,
                what=f"DescribeDBInstanceAutomatedBackups {identifier}",
            )
        except ClientError as exc:
            raise call_failed(
                f"reading the restore window of DB instance {identifier} in {region} failed",
                exc,
                "DescribeFailed",
            ) from exc
        times = [
            aware((backup.get("RestoreWindow") or {}).get("EarliestTime"))
            for backup in page.get("DBInstanceAutomatedBackups", [])
            if backup.get("Status", "active") == "active"
        ]
        known = [t for t in times if t is not None]
        return min(known) if known else None

    def _cluster_class(self, meta: Mapping[str, str]) -> dict[str, str]:
        """A Multi-AZ DB cluster (not Aurora) is restored with its instances' class."""
        if _is_aurora(meta) or not meta.get("instance_class"):
            return {}
        return {"DBClusterInstanceClass": meta["instance_class"]}

    def _region(self, ref: SnapshotRef) -> str:
        region = (
            ref.tags.get(f"{META}region") or arn_region(ref.location, "rds") or self.default_region
        )
        if not region:
            raise ProviderError(f"{ref.id}: its region is unknown", code="UnknownRegion")
        return region

    def _describe_snapshot(self, region: str, name: str, cluster: bool) -> dict[str, Any] | None:
        return self.databases.describe_one(
            region,
            "cluster-snapshot" if cluster else "snapshot",
            name,
            not_found=SNAPSHOT_NOT_FOUND,
            failed=f"describing RDS snapshot {name} in {region} failed",
        )

    def _list_manual(self, region: str, cluster: bool) -> list[dict[str, Any]]:
        action, _, key = DESCRIBE_CALLS["cluster-snapshot" if cluster else "snapshot"]
        operation = getattr(self.clients.rds(region), _snake(action))
        return self.backoff.pages(
            operation,
            {"SnapshotType": "manual", "MaxRecords": 100},
            key,
            retry_on=RDS_THROTTLING,
            what=action,
            failed=f"listing RDS snapshots in {region} failed",
            code="DescribeFailed",
            next_page="Marker",
        )

    def _tags(self, region: str, arn: str) -> dict[str, str]:
        if not arn:
            return {}
        rds = self.clients.rds(region)
        answer = self.backoff.call(
            lambda: rds.list_tags_for_resource(ResourceName=arn),
            retry_on=RDS_THROTTLING,
            what=f"ListTagsForResource {arn}",
        )
        return tag_dict(answer.get("TagList"))

    def _ref(
        self, region: str, item: Mapping[str, Any], tags: dict[str, str], cluster: bool
    ) -> SnapshotRef:
        name = str(item.get("DBClusterSnapshotIdentifier") or item.get("DBSnapshotIdentifier"))
        source = str(item.get("DBClusterIdentifier") or item.get("DBInstanceIdentifier") or "")
        start = aware(item.get("SnapshotCreateTime")) or utcnow()
        status = str(item.get("Status", "")).lower()
        state = (
            SnapshotState.COMPLETED
            if status == "available"
            else SnapshotState.FAILED
            if status in SNAPSHOT_FAILED
            else SnapshotState.PENDING
        )
        size = item.get("AllocatedStorage")
        kind = "cluster" if cluster else "instance"
        meta = {
            f"{META}region": region,
            f"{META}kind": kind,
            f"{META}identifier": source,
            f"{META}engine": str(item.get("Engine", "")),
        }
        return SnapshotRef(
            id=name,
            provider=PROVIDER,
            machine_id=tags.get("quiesce:machine", ""),
            volume=source,
            method=_method(kind, "snapshot"),
            state=state,
            started_at=start,
            fixed_at=start,
            size_bytes=int(size) * GIB if size else None,
            location=str(item.get("DBClusterSnapshotArn") or item.get("DBSnapshotArn") or ""),
            tags={**meta, **tags},
        )


# ---------------------------------------------------------------------------------- helpers


def _method(kind: str, how: str) -> str:
    return f"rds-{'cluster-' if kind == 'cluster' else ''}{how}"


def _is_cluster_snapshot(ref: SnapshotRef) -> bool:
    return ref.method.startswith("rds-cluster") or ":cluster-snapshot:" in ref.location


def _is_aurora(meta: Mapping[str, str]) -> bool:
    return meta.get("engine", "aurora").startswith("aurora")


def _text(moment: datetime | None) -> str:
    return whole_seconds(moment) if moment is not None else "(none)"


def _failed(ref: SnapshotRef, why: str) -> SnapshotRef:
    return ref.model_copy(update={"state": SnapshotState.FAILED, "note": why})


def _snake(action: str) -> str:
    """A boto3 method's name from the API action's (RestoreDBInstanceToPointInTime ->
    restore_db_instance_to_point_in_time)."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", action).lower()


#: The CLI option of each parameter that is not its kebab-cased name.
_CLI = {"DBClusterIdentifier": "db-cluster-identifier", "RestoreToTime": "restore-to-time"}


def _cli_option(name: str) -> str:
    return "--" + _CLI.get(name, _snake(name).replace("_", "-"))


def _cli_value(value: Any) -> list[str]:
    if isinstance(value, datetime):
        return [whole_seconds(value)]
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [",".join(f"{k}={v}" for k, v in tag.items()) for tag in value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _command(region: str, action: str, params: Mapping[str, Any]) -> str:
    words = ["aws", "rds", _snake(action).replace("_", "-"), "--region", region]
    for key, value in params.items():
        words.append(_cli_option(key))
        words.extend(_cli_value(value))
    return shlex.join(words)


def _step(
    request: CloudRestore, region: str, calls: list[tuple[str, dict[str, Any]]]
) -> RestoreStep:
    flat: dict[str, str] = {"region": region}
    for action, params in calls:
        for key, value in params.items():
            if key == "Tags":
                continue
            text = ",".join(_cli_value(value))
            flat[key if action == calls[0][0] else f"{action}.{key}"] = text
    return RestoreStep(
        member=request.member,
        snapshot=request.snapshot.id,
        action=" + ".join(action for action, _ in calls),
        parameters=flat,
        command=" && ".join(_command(region, action, params) for action, params in calls),
    )
