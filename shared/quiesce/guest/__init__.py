"""The guest hook runner: one stdlib-only file that runs hooks as root on every machine.

`quiesce_guest.py` is copied as-is onto machines (and run in place for `local` members), so it
never imports `quiesce`. Callers execute it as `sys.executable RUNNER_PATH run --request JSON`.
"""

from __future__ import annotations

from pathlib import Path

RUNNER_PATH: Path = Path(__file__).resolve().with_name("quiesce_guest.py")

__all__ = ["RUNNER_PATH"]
