"""What the API-call benchmarks of the three clouds (calls_aws.py, calls_azure.py, calls_gcp.py)
share: the group they back up, and the row each returns to bench/api_calls.py."""

from __future__ import annotations

from typing import Any

#: The hooks of the benchmarks' member (scripts on the VMs, or answered by the fake's agent).
HOOKS: dict[str, Any] = {
    "pre": {"run": ["/etc/quiesce/hooks/pause.sh"]},
    "post": {"run": ["/etc/quiesce/hooks/resume.sh"]},
}


def group_policy(member: dict[str, Any]) -> Any:
    """Policy `shop` with one application-consistent group, `orders`, of this one member
    (60 seconds to freeze in, 60 for the snapshots to become durable)."""
    from quiesce.policy.model import Policy

    return Policy.model_validate(
        {
            "version": 1,
            "name": "shop",
            "groups": {
                "orders": {
                    "consistency": "application",
                    "max_freeze_seconds": 60,
                    "durability_timeout_seconds": 60,
                    "members": [member],
                }
            },
        }
    )


def calls_row(
    cloud: str,
    size: int,
    calls: dict[str, int],
    bound: dict[str, int],
    note: str,
    *,
    per_vm: bool = True,
) -> dict[str, Any]:
    """One cloud's row: its requests and their floor (`lower_bound`), in all and by operation,
    with the floor's note; with `per_vm`, both per VM of the group of `size`."""
    row: dict[str, Any] = {
        "cloud": cloud,
        "size": size,
        "calls": sum(calls.values()),
        "by_operation": calls,
        "lower_bound": sum(bound.values()),
        "lower_bound_by_operation": bound,
        "lower_bound_note": note,
    }
    if per_vm:
        row["per_vm"] = round(sum(calls.values()) / size, 2)
        row["floor_per_vm"] = round(sum(bound.values()) / size, 2)
    return row
