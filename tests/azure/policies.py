"""The policy the Azure end-to-end tests run: `shop`, whose group `orders` holds VMs of the fake
ARM server's resource group (each VM `<member>-1`, its hooks scripts named for the member)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .fake_arm import RG, SUB


def vm_member(name: str, *, snapshot: str | None = None, verify: bool = False) -> dict[str, Any]:
    """An `azure` member for the VM `<name>-1`, with pre and post hooks (and a verify hook)."""
    hooks = {
        "pre": {"run": [f"/etc/quiesce/{name}-pause.sh"], "timeout_seconds": 5},
        "post": {"run": [f"/etc/quiesce/{name}-resume.sh"], "timeout_seconds": 5},
    }
    if verify:
        hooks["verify"] = {"run": [f"/etc/quiesce/{name}-check.sh"], "timeout_seconds": 5}
    member: dict[str, Any] = {
        "name": name,
        "provider": "azure",
        "subscription": SUB,
        "resource_group": RG,
        "select": {"vm_names": [f"{name}-1"]},
        "hooks": hooks,
    }
    if snapshot is not None:
        member["snapshot"] = snapshot
    return member


def shop(
    members: Sequence[dict[str, Any]],
    *,
    triggers: Sequence[dict[str, Any]] = (),
    **group: Any,
) -> dict[str, Any]:
    """The `shop` policy document: the group `orders` (application-consistent, a 30 s freeze
    and a 60 s durability timeout unless `group` says otherwise) and its triggers."""
    document: dict[str, Any] = {
        "version": 1,
        "name": "shop",
        "groups": {
            "orders": {
                "consistency": "application",
                "max_freeze_seconds": 30,
                "durability_timeout_seconds": 60,
                **group,
                "members": list(members),
            }
        },
    }
    if triggers:
        document["triggers"] = list(triggers)
    return document
