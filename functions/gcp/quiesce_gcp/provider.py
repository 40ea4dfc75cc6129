"""Builds the GCP provider and backends from environment variables.

`make_provider` is the `quiesce.providers` entry point ("gcp"): the CLI gets Compute Engine
inventory, agent hooks and disk snapshots from it and keeps its own catalog. `gcp_backends` is
what the Cloud Functions run with: the same provider, the providers of the managed services the
policy names (`gcp-sql`, `gcp-filestore`: quiesce_gcp.managed_provider), the Firestore catalog
and the Pub/Sub event topic.

Environment:

    QUIESCE_PROJECT            the project of the catalog, the topic and members without one
                               (else GOOGLE_CLOUD_PROJECT, else GCP_PROJECT)
    QUIESCE_PUBSUB_TOPIC       the events topic: a name in that project or projects/P/topics/T
                               (required by gcp_backends)
    QUIESCE_FIRESTORE_DATABASE the Firestore database                     ((default))
    QUIESCE_FIRESTORE_PREFIX   the prefix of the catalog's collections    (quiesce)
    QUIESCE_COMPUTE_ENDPOINT   another Compute Engine endpoint (tests)
    QUIESCE_AGENT_MASTER_KEY   the agent master key (hex; the functions get it from Secret
                               Manager), or QUIESCE_AGENT_MASTER_KEY_FILE: a file only this
                               user can read. Agent hooks fail with NoSigningKey without one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from quiesce.errors import QuiesceError
from quiesce.policy.model import Policy
from quiesce.ports import Backends, EventPublisher, Provider
from quiesce.providers.registry import members_by_group, register
from quiesce_gcp.managed_spec import MANAGED_SPECS
from quiesce_gcp.member import GcpMember
from quiesce_gcp.spec import SPEC

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.cloud import firestore

    from quiesce_gcp.clients import GcpClients
    from quiesce_gcp.signing import AgentKeys

PROJECT_ENV = "QUIESCE_PROJECT"
TOPIC_ENV = "QUIESCE_PUBSUB_TOPIC"
DATABASE_ENV = "QUIESCE_FIRESTORE_DATABASE"
PREFIX_ENV = "QUIESCE_FIRESTORE_PREFIX"
COMPUTE_ENDPOINT_ENV = "QUIESCE_COMPUTE_ENDPOINT"

# Apps built by copying sources carry no package metadata: importing the provider registers it.
register(SPEC)
for _managed in MANAGED_SPECS.values():
    register(_managed)


def project_of(env: Mapping[str, str]) -> str | None:
    return env.get(PROJECT_ENV) or env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCP_PROJECT")


def topic_path(topic: str, project: str | None) -> str:
    """A topic name made into projects/P/topics/T."""
    if topic.startswith("projects/"):
        return topic
    if not project:
        raise QuiesceError(
            f"{TOPIC_ENV}={topic!r} names no project: set {PROJECT_ENV} (or GOOGLE_CLOUD_PROJECT) "
            "or give projects/P/topics/T"
        )
    return f"projects/{project}/topics/{topic}"


def gcp_provider(
    policy: Policy | None,
    *,
    credentials: Credentials | None = None,
    compute_endpoint: str | None = None,
    clients: GcpClients | None = None,
    default_project: str | None = None,
    poll_interval: float = 0.5,
    agent_keys: AgentKeys | None = None,
) -> Provider:
    """Compute Engine inventory, agent / guest-flush hooks, disk snapshots (and their copies
    in other regions) and the restorer that launches copies of machines (quiesce_gcp.restorer;
    it cleans up in every member project).

    `clients` wins over `credentials`/`compute_endpoint`; `poll_interval` is how often hook
    answers, snapshot states and operations are polled; `agent_keys` sign agent commands and
    verify answers (without them, agent hooks fail with NoSigningKey). The adapters are imported
    here, so the catalog and the triggers work without the Compute SDK loaded.
    """
    from quiesce_gcp.clients import GcpClients
    from quiesce_gcp.copies import GceSnapshotterWithCopies
    from quiesce_gcp.hooks import AgentHookRunner
    from quiesce_gcp.inventory import GceInventory
    from quiesce_gcp.restorer import GceRestorer

    clients = clients or GcpClients(credentials, compute_endpoint=compute_endpoint)
    projects = {
        group: sorted({m.project for m in found})
        for group, found in members_by_group(policy, GcpMember).items()
    }
    hooks = AgentHookRunner(clients, keys=agent_keys, poll_interval=poll_interval)
    every_project = sorted({p for found in projects.values() for p in found})
    if default_project and default_project not in every_project:
        every_project.append(default_project)
    return Provider(
        inventory=GceInventory(clients),
        hooks=hooks,
        # Group restores and drills: copies launched and verified through the same hooks.
        restorer=GceRestorer(clients, hooks, projects=every_project, poll_interval=poll_interval),
        snapshots=GceSnapshotterWithCopies(
            clients,
            projects=projects,
            default_project=default_project,
            poll_interval=poll_interval,
        ),
    )


def make_provider(
    policy: Policy, *, env: Mapping[str, str] | None = None, scratch: bool = False
) -> Provider:
    """The `gcp` provider of a policy (the factory of its `quiesce.providers` spec; it creates
    nothing, so `scratch`, for `quiesce plan`, changes nothing)."""
    from quiesce_gcp.signing import AgentKeys

    env = os.environ if env is None else env
    return gcp_provider(
        policy,
        default_project=project_of(env),
        compute_endpoint=env.get(COMPUTE_ENDPOINT_ENV) or None,
        agent_keys=AgentKeys.from_env(env),
    )


def gcp_backends(
    policy: Policy,
    *,
    env: Mapping[str, str] | None = None,
    firestore_client: firestore.Client | None = None,
    provider: Provider | None = None,
    bus: EventPublisher | None = None,
) -> Backends:
    """Everything the engine needs on GCP: the provider, the Firestore catalog and the Pub/Sub
    topic (QUIESCE_PUBSUB_TOPIC). `provider` and `bus` replace the real ones (tests)."""
    from quiesce_gcp.managed_provider import managed_providers
    from quiesce_gcp.state import FirestoreStateStore

    env = os.environ if env is None else env
    project = project_of(env)
    if bus is None:
        topic = env.get(TOPIC_ENV)
        if not topic:
            raise QuiesceError(f"set {TOPIC_ENV} to the Pub/Sub topic Quiesce publishes events to")
        from quiesce_gcp.events import PubSubPublisher

        bus = PubSubPublisher(topic_path(topic, project))
    if firestore_client is None:
        from google.cloud import firestore

        firestore_client = firestore.Client(project=project, database=env.get(DATABASE_ENV) or None)
    return Backends(
        providers={
            "gcp": provider or make_provider(policy, env=env),
            **managed_providers(policy, env),
        },
        state=FirestoreStateStore(firestore_client, env.get(PREFIX_ENV) or "quiesce"),
        bus=bus,
    )
