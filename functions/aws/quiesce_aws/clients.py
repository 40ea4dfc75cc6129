"""Where the adapters' boto3 clients come from, and which region each member lives in.

Every adapter takes a `ClientFactory` in its constructor and asks it for a client per region, so
tests hand in clients that talk to moto and a deployment hands in clients built from one boto3
Session. Clients are created once per (service, region) and shared: boto3 clients are
thread-safe, boto3 Sessions are not, so creation happens under a lock.

botocore's own retries are switched off (`max_attempts=1`): the adapters retry what is safe to
retry themselves (quiesce_aws.retry), with backoff and full jitter, and never retry a request
whose outcome is unknown when repeating it could act twice (SendCommand, CreateSnapshots).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import boto3
from botocore.config import Config

from quiesce.errors import ProviderError
from quiesce.policy.model import Policy
from quiesce_aws.member import AwsMember

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_ec2.client import EC2Client
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_ssm.client import SSMClient

T = TypeVar("T")

#: The configuration of every client the factory builds.
CLIENT_CONFIG = Config(
    retries={"max_attempts": 1, "mode": "standard"},
    connect_timeout=5,
    read_timeout=20,
    max_pool_connections=64,
    user_agent_extra="quiesce",
)


class ClientFactory(Protocol):
    """Hands out one client per service and region."""

    def ec2(self, region: str) -> EC2Client: ...

    def ssm(self, region: str) -> SSMClient: ...

    def events(self, region: str) -> EventBridgeClient: ...

    def dynamodb(self, region: str) -> DynamoDBClient: ...


class SessionClients:
    """A ClientFactory over one boto3 Session (default: a new one from the environment)."""

    def __init__(self, session: boto3.session.Session | None = None, config: Config | None = None):
        self.session = session or boto3.session.Session()
        self.config = config or CLIENT_CONFIG
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}

    def _client(self, service: str, region: str) -> Any:
        key = (service, region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self.session.client(  # type: ignore[call-overload]
                    service, region_name=region, config=self.config
                )
                self._clients[key] = client
            return client

    def ec2(self, region: str) -> EC2Client:
        client: EC2Client = self._client("ec2", region)
        return client

    def ssm(self, region: str) -> SSMClient:
        client: SSMClient = self._client("ssm", region)
        return client

    def events(self, region: str) -> EventBridgeClient:
        client: EventBridgeClient = self._client("events", region)
        return client

    def dynamodb(self, region: str) -> DynamoDBClient:
        client: DynamoDBClient = self._client("dynamodb", region)
        return client


@dataclass(frozen=True)
class AwsMembers:
    """The policy's AWS members by (group, member): their region, OS and boot-volume choice.

    Adapters need these where the engine's calls do not carry them: a machine rebuilt from a
    run record (by `quiesce recover`) has no attributes, and `find` only names a group.
    """

    members: dict[tuple[str, str], AwsMember] = field(default_factory=dict)
    default_region: str | None = None

    @classmethod
    def from_policy(cls, policy: Policy | None, default_region: str | None = None) -> AwsMembers:
        members: dict[tuple[str, str], AwsMember] = {}
        if policy is not None:
            for group_name, group in policy.groups.items():
                for member in group.members:
                    if isinstance(member, AwsMember):
                        members[(group_name, member.name)] = member
        return cls(members=members, default_region=default_region)

    def get(self, group: str, member: str) -> AwsMember | None:
        return self.members.get((group, member))

    def region(self, group: str, member: str, attributes: dict[str, str] | None = None) -> str:
        """The member's region: from the machine's attributes, the policy, or the default."""
        region = (attributes or {}).get("region")
        if not region:
            known = self.get(group, member)
            region = known.region if known is not None else self.default_region
        if not region:
            raise ProviderError(
                f"member {member!r} of group {group!r}: its AWS region is unknown (the policy "
                "does not name it and no default region is configured)",
                code="UnknownRegion",
            )
        return region

    def group_regions(self, group: str) -> list[str]:
        """Every region the group's members live in (the default region if none is known)."""
        regions = sorted({m.region for (g, _), m in self.members.items() if g == group})
        if not regions and self.default_region:
            regions = [self.default_region]
        return regions

    def all_regions(self) -> list[str]:
        return sorted({m.region for m in self.members.values()})


def chunks(items: Iterable[T], size: int) -> list[list[T]]:
    """`items` in lists of at most `size`."""
    out: list[list[T]] = []
    for item in items:
        if not out or len(out[-1]) >= size:
            out.append([])
        out[-1].append(item)
    return out
