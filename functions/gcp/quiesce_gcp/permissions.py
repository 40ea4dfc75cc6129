"""The IAM permissions each GCP adapter operation needs, declared next to the code.

Every adapter class lists, per operation, the Compute Engine / Pub/Sub IAM permissions it calls,
so a custom role for the function's service account can be derived from (and checked against)
the code instead of being kept by hand. `declared(GceInventory, AgentHookRunner, ...)` collects
them; `role_permissions(...)` is the sorted set a custom role must grant.

Each permission has a `scope`: where infra/gcp binds the role that grants it.

- `project`: project-wide (reads, snapshot creation, operations, publishing);
- `agent-instances`: only on the policy's agent member instances (an IAM condition on their
  resource names): `compute.instances.setMetadata` lets its holder run anything as root on the
  instance (startup scripts, ssh keys), so it is never granted project-wide;
- `quiesce-snapshots`: only on snapshots named like Quiesce's (`q-...`, an IAM condition on
  the name prefix): deleting and relabelling other snapshots is never granted;
- `restore`: what `quiesce restore --execute` needs to restore a recovery point in the cloud
  (a disk from a snapshot, a Cloud SQL clone, a Filestore revert). Never granted to the
  functions: infra/gcp defines a custom role with exactly these for the people who restore;
- `quiesce-images`: only on images named like Quiesce's copies (`q-...`): a point's copy in
  another region is an image (quiesce_gcp.copies), created, relabelled and deleted by the
  functions on those names only;
- `drill`: what group restores and drills read and use project-wide (instances, regions, the
  snapshots and images they restore from, the site's subnetwork, operations). Granted to the
  drill function's own service account only, never to the backup functions;
- `restored`: creating, labelling, commanding (setMetadata) and deleting the disks and
  instances a restore makes: only on names starting with `qr-` (an IAM condition), for the
  drill function's account only;
- `inspection`: attaching restored disks to (and detaching them from) the inspection instances
  a site names with `inspect_on`, and commanding their agent: only on those instances, by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from quiesce.permissions import declared as declared  # re-exported: the cloud's entry


@dataclass(frozen=True)
class Permission:
    """One IAM permission an operation uses.

    `resource` names the kind of resource it is checked on (a resource-name pattern such as
    "projects/*/zones/*/instances/*"); `conditions` documents IAM conditions a deployment should
    scope the grant with (for example {"resource.labels.quiesce-managed": "true"}).
    """

    permission: str
    resource: str = "*"
    conditions: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    scope: str = "project"


INSTANCE = "projects/*/zones/*/instances/*"
DISK = "projects/*/zones/*/disks/*"
SNAPSHOT = "projects/*/global/snapshots/*"
ZONE_OPERATION = "projects/*/zones/*/operations/*"
TOPIC = "projects/*/topics/*"
SQL_INSTANCE = "projects/*/instances/*"
FILESTORE_INSTANCE = "projects/*/locations/*/instances/*"
FILESTORE_SNAPSHOT = "projects/*/locations/*/instances/*/snapshots/*"
FILESTORE_OPERATION = "projects/*/locations/*/operations/*"
IMAGE = "projects/*/global/images/*"
SUBNETWORK = "projects/*/regions/*/subnetworks/*"
GLOBAL_OPERATION = "projects/*/global/operations/*"

PROJECT = "project"
AGENT_INSTANCES = "agent-instances"
QUIESCE_SNAPSHOTS = "quiesce-snapshots"
RESTORE = "restore"
QUIESCE_IMAGES = "quiesce-images"
RESTORE_DRILL = "drill"
RESTORED = "restored"
INSPECTION = "inspection"
SCOPES = (
    PROJECT,
    AGENT_INSTANCES,
    QUIESCE_SNAPSHOTS,
    RESTORE,
    QUIESCE_IMAGES,
    RESTORE_DRILL,
    RESTORED,
    INSPECTION,
)
#: The scopes of the drill function's account (quiesce_gcp.restorer and the hooks it runs).
DRILL_SCOPES = (RESTORE_DRILL, RESTORED, INSPECTION)


def permissions(items: Iterable[Permission]) -> set[str]:
    return {p.permission for p in items}


def role_permissions(*classes: type, scope: str | None = None) -> list[str]:
    """The sorted permissions a custom role needs for these adapter classes (those of one
    `scope`, when given)."""
    out: set[str] = set()
    for perms in declared(*classes).values():
        out |= permissions(p for p in perms if scope is None or p.scope == scope)
    return sorted(out)


def scopes_of(*classes: type) -> dict[str, set[str]]:
    """Each declared permission's scopes (a permission must have exactly one)."""
    out: dict[str, set[str]] = {}
    for perms in declared(*classes).values():
        for p in perms:
            out.setdefault(p.permission, set()).add(p.scope)
    return out
