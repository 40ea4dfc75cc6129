"""The member models of AWS's managed services: RDS DB instances and Aurora (or Multi-AZ) DB
clusters (`aws-rds`), and EFS file systems backed up through AWS Backup (`aws-efs`).

A managed member names one resource; it runs no hooks of its own (its writers are the
application's, held by the group's EC2 members). How its point in time is fixed:

- `aws-rds`, `method: pitr` (the default): the group's restore time `T`, reached through the
  automated backups (point-in-time recovery); the database must keep automated backups
  (a backup retention period of at least one day), which `quiesce plan` and every run check.
- `aws-rds`, `method: snapshot`: a manual DB snapshot or DB cluster snapshot taken inside the
  freeze, tagged as Quiesce's own (retention deletes it with its recovery point).
- `aws-efs`: an on-demand AWS Backup job, which copies the files over minutes: never one
  point in time, so never recorded `application`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from quiesce.policy.managed import ManagedMember, Method, method_field
from quiesce_aws.member import region_field

#: DB instance and cluster identifiers: 1-63 letters, digits and hyphens, starting with a letter.
RDS_IDENTIFIER = r"^[A-Za-z][A-Za-z0-9-]{0,62}$"


class AwsRdsMember(ManagedMember):
    """An RDS DB instance, or an Aurora (or Multi-AZ) DB cluster: by point-in-time recovery to
    the group's `T`, or by a snapshot taken inside the freeze."""

    provider: Literal["aws-rds"] = Field(description="Amazon RDS and Aurora.", examples=["aws-rds"])
    region: str = region_field("The database's region.")
    instance: str | None = Field(
        default=None,
        pattern=RDS_IDENTIFIER,
        description="The DB instance identifier (RDS for PostgreSQL, MySQL, MariaDB, Oracle, "
        "SQL Server). Give `instance` or `cluster`.",
        examples=["orders-db"],
    )
    cluster: str | None = Field(
        default=None,
        pattern=RDS_IDENTIFIER,
        description="The DB cluster identifier (Aurora, or a Multi-AZ DB cluster): the whole "
        "cluster is one member. Give `instance` or `cluster`.",
        examples=["orders-aurora"],
    )
    method: Method = method_field(
        "pitr",
        "`pitr` (the default) needs automated backups (a backup retention period of at least "
        "one day): restore to `T` at whole seconds, no snapshot to pay for, a wait of about "
        "five minutes after the run for the transaction logs to reach S3. `snapshot`: a manual "
        "DB (cluster) snapshot, deleted by retention.",
    )

    @model_validator(mode="after")
    def _one_resource(self) -> AwsRdsMember:
        if (self.instance is None) == (self.cluster is None):
            raise ValueError(
                "name the database with exactly one of `instance` (a DB instance identifier) "
                "or `cluster` (an Aurora or Multi-AZ DB cluster identifier)"
            )
        return self

    @property
    def kind(self) -> Literal["instance", "cluster"]:
        return "instance" if self.instance is not None else "cluster"

    @property
    def identifier(self) -> str:
        return self.instance or self.cluster or ""


class AwsEfsMember(ManagedMember):
    """An EFS file system, backed up by an on-demand AWS Backup job (a copy over an interval:
    never application-consistent)."""

    provider: Literal["aws-efs"] = Field(
        description="Amazon EFS through AWS Backup.", examples=["aws-efs"]
    )
    region: str = region_field("The file system's region.")
    file_system: str = Field(
        pattern=r"^fs-[0-9a-f]{8,40}$",
        description="The EFS file system id.",
        examples=["fs-0123456789abcdef0"],
    )
    backup_vault: str = Field(
        default="Default",
        pattern=r"^[A-Za-z0-9\-_]{2,50}$",
        description="The AWS Backup vault the recovery points go to.",
        examples=["Default"],
    )
    backup_role_arn: str = Field(
        pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$",
        description="The IAM role AWS Backup assumes to read the file system (and to restore "
        "it), e.g. the AWSBackupDefaultServiceRole.",
        examples=["arn:aws:iam::123456789012:role/service-role/AWSBackupDefaultServiceRole"],
    )
    delete_after_days: int | None = Field(
        default=None,
        ge=1,
        description="AWS Backup's own lifecycle for the recovery point (Quiesce's retention "
        "deletes it earlier with its recovery point). Unset: kept until deleted.",
        examples=[35],
    )
