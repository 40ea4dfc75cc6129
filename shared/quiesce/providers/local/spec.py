"""The `local` provider's spec: registered by the core itself, like any plugin's."""

from __future__ import annotations

from pathlib import Path

from quiesce.allowlist import policy_hooks
from quiesce.policy.model import LocalMember, Policy
from quiesce.ports import Provider
from quiesce.providers.local import local_provider
from quiesce.providers.local.hooks import LocalHookRunner
from quiesce.providers.registry import ProviderSpec

NAME = "local"


def local_hook_runner(policy: Policy, *, scratch: bool = False) -> LocalHookRunner:
    """The local hook runner, declaring every hook of the policy's local members."""
    entries = {
        h.name: h.entry
        for h in policy_hooks(policy)
        if h.member.provider == NAME and h.entry is not None
    }
    return LocalHookRunner(Path(policy.state_dir), entries, scratch=scratch)


def make_provider(policy: Policy, *, scratch: bool = False) -> Provider:
    """This machine's inventory, hooks and snapshots, kept in the policy's state_dir (for
    `plan`, the hook allowlist goes to a private temporary folder)."""
    return local_provider(Path(policy.state_dir), local_hook_runner(policy, scratch=scratch))


SPEC = ProviderSpec(
    name=NAME,
    member=LocalMember,
    factory=make_provider,
    description="This machine: hooks are local processes, volumes are folders.",
)
