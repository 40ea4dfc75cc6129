"""`quiesce plan`: what a run would do, with every hook's security check. No side effects."""

from __future__ import annotations

from typing import Any

from quiesce.policy.model import Hook, Member, Policy
from quiesce.ports import HookCall, HookPhase, Machine, Provider

PLAN_RUN_ID = "plan"


def _check(
    providers: dict[str, Provider],
    policy: Policy,
    group: str,
    member: Member,
    machine: Machine,
    phase: HookPhase,
) -> dict[str, Any] | None:
    hook: Hook | None = getattr(member.hooks, phase)  # checked only, never executed
    if hook is None:
        return None
    call = HookCall(
        run_id=PLAN_RUN_ID,
        policy=policy.name,
        group=group,
        member=member.name,
        machine=machine,
        phase=phase,
        hook=hook,
        thaw=member.hooks.post if phase == "pre" else None,
        max_freeze_seconds=None,
    )
    try:
        result = providers[member.provider].hooks.check(call)
        check = {"status": result.status.value, "code": result.code, "message": result.message}
    except Exception as exc:
        check = {"status": "failed", "code": "CheckFailed", "message": str(exc)}
    return {
        "run": hook.run,
        "sha256": hook.sha256,
        "timeout_seconds": hook.timeout_seconds,
        "retries": hook.retries,
        "check": check,
    }


def plan_policy(
    policy: Policy, providers: dict[str, Provider], only_group: str | None = None
) -> dict[str, Any]:
    ok = True
    groups = []
    for name, group in policy.groups.items():
        if only_group is not None and name != only_group:
            continue
        members = []
        for member in group.members:
            provider = providers[member.provider]
            entry: dict[str, Any] = {
                "name": member.name,
                "provider": member.provider,
                "machines": [],
                "volumes": [],
                "hooks": {},
                "error": None,
            }
            try:
                machines = provider.inventory.resolve(member)
            except Exception as exc:
                entry["error"] = str(exc)
                ok = False
                machines = []
            for machine in machines:
                entry["machines"].append(machine.machine_id)
                for volume, method in provider.snapshots.describe(machine).items():
                    entry["volumes"].append(
                        {"machine": machine.machine_id, "volume": volume, "method": method}
                    )
            if machines and group.consistency == "application":
                phases: tuple[HookPhase, ...] = ("pre", "post", "verify")
                for phase in phases:
                    checked = _check(providers, policy, name, member, machines[0], phase)
                    if checked is not None:
                        entry["hooks"][phase] = checked
                        ok = ok and checked["check"]["status"] == "succeeded"
            members.append(entry)
        groups.append(
            {
                "name": name,
                "consistency": group.consistency,
                "on_quiesce_failure": group.on_quiesce_failure,
                "max_freeze_seconds": group.max_freeze_seconds,
                "members": members,
            }
        )
    return {"policy": policy.name, "ok": ok, "groups": groups}
