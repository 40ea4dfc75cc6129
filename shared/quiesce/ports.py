"""The engine's ports: the few I/O operations each provider implements.

Each port is an abstract base class with a handful of abstract methods; anything that can be said
once for all providers (fanning calls out concurrently, turning unexpected exceptions into
results) lives in the base class, in the style of a persistence layer with one abstract I/O
method per operation. Adapters implement these and nothing else.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeVar

from quiesce.errors import ProviderError
from quiesce.events import CloudEvent
from quiesce.policy.model import Hook, Member, MemberBase
from quiesce.policy.recovery import RestoreSite
from quiesce.record import HookResult, RecoveryPoint, RunRecord, SnapshotRef

T = TypeVar("T")
R = TypeVar("R")

HookPhase = Literal["pre", "post", "verify"]

MAX_CONCURRENCY = 4096


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def shared_pool() -> ThreadPoolExecutor:
    """One process-wide pool, so each phase reuses the threads the previous phase started.

    Every machine of a group is worked on at once, so the freeze window does not grow with the
    group's size; the pool is sized for the largest groups.
    """
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=MAX_CONCURRENCY, thread_name_prefix="quiesce")
        return _pool


def prewarm(count: int) -> None:
    """Makes sure `count` threads exist, so no thread is created inside a freeze window."""
    count = min(count, MAX_CONCURRENCY)
    if count <= 1:
        return
    gate = threading.Event()
    futures = [shared_pool().submit(gate.wait, 30) for _ in range(count)]
    gate.set()
    for fut in futures:
        fut.result()


def fan_out(fn: Callable[[T], R], items: Sequence[T]) -> list[R | BaseException]:
    """Calls fn on every item at once; returns each result or the exception it raised."""
    if len(items) == 1:
        try:
            return [fn(items[0])]
        except Exception as exc:
            return [exc]
    futures: list[Future[R]] = [shared_pool().submit(fn, item) for item in items]
    out: list[R | BaseException] = []
    for fut in futures:
        error = fut.exception()
        out.append(error if error is not None else fut.result())
    return out


@dataclass(frozen=True)
class Machine:
    """A machine a member resolved to: an instance, a VM, or this host."""

    provider: str
    member: str
    machine_id: str
    volumes: tuple[str, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class HookCall:
    """One hook to run on one machine.

    For `pre`, `thaw` is the member's post hook: the guest runner arms its watchdog with it, so
    the machine thaws on its own after `max_freeze_seconds` if no post call comes. `spec` is the
    member as the policy declares it (its provider's own model), so adapters read the member's
    settings from the call instead of looking them up in the policy.
    """

    run_id: str
    policy: str
    group: str
    member: str
    machine: Machine
    phase: HookPhase
    hook: Hook
    thaw: Hook | None = None
    max_freeze_seconds: float | None = None
    extra_args: tuple[str, ...] = ()
    spec: MemberBase = field(kw_only=True)


@dataclass(frozen=True)
class SnapshotCall:
    """Snapshot every volume of one machine; `consistency` is the level it is expected to have.

    `spec` is the member as the policy declares it (its provider's own model)."""

    run_id: str
    policy: str
    group: str
    member: str
    machine: Machine
    recovery_point: str
    consistency: str
    spec: MemberBase = field(kw_only=True)


@dataclass(frozen=True)
class PointMethod:
    """How a member's point in time is fixed, as its snapshotter declares it.

    `snapshot`: when the snapshot call is accepted (a disk, a cluster or share snapshot).
    `pitr`: a service with continuous backup restores to a time `T` the engine chooses inside
    the quiesced interval, at `resolution_seconds` (1: the restore API takes whole seconds):
    `take` checks the service and returns a reference with `point="pitr"` (no restore time:
    the engine stamps `T` on it), and `wait_durable` waits until the service can restore to
    its `restore_time`. `copy`: data copied over an interval (never one point in time unless
    the application is held).
    """

    kind: Literal["snapshot", "pitr", "copy"] = "snapshot"
    resolution_seconds: float = 0.0
    detail: str = ""


@dataclass(frozen=True)
class CloudRestore:
    """Restore one snapshot (a disk, a database, a share) of a recovery point in its cloud, as
    a new resource: `name` is the new resource's name (providers shorten or adapt it to the
    service's rules, and say so), `restore_time` the group's `T` for `pitr` members, `zone` an
    optional zone or region other than the original."""

    snapshot: SnapshotRef
    point: str
    member: str
    name: str
    restore_time: datetime | None = None
    zone: str | None = None


@dataclass
class RestoreStep:
    """One cloud call of a group restore: what it is (`action`, e.g.
    `RestoreDBInstanceToPointInTime`, with its `parameters`), the equivalent command line a
    user could run (`command`), and, once executed, what it `created` (resource ids)."""

    member: str
    snapshot: str
    action: str
    parameters: dict[str, str]
    command: str = ""
    created: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MachineRestore:
    """Launch a copy of one machine from its snapshots, in isolation (or, with the site's
    `inspect_on`, attach its restored volumes to that machine).

    `snapshots` are in the target region (a copy's replicas when restoring a copy); every
    resource made for it carries the tag `quiesce:restore=<label>`, so `Restorer.cleanup`
    finds it; `region` None: the original machine's."""

    point: str
    member: str
    machine_id: str
    snapshots: tuple[SnapshotRef, ...]
    label: str
    site: RestoreSite
    spec: MemberBase
    region: str | None = None


@dataclass
class RestoredMachine:
    """What a machine's restore made: `machine` is the copy (or the inspection machine) as the
    provider's hook runner addresses it, `created` every resource id made for it, `mounts` each
    original volume's place on it (device, mount point or drive)."""

    member: str
    source: str
    machine: Machine
    created: list[str] = field(default_factory=list)
    mounts: dict[str, str] = field(default_factory=dict)


@dataclass
class Cleanup:
    """What a cleanup deleted, and what it could not (each with the reason)."""

    deleted: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


class Restorer(ABC):
    """Brings machines back from a recovery point in their cloud, and removes what it made."""

    @abstractmethod
    def launch(self, request: MachineRestore) -> RestoredMachine:
        """Creates the volumes and the copy (or attaches them to the inspection machine);
        returns once the cloud accepted them. A failure part-way leaves what was made tagged,
        for `cleanup`."""

    @abstractmethod
    def wait_ready(self, restored: RestoredMachine, timeout: float) -> None:
        """Waits until the copy runs and its hook channel answers; ProviderError otherwise."""

    @abstractmethod
    def cleanup(self, label: str, regions: Sequence[str | None]) -> Cleanup:
        """Deletes everything tagged `quiesce:restore=<label>` in the regions (None: the
        provider's default region), copies before volumes; never anything else."""


class Inventory(ABC):
    """Finds the machines a member stands for."""

    @abstractmethod
    def resolve(self, member: Member) -> list[Machine]:
        """Returns the member's machines; raises ProviderError when it cannot."""


class HookRunner(ABC):
    """Runs hooks on machines through the provider's channel (local process, SSM, Run Command)."""

    @abstractmethod
    def run(self, call: HookCall) -> HookResult:
        """Runs one hook and returns its result; hook failures are results, not exceptions."""

    @abstractmethod
    def check(self, call: HookCall) -> HookResult:
        """Runs the security checks only (for `quiesce plan`); never executes the script."""

    def run_many(self, calls: Sequence[HookCall]) -> list[HookResult | BaseException]:
        """Runs the calls concurrently; a call's exception is its result. Adapters with a batch
        API (SSM) override this; for a runner that keeps this default, the engine calls `run`
        itself, one thread per call (quiesce.engine.lanes)."""
        return fan_out(self.run, calls)


class Snapshotter(ABC):
    """Takes, finds, restores and deletes snapshots. Only Quiesce's own are ever listed."""

    @abstractmethod
    def take(self, call: SnapshotCall) -> list[SnapshotRef]:
        """Snapshots all volumes of a machine; returns as soon as the point in time is fixed."""

    def take_many(self, calls: Sequence[SnapshotCall]) -> list[list[SnapshotRef] | BaseException]:
        """Takes every call's snapshots concurrently; returns each call's snapshots, or the
        exception it raised, in order. Adapters with a batch API override this; for a
        snapshotter that keeps this default, the engine calls `take` itself, one thread per
        call (quiesce.engine.lanes)."""
        return fan_out(self.take, calls)

    @abstractmethod
    def wait_durable(self, snapshots: Sequence[SnapshotRef], timeout: float) -> list[SnapshotRef]:
        """Waits until the snapshots are durable; returns them updated (state, durable_at)."""

    @abstractmethod
    def delete(self, snapshot: SnapshotRef) -> None:
        """Deletes one snapshot; deleting one that is gone is not an error."""

    @abstractmethod
    def find(self, policy: str, group: str, run_id: str | None = None) -> list[SnapshotRef]:
        """Lists Quiesce-managed snapshots of a group (of one run, when given)."""

    def restore(self, snapshot: SnapshotRef, target: Path) -> Path:
        """Restores one snapshot's data into the folder `target` (absent or empty).

        Providers whose snapshots cannot be restored into a local folder say so."""
        raise ProviderError(
            f"the {snapshot.provider} provider cannot restore snapshot {snapshot.id} into a folder",
            code="RestoreUnsupported",
        )

    def plan_cloud_restore(self, request: CloudRestore) -> RestoreStep:
        """The cloud call that restores `request.snapshot` as a new resource (no side effects).

        Providers that cannot restore in their cloud say so."""
        raise ProviderError(
            f"the {request.snapshot.provider} provider cannot restore {request.snapshot.id} in "
            "its cloud",
            code="RestoreUnsupported",
        )

    def cloud_restore(self, request: CloudRestore) -> RestoreStep:
        """Makes the call `plan_cloud_restore` describes; returns the step with `created` set.
        Starting the restore is enough: it returns once the service accepted it."""
        raise ProviderError(
            f"the {request.snapshot.provider} provider cannot restore {request.snapshot.id} in "
            "its cloud",
            code="RestoreUnsupported",
        )

    def copy_to_region(
        self, snapshot: SnapshotRef, region: str, key: str | None, tags: dict[str, str]
    ) -> SnapshotRef:
        """Starts a copy of a completed snapshot in another region (encrypted with `key`, or
        the region's default), tagged with `tags`; returns the replica (pending) at once.
        `wait_durable` and `delete` take replicas like any snapshot."""
        raise ProviderError(
            f"the {snapshot.provider} provider cannot copy snapshots to another region",
            code="CopyUnsupported",
        )

    def point_method(self, spec: MemberBase) -> PointMethod:
        """How this member's point in time is fixed (default: a snapshot when accepted)."""
        return PointMethod()

    def describe(self, machine: Machine) -> dict[str, str]:
        """How each volume would be snapshotted (for `quiesce plan`); no side effects."""
        return {volume: "snapshot" for volume in machine.volumes}


class EventPublisher(ABC):
    """Publishes CloudEvents to the provider's bus."""

    @abstractmethod
    def publish(self, events: Sequence[CloudEvent]) -> list[str]:
        """Publishes a batch; returns the ids of the events that were NOT accepted."""


@dataclass(frozen=True)
class LockHolder:
    run_id: str
    expires_at: datetime


class StateStore(ABC):
    """The catalog: run records, recovery points, group locks, trigger ids and the outbox."""

    @abstractmethod
    def save_run(self, record: RunRecord) -> None: ...

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord | None: ...

    @abstractmethod
    def list_runs(self, policy: str, group: str | None = None) -> list[RunRecord]:
        """Newest first."""

    @abstractmethod
    def acquire_lock(self, key: str, run_id: str, expires_at: datetime) -> LockHolder | None:
        """Takes the lock, or renews it for the same run. Returns the holder when it is busy.

        A lock whose expiry has passed is free.
        """

    @abstractmethod
    def release_lock(self, key: str, run_id: str) -> None:
        """Releases the lock if `run_id` holds it."""

    @abstractmethod
    def claim_trigger(self, trigger_id: str, run_id: str) -> str | None:
        """Records that `trigger_id` started `run_id`; returns the earlier run id if another run
        claimed it (claiming again for the same run, a retried call, returns None)."""

    @abstractmethod
    def trigger_owner(self, trigger_id: str) -> str | None:
        """The run that claimed `trigger_id`, or None (a plain read: nothing is claimed)."""

    @abstractmethod
    def claim_cooldown(self, key: str, now: datetime, cooldown_seconds: float) -> bool:
        """Atomically: if `key` last fired at least `cooldown_seconds` before `now` (or never),
        records `now` and returns True; otherwise returns False and records nothing."""

    @abstractmethod
    def fired_at(self, key: str) -> datetime | None:
        """When `key` last fired through `claim_cooldown` (None: never). A plain read: the
        router looks before it starts a run, and the run claims the cooldown atomically only
        when it starts its quiesce."""

    @abstractmethod
    def save_point(self, point: RecoveryPoint) -> None: ...

    @abstractmethod
    def get_point(self, point_id: str) -> RecoveryPoint | None: ...

    @abstractmethod
    def list_points(self, policy: str, group: str | None = None) -> list[RecoveryPoint]:
        """Newest first."""

    @abstractmethod
    def delete_point(self, point_id: str) -> None: ...

    def record_point(self, point: RecoveryPoint, record: RunRecord) -> None:
        """Lists `point` and saves the run's record that names it.

        Stores that can write both in one transaction override this. The default writes the
        point first: a crash in between leaves the point listed (its snapshots are complete by
        then) and the run's record still open; whoever closes the run keeps the snapshots of a
        point the catalog lists (see the engine's `finish`), so a listed point stays restorable.
        """
        self.save_point(point)
        self.save_run(record)

    def claim_close(self, run_id: str, attempt: int, closer: str) -> bool:
        """Claims the right to close an abandoned run: exactly one caller per (run, attempt)
        wins. `attempt` is how many closers the record names already, so a closer that dies
        half-way lets the next one claim the following attempt.

        The default uses `claim_trigger`, which every store makes atomic."""
        return self.claim_trigger(f"quiesce:close:{run_id}:{attempt}", closer) is None

    @abstractmethod
    def outbox_add(self, events: Sequence[CloudEvent]) -> None:
        """Stores events to publish; adding an event id twice keeps one."""

    @abstractmethod
    def outbox_pending(self, limit: int = 500) -> list[CloudEvent]:
        """Oldest first."""

    @abstractmethod
    def outbox_remove(self, event_ids: Sequence[str]) -> None: ...


@dataclass(frozen=True)
class Provider:
    """What one provider brings: inventory, hooks and snapshots."""

    inventory: Inventory
    hooks: HookRunner
    snapshots: Snapshotter
    #: Restores machines in the provider's cloud (group restores and drills); None: it cannot.
    restorer: Restorer | None = None


@dataclass(frozen=True)
class Backends:
    """Everything the engine talks to."""

    providers: dict[str, Provider]
    state: StateStore
    bus: EventPublisher
