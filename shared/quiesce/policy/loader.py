"""Reads a policy file and turns every problem into one line naming file, field and line.

A policy is YAML, or JSON when its name ends in `.json` (read with the standard library: the
functions' packages bundle their policy as JSON and carry no YAML parser). A policy is small and
plain: the reader refuses, before building anything, a file larger than MAX_POLICY_BYTES, YAML
anchors and aliases (an alias "bomb" of a few hundred bytes otherwise expands to gigabytes),
repeated keys in JSON, nesting deeper than MAX_DEPTH, more than MAX_NODES values and integers
longer than MAX_INT_DIGITS digits, each with an error naming the file and (where the reader
knows it) the line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from quiesce.errors import PolicyError
from quiesce.policy.limits import MAX_DEPTH, MAX_INT_DIGITS, MAX_NODES, MAX_POLICY_BYTES
from quiesce.policy.model import Policy
from quiesce.providers import registry

Loc = tuple[str | int, ...]

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_NODES",
    "MAX_POLICY_BYTES",
    "is_json",
    "load_policy",
    "parse_policy",
    "read_json",
]


class _Refused(ValueError):
    """JSON text refused before it is built."""


def _json_int(text: str) -> int:
    digits = sum(ch.isdigit() for ch in text)
    if digits > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {digits} digits is not a value a policy can hold")
    return int(text)


def _json_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a value a policy can hold")


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"the key {key!r} is given twice in one object")
        out[key] = value
    return out


def _check_shape(data: Any) -> None:
    """Bounded nesting and number of values, as for YAML."""
    nodes = 0
    todo: list[tuple[Any, int]] = [(data, 1)]
    while todo:
        value, depth = todo.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise _Refused(f"has more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise _Refused(f"is nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            todo.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            todo.extend((item, depth + 1) for item in value)


def is_json(path: str) -> bool:
    """Whether a policy named `path` is read as JSON (its name ends in .json)."""
    return path.lower().endswith(".json")


def read_json(text: str, path: str) -> Any:
    """A JSON policy's data, within the same bounds as a YAML one."""
    try:
        data = json.loads(
            text,
            parse_int=_json_int,
            parse_constant=_json_constant,
            object_pairs_hook=_json_object,
        )
        _check_shape(data)
    except _Refused as exc:
        raise PolicyError(path, [f"{path}: refused: {exc}"]) from None
    except json.JSONDecodeError as exc:
        raise PolicyError(path, [f"{path}: line {exc.lineno}: not valid JSON: {exc.msg}"]) from None
    except (RecursionError, ValueError) as exc:  # defence in depth: never a traceback
        raise PolicyError(path, [f"{path}: not a usable policy: {exc}"]) from None
    return data


def _format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _nearest_line(index: dict[Loc, int], loc: Loc) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in index:
            return index[loc[:end]]
    return None


def _clean_loc(loc: tuple[Any, ...], data: Any) -> Loc:
    """The location as it stands in the file: pydantic also inserts the tags of tagged unions
    (e.g. the member's provider), which are not keys of the document."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part not in node:
            if node.get("provider") == part:
                continue  # a discriminator tag
            out.append(part)  # a missing or unknown key: name it, stop walking
            node = None
            continue
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field (check its spelling; unknown fields are not allowed)"
    if kind == "union_tag_invalid":
        return registry.unknown_message(err.get("ctx", {}).get("tag"))
    if kind == "union_tag_not_found":
        return f"a member needs a provider (one of: {', '.join(registry.names())})"
    return str(err["msg"]).removeprefix("Value error, ")


def parse_policy(text: str, *, path: str = "<policy>", base_dir: Path | None = None) -> Policy:
    """Parses and validates policy text (JSON when `path` ends in .json, YAML otherwise).
    Raises PolicyError with every problem found."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_POLICY_BYTES:
        raise PolicyError(
            path,
            [f"{path}: the policy is {size} bytes, more than {MAX_POLICY_BYTES} (512 KiB); a "
             "policy file is small: split it, or check that this is the right file"],
        )  # fmt: skip
    index: dict[Loc, int] = {}
    if is_json(path):
        data = read_json(text, path)
    else:
        from quiesce.policy.yaml_reader import read_yaml

        data, index = read_yaml(text, path)
    if not isinstance(data, dict):
        kind = "JSON object" if is_json(path) else "YAML mapping"
        raise PolicyError(path, [f"{path}: a policy is a {kind} with version, name, groups"])
    context = {"base_dir": str(base_dir)} if base_dir is not None else None
    try:
        return Policy.model_validate(data, context=context)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = _clean_loc(err["loc"], data)
            named = re.match(r"^Value error, triggers\[(\d+)\]", str(err["msg"]))
            if not loc and named:
                loc = ("triggers", int(named.group(1)))
            line = _nearest_line(index, loc)
            where = f"line {line}: " if line is not None else ""
            message = _message(err)
            problems.append(f"{path}: {where}{_format_loc(loc)}: {message}")
        raise PolicyError(path, problems) from None


def load_policy(path: str | Path) -> Policy:
    """Reads a policy file; relative paths in it are resolved against its folder."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_POLICY_BYTES + 1)
        if len(raw) > MAX_POLICY_BYTES:
            raise PolicyError(
                str(file),
                [f"{file}: the policy is larger than {MAX_POLICY_BYTES} bytes (512 KiB); a policy "
                 "file is small: split it, or check that this is the right file"],
            )  # fmt: skip
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise PolicyError(str(file), [f"{file}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(str(file), [f"{file}: cannot be read: {exc}"]) from None
    return parse_policy(text, path=str(file), base_dir=file.resolve().parent)
