"""The specs of Azure's managed-service providers (`quiesce.providers` entry points):
`azure-postgres`, `azure-mysql`, `azure-sql` and `azure-files`. They import no SDK: each factory
(quiesce_azure.provider) imports its management client when first called."""

from __future__ import annotations

from quiesce.providers.registry import ProviderSpec
from quiesce_azure.managed_member import (
    AzureFilesMember,
    AzureMysqlMember,
    AzurePostgresMember,
    AzureSqlMember,
)

POSTGRES = ProviderSpec(
    name="azure-postgres",
    member=AzurePostgresMember,
    factory="quiesce_azure.provider:make_postgres",
    description=(
        "Azure Database for PostgreSQL flexible server: point-in-time restore to the group's T."
    ),
    extra="azure",
)
MYSQL = ProviderSpec(
    name="azure-mysql",
    member=AzureMysqlMember,
    factory="quiesce_azure.provider:make_mysql",
    description="Azure Database for MySQL flexible server: point-in-time restore to the group's T.",
    extra="azure",
)
SQL = ProviderSpec(
    name="azure-sql",
    member=AzureSqlMember,
    factory="quiesce_azure.provider:make_sql",
    description="Azure SQL Database: point-in-time restore to the group's T.",
    extra="azure",
)
FILES = ProviderSpec(
    name="azure-files",
    member=AzureFilesMember,
    factory="quiesce_azure.provider:make_files",
    description="Azure Files: a share snapshot taken inside the freeze.",
    extra="azure",
)

SPECS = (POSTGRES, MYSQL, SQL, FILES)
