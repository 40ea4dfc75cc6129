"""Reads a policy file and turns every problem into one line naming file, field and line.

A policy is small and plain: the reader refuses, before building anything, a file larger than
MAX_POLICY_BYTES, YAML anchors and aliases (an alias "bomb" of a few hundred bytes otherwise
expands to gigabytes), nesting deeper than MAX_DEPTH, more than MAX_NODES values and integers
longer than MAX_INT_DIGITS digits, each with an error naming the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from quiesce.errors import PolicyError
from quiesce.policy.model import Policy
from quiesce.providers import registry

Loc = tuple[str | int, ...]

MAX_POLICY_BYTES = 512 * 1024
MAX_DEPTH = 32
MAX_NODES = 20_000
MAX_INT_DIGITS = 30


class PolicyInputError(yaml.YAMLError):
    """The policy text is refused before it is built; `line` is 1-based when known."""

    def __init__(self, problem: str, mark: Any = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class PolicyLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 also reads on/off/yes/no as booleans,
    which would turn a trigger's `on:` key into `True`. No anchors or aliases, and bounded
    depth, size and integers (see the module's docstring)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise PolicyInputError(
                "YAML anchors and aliases (&name, *name) are not allowed in a policy; write "
                "the values out",
                event.start_mark,
            )
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise PolicyInputError(f"has more than {MAX_NODES} values", event.start_mark)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise PolicyInputError(f"is nested deeper than {MAX_DEPTH} levels", event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: Any) -> int:
        digits = sum(ch.isdigit() for ch in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise PolicyInputError(
                f"an integer of {digits} digits is not a value a policy can hold", node.start_mark
            )
        return int(super().construct_yaml_int(node))


PolicyLoader.add_constructor("tag:yaml.org,2002:int", PolicyLoader.construct_yaml_int)


PolicyLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
PolicyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _line_index(node: yaml.Node, loc: Loc = ()) -> dict[Loc, int]:
    """Maps each field path in a YAML document to its 1-based line."""
    index: dict[Loc, int] = {loc: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*loc, str(key.value))
            index[child] = key.start_mark.line + 1
            for sub, line in _line_index(value, child).items():
                index.setdefault(sub, line)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index.update(_line_index(item, (*loc, i)))
    return index


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
    """Parses and validates policy text. Raises PolicyError with every problem found."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_POLICY_BYTES:
        raise PolicyError(
            path,
            [f"{path}: the policy is {size} bytes, more than {MAX_POLICY_BYTES} (512 KiB); a "
             "policy file is small: split it, or check that this is the right file"],
        )  # fmt: skip
    loader = PolicyLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except PolicyInputError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise PolicyError(path, [f"{path}: {where}refused: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(path, [f"{path}: {where}not valid YAML: {problem}"]) from None
    except (RecursionError, ValueError) as exc:  # defence in depth: never a traceback
        raise PolicyError(path, [f"{path}: not a usable policy: {exc}"]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise PolicyError(path, [f"{path}: a policy is a YAML mapping with version, name, groups"])
    index = _line_index(node) if node is not None else {}
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
