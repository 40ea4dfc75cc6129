"""The providers Quiesce knows: each one registers a spec (its name, its member model, its factory).

A provider is a plugin. Its package declares an entry point in the group `quiesce.providers`
naming a `ProviderSpec` (or a function returning one), e.g. in its pyproject.toml:

    [project.entry-points."quiesce.providers"]
    kvm = "quiesce_kvm.spec:SPEC"

The policy's member union, `quiesce schema`, the policy reference and `quiesce plan` are built
from what is registered here; the core itself names no provider but its own `local`. A spec
module imports no SDK (its factory imports the adapters when first called), so validating a
policy stays cheap. Where no package metadata exists (an app built by copying sources), the
provider registers itself explicitly: each cloud's provider.py calls `register(SPEC)` when the
functions' entry module imports it.

Providers are loaded when they are needed: a policy being validated loads the providers its
members name (`load`), `get` loads one, and only `specs`, `names` and error messages load every
installed provider. The policy's member union is built from the providers loaded so far and
rebuilt when one is added after it was built, so a function that validates an AWS policy never
imports the member models of Azure or GCP.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, get_args

from quiesce.errors import ProviderError, QuiesceError

if TYPE_CHECKING:
    from quiesce.policy.model import MemberBase, Policy
    from quiesce.ports import Provider

ENTRY_POINT_GROUP = "quiesce.providers"

M = TypeVar("M", bound="MemberBase")


class ProviderFactory(Protocol):
    def __call__(self, policy: Policy, *, scratch: bool = False) -> Provider:
        """Builds the provider's adapters for a policy. `scratch` (for `quiesce plan`): create
        nothing that lasts."""
        ...


@dataclass(frozen=True)
class ProviderSpec:
    """What a provider declares about itself.

    `member` is the pydantic model of its members (a `MemberBase` whose `provider` field is
    `Literal[name]`); `factory(policy, scratch=...)` builds its adapters: the function, or
    "module:function" so the spec imports no adapter (nor its SDK) until one is needed;
    `description` is the one-line summary shown in the policy reference; `extra` is the pip
    extra that installs it.
    """

    name: str
    member: type[MemberBase]
    factory: ProviderFactory | str
    description: str
    extra: str | None = None

    def build(self, policy: Policy, *, scratch: bool = False) -> Provider:
        """The provider's adapters for a policy (the factory imported when first needed)."""
        factory = self.factory
        if isinstance(factory, str):
            module, _, name = factory.partition(":")
            try:
                factory = getattr(importlib.import_module(module), name)
            except ImportError as exc:
                raise QuiesceError(
                    f"provider {self.name!r} cannot be loaded ({exc}): {self.install_hint()}"
                ) from exc
        assert callable(factory)
        provider: Provider = factory(policy, scratch=scratch)
        return provider

    def install_hint(self) -> str:
        return f"pip install 'quiesce[{self.extra}]'" if self.extra else "install its package"


_lock = threading.RLock()
_specs: dict[str, ProviderSpec] = {}
_broken: dict[str, str] = {}
#: Every installed entry point has been looked at (`_load`).
_loaded = False
#: The providers whose members the policy's member union was last built with (None: not built).
_built_with: frozenset[str] | None = None


def _as_spec(name: str, loaded: object) -> ProviderSpec:
    spec = loaded if isinstance(loaded, ProviderSpec) else None
    if spec is None and callable(loaded):
        made = loaded()
        spec = made if isinstance(made, ProviderSpec) else None
    if spec is None:
        raise TypeError(f"entry point {name!r} gives no ProviderSpec")
    if spec.name != name:
        raise TypeError(f"entry point {name!r} gives the spec of provider {spec.name!r}")
    return spec


def _load_local() -> None:
    if "local" not in _specs:
        from quiesce.providers.local.spec import SPEC as LOCAL

        _add(LOCAL)


def _load_entry_point(ep: Any) -> None:
    try:
        _add(_as_spec(ep.name, ep.load()))
    except Exception as exc:  # a broken plugin must not hide the others
        _broken[ep.name] = f"{type(exc).__name__}: {exc}"


def _load() -> None:
    """Registers the core's `local` and every installed entry point (once)."""
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True
        _load_local()
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name not in _specs:
                _load_entry_point(ep)
        _rebuild_if_needed()


