"""`quiesce plan`: what a run would do, with every hook's security check and, per machine, the
state of its hook allowlist. No side effects.

Allowlist states, per machine and hook (the runner's `check` answers with the digest of the
machine's declaration, docs/guest-protocol.md):

- `matches`: the machine declares the hook exactly as the policy does;
- `differs`: the machine declares a hook of that name, but not the policy's declaration (the
  machine's runs; install `quiesce hooks allowlist` output, or fix the policy);
- `missing`: the machine declares no hook of that name;
- `declared`: the policy gives only the hook's name, and the machine declares it;
- `unknown`: the check passed but the channel did not report the machine's digest;
- `refused: <code>`: the runner refused the check for another reason (see its message).
"""

from __future__ import annotations

from typing import Any

from quiesce.allowlist import PolicyHook, policy_hooks
from quiesce.permissions import declared
from quiesce.policy.managed import ManagedMember
from quiesce.policy.model import Hook, Policy
from quiesce.ports import HookCall, HookPhase, Machine, Provider, fan_out
from quiesce.record import HookResult

PLAN_RUN_ID = "plan"
GOOD_STATES = ("matches", "declared")


def allowlist_state(result: HookResult, digest: str | None, declared: str | None) -> str:
    """The allowlist state a check result and the policy's digest stand for."""
    if result.code == "HookNotDeclared":
        return "missing"
    if declared is None:
        return "unknown" if result.ok else f"refused: {result.code}"
    if digest is None:
        return "declared"
    return "matches" if declared == digest else "differs"


def _check_machine(
    provider: Provider, call: HookCall, hook: PolicyHook, thaw: PolicyHook | None
) -> dict[str, Any]:
    try:
        result = provider.hooks.check(call)
    except Exception as exc:
        return {
            "machine": call.machine.machine_id,
            "check": {"status": "failed", "code": "CheckFailed", "message": str(exc)},
            "allowlist": "refused: CheckFailed",
        }
    out: dict[str, Any] = {
        "machine": call.machine.machine_id,
        "check": {"status": result.status.value, "code": result.code, "message": result.message},
        "allowlist": allowlist_state(result, hook.digest, result.declared),
        "declared": result.declared,
    }
    if result.signed is not None or result.code in ("BadSignature", "NoSigningKey"):
        out["signature"] = "verified" if result.signed else result.code
    if thaw is not None and result.declared is not None:
        out["thaw"] = thaw.name
        out["thaw_allowlist"] = allowlist_state(result, thaw.digest, result.thaw_declared)
    return out


def _plan_hook(
    provider: Provider,
    policy: Policy,
    hook: PolicyHook,
    thaw: PolicyHook | None,
    machines: list[Machine],
) -> dict[str, Any]:
    model: Hook = getattr(hook.member.hooks, hook.phase)  # checked only, never executed
    calls = [
        HookCall(
            run_id=PLAN_RUN_ID,
            policy=policy.name,
            group=hook.group,
            member=hook.member.name,
            machine=machine,
            phase=hook.phase,  # type: ignore[arg-type]
            hook=model,
            spec=hook.member,
        )
        for machine in machines
    ]
    checked = fan_out(lambda call: _check_machine(provider, call, hook, thaw), calls)
    per_machine = [
        c
        if isinstance(c, dict)
        else {"check": {"status": "failed", "code": "CheckFailed", "message": str(c)}}
        for c in checked
    ]
    return {
        "name": hook.name,
        "run": model.run,
        "sha256": model.sha256,
        "timeout_seconds": model.timeout_seconds,
        "retries": model.retries,
        "digest": hook.digest,
        "check": per_machine[0]["check"],
        "machines": per_machine,
    }


def _hook_ok(planned: dict[str, Any]) -> bool:
    for machine in planned["machines"]:
        if machine["check"]["status"] != "succeeded":
            return False
        for key in ("allowlist", "thaw_allowlist"):
            if key in machine and machine[key] not in GOOD_STATES:
                return False
    return True


def permission_names(provider: Provider) -> list[str]:
    """The permissions a provider's adapters declare (what its least-privilege role grants)."""
    names: set[str] = set()
    for perms in declared(
        type(provider.inventory), type(provider.hooks), type(provider.snapshots)
    ).values():
        for perm in perms:
            names.add(str(getattr(perm, "action", perm)))
    return sorted(names)


def plan_policy(
    policy: Policy,
    providers: dict[str, Provider],
    only_group: str | None = None,
    problems: list[str] | None = None,
) -> dict[str, Any]:
    ok = not problems
    hooks = policy_hooks(policy, group=only_group)
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
            fixed = provider.snapshots.point_method(member)
            entry["point"] = {
                "kind": fixed.kind,
                "resolution_seconds": fixed.resolution_seconds,
                "detail": fixed.detail,
            }
            if isinstance(member, ManagedMember):
                entry["permissions"] = permission_names(provider)
            for machine in machines:
                entry["machines"].append(machine.machine_id)
                for volume, method in provider.snapshots.describe(machine).items():
                    entry["volumes"].append(
                        {"machine": machine.machine_id, "volume": volume, "method": method}
                    )
            if machines and group.consistency == "application":
                mine = {h.phase: h for h in hooks if h.group == name and h.member is member}
                phases: tuple[HookPhase, ...] = ("pre", "post", "verify")
                for phase in phases:
                    if phase not in mine:
                        continue
                    thaw = mine.get("post") if phase == "pre" else None
                    planned = _plan_hook(provider, policy, mine[phase], thaw, machines)
                    entry["hooks"][phase] = planned
                    ok = ok and _hook_ok(planned)
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
    return {"policy": policy.name, "ok": ok, "problems": list(problems or []), "groups": groups}
