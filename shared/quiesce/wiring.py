"""Builds the backends a policy needs. Cloud providers plug in through the `quiesce.providers`
entry point group, so the core never imports a cloud SDK.

The local state folder is checked (owner, mode, no untrusted symlinks: providers/local/statedir.py)
before anything in it is opened, by every command that uses it."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from quiesce.allowlist import policy_hooks
from quiesce.errors import QuiesceError
from quiesce.policy.model import Policy
from quiesce.ports import Backends, Provider
from quiesce.providers.local import local_backends, local_provider
from quiesce.providers.local.hooks import LocalHookRunner
from quiesce.providers.local.statedir import check_state_dir

ProviderFactory = Callable[[Policy], Provider]


def provider_names(policy: Policy) -> set[str]:
    return {m.provider for g in policy.groups.values() for m in g.members}


def _plugin(name: str) -> ProviderFactory:
    for ep in entry_points(group="quiesce.providers"):
        if ep.name == name:
            try:
                factory: ProviderFactory = ep.load()
            except ImportError as exc:
                raise QuiesceError(
                    f"provider {name!r} cannot be loaded ({exc}); install its extra: "
                    f"pip install 'quiesce[{name}]'"
                ) from None
            return factory
    raise QuiesceError(
        f"provider {name!r} is not installed; install the extra: pip install 'quiesce[{name}]'"
    )


def local_hook_runner(policy: Policy, *, scratch: bool = False) -> LocalHookRunner:
    """The local hook runner, declaring every hook of the policy's local members."""
    entries = {
        h.name: h.entry
        for h in policy_hooks(policy)
        if h.member.provider == "local" and h.entry is not None
    }
    return LocalHookRunner(Path(policy.state_dir), entries, scratch=scratch)


def providers_for(policy: Policy) -> dict[str, Provider]:
    """Every provider the policy's members use; creates nothing (for `quiesce plan`: the local
    allowlist goes to a private temporary folder)."""
    return {
        name: (
            local_provider(Path(policy.state_dir), local_hook_runner(policy, scratch=True))
            if name == "local"
            else _plugin(name)(policy)
        )
        for name in sorted(provider_names(policy))
    }


def backends_for(policy: Policy) -> Backends:
    """Local catalog and bus in the policy's state_dir (checked, created private), every
    provider its members use, and the local hook allowlist written before the run starts."""
    check_state_dir(policy.state_dir, create=True)
    hooks = local_hook_runner(policy)
    local = local_backends(Path(policy.state_dir), hooks)
    providers = {
        name: local.providers["local"] if name == "local" else _plugin(name)(policy)
        for name in sorted(provider_names(policy))
    }
    if "local" in providers and hooks.hooks:
        hooks.install()
    return Backends(providers=providers, state=local.state, bus=local.bus)


def has_state(policy: Policy) -> bool:
    """Whether the policy's state_dir exists (checked when it does; read-only commands create
    nothing)."""
    return check_state_dir(policy.state_dir)
