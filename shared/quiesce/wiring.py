"""Builds the backends a policy needs. Cloud providers plug in through the `quiesce.providers`
entry point group, so the core never imports a cloud SDK.

The local state folder is checked (owner, mode, no untrusted symlinks: providers/local/statedir.py)
before anything in it is opened, by every command that uses it."""

from __future__ import annotations

from pathlib import Path

from quiesce.policy.model import Policy
from quiesce.ports import Backends, Provider
from quiesce.providers import registry
from quiesce.providers.local.bus import SqliteEventBus
from quiesce.providers.local.hooks import LocalHookRunner
from quiesce.providers.local.spec import NAME as LOCAL
from quiesce.providers.local.spec import local_hook_runner
from quiesce.providers.local.state import SqliteStateStore
from quiesce.providers.local.statedir import check_state_dir

__all__ = ["backends_for", "has_state", "local_hook_runner", "provider_names", "providers_for"]


def provider_names(policy: Policy) -> set[str]:
    return {m.provider for g in policy.groups.values() for m in g.members}


def _providers(policy: Policy, *, scratch: bool) -> dict[str, Provider]:
    return {
        name: registry.get(name).build(policy, scratch=scratch)
        for name in sorted(provider_names(policy))
    }


def providers_for(policy: Policy) -> dict[str, Provider]:
    """Every provider the policy's members use, each built by its registered spec; creates
    nothing (for `quiesce plan`: the local allowlist goes to a private temporary folder)."""
    return _providers(policy, scratch=True)


def backends_for(policy: Policy) -> Backends:
    """Local catalog and bus in the policy's state_dir (checked, created private), every
    provider its members use, and the local hook allowlist written before the run starts."""
    check_state_dir(policy.state_dir, create=True)
    providers = _providers(policy, scratch=False)
    local = providers.get(LOCAL)
    if local is not None and isinstance(local.hooks, LocalHookRunner) and local.hooks.hooks:
        local.hooks.install()
    state_dir = Path(policy.state_dir)
    return Backends(
        providers=providers, state=SqliteStateStore(state_dir), bus=SqliteEventBus(state_dir)
    )


def has_state(policy: Policy) -> bool:
    """Whether the policy's state_dir exists (checked when it does; read-only commands create
    nothing)."""
    return check_state_dir(policy.state_dir)
