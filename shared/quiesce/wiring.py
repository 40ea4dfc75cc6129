"""Builds the backends a policy needs. Cloud providers plug in through the `quiesce.providers`
entry point group, so the core never imports a cloud SDK."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from quiesce.errors import QuiesceError
from quiesce.policy.model import Policy
from quiesce.ports import Backends, Provider
from quiesce.providers.local import local_backends, local_provider

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


def providers_for(policy: Policy) -> dict[str, Provider]:
    """Every provider the policy's members use; creates nothing (for `quiesce plan`)."""
    return {
        name: local_provider(Path(policy.state_dir)) if name == "local" else _plugin(name)(policy)
        for name in sorted(provider_names(policy))
    }


def backends_for(policy: Policy) -> Backends:
    """Local catalog and bus in the policy's state_dir, and every provider its members use."""
    local = local_backends(Path(policy.state_dir))
    return Backends(providers=providers_for(policy), state=local.state, bus=local.bus)


def has_state(policy: Policy) -> bool:
    """Whether the policy's state_dir exists (read-only commands create nothing)."""
    return Path(policy.state_dir).is_dir()
