"""Builds the Azure provider and the Function App's backends from a credential and environment.

`make_provider` is the `quiesce.providers` entry point ("azure"): the CLI gets the VM inventory,
Run Command hooks and restore points/snapshots from it and keeps its own catalog.
`azure_backends` is what the functions run with: the same provider plus the Table Storage catalog
(TableStateStore) and the Event Grid topic (EventGridPublisher).

Environment:

    QUIESCE_TABLE               the catalog table's name                          (quiesce)
    QUIESCE_TABLE_ENDPOINT      the Table service URL, e.g.
                                https://<account>.table.core.windows.net; used with the
                                credential (managed identity: "Storage Table Data Contributor")
    AzureWebJobsStorage         otherwise: the Functions storage connection string, or its
                                identity-based form (AzureWebJobsStorage__tableServiceUri /
                                AzureWebJobsStorage__accountName) with the credential
    QUIESCE_EVENTGRID_ENDPOINT  the Event Grid topic endpoint (required for azure_backends)
    QUIESCE_EVENTGRID_KEY       the topic's access key; without it the credential is used
                                (managed identity: "EventGrid Data Sender")
    AZURE_CLIENT_ID             as usual for DefaultAzureCredential (a user-assigned identity)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from azure.core.credentials import AzureKeyCredential, TokenCredential
from azure.data.tables import TableServiceClient

from quiesce.errors import QuiesceError
from quiesce.policy.model import Policy
from quiesce.ports import Backends, EventPublisher, Provider
from quiesce.providers.registry import members_by_group, register
from quiesce_azure.managed_spec import SPECS as MANAGED_SPECS
from quiesce_azure.member import AzureMember
from quiesce_azure.spec import SPEC
from quiesce_azure.state import TableStateStore

if TYPE_CHECKING:
    from quiesce_azure.clients import AzureClientFactory
    from quiesce_azure.managed import ManagedClients
    from quiesce_azure.retry import Backoff

PROVIDER = "azure"
TABLE_ENV = "QUIESCE_TABLE"
TABLE_ENDPOINT_ENV = "QUIESCE_TABLE_ENDPOINT"
STORAGE_ENV = "AzureWebJobsStorage"
EVENTGRID_ENDPOINT_ENV = "QUIESCE_EVENTGRID_ENDPOINT"
EVENTGRID_KEY_ENV = "QUIESCE_EVENTGRID_KEY"
DEFAULT_TABLE = "quiesce"

# Apps built by copying sources carry no package metadata: importing the provider registers it.
register(SPEC)
for _managed in MANAGED_SPECS:  # azure-postgres, azure-mysql, azure-sql, azure-files
    register(_managed)


def default_credential() -> TokenCredential:
    """DefaultAzureCredential: the Function App's managed identity in Azure, the developer's
    Azure CLI login on a workstation."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


def azure_provider(
    policy: Policy | None,
    credential: TokenCredential,
    *,
    base_url: str | None = None,
    client_factory: AzureClientFactory | None = None,
    polling_interval: float | None = None,
    backoff: Backoff | None = None,
) -> Provider:
    """Azure inventory, Run Command hooks, restore points/snapshots and restores for a policy.

    `credential` is a TokenCredential (e.g. azure.identity.DefaultAzureCredential or
    ManagedIdentityCredential); `base_url` another ARM endpoint; `client_factory` replaces the
    client construction altogether (then `credential` and `base_url` are unused). The adapters
    are imported here, so the catalog and the triggers work without the Compute SDK loaded.
    """
    try:
        from quiesce_azure.clients import CredentialClients
        from quiesce_azure.hooks import RunCommandHookRunner
        from quiesce_azure.inventory import AzureInventory
        from quiesce_azure.restorer import AzureRestorer
        from quiesce_azure.snapshots import AzureSnapshotter
    except ImportError as exc:
        raise QuiesceError(
            f"the Azure provider's adapters cannot be imported ({exc}): install the "
            "quiesce package with its Azure dependencies (azure-mgmt-compute)"
        ) from exc
    clients = client_factory or CredentialClients(
        credential, base_url=base_url, polling_interval=polling_interval
    )
    poll = 1.0 if polling_interval is None else polling_interval
    scopes = {
        group: sorted({(m.subscription, m.resource_group) for m in found})
        for group, found in members_by_group(policy, AzureMember).items()
    }
    return Provider(
        inventory=AzureInventory(clients, backoff=backoff),
        hooks=RunCommandHookRunner(
            clients,
            backoff=backoff,
            poll_interval=poll,
        ),
        snapshots=AzureSnapshotter(clients, scopes=scopes, backoff=backoff, poll_interval=poll),
        # group restores and drills: made in, and cleaned up from, the members' resource groups
        restorer=AzureRestorer(
            clients,
            scopes={scope for found in scopes.values() for scope in found},
            backoff=backoff,
            poll_interval=poll,
        ),
    )


def make_provider(
    policy: Policy, credential: TokenCredential | None = None, *, scratch: bool = False
) -> Provider:
    """The `azure` provider of a policy (the factory of its `quiesce.providers` spec; it creates
    nothing, so `scratch`, for `quiesce plan`, changes nothing)."""
    return azure_provider(policy, credential or default_credential())


