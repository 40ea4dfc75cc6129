"""`quiesce demo`: proves application consistency on a real workload.

A small sample application commits transactions to a SQLite database on one volume and to a
journal on another. The demo backs the two volumes up twice under load, crash-consistently and
application-consistently, restores both copies and checks which one would restart clean.

``run_demo`` runs it and returns a ``DemoReport``; ``render_report`` prints it. The names are
loaded on first use, so that the hooks' small helpers (``quiesce.demo.control``,
``quiesce.demo.verify``) start without loading the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quiesce.demo.report import render_report
    from quiesce.demo.scenario import DemoError, DemoReport, DemoRow, run_demo

__all__ = ["DemoError", "DemoReport", "DemoRow", "render_report", "run_demo"]


def __getattr__(name: str) -> Any:
    if name == "render_report":
        from quiesce.demo import report

        return report.render_report
    if name in ("DemoError", "DemoReport", "DemoRow", "run_demo"):
        from quiesce.demo import scenario

        return getattr(scenario, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
