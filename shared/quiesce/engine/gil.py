"""Keeps the dispatching thread on the interpreter while it starts a group's calls.

Every member's hook or snapshot call runs in its own thread. CPython hands the interpreter
lock to a waiting thread every `sys.getswitchinterval()` seconds (5 ms by default), so while
the engine starts a thousand calls, the threads it already started keep taking the lock from
it, and the last call starts long after the first: that spread is added to the freeze window
three times (quiesce, snapshot, thaw). The calls themselves block on I/O almost at once, so a
longer interval costs them nothing. Measured with bench/freeze_window.py at 1,000 members on a
loaded 2-core machine: 0.9-3.7 s freeze window at 5 ms, 0.41-0.51 s at 50 ms.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

DISPATCH_SWITCH_INTERVAL = 0.05

_lock = threading.Lock()
_depth = 0
_saved = sys.getswitchinterval()


@contextmanager
def dispatch_priority() -> Iterator[None]:
    """Raises the switch interval for the duration (nested and concurrent runs share it)."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = sys.getswitchinterval()
            sys.setswitchinterval(max(_saved, DISPATCH_SWITCH_INTERVAL))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                sys.setswitchinterval(_saved)
