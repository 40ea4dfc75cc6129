"""The hook allowlist a policy stands for (docs/guest-protocol.md).

Every machine runs only the hooks its root-owned allowlist declares. A policy's hooks (`run`,
`sha256`, `env`, `secret_env`, `timeout_seconds`, `retries`) are the declarations: this module
turns them into allowlist entries with the runner's own `normalize_entry`, so their digests are
exactly what the runner reports as `declared` for a machine whose entry matches. A pre hook's
entry names its post hook as `thaw` and carries the group's `max_freeze_seconds`.

`quiesce hooks allowlist` prints the file for the machines; the local provider writes it into
its private state folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from quiesce.errors import PolicyError, QuiesceError
from quiesce.guest.quiesce_guest import CONFIG_VERSION, Invalid, entry_digest, normalize_entry
from quiesce.policy.model import Hook, Member, Policy, hook_name

PHASES = ("pre", "post", "verify")


@dataclass(frozen=True)
class PolicyHook:
    """One hook of a policy, where it stands, and the allowlist entry it declares (None when
    the policy gives only its name: the machines declare it)."""

    group: str
    member: Member
    phase: str
    name: str
    entry: dict[str, Any] | None

    @property
    def digest(self) -> str | None:
        return entry_digest(self.entry) if self.entry is not None else None


def raw_entry(hook: Hook, phase: str, thaw: str | None, max_freeze: float | None) -> dict[str, Any]:
    """A policy hook as an allowlist entry, before normalization."""
    entry: dict[str, Any] = {
        "phase": phase,
        "run": list(hook.run or []),
        "sha256": hook.sha256,
        "env": dict(hook.env),
        "env_files": dict(hook.secret_env),
        "timeout_seconds": hook.timeout_seconds,
        "retries": hook.retries,
    }
    if phase == "pre":
        entry["thaw"] = thaw
        entry["max_freeze_seconds"] = max_freeze
    return entry


def policy_hooks(
    policy: Policy, *, group: str | None = None, member: str | None = None
) -> list[PolicyHook]:
    """Every hook of the policy (of one group and/or member), with its entry."""
    out = []
    for group_name, grp in policy.groups.items():
        if group is not None and group_name != group:
            continue
        for m in grp.members:
            if member is not None and m.name != member:
                continue
            for phase in PHASES:
                hook: Hook | None = getattr(m.hooks, phase)
                if hook is None:
                    continue
                name = hook_name(hook, group_name, m.name, phase)
                entry = None
                if hook.run is not None:
                    thaw = m.hooks.post if phase == "pre" else None
                    field = f"groups.{group_name}.members[{m.name}].hooks.{phase}"
                    raw = raw_entry(
                        hook,
                        phase,
                        hook_name(thaw, group_name, m.name, "post") if thaw else None,
                        grp.max_freeze_seconds if phase == "pre" else None,
                    )
                    try:
                        entry = normalize_entry(raw, field)
                    except Invalid as exc:
                        raise PolicyError(
                            "<policy>",
                            [f"{exc.field}: {exc.problem} (a policy hook must be an allowlist "
                             "entry the machine's runner accepts)"],
                        ) from None  # fmt: skip
                out.append(PolicyHook(group_name, m, phase, name, entry))
    return out


def allowlist(hooks: list[PolicyHook], state_dir: str | None = None) -> dict[str, Any]:
    """The allowlist document for `hooks` (hooks the machines declare themselves are left out)."""
    doc: dict[str, Any] = {"version": CONFIG_VERSION}
    if state_dir is not None:
        doc["state_dir"] = state_dir
    entries: dict[str, Any] = {}
    for h in hooks:
        if h.entry is None:
            continue
        if h.name in entries and entries[h.name] != h.entry:
            raise QuiesceError(f"the hook name {h.name!r} stands for two different declarations")
        entries[h.name] = h.entry
    doc["hooks"] = dict(sorted(entries.items()))
    return doc


def render(doc: dict[str, Any]) -> str:
    """The allowlist as the file's text (stable, so an unchanged policy writes the same bytes)."""
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
