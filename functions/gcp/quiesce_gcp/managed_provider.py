"""The factories of the GCP managed-service providers (`gcp-sql`, `gcp-filestore`), and the
hook runner they share: managed services run no hooks.

Environment (besides quiesce_gcp.provider's):

    QUIESCE_SQL_ENDPOINT        another Cloud SQL Admin endpoint (tests: http://HOST:PORT)
    QUIESCE_FILESTORE_ENDPOINT  another Filestore endpoint (tests: http://HOST:PORT)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from quiesce.policy.model import Policy
from quiesce.ports import Provider
from quiesce.providers.managed import NoHooks
from quiesce.providers.registry import members_by_group
from quiesce_gcp.managed_spec import MANAGED_SPECS, FilestoreMember

if TYPE_CHECKING:
    from google.auth.credentials import Credentials

SQL_ENDPOINT_ENV = "QUIESCE_SQL_ENDPOINT"
FILESTORE_ENDPOINT_ENV = "QUIESCE_FILESTORE_ENDPOINT"


def sql_provider(
    *,
    credentials: Credentials | None = None,
    endpoint: str | None = None,
    poll_interval: float | None = None,
) -> Provider:
    """Cloud SQL inventory and point-in-time snapshotter (no hooks)."""
    from quiesce_gcp.cloudsql import (
        POLL_SECONDS,
        CloudSqlInventory,
        CloudSqlSnapshotter,
        SqlClients,
    )

    clients = SqlClients(credentials, endpoint=endpoint)
    return Provider(
        inventory=CloudSqlInventory(clients),
        hooks=NoHooks("gcp-sql"),
        snapshots=CloudSqlSnapshotter(
            clients, poll_interval=POLL_SECONDS if poll_interval is None else poll_interval
        ),
    )


def filestore_provider(
    policy: Policy | None,
    *,
    credentials: Credentials | None = None,
    endpoint: str | None = None,
    poll_interval: float = 1.0,
) -> Provider:
    """Filestore inventory and snapshotter (no hooks). `find` looks at the policy's instances
    of each group; `cloud_restore` reverts only instances whose member has allow_revert."""
    from quiesce_gcp.filestore import FilestoreClients, FilestoreInventory, FilestoreSnapshotter

    clients = FilestoreClients(credentials, endpoint=endpoint)
    found = members_by_group(policy, FilestoreMember)
    return Provider(
        inventory=FilestoreInventory(clients),
        hooks=NoHooks("gcp-filestore"),
        snapshots=FilestoreSnapshotter(
            clients,
            instances={g: sorted({m.resource for m in ms}) for g, ms in found.items()},
            revertible={m.resource for ms in found.values() for m in ms if m.allow_revert},
            poll_interval=poll_interval,
        ),
    )


def make_sql_provider(
    policy: Policy, *, env: Mapping[str, str] | None = None, scratch: bool = False
) -> Provider:
    """The `gcp-sql` provider (the factory of its `quiesce.providers` spec; creates nothing)."""
    env = os.environ if env is None else env
    return sql_provider(endpoint=env.get(SQL_ENDPOINT_ENV) or None)


def make_filestore_provider(
    policy: Policy, *, env: Mapping[str, str] | None = None, scratch: bool = False
) -> Provider:
    """The `gcp-filestore` provider (the factory of its `quiesce.providers` spec)."""
    env = os.environ if env is None else env
    return filestore_provider(policy, endpoint=env.get(FILESTORE_ENDPOINT_ENV) or None)


def managed_providers(policy: Policy, env: Mapping[str, str] | None = None) -> dict[str, Provider]:
    """The managed-service providers the policy's members name (none when it names none)."""
    named = {m.provider for g in policy.groups.values() for m in g.members}
    out: dict[str, Provider] = {}
    if "gcp-sql" in named:
        out["gcp-sql"] = make_sql_provider(policy, env=env)
    if "gcp-filestore" in named:
        out["gcp-filestore"] = make_filestore_provider(policy, env=env)
    return out


__all__ = [
    "MANAGED_SPECS",
    "filestore_provider",
    "make_filestore_provider",
    "make_sql_provider",
    "managed_providers",
    "sql_provider",
]
