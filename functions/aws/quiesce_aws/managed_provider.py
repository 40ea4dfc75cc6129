"""Builds the providers of AWS's managed services (`aws-rds`, `aws-efs`): the factories of
their `quiesce.providers` specs (quiesce_aws.managed_spec), and `managed_providers`, which
quiesce_aws.provider.aws_backends adds to the functions' backends for the services a policy
names."""

from __future__ import annotations

from collections import defaultdict

import boto3

from quiesce.policy.model import Policy
from quiesce.ports import Provider
from quiesce.providers.managed import NoHooks
from quiesce.providers.registry import members_by_group
from quiesce_aws.clients import ClientFactory
from quiesce_aws.efs import EfsBackupSnapshotter, EfsInventory
from quiesce_aws.managed_clients import ManagedClients, managed_clients
from quiesce_aws.managed_member import AwsEfsMember, AwsRdsMember
from quiesce_aws.rds import RdsInventory, RdsSnapshotter


def rds_provider(
    policy: Policy | None, clients: ManagedClients, *, default_region: str | None = None
) -> Provider:
    """RDS and Aurora members over the given clients."""
    return Provider(
        inventory=RdsInventory(clients),
        hooks=NoHooks("aws-rds"),
        snapshots=RdsSnapshotter(
            clients,
            regions={
                group: sorted({m.region for m in found})
                for group, found in members_by_group(policy, AwsRdsMember).items()
            },
            default_region=default_region,
        ),
    )


def efs_provider(policy: Policy | None, clients: ManagedClients) -> Provider:
    """EFS members (through AWS Backup) over the given clients."""
    vaults: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for group, found in members_by_group(policy, AwsEfsMember).items():
        vaults[group].update((m.region, m.backup_vault) for m in found)
    return Provider(
        inventory=EfsInventory(clients),
        hooks=NoHooks("aws-efs"),
        snapshots=EfsBackupSnapshotter(
            clients, vaults={group: sorted(pairs) for group, pairs in vaults.items()}
        ),
    )


def make_rds_provider(
    policy: Policy,
    session: boto3.session.Session | None = None,
    *,
    clients: ClientFactory | None = None,
    scratch: bool = False,
) -> Provider:
    """The `aws-rds` provider of a policy (its spec's factory; it creates nothing)."""
    session = session or boto3.session.Session()
    return rds_provider(
        policy, managed_clients(clients, session), default_region=session.region_name
    )


def make_efs_provider(
    policy: Policy,
    session: boto3.session.Session | None = None,
    *,
    clients: ClientFactory | None = None,
    scratch: bool = False,
) -> Provider:
    """The `aws-efs` provider of a policy (its spec's factory; it creates nothing)."""
    return efs_provider(policy, managed_clients(clients, session))


def managed_providers(
    policy: Policy, clients: ClientFactory, *, default_region: str | None = None
) -> dict[str, Provider]:
    """The managed-service providers the policy's members name, over the same Session."""
    names = {m.provider for g in policy.groups.values() for m in g.members}
    out: dict[str, Provider] = {}
    if names & {"aws-rds", "aws-efs"}:
        managed = managed_clients(clients)
        if "aws-rds" in names:
            out["aws-rds"] = rds_provider(policy, managed, default_region=default_region)
        if "aws-efs" in names:
            out["aws-efs"] = efs_provider(policy, managed)
    return out
