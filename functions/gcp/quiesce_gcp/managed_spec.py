"""The GCP managed-service providers' specs and member models: Cloud SQL (`gcp-sql`) and
Filestore (`gcp-filestore`). Like spec.py, this module imports no SDK: the factories
(quiesce_gcp.managed_provider) import the adapters and their clients when first called.

How each service's point in time is fixed (docs/databases.md):

- Cloud SQL: point-in-time recovery only (`pitr`): the instance is cloned at the group's `T`.
  An on-demand backup (backupRuns.insert) is not offered: it is queued behind the instance's
  other operations, so its point is not fixed when the call is accepted.
- Filestore: instance snapshots (`snapshot`), taken inside the freeze. Filestore backups copy
  the share over an interval and are not offered.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from quiesce.policy.managed import ManagedMember
from quiesce.providers.registry import ProviderSpec
from quiesce_gcp.member import project_field


class CloudSqlMember(ManagedMember):
    """A Cloud SQL instance (MySQL, PostgreSQL or SQL Server) restored by point-in-time
    recovery to the group's `T`."""

    provider: Literal["gcp-sql"] = Field(
        description="Cloud SQL: point-in-time recovery to the group's `T`.",
        examples=["gcp-sql"],
    )
    project: str = project_field("The instance's project id.")
    instance: str = Field(
        pattern=r"^[a-z]([-a-z0-9]{0,96}[a-z0-9])?$",
        description="The Cloud SQL instance id (without the project).",
        examples=["orders-db"],
    )
    method: Literal["pitr"] = Field(
        default="pitr",
        description=(
            "`pitr`: the instance's point-in-time recovery (backups and binary logs / "
            "transaction log retention enabled), cloned at the group's `T` on restore."
        ),
        examples=["pitr"],
    )

    @model_validator(mode="before")
    @classmethod
    def _only_pitr(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("method") not in (None, "pitr"):
            raise ValueError(
                f"method {data['method']!r}: a Cloud SQL member is restored by point-in-time "
                "recovery only (`pitr`): an on-demand backup is queued behind the instance's "
                "other operations, so its point in time is not fixed when it is accepted"
            )
        return data

    @property
    def resource(self) -> str:
        return f"projects/{self.project}/instances/{self.instance}"


class FilestoreMember(ManagedMember):
    """A Filestore instance (zonal, regional or enterprise tier): an instance snapshot taken
    inside the freeze."""

    provider: Literal["gcp-filestore"] = Field(
        description="Filestore: an instance snapshot taken inside the freeze.",
        examples=["gcp-filestore"],
    )
    project: str = project_field("The instance's project id.")
    location: str = Field(
        pattern=r"^[a-z]+-[a-z]+[0-9]+(-[a-z])?$",
        description="The instance's zone (zonal tiers) or region (regional, enterprise).",
        examples=["europe-west1-b"],
    )
    instance: str = Field(
        pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="The Filestore instance id.",
        examples=["orders-files"],
    )
    method: Literal["snapshot"] = Field(
        default="snapshot",
        description="`snapshot`: an instance snapshot taken inside the freeze.",
        examples=["snapshot"],
    )
    allow_revert: bool = Field(
        default=False,
        description=(
            "`quiesce restore --execute` reverts the instance in place to the recovery "
            "point's snapshot (instances.revert). Irreversible: every write after the snapshot "
            "and every newer snapshot of the instance are deleted. Without it, restore prints "
            "the revert and how to copy the files from the share's `.snapshot` folder, and "
            "changes nothing on this instance."
        ),
        examples=[False],
    )

    @model_validator(mode="before")
    @classmethod
    def _only_snapshots(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("method") not in (None, "snapshot"):
            raise ValueError(
                f"method {data['method']!r}: a Filestore member is an instance snapshot "
                "(`snapshot`); Filestore backups copy the share over an interval and are not "
                "one point in time"
            )
        return data

    @property
    def resource(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/instances/{self.instance}"


SQL_SPEC = ProviderSpec(
    name="gcp-sql",
    member=CloudSqlMember,
    factory="quiesce_gcp.managed_provider:make_sql_provider",
    description="Cloud SQL: point-in-time recovery to the group's restore time T (a clone).",
    extra="gcp",
)

FILESTORE_SPEC = ProviderSpec(
    name="gcp-filestore",
    member=FilestoreMember,
    factory="quiesce_gcp.managed_provider:make_filestore_provider",
    description="Filestore: instance snapshots taken inside the group's freeze.",
    extra="gcp",
)

#: Every managed-service spec of GCP, by provider name.
MANAGED_SPECS = {spec.name: spec for spec in (SQL_SPEC, FILESTORE_SPEC)}
