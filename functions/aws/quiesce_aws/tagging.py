"""AWS tags in the two shapes the adapters meet them, and the tags a `find` selects on.

EC2 and RDS take and give tags as lists of `{"Key": ..., "Value": ...}`; the adapters work
with plain `{key: value}` dicts and convert at the call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quiesce.tags import MANAGED_TAG, RUN_TAG


def tag_dict(items: Any) -> dict[str, str]:
    """`{key: value}` of a described resource's tag list (None: no tags)."""
    return {str(t.get("Key")): str(t.get("Value", "")) for t in items or []}


def tag_list(tags: Mapping[str, str]) -> list[Any]:
    """The `[{"Key": ..., "Value": ...}]` a create or tag call takes."""
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def own_tags(policy: str, group: str, run_id: str | None = None) -> dict[str, str]:
    """The tags a `find` selects on: Quiesce's own (quiesce:managed=true), of `policy` and
    `group`, and of one run when `run_id` is given."""
    wanted = {MANAGED_TAG: "true", "quiesce:policy": policy, "quiesce:group": group}
    if run_id is not None:
        wanted[RUN_TAG] = run_id
    return wanted
