"""Reads a policy's YAML text into plain data, refusing what a policy never needs.

YAML 1.2 booleans only (true/false), no anchors or aliases (an alias "bomb" of a few hundred
bytes otherwise expands to gigabytes), bounded nesting, number of values and integer length;
every refusal names the line. Imported only for YAML text: a JSON policy is read without a YAML
parser (quiesce.policy.loader).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from quiesce.errors import PolicyError
from quiesce.policy.limits import MAX_DEPTH, MAX_INT_DIGITS, MAX_NODES

Loc = tuple[str | int, ...]


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


def read_yaml(text: str, path: str) -> tuple[Any, dict[Loc, int]]:
    """The document's data, and the line of each field path in it."""
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
    return data, (_line_index(node) if node is not None else {})
