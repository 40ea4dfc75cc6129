"""Quiesce's hook library: `quiesce_hooks.py`, one stdlib-only file of tested pre, post and
verify hooks (fsfreeze, PostgreSQL), installed on machines next to the guest hook runner and
declared in their allowlists like any other hook (docs/databases.md)."""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path
from typing import Any

from quiesce.errors import QuiesceError

LIBRARY_PATH: Path = Path(__file__).resolve().with_name("quiesce_hooks.py")

__all__ = ["LIBRARY_PATH", "catalog", "install"]


def catalog() -> dict[str, dict[str, Any]]:
    """The library's workloads: a summary and each phase's argv (after the library's path)."""
    spec = importlib.util.spec_from_file_location("quiesce_hooks", LIBRARY_PATH)
    if spec is None or spec.loader is None:
        raise QuiesceError(f"the hook library {LIBRARY_PATH} cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entries: dict[str, dict[str, Any]] = module.CATALOG
    return entries


def install(source: Path, folder: Path) -> Path:
    """Copies `source` into `folder` (created 0755) as an executable only its owner can
    change, atomically; refuses a folder others can write."""
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    st = folder.stat()
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or st.st_uid not in (0, os.geteuid()):
        raise QuiesceError(
            f"{folder} is writable by others or not yours: hooks run as root from there; fix it "
            f"with: chown root:root {folder} && chmod 755 {folder}"
        )
    target = folder / source.name
    tmp = folder / f".{source.name}.{os.getpid()}.tmp"
    tmp.write_bytes(source.read_bytes())
    tmp.chmod(0o755)
    os.replace(tmp, target)
    return target
