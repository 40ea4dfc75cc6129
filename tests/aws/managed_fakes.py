"""What moto does not model of RDS and AWS Backup, added on the adapters' own boto3 clients
through botocore's event chain (like conftest.Wire): everything else is moto's.

- `RdsService`: RDS's documented point-in-time behaviour. `LatestRestorableTime` lags the
  present by `lag` seconds (about five minutes on AWS) and advances with a fake clock that the
  adapter's injected sleep moves (no real waiting); a stopped database's stays where it stopped;
  the restore calls refuse a restore time after it, and one that is not a whole second; a
  restore window (a cluster's EarliestRestorableTime, an instance's automated backups') starts
  the backup retention period back from the fake clock's present.
- `BackupService`: AWS Backup's on-demand jobs for EFS (moto has no StartBackupJob): a job
  runs for `job_polls` DescribeBackupJob calls, then completes; recovery points carry their
  tags; one made by a backup plan is there too, to show it is never touched.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.rds.models import rds_backends

from quiesce.record import utcnow
from tests.aws.conftest import ACCOUNT, REGION, FakeClock, aws_answer, aws_error

Handler = Callable[[dict[str, Any]], "dict[str, Any] | tuple[str, str] | None"]


def intercept(client: Any, operation: str, handler: Handler, *, first: bool = False) -> None:
    """Calls `handler(params)` with the parameters the adapter passed (before serialization):
    a dict answers the call, ("Code", "message") fails it, None lets moto (or the handlers
    registered before it) answer; `first`: before every other handler."""
    service = client.meta.service_model.service_id.hyphenize()

    def keep(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["quiesce_params"] = copy.deepcopy(params)

    def respond(context: dict[str, Any], **_: Any) -> Any:
        result = handler(context.get("quiesce_params", {}))
        if result is None:
            return None
        if isinstance(result, tuple):
            return aws_error(result[0], result[1])
        return aws_answer(result)

    client.meta.events.register(f"before-parameter-build.{service}.{operation}", keep)
    register = client.meta.events.register_first if first else client.meta.events.register
    register(f"before-call.{service}.{operation}", respond)


def throttle_once(client: Any, operation: str, code: str = "Throttling") -> list[int]:
    """Fails the next call of `operation` with `code` (then lets calls through); the list
    holds how many throttles are left."""
    left = [1]

    def handler(_: dict[str, Any]) -> tuple[str, str] | None:
        if left[0] > 0:
            left[0] -= 1
            return (code, "Rate exceeded")
        return None

    intercept(client, operation, handler, first=True)
    return left


@dataclass
class RdsService:
    """RDS's LatestRestorableTime, lagging and advancing with a fake clock."""

    rds: Any
    clock: FakeClock
    lag: float = 300.0
    start: float = 0.0
    #: identifier -> the LatestRestorableTime it stopped at
    frozen: dict[str, datetime] = field(default_factory=dict)
    restores: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.start = self.clock.now
        self.rds.meta.events.register("after-call.rds.DescribeDBInstances", self._instances)
        self.rds.meta.events.register("after-call.rds.DescribeDBClusters", self._clusters)
        intercept(self.rds, "DescribeDBInstanceAutomatedBackups", self._automated_backups)
        for action, key, source in (
            ("RestoreDBInstanceToPointInTime", "RestoreTime", "SourceDBInstanceIdentifier"),
            ("RestoreDBClusterToPointInTime", "RestoreToTime", "SourceDBClusterIdentifier"),
        ):
            intercept(self.rds, action, self._check_restore(action, key, source))
        for action in (
            "RestoreDBInstanceFromDBSnapshot",
            "RestoreDBClusterFromSnapshot",
            "CreateDBInstance",
        ):
            intercept(self.rds, action, self._record(action))

    def now(self) -> datetime:
        return utcnow() + timedelta(seconds=self.clock.now - self.start)

    def latest(self, identifier: str) -> datetime:
        return self.frozen.get(identifier) or self.now() - timedelta(seconds=self.lag)

    def stop(self, identifier: str) -> None:
        """The database stops shipping logs: its LatestRestorableTime stays where it is."""
        self.frozen[identifier] = self.latest(identifier)

    def _instances(self, parsed: dict[str, Any], **_: Any) -> None:
        for item in parsed.get("DBInstances", []):
            item["LatestRestorableTime"] = self.latest(item["DBInstanceIdentifier"])

    def earliest(self, retention_days: int) -> datetime:
        """The start of the restore window: the backup retention period back from now."""
        return self.now() - timedelta(days=retention_days)

    def _clusters(self, parsed: dict[str, Any], **_: Any) -> None:
        for item in parsed.get("DBClusters", []):
            item["LatestRestorableTime"] = self.latest(item["DBClusterIdentifier"])
            item["EarliestRestorableTime"] = self.earliest(int(item["BackupRetentionPeriod"]))

    def _automated_backups(self, params: dict[str, Any]) -> dict[str, Any]:
        """An instance's automated backups with their restore window (moto has no window)."""
        identifier = params.get("DBInstanceIdentifier", "")
        db = rds_backends[ACCOUNT][REGION].databases.get(identifier)
        days = int(getattr(db, "backup_retention_period", 0) or 0)
        if db is None or days < 1:
            return {"DBInstanceAutomatedBackups": []}
        window = {"EarliestTime": self.earliest(days), "LatestTime": self.latest(identifier)}
        return {
            "DBInstanceAutomatedBackups": [
                {"DBInstanceIdentifier": identifier, "Status": "active", "RestoreWindow": window}
            ]
        }

    def _check_restore(self, action: str, key: str, source: str) -> Handler:
        def check(params: dict[str, Any]) -> tuple[str, str] | None:
            self.restores.append((action, params))
            moment = params.get(key)
            if isinstance(moment, datetime):
                moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
                if moment.microsecond:
                    return ("InvalidParameterValue", f"{key} must be whole seconds")
                if moment > self.latest(params[source]):
                    return ("InvalidRestoreFault", f"{key} is after the LatestRestorableTime")
            return None

        return check

    def _record(self, action: str) -> Handler:
        def record(params: dict[str, Any]) -> None:
            self.restores.append((action, params))
            return None

        return record


