"""Reading Terraform modules in tests, offline (python-hcl2): no provider is needed."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import hcl2


def unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals; drop them (recursively)."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k != "__is_block__"}
    return value


@cache
def read_module(folder: Path) -> dict[str, Any]:
    """A module's blocks: {"variable": {name: body}, "locals": {...}, "output": {...},
    "resource": {type: {name: body}}, "data": {type: {name: body}}}."""
    merged: dict[str, Any] = {
        "variable": {},
        "locals": {},
        "output": {},
        "resource": {},
        "data": {},
    }
    for path in sorted(folder.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            parsed = unquote(hcl2.load(handle))
        for kind in ("variable", "locals", "output"):
            for block in parsed.get(kind, []):
                merged[kind].update(block)
        for kind in ("resource", "data"):
            for block in parsed.get(kind, []):
                for type_, named in block.items():
                    merged[kind].setdefault(type_, {}).update(named)
    return merged


def only(value: Any) -> Any:
    """A block python-hcl2 gives as a one-element list."""
    if isinstance(value, list):
        (value,) = value
    return value
