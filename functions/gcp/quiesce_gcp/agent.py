"""The function's side of the agent channel: the command it writes, the answer it reads, and
the agent configuration an OS policy installs on every VM.

The orchestrator writes ONE metadata item, `quiesce-command`, on the instance (through
instances.setMetadata with the current fingerprint). Its value is a small JSON object that
names what to run but never how:

    {"v": 1, "phase": "pre", "run_id": "...", "member": "db", "hook": "pre",
     "nonce": "<32 hex>", "expires_at": 1764410000.0}

The agent on the VM (quiesce/guest/quiesce_agent.py) looks the hook up in its own root-owned
config (/etc/quiesce/hooks.json, written by the OS policy from `agent_config`), refuses stale and
replayed commands, runs the guest hook runner, and writes the runner's JSON result as the guest
attribute `quiesce/<run_id>-<member>-<phase>`, wrapped as {"nonce": ..., "result": {...}}.
Keep these names in step with quiesce_agent.py (tests/gcp check that they match).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from quiesce.errors import ProviderError
from quiesce.policy.model import GcpMember, Hook, Policy

PROTOCOL_VERSION = 1
METADATA_KEY = "quiesce-command"
GUEST_NAMESPACE = "quiesce"
#: Where the agent reads its hooks; written by the OS policy, root-owned, mode 0600.
AGENT_CONFIG_PATH = "/etc/quiesce/hooks.json"
RUNNER_PATH = "/usr/local/lib/quiesce/quiesce_guest.py"
STATE_DIR = "/var/lib/quiesce"
#: Phases the agent accepts, and the hook each may name.
PHASES = ("pre", "post", "verify", "check")
HOOKS = ("pre", "post", "verify")

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def result_key(run_id: str, member: str, phase: str) -> str:
    """The guest attribute key (below the `quiesce/` namespace) of one answer."""
    return _KEY_UNSAFE.sub("_", f"{run_id}-{member}-{phase}")[:128]


@dataclass(frozen=True)
class Command:
    """One command to the agent: a reference to a hook, never script text."""

    phase: str
    run_id: str
    member: str
    hook: str
    nonce: str
    expires_at: float
    v: int = PROTOCOL_VERSION

    @classmethod
    def new(cls, phase: str, run_id: str, member: str, hook: str, expires_at: float) -> Command:
        if phase not in PHASES or hook not in HOOKS:
            raise ProviderError(f"no agent command for phase {phase!r} / hook {hook!r}")
        return cls(phase, run_id, member, hook, secrets.token_hex(16), round(expires_at, 3))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @property
    def key(self) -> str:
        return result_key(self.run_id, self.member, self.phase)


def _hook(hook: Hook) -> dict[str, Any]:
    out: dict[str, Any] = {
        "run": list(hook.run),
        "timeout_seconds": hook.timeout_seconds,
        "retries": hook.retries,
    }
    if hook.sha256:
        out["sha256"] = hook.sha256
    if hook.env:
        out["env"] = dict(hook.env)
    return out


def agent_config(
    policy: Policy, *, runner: str = RUNNER_PATH, state_dir: str = STATE_DIR
) -> dict[str, Any]:
    """The agent's /etc/quiesce/hooks.json for a policy's `agent`-channel GCP members.

    Members are keyed by name (the command names only the member); a name used by two groups
    with different hooks is refused, because the agent could not tell them apart.
    """
    members: dict[str, dict[str, Any]] = {}
    for group in policy.groups.values():
        for member in group.members:
            if not isinstance(member, GcpMember) or member.hook_channel != "agent":
                continue
            entry: dict[str, Any] = {"max_freeze_seconds": group.max_freeze_seconds}
            for name in HOOKS:
                hook = getattr(member.hooks, name)
                if hook is not None:
                    entry[name] = _hook(hook)
            if member.name in members and members[member.name] != entry:
                raise ProviderError(
                    f"member name {member.name!r} is used with different hooks in two groups; "
                    "the agent config keys hooks by member name: rename one",
                    code="AmbiguousMember",
                )
            members[member.name] = entry
    return {"version": 1, "runner": runner, "state_dir": state_dir, "members": members}