def load(names: Iterable[str]) -> None:
    """Loads the named providers that are installed and not loaded yet (only those: a policy's
    providers). Names that no installed provider has are left to the policy's validation,
    which names them."""
    with _lock:
        missing = {name for name in names if name not in _specs and name not in _broken}
        if not missing:
            return
        if "local" in missing:
            _load_local()
            missing.discard("local")
        if missing and not _loaded:
            for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                if ep.name in missing and ep.name not in _specs:
                    _load_entry_point(ep)
                    missing.discard(ep.name)
        _rebuild_if_needed()


def _add(spec: ProviderSpec) -> None:
    known = _specs.get(spec.name)
    if known is not None and known.member is not spec.member:
        raise QuiesceError(f"provider {spec.name!r} is registered twice with different models")
    _specs[spec.name] = spec
    _broken.pop(spec.name, None)


def _ordered() -> list[ProviderSpec]:
    """The loaded specs: the core's `local` first, then the others by name."""
    return sorted(_specs.values(), key=lambda spec: (spec.name != "local", spec.name))


def member_models() -> dict[str, type[MemberBase]]:
    """The member models of the providers loaded so far (the core's `local` always), in the
    order of `specs`; the policy's member union is built from them."""
    from quiesce.policy.model import LocalMember

    with _lock:
        models: dict[str, type[MemberBase]] = {"local": LocalMember}
        models.update({spec.name: spec.member for spec in _ordered()})
        return models


def built_with(names: Iterable[str]) -> None:
    """Records the providers the policy's member union was just built with."""
    global _built_with
    with _lock:
        _built_with = frozenset(names)


def _rebuild_if_needed() -> None:
    """Rebuilds the policy's models when a provider was added after their member union was
    built (a model not built yet is built with every provider loaded by then)."""
    with _lock:
        if _built_with is None or _built_with >= set(_specs):
            return
    from quiesce.policy.model import rebuild

    rebuild()


def register(spec: ProviderSpec) -> None:
    """Registers a provider explicitly (entry modules of apps built without package metadata).

    The policy model is rebuilt if it was built already, so policies validated from now on
    accept its members."""
    with _lock:
        if _specs.get(spec.name) is spec:
            return
        _add(spec)
        _rebuild_if_needed()


def specs() -> dict[str, ProviderSpec]:
    """Every provider, installed or registered explicitly (all are loaded): the core's `local`
    first, then the others by name."""
    _load()
    with _lock:
        return {spec.name: spec for spec in _ordered()}


def names() -> list[str]:
    return list(specs())


def get(name: str) -> ProviderSpec:
    """The provider's spec (loading only it); a clear error when it is not installed."""
    load([name])
    with _lock:
        found = _specs.get(name)
    if found is None:
        raise QuiesceError(unknown_message(name))
    return found


def unknown_message(name: object) -> str:
    """Says which providers are installed and what to install for `name`."""
    installed = ", ".join(names())
    broken = _broken.get(str(name))
    if broken is not None:
        return (
            f"provider {name!r} is installed but cannot be loaded ({broken}); known "
            f"providers: {installed}"
        )
    return (
        f"unknown provider {name!r}; known providers: {installed} (the installed ones; another "
        f"provider comes with its package, e.g. pip install 'quiesce[{name}]')"
    )


def expect_member(member: MemberBase, model: type[M]) -> M:
    """The member as the adapter's own model; a WrongProvider error when it is another's."""
    if not isinstance(member, model):
        raise ProviderError(
            f"member {member.name!r} has provider {member.provider!r}, not "
            f"{', '.join(map(repr, get_args(model.model_fields['provider'].annotation)))}",
            code="WrongProvider",
        )
    return member


def members_by_group(policy: Policy | None, model: type[M]) -> dict[str, list[M]]:
    """The policy's members of one provider, by group (groups without any are left out).

    Adapters use it only where no call carries the member: `Snapshotter.find` names a group."""
    out: dict[str, list[M]] = {}
    for name, group in (policy.groups if policy is not None else {}).items():
        found = [m for m in group.members if isinstance(m, model)]
        if found:
            out[name] = found
    return out
