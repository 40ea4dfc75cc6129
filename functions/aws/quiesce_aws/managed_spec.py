"""The specs of AWS's managed-service providers (`quiesce.providers` entry points `aws-rds` and
`aws-efs`). They import no SDK: the factories (quiesce_aws.managed_provider) are imported when
first called."""

from __future__ import annotations

from quiesce.providers.registry import ProviderSpec
from quiesce_aws.managed_member import AwsEfsMember, AwsRdsMember

RDS_SPEC = ProviderSpec(
    name="aws-rds",
    member=AwsRdsMember,
    factory="quiesce_aws.managed_provider:make_rds_provider",
    description=(
        "Amazon RDS DB instances and Aurora DB clusters: point-in-time recovery to the group's "
        "restore time, or a DB (cluster) snapshot inside the freeze."
    ),
    extra="aws",
)

EFS_SPEC = ProviderSpec(
    name="aws-efs",
    member=AwsEfsMember,
    factory="quiesce_aws.managed_provider:make_efs_provider",
    description=(
        "Amazon EFS file systems through an AWS Backup job: a copy over an interval, never "
        "application-consistent."
    ),
    extra="aws",
)
