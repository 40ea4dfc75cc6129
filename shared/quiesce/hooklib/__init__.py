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

__all__ = ["INSTALLED_PATH", "LIBRARY_PATH", "catalog", "install", "library_hooks"]


def catalog() -> dict[str, dict[str, Any]]:
    """The library's workloads: a summary and each phase's argv (after the library's path)."""
    entries: dict[str, dict[str, Any]] = _library().CATALOG
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


#: Where `quiesce hooks install` puts the library on a machine (the default for cloud members).
INSTALLED_PATH = "/usr/local/lib/quiesce/quiesce_hooks.py"

OptionValue = str | int | float | bool | list[str]


def _library() -> Any:
    spec = importlib.util.spec_from_file_location("quiesce_hooks", LIBRARY_PATH)
    if spec is None or spec.loader is None:
        raise QuiesceError(f"the hook library {LIBRARY_PATH} cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def library_hooks(
    kind: str, options: dict[str, OptionValue], library: list[str]
) -> dict[str, list[str]]:
    """The argv of each phase of a library workload (`hooks: {use: KIND, with: OPTIONS}` in a
    policy), after `library` (how the library is run on the machine), checked against the
    library's own command line; raises ValueError naming the option unknown or missing."""
    module = _library()
    catalog: dict[str, dict[str, Any]] = module.CATALOG
    if kind not in module.COMMAND_LINE:
        known_kinds = ", ".join(module.COMMAND_LINE)
        raise ValueError(f"use: {kind!r} is not in the hook library (known: {known_kinds})")
    known = {flag[2:].replace("-", "_"): flag for flag, _ in module.COMMAND_LINE[kind][2]}
    flags: list[str] = []
    for key, value in options.items():
        flag = known.get(key.replace("-", "_"))
        if flag is None:
            names = ", ".join(sorted(known))
            raise ValueError(f"with.{key} is not an option of the {kind} hooks (options: {names})")
        if isinstance(value, bool):
            if value:
                flags.append(flag)
        elif isinstance(value, list):
            for item in value:
                flags += [flag, str(item)]
        else:
            flags += [flag, str(value)]
    for required in catalog[kind].get("requires", []):
        if required not in {k.replace("-", "_") for k in options}:
            raise ValueError(f"with.{required} is required by the {kind} hooks")
    return {phase: [*library, kind, phase, *flags] for phase in module.COMMAND_LINE[kind][1]}
