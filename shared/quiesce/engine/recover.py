"""Closes runs whose orchestrator died: thaw what is owed, clean up, record and announce."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import datetime

from quiesce.engine.context import RunContext
from quiesce.engine.finish import finish, flush_outbox
from quiesce.engine.phases import thaw
from quiesce.policy.model import Group, Policy
from quiesce.ports import Backends
from quiesce.record import Phase, RunRecord, RunStatus, utcnow


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_abandoned(
    record: RunRecord,
    now: datetime,
    *,
    host: str,
    alive: Callable[[int], bool] = pid_alive,
) -> bool:
    """A running record is abandoned when its orchestrator process is gone (same host) or its
    group lock has expired (any host)."""
    if record.status is not RunStatus.RUNNING:
        return False
    if record.orchestrator.host == host:
        if record.orchestrator.pid == os.getpid():
            return False
        if not alive(record.orchestrator.pid):
            return True
    return record.lock_expires_at is not None and record.lock_expires_at < now


def find_abandoned(
    policy: Policy,
    backends: Backends,
    *,
    group: str | None = None,
    now: Callable[[], datetime] = utcnow,
) -> list[RunRecord]:
    host = socket.gethostname()
    moment = now()
    return [
        r
        for r in backends.state.list_runs(policy.name, group)
        if is_abandoned(r, moment, host=host)
    ]


def recover_run(
    policy: Policy,
    record: RunRecord,
    backends: Backends,
    *,
    now: Callable[[], datetime] = utcnow,
) -> RunRecord:
    """Thaws every machine still owed a thaw (the guest runner answers with the watchdog's
    result when it already thawed), deletes the run's snapshots unless its recovery point was
    recorded, and finishes the run as abandoned."""
    died_in = record.phase
    group = policy.groups.get(record.group) or Group.model_construct(
        members=[], max_freeze_seconds=record.max_freeze_seconds
    )
    ctx = RunContext(policy=policy, group=group, backends=backends, record=record, now=now)
    record.abandoned = True
    record.errors.append(
        f"the orchestrator ({record.orchestrator.host}, pid {record.orchestrator.pid}) stopped "
        f"during {died_in.value}; closed by `quiesce recover` on {socket.gethostname()}"
    )
    thaw(ctx, announce_freeze=False)
    if (
        record.recovery_point is not None
        and backends.state.get_point(record.recovery_point) is None
    ):
        record.recovery_point = None
    reached = died_in not in (Phase.STARTED, Phase.RESOLVED, Phase.LOCKED)
    finish(ctx, reached_snapshots=reached)
    return record


def recover_abandoned(
    policy: Policy,
    backends: Backends,
    *,
    group: str | None = None,
    now: Callable[[], datetime] = utcnow,
) -> list[RunRecord]:
    """Recovers every abandoned run of the policy (or one group) and retries the outbox."""
    recovered = [
        recover_run(policy, r, backends, now=now)
        for r in find_abandoned(policy, backends, group=group, now=now)
    ]
    flush_outbox(backends.state, backends.bus)
    return recovered
