"""The boto3 clients of the managed-service adapters (RDS, EFS, AWS Backup), built like the
others (quiesce_aws.clients: one per service and region, botocore's retries off, the adapters
retry what is safe to retry)."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from quiesce_aws.clients import ClientFactory, SessionClients

#: RDS throttles with these (the Query API); none means the request was carried out.
RDS_THROTTLING = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded"})
#: EFS and AWS Backup (JSON APIs).
BACKUP_THROTTLING = frozenset({"ThrottlingException", "TooManyRequestsException"})


class ManagedClients(SessionClients):
    """SessionClients that also hand out RDS, EFS and AWS Backup clients."""

    def rds(self, region: str) -> Any:
        return self._client("rds", region)

    def efs(self, region: str) -> Any:
        return self._client("efs", region)

    def backup(self, region: str) -> Any:
        return self._client("backup", region)


def managed_clients(
    clients: ClientFactory | None = None,
    session: boto3.session.Session | None = None,
    config: Config | None = None,
) -> ManagedClients:
    """The managed clients over the same Session (and configuration) as `clients`."""
    if isinstance(clients, ManagedClients):
        return clients
    if isinstance(clients, SessionClients):
        return ManagedClients(clients.session, clients.config)
    return ManagedClients(session, config)
