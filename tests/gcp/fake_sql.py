"""A wire-level fake of the Cloud SQL Admin API (v1), for the real google-cloud-sql client.

google-cloud-sql speaks gRPC only, so this is a grpcio server on 127.0.0.1:0 answering
`google.cloud.sql.v1.SqlInstancesService` Get, GetLatestRecoveryTime and Clone with the
package's own message types (serialized exactly as the service sends them).

What it models, from the API reference:

- getLatestRecoveryTime: the latest recovery time trails the present by `lag_seconds`
  (minutes by default: the logs are archived in batches) on a fake clock the tests advance
  (`advance`), so no test sleeps for minutes; the earliest recovery time is the start of the
  log retention window (`retention_days` before the latest, for an instance that sets it; else
  `created_at`). An instance without point-in-time recovery answers FAILED_PRECONDITION.
- clone with cloneContext.pointInTime: refused (INVALID_ARGUMENT) when the time is after the
  latest recovery time or before the earliest, or the destination exists; otherwise the clone
  instance is created (PENDING_CREATE) and the request kept in `clones` with the timestamp as
  sent (seconds, nanos).
- `throttle(method, code)`: the next call of that method is answered RESOURCE_EXHAUSTED (HTTP
  429) or UNAVAILABLE (503) once.
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.cloud.sqladmin_v1 import types
from google.protobuf import timestamp_pb2

SERVICE = "google.cloud.sql.v1.SqlInstancesService"


@dataclass
class Instance:
    project: str
    name: str
    version: str = "POSTGRES_15"
    backups: bool = True
    pitr: bool = True
    region: str = "europe-west1"
    state: str = "RUNNABLE"
    #: How many days of logs the instance keeps; None: all of them since `created_at`.
    retention_days: int | None = None

    def message(self) -> types.DatabaseInstance:
        config = types.BackupConfiguration(
            enabled=self.backups,
            binary_log_enabled=self.pitr and self.version.startswith("MYSQL"),
            point_in_time_recovery_enabled=self.pitr and not self.version.startswith("MYSQL"),
        )
        return types.DatabaseInstance(
            name=self.name,
            project=self.project,
            region=self.region,
            database_version=types.SqlDatabaseVersion[self.version],
            state=types.DatabaseInstance.SqlInstanceState[self.state],
            settings=types.Settings(backup_configuration=config),
            self_link=f"https://sqladmin.googleapis.com/v1/projects/{self.project}/instances/"
            f"{self.name}",
        )


@dataclass
class FakeCloudSql:
    lag_seconds: float = 240.0
    instances: dict[tuple[str, str], Instance] = field(default_factory=dict)
    #: Every clone request accepted: project, instance, destination, pointInTime (s, nanos).
    clones: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    offset: float = 0.0
    throttles: list[list[Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: When the instances came to be: long before any time the tests choose.
    created_at: datetime = datetime(2020, 1, 1, tzinfo=UTC)

    def __post_init__(self) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers((self._handlers(),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeCloudSql:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None)

    # ----------------------------------------------------------------- test helpers

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def advance(self, seconds: float) -> None:
        """Moves the fake clock on (the latest recovery time with it)."""
        with self.lock:
            self.offset += seconds

    def add(self, project: str, name: str, **settings: Any) -> Instance:
        instance = Instance(project, name, **settings)
        with self.lock:
            self.instances[(project, name)] = instance
        return instance

    def throttle(self, method: str, code: grpc.StatusCode = grpc.StatusCode.RESOURCE_EXHAUSTED):
        with self.lock:
            self.throttles.append([method, code])

    def latest(self) -> datetime:
        return self.now() - timedelta(seconds=self.lag_seconds)

    # ----------------------------------------------------------------- the service

    def _throttled(self, method: str) -> grpc.StatusCode | None:
        with self.lock:
            self.calls.append(method)
            for i, (name, code) in enumerate(self.throttles):
                if name == method:
                    del self.throttles[i]
                    return code  # type: ignore[no-any-return]
        return None

    def _instance(self, request: Any, context: grpc.ServicerContext) -> Instance:
        found = self.instances.get((request.project, request.instance))
        if found is None:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"The Cloud SQL instance does not exist: {request.project}/{request.instance}",
            )
        assert found is not None
        return found

    def get(self, request: Any, context: grpc.ServicerContext) -> types.DatabaseInstance:
        return self._instance(request, context).message()

    def get_latest_recovery_time(
        self, request: Any, context: grpc.ServicerContext
    ) -> types.SqlInstancesGetLatestRecoveryTimeResponse:
        instance = self._instance(request, context)
        if not (instance.backups and instance.pitr):
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "Point in time recovery is not enabled for this instance.",
            )
        return types.SqlInstancesGetLatestRecoveryTimeResponse(
            kind="sql#getLatestRecoveryTime",
            latest_recovery_time=self.latest(),
            earliest_recovery_time=self.earliest(instance),
        )

    def earliest(self, instance: Instance) -> datetime:
        """The start of the log retention window: `retention_days` before the latest recovery
        time (when the instance keeps that few), and never before the instance existed."""
        if instance.retention_days is None:
            return self.created_at
        return max(self.created_at, self.latest() - timedelta(days=instance.retention_days))

    def clone(self, request: Any, context: grpc.ServicerContext) -> types.Operation:
        source = self._instance(request, context)
        ctx = request.body.clone_context
        name = ctx.destination_instance_name
        if not name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "destinationInstanceName is required")
        if (request.project, name) in self.instances:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"instance {name} already exists")
        raw = types.CloneContext.pb(ctx).point_in_time
        has_time = types.CloneContext.pb(ctx).HasField("point_in_time")
        if has_time:
            if not (source.backups and source.pitr):
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "Point in time recovery is not enabled for this instance.",
                )
            moment = datetime.fromtimestamp(raw.seconds + raw.nanos / 1e9, tz=UTC)
            if moment > self.latest():
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"The requested point in time {moment.isoformat()} is after the latest "
                    "recovery time.",
                )
            if moment < self.earliest(source):
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"The requested point in time {moment.isoformat()} is before the earliest "
                    "recovery time.",
                )
        with self.lock:
            self.clones.append(
                {
                    "project": request.project,
                    "instance": request.instance,
                    "destination": name,
                    "point_in_time": (raw.seconds, raw.nanos) if has_time else None,
                    "preferred_zone": ctx.preferred_zone or None,
                }
            )
            self.instances[(request.project, name)] = Instance(
                request.project, name, version=source.version, state="PENDING_CREATE"
            )
        return types.Operation(
            kind="sql#operation",
            name=f"clone-{len(self.clones)}",
            operation_type=types.Operation.SqlOperationType.CLONE,
            status=types.Operation.SqlOperationStatus.PENDING,
            target_id=name,
            target_project=request.project,
        )

    def _handlers(self) -> grpc.GenericRpcHandler:
        methods = {
            "Get": (self.get, types.SqlInstancesGetRequest, types.DatabaseInstance),
            "GetLatestRecoveryTime": (
                self.get_latest_recovery_time,
                types.SqlInstancesGetLatestRecoveryTimeRequest,
                types.SqlInstancesGetLatestRecoveryTimeResponse,
            ),
            "Clone": (self.clone, types.SqlInstancesCloneRequest, types.Operation),
        }

        def wrap(name: str, fn: Any) -> Any:
            def handler(request: Any, context: grpc.ServicerContext) -> Any:
                code = self._throttled(name)
                if code is not None:
                    context.abort(code, "Quota exceeded: too many requests, try again later.")
                return fn(request, context)

            return handler

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                name: grpc.unary_unary_rpc_method_handler(
                    wrap(name, fn),
                    request_deserializer=req.deserialize,
                    response_serializer=resp.serialize,
                )
                for name, (fn, req, resp) in methods.items()
            },
        )


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts
