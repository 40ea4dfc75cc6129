"""What the managed-service providers share: their management clients, an inventory that turns a
member into the one resource it names, a hook runner that refuses, and the providers' factories.

Each service's management SDK (azure-mgmt-postgresqlflexibleservers, -mysqlflexibleservers,
-sql, -storage) is imported when its first client is made, so neither a spec nor the Function
App's cold start loads it. Responses are read as the JSON ARM sent (`raw`), by wire names, so
the code depends on no SDK's model classes.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from azure.core.credentials import TokenCredential

from quiesce.errors import ProviderError, QuiesceError
from quiesce.policy.model import Member, MemberBase, Policy
from quiesce.ports import HookCall, HookRunner, Inventory, Machine, Provider
from quiesce.record import HookResult
from quiesce_azure.clients import CredentialClients

if TYPE_CHECKING:
    from quiesce_azure.retry import Backoff

#: The management client of each service: (module, class).
CLIENTS = {
    "postgres": ("azure.mgmt.postgresqlflexibleservers", "PostgreSQLManagementClient"),
    "mysql": ("azure.mgmt.mysqlflexibleservers", "MySQLManagementClient"),
    "sql": ("azure.mgmt.sql", "SqlManagementClient"),
    "storage": ("azure.mgmt.storage", "StorageManagementClient"),
}


def raw(pipeline_response: Any, deserialized: Any, headers: Any) -> dict[str, Any]:
    """An operation's `cls`: the response body as ARM sent it."""
    body = pipeline_response.http_response.json() if pipeline_response.http_response else None
    return body if isinstance(body, dict) else {}


class ManagedClients(CredentialClients):
    """The Compute clients of CredentialClients, and one management client per service and
    subscription (made on first use, shared, under a lock)."""

    def __init__(self, credential: TokenCredential, **kwargs: Any) -> None:
        super().__init__(credential, **kwargs)
        self._managed: dict[tuple[str, str], Any] = {}
        self._managed_lock = threading.Lock()

    def service(self, kind: str, subscription: str) -> Any:
        with self._managed_lock:
            client = self._managed.get((kind, subscription))
            if client is None:
                module, name = CLIENTS[kind]
                try:
                    cls = getattr(importlib.import_module(module), name)
                except ImportError as exc:
                    raise QuiesceError(
                        f"the {module} package is missing ({exc}): install the quiesce package "
                        "with its Azure dependencies (pip install 'quiesce[azure]')"
                    ) from exc
                client = cls(self.credential, subscription, **self._kwargs())
                self._managed[(kind, subscription)] = client
            return client


class ManagedInventory(Inventory):
    """A managed member stands for one resource: `resolve` reads it (and says clearly why it
    cannot be backed up, e.g. a read replica without backups of its own)."""

    def __init__(self, locate: Callable[[MemberBase], Machine]) -> None:
        self.locate = locate

    def resolve(self, member: Member) -> list[Machine]:
        return [self.locate(member)]


class NoHooks(HookRunner):
    """Managed services run no hooks: their writers are held by the group's VM members."""

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def _refuse(self, call: HookCall) -> HookResult:
        raise ProviderError(
            f"member {call.member!r} ({self.provider}) is a managed service: it runs no hooks "
            "(hold its writers from a VM member's hooks)",
            code="HooksUnsupported",
        )

    def run(self, call: HookCall) -> HookResult:
        return self._refuse(call)

    def check(self, call: HookCall) -> HookResult:
        return self._refuse(call)


def managed_provider(
    kind: str,
    policy: Policy | None,
    credential: TokenCredential,
    *,
    base_url: str | None = None,
    clients: ManagedClients | None = None,
    polling_interval: float | None = None,
    backoff: Backoff | None = None,
    now: Callable[[], Any] | None = None,
    sleep: Callable[[float], None] | None = None,
    file_client_kwargs: Mapping[str, Any] | None = None,
) -> Provider:
    """The provider of one managed service (`azure-postgres`, `azure-mysql`, `azure-sql`,
    `azure-files`). `clients` replaces the client construction (then `credential` and
    `base_url` are unused); `now` and `sleep` the wall clock of the wait for restorability;
    `file_client_kwargs` options of the file service's client (`azure-files` restores)."""
    made = clients or ManagedClients(
        credential, base_url=base_url, polling_interval=polling_interval
    )
    extra: dict[str, Any] = {"backoff": backoff}
    if now is not None:
        extra["now"] = now
    if sleep is not None:
        extra["sleep"] = sleep
    snapshotter: Any
    if kind == "azure-files":
        from quiesce_azure.files import ShareSnapshotter

        snapshotter = ShareSnapshotter(
            made, policy=policy, file_client_kwargs=file_client_kwargs, **extra
        )
    else:
        from quiesce_azure.databases import SNAPSHOTTERS

        snapshotter = SNAPSHOTTERS[kind](made, **extra)
    return Provider(
        inventory=ManagedInventory(snapshotter.locate),
        hooks=NoHooks(kind),
        snapshots=snapshotter,
    )


def _factory(kind: str) -> Callable[..., Provider]:
    def make(
        policy: Policy, credential: TokenCredential | None = None, *, scratch: bool = False
    ) -> Provider:
        from quiesce_azure.provider import default_credential

        return managed_provider(kind, policy, credential or default_credential())

    make.__name__ = f"make_{kind.removeprefix('azure-')}"
    make.__doc__ = f"The `{kind}` provider of a policy (its spec's factory; creates nothing)."
    return make


make_postgres = _factory("azure-postgres")
make_mysql = _factory("azure-mysql")
make_sql = _factory("azure-sql")
make_files = _factory("azure-files")


def managed_providers(
    policy: Policy, credential: TokenCredential, **kwargs: Any
) -> Mapping[str, Provider]:
    """The managed providers the policy's members name (none when it names none)."""
    names = {m.provider for g in policy.groups.values() for m in g.members}
    return {
        kind: managed_provider(kind, policy, credential, **kwargs)
        for kind in ("azure-postgres", "azure-mysql", "azure-sql", "azure-files")
        if kind in names
    }
