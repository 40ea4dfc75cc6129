"""Where the adapters' Compute Engine clients come from, and where each member lives.

Every adapter takes a `GcpClients` and asks it for the REST clients it needs. Clients are built
once, lazily and under a lock, with the same credentials and client options; `compute_endpoint`
points them at another endpoint (tests use a local fake: "http://127.0.0.1:PORT").

Long-running operations are polled here, with our own ZoneOperationsClient
(`wait_zone_operation`): `ExtendedOperation.result()` would poll through an operations client
that ignores our client options. Adapters call the `*_unary` methods and poll themselves.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from google.api_core.client_options import ClientOptions
from google.cloud import compute_v1

from quiesce.errors import ProviderError

if TYPE_CHECKING:
    from google.auth.credentials import Credentials

#: A zonal resource URL (or partial URL): projects/P/zones/Z/<kind>/NAME.
ZONAL = re.compile(
    r"projects/(?P<project>[^/]+)/zones/(?P<zone>[^/]+)/(?P<kind>[^/]+)/(?P<name>[^/]+)$"
)
GLOBAL = re.compile(r"projects/(?P<project>[^/]+)/global/(?P<kind>[^/]+)/(?P<name>[^/]+)$")


class GcpClients:
    """Hands out one Compute Engine REST client of each kind (thread-safe, shared)."""

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        compute_endpoint: str | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.credentials = credentials
        options = dict(client_options or {})
        if compute_endpoint:
            options["api_endpoint"] = compute_endpoint
        self.client_options = ClientOptions(**options) if options else None
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    def _client(self, cls: type[Any]) -> Any:
        with self._lock:
            client = self._clients.get(cls.__name__)
            if client is None:
                client = cls(
                    credentials=self.credentials,
                    client_options=self.client_options,
                    transport="rest",
                )
                self._clients[cls.__name__] = client
            return client

    def instances(self) -> compute_v1.InstancesClient:
        client: compute_v1.InstancesClient = self._client(compute_v1.InstancesClient)
        return client

    def disks(self) -> compute_v1.DisksClient:
        client: compute_v1.DisksClient = self._client(compute_v1.DisksClient)
        return client

    def snapshots(self) -> compute_v1.SnapshotsClient:
        client: compute_v1.SnapshotsClient = self._client(compute_v1.SnapshotsClient)
        return client

    def images(self) -> compute_v1.ImagesClient:
        client: compute_v1.ImagesClient = self._client(compute_v1.ImagesClient)
        return client

    def regions(self) -> compute_v1.RegionsClient:
        client: compute_v1.RegionsClient = self._client(compute_v1.RegionsClient)
        return client

    def zone_operations(self) -> compute_v1.ZoneOperationsClient:
        client: compute_v1.ZoneOperationsClient = self._client(compute_v1.ZoneOperationsClient)
        return client


def label_filter(labels: Mapping[str, str]) -> str:
    """A Compute Engine list filter matching every label: `(labels.k = "v") (labels.k2 = "v2")`
    (in key order)."""
    return " ".join(f'(labels.{k} = "{v}")' for k, v in sorted(labels.items()))


def carries(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """Whether a resource holds every wanted label. A list filter is the server's: each
    listing checks again with this, so a lax filter never adds a resource."""
    return all(labels.get(k) == v for k, v in wanted.items())


def parse_zonal(url: str) -> tuple[str, str, str]:
    """(project, zone, name) of a zonal resource URL such as a disk's selfLink."""
    match = ZONAL.search(url)
    if match is None:
        raise ProviderError(f"not a zonal resource URL: {url!r}", code="BadResourceUrl")
    return match["project"], match["zone"], match["name"]


def parse_global(url: str) -> tuple[str, str]:
    """(project, name) of a global resource URL such as a snapshot's selfLink."""
    match = GLOBAL.search(url)
    if match is None:
        raise ProviderError(f"not a global resource URL: {url!r}", code="BadResourceUrl")
    return match["project"], match["name"]


def operation_error(op: compute_v1.Operation) -> str | None:
    """The operation's error text, or None when it has none."""
    if op.error and op.error.errors:
        return "; ".join(f"{e.code}: {e.message}" for e in op.error.errors)
    if op.http_error_status_code and op.http_error_status_code >= 400:
        return f"HTTP {op.http_error_status_code}: {op.http_error_message}"
    return None


def wait_zone_operation(
    clients: GcpClients,
    project: str,
    zone: str,
    op: compute_v1.Operation,
    *,
    timeout: float,
    interval: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> compute_v1.Operation:
    """Polls a zonal operation until DONE (or `timeout`); raises ProviderError on its error."""
    deadline = clock() + timeout
    while op.status != compute_v1.Operation.Status.DONE:
        if clock() >= deadline:
            raise ProviderError(
                f"operation {op.name} in {project}/{zone} not done after {timeout:g}s",
                code="OperationTimeout",
            )
        sleep(interval)
        op = clients.zone_operations().get(project=project, zone=zone, operation=op.name)
    error = operation_error(op)
    if error:
        raise ProviderError(
            f"operation {op.name} ({op.operation_type}) failed: {error}", code="OperationFailed"
        )
    return op
