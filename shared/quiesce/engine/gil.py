"""Keeps the freeze's threads on the interpreter: a long switch interval and no cyclic garbage
collection while a group is held.

Every member's hook or snapshot call runs on its own thread (see quiesce.engine.lanes).
CPython hands the interpreter lock to a waiting thread every `sys.getswitchinterval()` seconds
(5 ms by default), so while a thousand calls start, the threads already started keep taking the
lock from the one starting the next, and the last call starts long after the first: that spread
is added to the freeze window three times (quiesce, snapshot, thaw). The calls block on I/O
almost at once, so a longer interval costs them nothing. Measured with bench/freeze_window.py
at 1,000 members on a loaded 2-core machine: 0.9-3.7 s freeze window at 5 ms, 0.41-0.51 s at
50 ms.

A run of a thousand members allocates enough (results, records, events) for the cyclic garbage
collector to run a full collection every few hundred milliseconds, and a full collection stops
every thread for 80-140 ms at that size: inside the freeze window, that is the application held
for nothing. The collector is paused while a group is held and resumes (as it was) after the
thaw; nothing in the freeze depends on it (reference counting still frees what it can).
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

DISPATCH_SWITCH_INTERVAL = 0.05

_lock = threading.Lock()
_depth = 0
_saved = sys.getswitchinterval()
_gc_was_enabled = False


@contextmanager
def dispatch_priority() -> Iterator[None]:
    """Raises the switch interval and pauses the cyclic garbage collector for the duration
    (nested and concurrent runs share both; the last one out restores them)."""
    global _depth, _saved, _gc_was_enabled
    with _lock:
        if _depth == 0:
            _saved = sys.getswitchinterval()
            sys.setswitchinterval(max(_saved, DISPATCH_SWITCH_INTERVAL))
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                sys.setswitchinterval(_saved)
                if _gc_was_enabled:
                    gc.enable()
