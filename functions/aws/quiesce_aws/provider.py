"""Builds the AWS provider and backends from a boto3 Session and environment variables.

`make_provider` is the `quiesce.providers` entry point ("aws"): the CLI gets EC2 inventory, SSM
hooks and EBS snapshots from it and keeps its own catalog. `aws_backends` is what the Lambda
functions run with: the same provider plus the DynamoDB catalog and the EventBridge bus.

Environment (every name optional except QUIESCE_TABLE for aws_backends):

    QUIESCE_SSM_DOCUMENT          the hook document's name        (Quiesce-RunHook)
    QUIESCE_SSM_DOCUMENT_VERSION  a pinned version of it          ($DEFAULT)
    QUIESCE_TABLE                 the DynamoDB table's name
    QUIESCE_EVENT_BUS             the EventBridge bus's name      (default)
    QUIESCE_EVENT_SOURCE          the entries' Source             (quiesce)
    QUIESCE_REGION                the table's and bus's region    (the Session's, AWS_REGION)
    QUIESCE_RESTORE_INSTANCE_PROFILE  the instance profile of restored copies (the original's)
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import boto3

from quiesce.errors import QuiesceError
from quiesce.policy.model import Policy
from quiesce.ports import Backends, Provider
from quiesce.providers.registry import members_by_group, register
from quiesce_aws.clients import ClientFactory, SessionClients
from quiesce_aws.events import DEFAULT_BUS, DEFAULT_SOURCE, EventBridgePublisher
from quiesce_aws.hooks import RUN_HOOK_DOCUMENT, SsmHookRunner
from quiesce_aws.inventory import Ec2Inventory
from quiesce_aws.managed_spec import EFS_SPEC, RDS_SPEC
from quiesce_aws.member import AwsMember
from quiesce_aws.restorer import Ec2Restorer
from quiesce_aws.snapshots import EbsSnapshotter
from quiesce_aws.spec import SPEC
from quiesce_aws.state import DynamoDbStateStore

SSM_DOCUMENT_ENV = "QUIESCE_SSM_DOCUMENT"
SSM_DOCUMENT_VERSION_ENV = "QUIESCE_SSM_DOCUMENT_VERSION"
TABLE_ENV = "QUIESCE_TABLE"
EVENT_BUS_ENV = "QUIESCE_EVENT_BUS"
EVENT_SOURCE_ENV = "QUIESCE_EVENT_SOURCE"
REGION_ENV = "QUIESCE_REGION"
RESTORE_PROFILE_ENV = "QUIESCE_RESTORE_INSTANCE_PROFILE"

# Apps built by copying sources carry no package metadata: importing the provider registers it.
register(SPEC)
register(RDS_SPEC)
register(EFS_SPEC)


def _region(session: boto3.session.Session, env: Mapping[str, str]) -> str | None:
    return (
        env.get(REGION_ENV)
        or session.region_name
        or env.get("AWS_REGION")
        or env.get("AWS_DEFAULT_REGION")
    )


def find_regions(policy: Policy | None) -> dict[str, list[str]]:
    """Where `EbsSnapshotter.find` looks for a group's snapshots: its members' regions and
    the regions of its `copies:` (so the orphan sweep finds replicas there too)."""
    out: dict[str, list[str]] = {}
    for group, found in members_by_group(policy, AwsMember).items():
        copies = policy.groups[group].copies if policy is not None else []
        out[group] = sorted({m.region for m in found} | {c.region for c in copies})
    return out


def aws_provider(
    policy: Policy | None,
    clients: ClientFactory,
    *,
    default_region: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Provider:
    """EC2 inventory, SSM hooks, EBS snapshots and restores over the given clients."""
    env = os.environ if env is None else env
    return Provider(
        inventory=Ec2Inventory(clients),
        hooks=SsmHookRunner(
            clients,
            document=env.get(SSM_DOCUMENT_ENV) or RUN_HOOK_DOCUMENT,
            document_version=env.get(SSM_DOCUMENT_VERSION_ENV) or None,
        ),
        snapshots=EbsSnapshotter(
            clients,
            regions=find_regions(policy),
            default_region=default_region,
        ),
        restorer=Ec2Restorer(
            clients,
            default_region=default_region,
            instance_profile=env.get(RESTORE_PROFILE_ENV) or None,
        ),
    )


def make_provider(
    policy: Policy,
    session: boto3.session.Session | None = None,
    *,
    clients: ClientFactory | None = None,
    scratch: bool = False,
) -> Provider:
    """The `aws` provider of a policy (the factory of its `quiesce.providers` spec; it creates
    nothing, so `scratch`, for `quiesce plan`, changes nothing)."""
    session = session or boto3.session.Session()
    return aws_provider(
        policy, clients or SessionClients(session), default_region=_region(session, os.environ)
    )


def aws_backends(
    policy: Policy,
    session: boto3.session.Session | None = None,
    *,
    clients: ClientFactory | None = None,
    env: Mapping[str, str] | None = None,
) -> Backends:
    """Everything the engine needs on AWS: the provider (and the managed-service providers,
    `aws-rds` and `aws-efs`, that the policy's members name), the DynamoDB catalog
    (QUIESCE_TABLE) and the EventBridge bus (QUIESCE_EVENT_BUS)."""
    env = os.environ if env is None else env
    session = session or boto3.session.Session()
    clients = clients or SessionClients(session)
    table = env.get(TABLE_ENV)
    if not table:
        raise QuiesceError(f"set {TABLE_ENV} to the name of Quiesce's DynamoDB table")
    region = _region(session, env)
    if not region:
        raise QuiesceError(f"set {REGION_ENV} (or AWS_REGION) to the table's and bus's region")
    from quiesce_aws.managed_provider import managed_providers

    return Backends(
        providers={
            "aws": aws_provider(policy, clients, default_region=region, env=env),
            **managed_providers(policy, clients, default_region=region),
        },
        state=DynamoDbStateStore(clients, table, region),
        bus=EventBridgePublisher(
            clients,
            region,
            bus=env.get(EVENT_BUS_ENV) or DEFAULT_BUS,
            source=env.get(EVENT_SOURCE_ENV) or DEFAULT_SOURCE,
        ),
    )
