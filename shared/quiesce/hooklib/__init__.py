"""Quiesce's hook library: `quiesce_hooks.py`, one stdlib-only file of tested pre, post and
verify hooks (fsfreeze, PostgreSQL), installed on machines next to the guest hook runner and
declared in their allowlists like any other hook (docs/databases.md)."""

from __future__ import annotations

from pathlib import Path

LIBRARY_PATH: Path = Path(__file__).resolve().with_name("quiesce_hooks.py")

__all__ = ["LIBRARY_PATH"]
