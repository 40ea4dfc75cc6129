"""The function's side of the agent channel: the signed command it writes, and the allowlist an
OS policy installs on every agent VM.

The orchestrator writes ONE metadata item, `quiesce-command`, on the instance (through
instances.setMetadata with the current fingerprint). Its value names a declared hook, never how
to run it, and is signed with the VM's own key (quiesce_gcp.signing):

    {"v": 2, "sig": "<HMAC-SHA256 hex>",
     "command": "{\\"expires_at\\":1764410000.0,\\"hook\\":\\"orders.db.pre\\",
                  \\"instance\\":\\"projects/P/zones/Z/instances/db-1\\",\\"member\\":\\"db\\",
                  \\"nonce\\":\\"<32 hex>\\",\\"phase\\":\\"pre\\",\\"run_id\\":\\"...\\"}"}

The agent on the VM (quiesce_gcp/quiesce_agent.py) verifies the signature before anything
else, refuses commands for another instance, stale and replayed ones, runs the guest hook runner
with its allowlist (/etc/quiesce/hooks.json, written by the OS policy from `allowlist`), and
answers through the guest attribute `quiesce/<run_id>-<member>-<phase>` with
{"nonce", "result": "<canonical result JSON>", "sig"}. The protocol's names and formats are
the agent's own, imported from it.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from quiesce.allowlist import PolicyHook, policy_hooks
from quiesce.allowlist import allowlist as core_allowlist
from quiesce.errors import ProviderError, QuiesceError
from quiesce.policy.model import Group, Policy
from quiesce_gcp import quiesce_agent as guest_agent
from quiesce_gcp.member import GcpMember
from quiesce_gcp.signing import AgentKeys

PROTOCOL_VERSION = guest_agent.PROTOCOL_VERSION
METADATA_KEY = guest_agent.METADATA_KEY
GUEST_NAMESPACE = guest_agent.GUEST_NAMESPACE
PHASES = guest_agent.PHASES
result_key = guest_agent.result_key
canonical = guest_agent.canonical
#: The allowlist, which is also the agent's config; written by the OS policy, root-only.
AGENT_CONFIG_PATH = guest_agent.DEFAULT_CONFIG
#: This VM's signing key; written by the OS policy, root-only (0600).
AGENT_KEY_PATH = guest_agent.DEFAULT_KEY_FILE
RUNNER_PATH = guest_agent.DEFAULT_RUNNER
STATE_DIR = guest_agent.DEFAULT_STATE_DIR


@dataclass(frozen=True)
class Command:
    """One command to the agent: a reference to a declared hook, for one instance."""

    phase: str
    run_id: str
    member: str
    hook: str
    nonce: str
    expires_at: float
    instance: str
    #: Whose key signs the command and its answer (projects/P/zones/Z/instances/NAME); empty:
    #: the instance's own. A restored copy keeps the key of the machine it is a disk copy of
    #: (see quiesce_gcp.signing); it is never sent, only the instance is.
    signer: str = ""

    @classmethod
    def new(
        cls,
        phase: str,
        run_id: str,
        member: str,
        hook: str,
        expires_at: float,
        instance: str,
        signer: str = "",
    ) -> Command:
        if phase not in PHASES:
            raise ProviderError(f"no agent command for phase {phase!r}")
        return cls(
            phase,
            run_id,
            member,
            hook,
            secrets.token_hex(16),
            round(expires_at, 3),
            instance,
            signer,
        )

    @property
    def key_of(self) -> str:
        """The instance path whose derived key signs this command and its answer."""
        return self.signer or self.instance

    def text(self) -> str:
        """The canonical JSON that is signed (and sent as is)."""
        return canonical(
            {
                "expires_at": self.expires_at,
                "hook": self.hook,
                "instance": self.instance,
                "member": self.member,
                "nonce": self.nonce,
                "phase": self.phase,
                "run_id": self.run_id,
            }
        )

    def signed(self, keys: AgentKeys) -> str:
        """The metadata value: the command and its signature with the instance's key (a
        restored copy's: the key it boots with, its source machine's)."""
        text = self.text()
        sig = keys.sign_command(self.key_of, text)
        return json.dumps({"v": PROTOCOL_VERSION, "command": text, "sig": sig}, sort_keys=True)

    @property
    def key(self) -> str:
        return result_key(self.run_id, self.member, self.phase)


def gcp_members(
    policy: Policy, channels: tuple[str, ...] = ("agent",)
) -> list[tuple[str, Group, GcpMember]]:
    """The policy's Linux GCP members whose hooks go through one of `channels`."""
    return [
        (group_name, group, member)
        for group_name, group in policy.groups.items()
        for member in group.members
        if isinstance(member, GcpMember)
        and member.os == "linux"
        and member.hook_channel in channels
    ]


def allowlist(
    policy: Policy,
    *,
    zone: tuple[str, str] | None = None,
    channels: tuple[str, ...] = ("agent", "guest_flush"),
    runner: str = RUNNER_PATH,
    state_dir: str = STATE_DIR,
    signing_key_file: str = AGENT_KEY_PATH,
) -> dict[str, Any]:
    """A machine's /etc/quiesce/hooks.json: the allowlist of the policy's GCP members (those in
    `zone` = (project, zone) when given), built by the core (`quiesce.allowlist`, as `quiesce
    hooks allowlist` prints it, so `quiesce plan` finds the same digests), with the agent's
    settings under "agent". Every assignment of one zone installs the same file, so two never
    fight over it. Hooks the policy gives only by name get no entry: the machine must declare
    them."""
    hooks: list[PolicyHook] = []
    for group_name, _group, member in gcp_members(policy, channels):
        if zone is not None and (member.project, member.zone) != zone:
            continue
        hooks += policy_hooks(policy, group=group_name, member=member.name)
    try:
        doc = core_allowlist(hooks, state_dir=state_dir)
    except QuiesceError as exc:
        raise ProviderError(str(exc), code="AmbiguousHook") from None
    doc["agent"] = {"runner": runner, "signing_key_file": signing_key_file}
    return doc
