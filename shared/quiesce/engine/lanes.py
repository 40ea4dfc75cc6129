"""Starting a thousand blocking calls at once: parked threads ("lanes") woken together.

Each call of the freeze (a hook or a snapshot on one machine) blocks on I/O, so each needs a
thread; what costs is starting them: every thread has to take the interpreter lock in turn
before its call blocks. A lane is a thread parked on its own lock, with nothing to build per
call (no future, no work item, no queue). The thread that starts a wave releases every lane's
lock in one loop, so all of them wait for the interpreter lock before the first call's
completion does, and take it one after the other. (Waking them as a chain, each lane waking the
next before its own call, pays one scheduling delay per call in series: on a loaded machine
that doubled the time to start a thousand calls, measured with bench/freeze_window.py.)

The lane that ends a wave's last call runs what comes next (`then`: the next phase's wave), so
no phase waits for the main thread to notice that the previous one ended; the wave reports
itself finished only once that next wave is launched, so the main thread does not take the
interpreter from the lanes while they start it.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

R = TypeVar("R")

#: At most this many lanes start one wave's calls; more calls queue on them.
MAX_LANES = 4096


@dataclass(frozen=True, slots=True)
class Call(Generic[R]):
    """One call: `fn(arg)` is the result of slot `index`."""

    fn: Callable[[Any], R]
    arg: Any
    index: int


@dataclass(frozen=True, slots=True)
class Batch(Generic[R]):
    """One batch: `fn(arg)` returns one result (or exception) per slot of `indexes`, in order
    (a provider's `run_many` or `take_many`)."""

    fn: Callable[[Any], Sequence[R | BaseException]]
    arg: Any
    indexes: tuple[int, ...]


Unit = Call[R] | Batch[R]


class Wave(Generic[R]):
    """One phase's calls, started on lanes; each slot ends with a result or an exception.

    `then(wave)` runs in the lane that ends the last call and may start (and return) the next
    wave. `wait` returns once every call ended and that next wave (if any) is launched.
    """

    def __init__(
        self,
        size: int,
        units: Sequence[Unit[R]],
        then: Callable[[Wave[R]], Wave[Any] | None] | None = None,
    ) -> None:
        self.results: list[R | BaseException | None] = [None] * size
        self.ended: list[bool] = [False] * size
        self.then_error: BaseException | None = None
        self._units = list(units)
        self._then = then
        self._counter = itertools.count(1)  # next() is atomic: calls ended
        self._started = itertools.count(1)  # lanes started
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self._launched = False
        self._on_launch: list[Callable[[], object]] = []
        self._lanes: list[_Lane] = []

    # -- the caller's side

    def start(self) -> Wave[R]:
        """Wakes the wave's lanes. Raises (before any call starts) when no thread can start."""
        if not self._units:
            self._launch()
            self._finish()
            return self
        lanes = self._lanes = _pool.take(min(len(self._units), MAX_LANES))
        for pos, lane in enumerate(lanes):
            lane.wake(self, pos)
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Whether every call ended (and the next wave, if any, launched) within `timeout`."""
        return self._finished.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def pending(self) -> int:
        """How many calls have not ended."""
        return self.ended.count(False)

    def when_launched(self, callback: Callable[[], object]) -> None:
        """Calls `callback` once every lane of this wave has started (now, if they have)."""
        with self._lock:
            if not self._launched:
                self._on_launch.append(callback)
                return
        callback()

    # -- the lanes' side

    def _run(self, lane: _Lane, pos: int) -> None:
        lanes = self._lanes
        if next(self._started) == len(lanes):
            self._launch()  # every lane has started: every call is out (one per lane)
        units, results, ended = self._units, self.results, self.ended
        total = len(units)
        last = False
        for k in range(pos, total, len(lanes)):
            unit = units[k]
            if isinstance(unit, Call):
                try:
                    results[unit.index] = unit.fn(unit.arg)
                except BaseException as exc:  # a lane never dies: the error is the result
                    results[unit.index] = exc
                ended[unit.index] = True
            else:
                self._run_batch(unit)
            last = next(self._counter) == total
        _pool.give(lane)
        if last:
            self._finish()

    def _run_batch(self, unit: Batch[R]) -> None:
        out: list[R | BaseException]
        try:
            out = list(unit.fn(unit.arg))
            if len(out) != len(unit.indexes):
                raise RuntimeError(
                    f"a batch of {len(unit.indexes)} call(s) returned {len(out)} result(s)"
                )
        except BaseException as exc:
            out = [exc] * len(unit.indexes)
        for i, result in zip(unit.indexes, out, strict=True):
            self.results[i] = result
            self.ended[i] = True

    def _launch(self) -> None:
        with self._lock:
            self._launched = True
            callbacks, self._on_launch = self._on_launch, []
        for callback in callbacks:
            callback()

    def _finish(self) -> None:
        following: Wave[Any] | None = None
        if self._then is not None:
            try:
                following = self._then(self)
            except BaseException as exc:  # whoever waits for this wave starts the next itself
                self.then_error = exc
        if following is None:
            self._finished.set()
        else:
            following.when_launched(self._finished.set)


class _Lane:
    """A thread parked on its own lock until a wave wakes it."""

    __slots__ = ("_gate", "_pos", "_wave")

    _names = itertools.count()

    def __init__(self) -> None:
        self._gate = threading.Lock()
        self._gate.acquire()
        self._wave: Wave[Any] | None = None
        self._pos = 0
        # A daemon: the engine's own waits (freeze deadline, durability timeout, post grace)
        # decide how long a call is waited for; a call still running past them does not keep
        # the process alive.
        threading.Thread(
            target=self._loop, name=f"quiesce-lane-{next(self._names)}", daemon=True
        ).start()

    def wake(self, wave: Wave[Any], pos: int) -> None:
        self._wave = wave
        self._pos = pos
        self._gate.release()

    def _loop(self) -> None:
        while True:
            self._gate.acquire()
            wave, self._wave = self._wave, None
            if wave is not None:
                wave._run(self, self._pos)


class _Pool:
    """The process's idle lanes; shared by every run in it (and by concurrent ones).

    A lane gives itself back without a lock (`deque.append` is atomic): a thousand lanes end
    their calls within milliseconds of each other, and a lock there would make them queue for
    it, each waiting one more turn of the interpreter lock."""

    def __init__(self) -> None:
        self._idle: deque[_Lane] = deque()

    def take(self, count: int) -> list[_Lane]:
        got: list[_Lane] = []
        pop = self._idle.pop
        while len(got) < count:
            try:
                got.append(pop())
            except IndexError:  # no idle lane left: start the rest
                got.extend(_Lane() for _ in range(count - len(got)))
        return got

    def give(self, lane: _Lane) -> None:
        self._idle.append(lane)

    def idle(self) -> int:
        return len(self._idle)

    def prewarm(self, count: int) -> None:
        missing = min(count, MAX_LANES) - len(self._idle)
        if missing > 0:
            self._idle.extend(_Lane() for _ in range(missing))


_pool = _Pool()


def prewarm_lanes(count: int) -> None:
    """Makes sure `count` idle lanes exist, so no thread is created inside a freeze window."""
    _pool.prewarm(count)


def idle_lanes() -> int:
    return _pool.idle()
