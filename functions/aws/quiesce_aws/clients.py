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
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import boto3
from botocore.config import Config

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


def chunks(items: Iterable[T], size: int) -> list[list[T]]:
    """`items` in lists of at most `size`."""
    out: list[list[T]] = []
    for item in items:
        if not out or len(out[-1]) >= size:
            out.append([])
        out[-1].append(item)
    return out
