"""What a policy says about Azure's managed services in a group: flexible servers (PostgreSQL,
MySQL), Azure SQL databases and Azure Files shares.

None of them runs hooks (quiesce.policy.managed.ManagedMember): their writers are held by the
group's VM members. How each one's point in time is fixed is fixed by the service, so none has
a `method` to choose: the databases are restored by point-in-time restore to the group's `T`
(`pitr`); a file share is snapshotted inside the freeze (`snapshot`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from quiesce.policy.managed import ManagedMember
from quiesce_azure.member import resource_group_field, subscription_field

#: Flexible server and SQL logical server names: lower-case letters, digits and hyphens.
SERVER_NAME = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"


def _resource_group() -> Any:
    return resource_group_field("The resource group of the server (or storage account).")


def _lag(service: str, default: float) -> Any:
    return Field(
        default=None,
        gt=0,
        le=86400,
        description=(
            f"How long after `T` {service} can be restored to `T` (its transaction log "
            f"backups lag behind). Default: {default:g} s, the longest delay the service "
            "documents; the run waits this long after `T` before the point counts as durable."
        ),
        examples=[default],
    )


class FlexibleServerMember(ManagedMember):
    """An Azure Database for PostgreSQL or MySQL flexible server."""

    subscription: str = subscription_field()
    resource_group: str = _resource_group()
    server: str = Field(
        pattern=SERVER_NAME,
        description="The flexible server's name.",
        examples=["orders-db"],
    )


class AzurePostgresMember(FlexibleServerMember):
    """An Azure Database for PostgreSQL flexible server, restored to the group's `T`."""

    provider: Literal["azure-postgres"] = Field(
        description="Azure Database for PostgreSQL flexible server.", examples=["azure-postgres"]
    )
    restorable_lag_seconds: float | None = _lag("a PostgreSQL flexible server", 900)


class AzureMysqlMember(FlexibleServerMember):
    """An Azure Database for MySQL flexible server, restored to the group's `T`."""

    provider: Literal["azure-mysql"] = Field(
        description="Azure Database for MySQL flexible server.", examples=["azure-mysql"]
    )
    restorable_lag_seconds: float | None = _lag("a MySQL flexible server", 300)


class AzureSqlMember(ManagedMember):
    """An Azure SQL database, restored to the group's `T`."""

    provider: Literal["azure-sql"] = Field(
        description="Azure SQL Database.", examples=["azure-sql"]
    )
    subscription: str = subscription_field()
    resource_group: str = _resource_group()
    server: str = Field(
        pattern=SERVER_NAME,
        description="The logical server's name.",
        examples=["orders-sql"],
    )
    database: str = Field(
        pattern=r"^[^<>*%&:\\/?]{1,128}$",
        description="The database's name.",
        examples=["orders"],
    )
    restorable_lag_seconds: float | None = _lag("an Azure SQL database", 600)


class AzureFilesMember(ManagedMember):
    """An Azure Files share, snapshotted inside the freeze."""

    provider: Literal["azure-files"] = Field(
        description="An Azure Files share (share snapshots).", examples=["azure-files"]
    )
    subscription: str = subscription_field()
    resource_group: str = _resource_group()
    storage_account: str = Field(
        pattern=r"^[a-z0-9]{3,24}$",
        description="The storage account's name.",
        examples=["ordersfiles"],
    )
    share: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$",
        description="The file share's name.",
        examples=["uploads"],
    )
