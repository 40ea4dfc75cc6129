"""Where the adapters' ARM clients come from, and what the policy says about each member.

Every adapter takes an `AzureClientFactory` and asks it for a ComputeManagementClient per
subscription, so tests hand in clients that talk to a local fake ARM server (`base_url`) and a
deployment hands in clients built from one credential (a managed identity). Clients are created
once per subscription and shared (azure-core clients are thread-safe), under a lock.

The SDK's own retry policy is replaced by `quiesce_azure.retry.Reconnect`, which repeats only
requests whose connection failed (idempotent ones when it failed after sending); the adapters'
`Backoff.call` retries what is safe to retry (429/503: not carried out) and honours Retry-After.
Response bodies are read as the JSON ARM sent (`as_json`), by their wire names, so the code does
not depend on which SDK version flattens which property.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from azure.core.credentials import TokenCredential
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import BearerTokenCredentialPolicy
from azure.mgmt.compute import ComputeManagementClient

from quiesce.errors import ProviderError
from quiesce.record import SnapshotState
from quiesce_azure.retry import Backoff, Reconnect

ARM_SCOPE = "https://management.azure.com/.default"

VM_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.Compute/virtualMachines/(?P<vm>[^/]+)$",
    re.IGNORECASE,
)
#: A managed-disk snapshot's id.
SNAPSHOT_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.Compute/snapshots/(?P<name>[^/]+)$",
    re.IGNORECASE,
)
#: A VM restore point's id (in its restore point collection).
RESTORE_POINT_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.Compute/restorePointCollections/(?P<coll>[^/]+)/restorePoints/(?P<name>[^/]+)$",
    re.IGNORECASE,
)


class AzureClientFactory(Protocol):
    """Hands out one Compute client per subscription."""

    def compute(self, subscription: str) -> ComputeManagementClient: ...


class _PlainHttpBearerPolicy(BearerTokenCredentialPolicy):  # type: ignore[type-arg]
    """Bearer tokens also over http: only for a local endpoint (a test's fake ARM)."""

    def on_request(self, request: PipelineRequest[Any]) -> None:
        request.context["enforce_https"] = False
        super().on_request(request)


class CredentialClients:
    """An AzureClientFactory over one TokenCredential.

    `base_url` points the clients at another ARM endpoint (a test's fake; an `http://` one is
    allowed only for 127.0.0.1/localhost); `polling_interval` overrides the LRO poll interval
    when the server sends no Retry-After (tests use 0).
    """

    def __init__(
        self,
        credential: TokenCredential,
        *,
        base_url: str | None = None,
        polling_interval: float | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
        reconnect: Backoff | None = None,
    ) -> None:
        self.credential = credential
        self.reconnect = reconnect
        self.base_url = base_url
        self.polling_interval = polling_interval
        self.client_kwargs = dict(client_kwargs or {})
        self._lock = threading.Lock()
        self._clients: dict[str, ComputeManagementClient] = {}

    def _kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "retry_policy": Reconnect(self.reconnect),
            "user_agent": "quiesce",
        }
        if self.polling_interval is not None:
            kwargs["polling_interval"] = self.polling_interval
        if self.base_url:
            kwargs["base_url"] = self.base_url
            local = re.match(r"^http://(127\.0\.0\.1|localhost)(:\d+)?(/|$)", self.base_url)
            if self.base_url.startswith("http://"):
                if not local:
                    raise ProviderError(
                        f"refusing to send ARM tokens over plain http to {self.base_url}",
                        code="InsecureEndpoint",
                    )
                kwargs["authentication_policy"] = _PlainHttpBearerPolicy(self.credential, ARM_SCOPE)
        kwargs.update(self.client_kwargs)
        return kwargs

    def compute(self, subscription: str) -> ComputeManagementClient:
        with self._lock:
            client = self._clients.get(subscription)
            if client is None:
                client = ComputeManagementClient(self.credential, subscription, **self._kwargs())
                self._clients[subscription] = client
            return client


@dataclass(frozen=True)
class VmRef:
    subscription: str
    resource_group: str
    name: str

    @property
    def id(self) -> str:
        return vm_id(self.subscription, self.resource_group, self.name)


def vm_id(subscription: str, resource_group: str, name: str) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.Compute/virtualMachines/{name}"
    )


def parse_vm_id(machine_id: str) -> VmRef:
    """The subscription, resource group and name of a VM's ARM id (a Machine's machine_id)."""
    match = VM_ID.match(machine_id)
    if not match:
        raise ProviderError(
            f"{machine_id!r} is not the ARM id of a virtual machine", code="BadMachineId"
        )
    return VmRef(match["sub"], match["rg"], match["vm"])


def as_json(model: Any) -> dict[str, Any]:
    """A response model as the JSON ARM sent (wire names), or {} for None."""
    if model is None:
        return {}
    if isinstance(model, dict):
        return model
    as_dict = getattr(model, "as_dict", None)
    if as_dict is not None:
        out: dict[str, Any] = as_dict()
        return out
    raise TypeError(f"cannot read {type(model).__name__} as JSON")


def dig(data: Any, *keys: str | int) -> Any:
    """data[k1][k2]…, or None as soon as one is missing."""
    for key in keys:
        if isinstance(data, dict) and isinstance(key, str):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return None
    return data


def parse_time(value: Any) -> datetime | None:
    """A time ARM sent (ISO 8601, `Z` or an offset; or one the SDK already parsed), else None."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def provisioning_state(value: Any) -> SnapshotState:
    """A resource's ARM provisioningState as a snapshot state: Succeeded is completed; Failed,
    Canceled and Deleting are failed; anything else is still pending."""
    state = str(value or "").lower()
    if state == "succeeded":
        return SnapshotState.COMPLETED
    if state in ("failed", "canceled", "deleting"):
        return SnapshotState.FAILED
    return SnapshotState.PENDING
