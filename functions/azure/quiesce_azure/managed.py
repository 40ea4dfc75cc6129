"""What the managed-service providers share: their management clients, an inventory that turns a
member into the one resource it names, and a hook runner that refuses (provider.py assembles
them with each service's snapshotter).

Each service's management SDK (azure-mgmt-postgresqlflexibleservers, -mysqlflexibleservers,
-sql, -storage) is imported when its first client is made, so neither a spec nor the Function
App's cold start loads it. Responses are read as the JSON ARM sent (`raw`), by wire names, so
the code depends on no SDK's model classes.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

from azure.core.credentials import TokenCredential

from quiesce.errors import QuiesceError
from quiesce.policy.model import Member, MemberBase
from quiesce.ports import Inventory, Machine
from quiesce_azure.clients import CredentialClients

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
