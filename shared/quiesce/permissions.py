"""Permissions declared next to the code that needs them.

Every cloud adapter class has `PERMISSIONS`: per operation, the IAM / RBAC permissions it uses
(each cloud defines what one permission looks like). Collecting them here lets each cloud's
least-privilege role be generated and tested against the code instead of being kept by hand.
"""

from __future__ import annotations

from typing import Any


def declared(*classes: type) -> dict[str, list[Any]]:
    """Every declared permission of the given adapter classes, by "Class.operation"."""
    out: dict[str, list[Any]] = {}
    for cls in classes:
        for operation, perms in getattr(cls, "PERMISSIONS", {}).items():
            out[f"{cls.__name__}.{operation}"] = list(perms)
    return out