@dataclass
class BackupService:
    """AWS Backup's on-demand jobs, recovery points and restore jobs, in memory."""

    backup: Any
    job_polls: int = 2
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    points: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    restores: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    started: list[dict[str, Any]] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for operation in (
            "StartBackupJob",
            "DescribeBackupJob",
            "DescribeRecoveryPoint",
            "ListTags",
            "DeleteRecoveryPoint",
            "ListRecoveryPointsByBackupVault",
            "StartRestoreJob",
        ):
            intercept(self.backup, operation, getattr(self, f"_{operation}"))

    def plan_made(self, resource_arn: str, vault: str = "Default") -> str:
        """A recovery point a backup plan made (an automated backup)."""
        arn = self._point_arn()
        self.points[arn] = {
            "RecoveryPointArn": arn,
            "BackupVaultName": vault,
            "ResourceArn": resource_arn,
            "ResourceType": "EFS",
            "Status": "COMPLETED",
            "CreationDate": utcnow(),
            "CreatedBy": {"BackupPlanId": "plan-nightly"},
            "Tags": {"quiesce:managed": "true"},  # even so: a plan made it
        }
        return arn

    def _point_arn(self) -> str:
        return f"arn:aws:backup:{REGION}:{ACCOUNT}:recovery-point:{next(self._ids):08d}"

    def _StartBackupJob(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.started.append(params)
            token = params.get("IdempotencyToken")
            if token and token in self.tokens:
                job = self.jobs[self.tokens[token]]
            else:
                job_id = f"job-{next(self._ids)}"
                arn = self._point_arn()
                job = {
                    "BackupJobId": job_id,
                    "RecoveryPointArn": arn,
                    "State": "RUNNING",
                    "polls": 0,
                    "CreationDate": utcnow(),
                }
                self.jobs[job_id] = job
                if token:
                    self.tokens[token] = job_id
                self.points[arn] = {
                    "RecoveryPointArn": arn,
                    "BackupVaultName": params["BackupVaultName"],
                    "ResourceArn": params["ResourceArn"],
                    "ResourceType": "EFS",
                    "Status": "PARTIAL",
                    "CreationDate": job["CreationDate"],
                    "Tags": dict(params.get("RecoveryPointTags") or {}),
                }
        return {
            "BackupJobId": job["BackupJobId"],
            "RecoveryPointArn": job["RecoveryPointArn"],
            "CreationDate": job["CreationDate"],
        }

    def _DescribeBackupJob(self, params: dict[str, Any]) -> Any:
        job = self.jobs.get(params["BackupJobId"])
        if job is None:
            return ("ResourceNotFoundException", "no such job")
        job["polls"] += 1
        if job["polls"] >= self.job_polls and job["State"] == "RUNNING":
            job["State"] = "COMPLETED"
            self.points[job["RecoveryPointArn"]]["Status"] = "COMPLETED"
        return {k: v for k, v in job.items() if k != "polls"}

    def _DescribeRecoveryPoint(self, params: dict[str, Any]) -> Any:
        point = self.points.get(params["RecoveryPointArn"])
        if point is None:
            return ("ResourceNotFoundException", "no such recovery point")
        return {k: v for k, v in point.items() if k != "Tags"}

    def _ListTags(self, params: dict[str, Any]) -> Any:
        point = self.points.get(params["ResourceArn"])
        if point is None:
            return ("ResourceNotFoundException", "no such resource")
        return {"Tags": point["Tags"]}

    def _DeleteRecoveryPoint(self, params: dict[str, Any]) -> Any:
        if self.points.pop(params["RecoveryPointArn"], None) is None:
            return ("ResourceNotFoundException", "no such recovery point")
        self.deleted.append(params["RecoveryPointArn"])
        return {}

    def _ListRecoveryPointsByBackupVault(self, params: dict[str, Any]) -> Any:
        return {
            "RecoveryPoints": [
                {k: v for k, v in p.items() if k != "Tags"}
                for p in self.points.values()
                if p["BackupVaultName"] == params["BackupVaultName"]
            ]
        }

    def _StartRestoreJob(self, params: dict[str, Any]) -> Any:
        if params["RecoveryPointArn"] not in self.points:
            return ("ResourceNotFoundException", "no such recovery point")
        self.restores.append(params)
        return {"RestoreJobId": f"restore-{next(self._ids)}"}
