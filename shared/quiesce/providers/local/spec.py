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


def freezing_members(policy: Policy) -> set[str]:
    """The local members whose volumes a pre hook may freeze: every local member of an
    application-consistent group in which a local member's pre hook may freeze its volumes
    (pre_freezes_volumes). The whole group, because a hook may freeze another member's
    filesystem too (the library's PostgreSQL hook freezes the WAL member's)."""
    out: set[str] = set()
    for group in policy.groups.values():
        local = [m for m in group.members if isinstance(m, LocalMember)]
        if group.consistency == "application" and any(
            m.hooks.pre is not None and m.pre_freezes_volumes for m in local
        ):
            out.update(m.name for m in local)
    return out


def make_provider(policy: Policy, *, scratch: bool = False) -> Provider:
    """This machine's inventory, hooks and snapshots, kept in the policy's state_dir (for
    `plan`, the hook allowlist goes to a private temporary folder)."""
    return local_provider(
        Path(policy.state_dir),
        local_hook_runner(policy, scratch=scratch),
        freezing_members(policy),
    )


SPEC = ProviderSpec(
    name=NAME,
    member=LocalMember,
    factory=make_provider,
    description="This machine: hooks are local processes, volumes are folders.",
)
