"""Scripted in-memory providers for the engine's unit tests.

They record every call in order (with the time it was made), so tests can assert the engine's
ordering promises, and can be told to fail, time out, refuse, hang or raise per member.
"""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from quiesce.errors import ProviderError
from quiesce.policy.model import Member, MemberBase
from quiesce.ports import (
    Backends,
    Cleanup,
    CloudRestore,
    HookCall,
    HookRunner,
    Inventory,
    Machine,
    MachineRestore,
    PointMethod,
    Provider,
    RestoredMachine,
    Restorer,
    RestoreStep,
    SnapshotCall,
    Snapshotter,
)
from quiesce.providers.memory import MemoryEventBus, MemoryStateStore
from quiesce.record import Consistency, HookResult, HookStatus, SnapshotRef, SnapshotState, utcnow
from quiesce.tags import snapshot_tags


@dataclass
class Log:
    entries: list[tuple[float, str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: The wall-clock time (the engine's clock) of each entry, in the same order.
    walls: list[datetime] = field(default_factory=list)

    def add(self, kind: str, member: str, machine: str) -> None:
        with self.lock:
            self.entries.append((time.monotonic(), kind, member, machine))
            self.walls.append(utcnow())

    def when(self, kind: str, member: str) -> datetime:
        """The wall-clock time of the one entry of `kind` for `member`."""
        (found,) = [
            w
            for (_, k, m, _), w in zip(self.entries, self.walls, strict=True)
            if k == kind and m == member
        ]
        return found

    def kinds(self, member: str | None = None) -> list[str]:
        return [k for _, k, m, _ in self.entries if member in (None, m)]

    def times(self, kind: str) -> list[float]:
        return [t for t, k, _, _ in self.entries if k == kind]


class FakeInventory(Inventory):
    def __init__(self, machines_per_member: dict[str, int] | None = None) -> None:
        self.machines_per_member = machines_per_member or {}
        self.unresolvable: set[str] = set()

    def resolve(self, member: Member) -> list[Machine]:
        if member.name in self.unresolvable:
            raise ProviderError(f"volume of {member.name} is missing")
        count = self.machines_per_member.get(member.name, 1)
        return [
            Machine(provider="local", member=member.name, machine_id=f"{member.name}-{i}")
            for i in range(count)
        ]


class FakeHookRunner(HookRunner):
    """behaviour[(member, phase)]: ok, fail, timeout, refuse, raise, hang:<seconds>, watchdog."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.behaviour: dict[tuple[str, str], str] = {}
        self.executed: list[tuple[str, str]] = []
        self.calls: list[HookCall] = []

    def check(self, call: HookCall) -> HookResult:
        return HookResult(status=HookStatus.SUCCEEDED, code="Allowed")

    def run(self, call: HookCall) -> HookResult:
        how = self.behaviour.get((call.member, call.phase), "ok")
        self.calls.append(call)
        self.log.add(f"{call.phase}:sent", call.member, call.machine.machine_id)
        started = utcnow()
        if how == "raise":
            raise ProviderError("channel down", code="Undeliverable")
        if how == "refuse":
            return HookResult(status=HookStatus.REFUSED, code="InsufficientPermission", attempts=0)
        self.executed.append((call.member, call.phase))
        if how.startswith("hang:"):
            time.sleep(float(how.split(":")[1]))
        if how == "watchdog":
            # the guest watchdog thawed long ago; the runner reports its stored result
            return HookResult(
                status=HookStatus.SUCCEEDED,
                code="Succeeded",
                by="watchdog",
                started_at=started - timedelta(seconds=5),
                ended_at=started - timedelta(seconds=5),
                attempts=1,
            )
        status, code = {
            "fail": (HookStatus.FAILED, "ExecutionFailed"),
            "timeout": (HookStatus.TIMED_OUT, "Timeout"),
        }.get(how, (HookStatus.SUCCEEDED, "Succeeded"))
        self.log.add(f"{call.phase}:done", call.member, call.machine.machine_id)
        return HookResult(
            status=status,
            code=code,
            exit_code=0 if status is HookStatus.SUCCEEDED else 1,
            attempts=1,
            started_at=started,
            ended_at=utcnow(),
        )


class FakeSnapshotter(Snapshotter):
    def __init__(self, log: Log, latency: float = 0.0) -> None:
        self.log = log
        self.latency = latency
        self.slow: dict[str, float] = {}
        self.failing: set[str] = set()
        self.not_durable: set[str] = set()
        self.interrupt: set[str] = set()
        self.reported: dict[str, Consistency] = {}
        #: member -> restore resolution (s): members whose point is `pitr` (a managed service)
        self.pitr: dict[str, float] = {}
        #: copies to other regions: regions whose copies stay pending, regions that refuse
        self.pending_regions: set[str] = set()
        self.copy_refused: set[str] = set()
        #: how many more replicas may start (None: any); the next one is refused
        self.copy_budget: int | None = None
        #: cloud restores: members it cannot plan, members whose call fails, what it created
        self.no_cloud_restore: set[str] = set()
        self.cloud_restore_failing: set[str] = set()
        self.restored: list[CloudRestore] = []
        self.store: dict[str, SnapshotRef] = {}
        self.deleted: list[str] = []
        self._lock = threading.Lock()

    def take(self, call: SnapshotCall) -> list[SnapshotRef]:
        started = utcnow()
        self.log.add("snapshot:start", call.member, call.machine.machine_id)
        time.sleep(self.slow.get(call.member, self.latency))
        if call.member in self.interrupt:  # Ctrl-C reaches the main thread while it waits
            _thread.interrupt_main()
            time.sleep(0.2)
        if call.member in self.failing:
            self.log.add("snapshot:failed", call.member, call.machine.machine_id)
            raise ProviderError("ConcurrentSnapshotLimitExceeded", code="Throttled")
        ref = SnapshotRef(
            id=f"{call.recovery_point}/{call.machine.machine_id}",
            provider="local",
            machine_id=call.machine.machine_id,
            volume="vol",
            method="fake",
            started_at=started,
            fixed_at=utcnow(),
            size_bytes=100,
            tags=snapshot_tags(call),
            reported_consistency=self.reported.get(call.member),
            point="pitr" if call.member in self.pitr else "snapshot",
        )
        with self._lock:
            self.store[ref.id] = ref
        self.log.add("snapshot:fixed", call.member, call.machine.machine_id)
        return [ref]

    def plan_cloud_restore(self, request: CloudRestore) -> RestoreStep:
        if request.member in self.no_cloud_restore:
            raise ProviderError(f"cannot restore {request.snapshot.id}", code="RestoreUnsupported")
        moment = request.restore_time.isoformat() if request.restore_time else ""
        action = "FakeRestoreToTime" if request.snapshot.point == "pitr" else "FakeCreateDisk"
        parameters = {"source": request.snapshot.id, "name": request.name, "time": moment}
        return RestoreStep(
            request.member, request.snapshot.id, action, parameters, f"fake restore {request.name}"
        )

    def cloud_restore(self, request: CloudRestore) -> RestoreStep:
        step = self.plan_cloud_restore(request)
        if request.member in self.cloud_restore_failing:
            raise ProviderError("ThrottlingException: rate exceeded", code="Throttled")
        with self._lock:
            self.restored.append(request)
        step.created = [f"fake://{request.name}"]
        return step

    def point_method(self, spec: MemberBase) -> PointMethod:
        step = self.pitr.get(spec.name)
        return PointMethod() if step is None else PointMethod("pitr", step)

    def copy_to_region(
        self, snapshot: SnapshotRef, region: str, key: str | None, tags: dict[str, str]
    ) -> SnapshotRef:
        if region in self.copy_refused:
            raise ProviderError(f"copies to {region} are not allowed", code="AccessDenied")
        if self.copy_budget is not None:
            if self.copy_budget <= 0:
                raise ProviderError("the copy limit is reached", code="ResourceLimitExceeded")
            self.copy_budget -= 1
        replica = snapshot.model_copy(
            update={
                "id": f"{snapshot.id}@{region}",
                "location": region,
                "state": SnapshotState.PENDING,
                "tags": dict(tags),
                "durable_at": None,
            }
        )
        with self._lock:
            self.store[replica.id] = replica
        return replica

    def wait_durable(self, snapshots: Sequence[SnapshotRef], timeout: float) -> list[SnapshotRef]:
        out = []
        for s in snapshots:
            if s.location and s.location in self.pending_regions:
                out.append(s)  # a copy still on its way
                continue
            failed = any(s.id.endswith(f"/{m}-0") for m in self.not_durable)
            state = SnapshotState.FAILED if failed else SnapshotState.COMPLETED
            out.append(s.model_copy(update={"state": state, "durable_at": utcnow()}))
        return out

    def delete(self, snapshot: SnapshotRef) -> None:
        with self._lock:
            self.store.pop(snapshot.id, None)
            self.deleted.append(snapshot.id)

    def find(self, policy: str, group: str, run_id: str | None = None) -> list[SnapshotRef]:
        with self._lock:
            return [
                s
                for s in self.store.values()
                if s.tags.get("quiesce:group") == group
                and run_id in (None, s.tags.get("quiesce:run-id"))
            ]


class FakeRestorer(Restorer):
    """A cloud that launches copies of machines: `resources` is everything it holds (id ->
    restore label), so a test can see what a restore left behind."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.resources: dict[str, str] = {}
        self.fail_launch: set[str] = set()  # members whose launch fails after the volumes
        self.never_ready: set[str] = set()
        self.launched: list[MachineRestore] = []
        self._lock = threading.Lock()
        self._n = 0

    def _make(self, kind: str, label: str) -> str:
        with self._lock:
            self._n += 1
            rid = f"{kind}-{self._n:04d}"
            self.resources[rid] = label
        return rid

    def launch(self, request: MachineRestore) -> RestoredMachine:
        self.launched.append(request)
        volumes = [self._make("vol", request.label) for _ in request.snapshots]
        if request.member in self.fail_launch:
            raise ProviderError("InsufficientInstanceCapacity", code="LaunchFailed")
        instance = self._make("i", request.label)
        self.log.add("launch", request.member, instance)
        return RestoredMachine(
            member=request.member,
            source=request.machine_id,
            machine=Machine(provider="local", member=request.member, machine_id=instance),
            created=[*volumes, instance],
            mounts={s.volume: f"/dev/sd{chr(102 + i)}" for i, s in enumerate(request.snapshots)},
        )

    def wait_ready(self, restored: RestoredMachine, timeout: float) -> None:
        if restored.member in self.never_ready:
            raise ProviderError(
                f"{restored.machine.machine_id} did not answer within {timeout:g}s",
                code="NotReady",
            )

    def cleanup(self, label: str, regions: Sequence[str | None]) -> Cleanup:
        with self._lock:
            mine = sorted(r for r, lab in self.resources.items() if lab == label)
            for rid in mine:
                del self.resources[rid]
        return Cleanup(deleted=mine)


@dataclass
class World:
    log: Log
    inventory: FakeInventory
    hooks: FakeHookRunner
    snapshots: FakeSnapshotter
    state: MemoryStateStore
    bus: MemoryEventBus
    backends: Backends
    restorer: FakeRestorer


def make_world(latency: float = 0.0) -> World:
    log = Log()
    inventory = FakeInventory()
    hooks = FakeHookRunner(log)
    snapshots = FakeSnapshotter(log, latency)
    state = MemoryStateStore()
    bus = MemoryEventBus()
    restorer = FakeRestorer(log)
    backends = Backends(
        providers={"local": Provider(inventory, hooks, snapshots, restorer)}, state=state, bus=bus
    )
    return World(log, inventory, hooks, snapshots, state, bus, backends, restorer)
