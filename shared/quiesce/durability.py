"""Waiting for snapshots to become durable, written once for every provider.

A provider says what it learned about some pending snapshots (`check`); this loop asks again
until none is pending or the time is up, never sleeping past the deadline.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from quiesce.record import SnapshotRef, SnapshotState, utcnow

#: Given the pending snapshots, their new states (COMPLETED, FAILED) where known; snapshots left
#: out stay pending.
Check = Callable[[Sequence[SnapshotRef]], dict[str, SnapshotState]]


def poll_durable(
    snapshots: Sequence[SnapshotRef],
    timeout: float,
    check: Check,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    interval: float,
) -> list[SnapshotRef]:
    """Returns the snapshots updated: completed ones with `durable_at`, failed ones failed, and
    the ones still pending when `timeout` passed unchanged."""
    deadline = clock() + timeout
    current = {s.id: s for s in snapshots}
    while True:
        pending = [s for s in current.values() if s.state is SnapshotState.PENDING]
        if not pending:
            break
        for snapshot_id, state in check(pending).items():
            if state is SnapshotState.COMPLETED:
                update = {"state": state, "durable_at": utcnow()}
                current[snapshot_id] = current[snapshot_id].model_copy(update=update)
            elif state is SnapshotState.FAILED:
                current[snapshot_id] = current[snapshot_id].model_copy(update={"state": state})
        if all(s.state is not SnapshotState.PENDING for s in current.values()):
            break
        remaining = deadline - clock()
        if remaining <= 0:
            break
        sleep(min(interval, remaining))
    return [current[s.id] for s in snapshots]


class PollsDurability(ABC):
    """`Snapshotter.wait_durable` for providers that poll: they only say, in `states`, what
    they learned about some pending snapshots (mix in before `Snapshotter`)."""

    clock: Callable[[], float]
    sleep: Callable[[float], None]
    poll_interval: float

    def wait_durable(self, snapshots: Sequence[SnapshotRef], timeout: float) -> list[SnapshotRef]:
        return poll_durable(
            snapshots,
            timeout,
            self.states,
            clock=self.clock,
            sleep=self.sleep,
            interval=self.poll_interval,
        )

    @abstractmethod
    def states(self, pending: Sequence[SnapshotRef]) -> dict[str, SnapshotState]:
        """The new states (COMPLETED, FAILED) of the pending snapshots where known."""