def managed_provider(
    kind: str,
    policy: Policy | None,
    credential: TokenCredential,
    *,
    base_url: str | None = None,
    clients: ManagedClients | None = None,
    polling_interval: float | None = None,
    backoff: Backoff | None = None,
    now: Callable[[], Any] | None = None,
    sleep: Callable[[float], None] | None = None,
    file_client_kwargs: Mapping[str, Any] | None = None,
) -> Provider:
    """The provider of one managed service (`azure-postgres`, `azure-mysql`, `azure-sql`,
    `azure-files`). `clients` replaces the client construction (then `credential` and
    `base_url` are unused); `now` and `sleep` the wall clock of the wait for restorability;
    `file_client_kwargs` options of the file service's client (`azure-files` restores)."""
    from quiesce.providers.managed import NoHooks
    from quiesce_azure.managed import ManagedClients, ManagedInventory

    made = clients or ManagedClients(
        credential, base_url=base_url, polling_interval=polling_interval
    )
    extra: dict[str, Any] = {"backoff": backoff}
    if now is not None:
        extra["now"] = now
    if sleep is not None:
        extra["sleep"] = sleep
    snapshotter: Any
    if kind == "azure-files":
        from quiesce_azure.files import ShareSnapshotter

        snapshotter = ShareSnapshotter(
            made, policy=policy, file_client_kwargs=file_client_kwargs, **extra
        )
    else:
        from quiesce_azure.databases import SNAPSHOTTERS

        snapshotter = SNAPSHOTTERS[kind](made, **extra)
    return Provider(
        inventory=ManagedInventory(snapshotter.locate),
        hooks=NoHooks(kind),
        snapshots=snapshotter,
    )


def _managed_factory(kind: str) -> Callable[..., Provider]:
    def make(
        policy: Policy, credential: TokenCredential | None = None, *, scratch: bool = False
    ) -> Provider:
        return managed_provider(kind, policy, credential or default_credential())

    make.__name__ = f"make_{kind.removeprefix('azure-')}"
    make.__doc__ = f"The `{kind}` provider of a policy (its spec's factory; creates nothing)."
    return make


make_postgres = _managed_factory("azure-postgres")
make_mysql = _managed_factory("azure-mysql")
make_sql = _managed_factory("azure-sql")
make_files = _managed_factory("azure-files")


def managed_providers(
    policy: Policy, credential: TokenCredential, **kwargs: Any
) -> Mapping[str, Provider]:
    """The managed providers the policy's members name (none when it names none)."""
    names = {m.provider for g in policy.groups.values() for m in g.members}
    return {
        kind: managed_provider(kind, policy, credential, **kwargs)
        for kind in ("azure-postgres", "azure-mysql", "azure-sql", "azure-files")
        if kind in names
    }


def table_service_from_env(
    env: Mapping[str, str], credential: TokenCredential
) -> TableServiceClient:
    """The Table service: QUIESCE_TABLE_ENDPOINT with the credential, else AzureWebJobsStorage."""
    endpoint = env.get(TABLE_ENDPOINT_ENV) or env.get(f"{STORAGE_ENV}__tableServiceUri")
    if not endpoint and env.get(f"{STORAGE_ENV}__accountName"):
        endpoint = f"https://{env[f'{STORAGE_ENV}__accountName']}.table.core.windows.net"
    if endpoint:
        return TableServiceClient(endpoint=endpoint, credential=credential)
    connection = env.get(STORAGE_ENV)
    if connection:
        return TableServiceClient.from_connection_string(connection)
    raise QuiesceError(
        f"set {TABLE_ENDPOINT_ENV} (https://<account>.table.core.windows.net) or "
        f"{STORAGE_ENV} so Quiesce can find its catalog table"
    )


def event_publisher(env: Mapping[str, str], credential: TokenCredential) -> EventPublisher:
    """Their EventGridPublisher on QUIESCE_EVENTGRID_ENDPOINT (key or the credential)."""
    from quiesce_azure.events import EventGridPublisher

    endpoint = env.get(EVENTGRID_ENDPOINT_ENV)
    if not endpoint:
        raise QuiesceError(
            f"set {EVENTGRID_ENDPOINT_ENV} to the Event Grid topic's endpoint "
            "(https://<topic>.<region>-1.eventgrid.azure.net/api/events)"
        )
    key = env.get(EVENTGRID_KEY_ENV)
    auth: AzureKeyCredential | TokenCredential = AzureKeyCredential(key) if key else credential
    return EventGridPublisher(endpoint, auth)


def azure_backends(
    policy: Policy,
    *,
    credential: TokenCredential | None = None,
    env: Mapping[str, str] | None = None,
    table_service: TableServiceClient | None = None,
    provider: Provider | None = None,
    bus: EventPublisher | None = None,
    managed: Mapping[str, Provider] | None = None,
) -> Backends:
    """Everything the engine needs on Azure: the provider, the Table catalog (QUIESCE_TABLE)
    and the Event Grid topic (QUIESCE_EVENTGRID_ENDPOINT), and the managed-service providers
    (`azure-postgres`, `azure-mysql`, `azure-sql`, `azure-files`) the policy's members name,
    their SDKs imported only then. Each part can be given instead."""
    env = os.environ if env is None else env
    wants_managed = managed is None and _names_managed(policy)
    needed = provider is None or bus is None or table_service is None or wants_managed
    cred = credential or (default_credential() if needed else None)
    if table_service is None and cred is not None:
        table_service = table_service_from_env(env, cred)
    if provider is None and cred is not None:
        provider = azure_provider(policy, cred)
    if bus is None and cred is not None:
        bus = event_publisher(env, cred)
    assert table_service is not None
    assert provider is not None
    assert bus is not None
    providers = {PROVIDER: provider}
    if managed is None and cred is not None and _names_managed(policy):
        managed = managed_providers(policy, cred)
    providers.update(managed or {})
    return Backends(
        providers=providers,
        state=TableStateStore(table_service, env.get(TABLE_ENV) or DEFAULT_TABLE),
        bus=bus,
    )


def _names_managed(policy: Policy) -> bool:
    """Whether the policy has a member of a managed-service provider."""
    names = {spec.name for spec in MANAGED_SPECS}
    return any(m.provider in names for g in policy.groups.values() for m in g.members)
