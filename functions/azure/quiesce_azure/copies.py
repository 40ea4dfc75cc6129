"""Copies of restore points and incremental snapshots in another Azure region.

`AzureSnapshotter.copy_to_region` (the Snapshotter port) lands here. A copy is made the way the
source was taken, so a copy restores the same way as the original:

* a restore point: a restore point in a collection in the target region whose
  `properties.source.id` is the source's collection (`quiesce-<vm>-<region>`, in the source's
  resource group: a resource group holds resources of any region; created on first use, tagged
  like the source's collection plus `quiesce:region` and `quiesce:copy-of`), created with
  `properties.sourceRestorePoint.id` and the source's name. Azure replicates every disk restore
  point in the background; a disk restore point's `instanceView.replicationStatus` tells how far
  (`$expand=instanceView`). With a key, each disk restore point of the copy is encrypted with
  that disk encryption set (`diskRestorePoint.encryption`).
* an incremental snapshot: an incremental snapshot in the target region with
  `creationData.createOption: CopyStart` (named `<source>-<region>`, tagged); Azure copies it in
  the background and its `completionPercent` tells how far. With a key, it is encrypted with the
  disk encryption set (`encryption.diskEncryptionSetId`).

Both are started without waiting (`polling=False`): the replica comes back PENDING at once, and
`wait_durable` / `states` follow it like any snapshot: a restore point copy is durable when it
has Succeeded and every disk restore point reports 100 %, a snapshot copy at 100 %
(`copy_state`). `delete` and `find` take replicas as they take sources: they are Quiesce-tagged
snapshots and restore points of a Quiesce-tagged collection. Only a completed source is copied.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.mgmt.compute import models

from quiesce.errors import ProviderError
from quiesce.record import SnapshotRef, SnapshotState, utcnow
from quiesce.tags import MANAGED_TAG
from quiesce_azure.clients import (
    RESTORE_POINT_ID,
    SNAPSHOT_ID,
    as_json,
    dig,
    provisioning_state,
)
from quiesce_azure.permissions import Permission
from quiesce_azure.retry import error_code, error_message

if TYPE_CHECKING:
    from quiesce_azure.snapshots import AzureSnapshotter

#: The tags the core puts on a replica (besides the point's own).
COPY_OF_TAG = "quiesce:copy-of"
REGION_TAG = "quiesce:region"
#: ARM's longest tag value.
TAG_VALUE_MAX = 256
#: A collection's tags that a copy's collection carries over.
COLLECTION_TAGS = (
    MANAGED_TAG,
    "quiesce:policy",
    "quiesce:group",
    "quiesce:member",
    "quiesce:machine",
)
CUSTOMER_KEY = "EncryptionAtRestWithCustomerKey"

COPY_PERMISSIONS = [
    Permission("Microsoft.Compute/snapshots/read"),
    Permission("Microsoft.Compute/snapshots/write", conditions={"tag": f"{MANAGED_TAG}=true"}),
    Permission("Microsoft.Compute/restorePointCollections/read"),
    Permission(
        "Microsoft.Compute/restorePointCollections/write",
        conditions={"tag": f"{MANAGED_TAG}=true"},
    ),
    Permission("Microsoft.Compute/restorePointCollections/restorePoints/read"),
    Permission("Microsoft.Compute/restorePointCollections/restorePoints/write"),
    # With `key:` the disk encryption set (in a target resource group) is read by ARM.
    Permission("Microsoft.Compute/diskEncryptionSets/read"),
]


def _name(text: str, limit: int = 80) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:limit].rstrip(".-")


def copy_name(source_name: str, region: str, limit: int = 80) -> str:
    """`<source>-<region>`, the region kept whole when the source's name must be shortened."""
    suffix = f"-{_name(region, 40)}"
    return _name(source_name, limit - len(suffix)) + suffix


def _tag_value(value: str) -> str:
    return value[:TAG_VALUE_MAX]


def copy_to_region(
    snapshotter: AzureSnapshotter,
    snapshot: SnapshotRef,
    region: str,
    key: str | None,
    tags: dict[str, str],
) -> SnapshotRef:
    """Starts the copy of `snapshot` in `region`; returns the replica, PENDING."""
    try:
        if match := RESTORE_POINT_ID.match(snapshot.id):
            return _copy_restore_point(snapshotter, snapshot, match, region, key, tags)
        if match := SNAPSHOT_ID.match(snapshot.id):
            return _copy_snapshot(snapshotter, snapshot, match, region, key, tags)
    except ResourceNotFoundError as exc:
        raise ProviderError(
            f"{snapshot.id} cannot be copied to {region}: {error_message(exc)}", code="NotFound"
        ) from exc
    except AzureError as exc:
        raise ProviderError(
            f"copying {snapshot.id} to {region} failed: {error_message(exc)}",
            code=error_code(exc) or "CopyFailed",
        ) from exc
    raise ProviderError(
        f"{snapshot.id!r} is neither a snapshot nor a restore point id", code="BadSnapshotId"
    )


def _replica(
    source: SnapshotRef, replica_id: str, tags: dict[str, str], region: str
) -> SnapshotRef:
    return source.model_copy(
        update={
            "id": replica_id,
            "state": SnapshotState.PENDING,
            "started_at": utcnow(),
            "durable_at": None,
            "location": replica_id,
            "tags": {**source.tags, **tags, REGION_TAG: region},
        }
    )


def _copy_restore_point(
    snapshotter: AzureSnapshotter,
    ref: SnapshotRef,
    match: re.Match[str],
    region: str,
    key: str | None,
    tags: dict[str, str],
) -> SnapshotRef:
    sub, rg, coll, name = match["sub"], match["rg"], match["coll"], match["name"]
    compute = snapshotter.clients.compute(sub)
    backoff = snapshotter.backoff
    source_coll = as_json(
        backoff.call(
            lambda: compute.restore_point_collections.get(rg, coll),
            what=f"GET restore point collection {coll}",
        )
    )
    source_tags = source_coll.get("tags") or {}
    if source_tags.get(MANAGED_TAG) != "true":
        raise ProviderError(
            f"refusing to copy {ref.id}: its collection is not tagged {MANAGED_TAG}=true",
            code="NotManaged",
        )
    target = copy_name(coll, region)
    coll_id = str(source_coll.get("id") or "")
    try:
        existing = as_json(
            backoff.call(
                lambda: compute.restore_point_collections.get(rg, target),
                what=f"GET restore point collection {target}",
            )
        )
    except ResourceNotFoundError:
        existing = {}
    if existing:
        if (existing.get("tags") or {}).get(MANAGED_TAG) != "true":
            raise ProviderError(
                f"restore point collection {target} exists without {MANAGED_TAG}=true: Quiesce "
                "does not write to it",
                code="NotManaged",
            )
        if str(dig(existing, "properties", "source", "id") or "").lower() != coll_id.lower():
            raise ProviderError(
                f"restore point collection {target} copies another collection than {coll_id}",
                code="NotManaged",
            )
    else:
        body = {
            "location": region,
            "tags": {
                **{k: source_tags[k] for k in COLLECTION_TAGS if k in source_tags},
                REGION_TAG: region,
                COPY_OF_TAG: _tag_value(coll_id),
            },
            "properties": {"source": {"id": coll_id}},
        }
        backoff.call(
            lambda: compute.restore_point_collections.create_or_update(
                rg, target, models.RestorePointCollection(body)
            ),
            what=f"create restore point collection {target} in {region}",
        )
        snapshotter._remember(sub, rg, target)
    properties: dict[str, Any] = {"sourceRestorePoint": {"id": ref.id}}
    if key:
        properties["sourceMetadata"] = {"storageProfile": _encrypted_disks(snapshotter, ref, key)}
    backoff.call(
        lambda: compute.restore_points.begin_create(
            rg, target, name, models.RestorePoint({"properties": properties}), polling=False
        ),
        what=f"copy restore point {name} to {region}",
    )
    replica_id = (
        f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/"
        f"restorePointCollections/{target}/restorePoints/{name}"
    )
    return _replica(ref, replica_id, tags, region)


def _encrypted_disks(snapshotter: AzureSnapshotter, ref: SnapshotRef, key: str) -> dict[str, Any]:
    """Each disk restore point of the source, to be encrypted with `key` in the copy."""
    match = RESTORE_POINT_ID.match(ref.id)
    assert match is not None
    compute = snapshotter.clients.compute(match["sub"])
    point = as_json(
        snapshotter.backoff.call(
            lambda: compute.restore_points.get(match["rg"], match["coll"], match["name"]),
            what="GET restore point",
        )
    )
    encryption = {"diskEncryptionSet": {"id": key}, "type": CUSTOMER_KEY}
    profile = dig(point, "properties", "sourceMetadata", "storageProfile") or {}
    out: dict[str, Any] = {}
    if profile.get("osDisk"):
        out["osDisk"] = {"diskRestorePoint": {"encryption": encryption}}
    out["dataDisks"] = [
        {"lun": disk.get("lun"), "diskRestorePoint": {"encryption": encryption}}
        for disk in profile.get("dataDisks") or []
    ]
    return out


def _copy_snapshot(
    snapshotter: AzureSnapshotter,
    ref: SnapshotRef,
    match: re.Match[str],
    region: str,
    key: str | None,
    tags: dict[str, str],
) -> SnapshotRef:
    sub, rg, name = match["sub"], match["rg"], match["name"]
    compute = snapshotter.clients.compute(sub)
    source = as_json(
        snapshotter.backoff.call(
            lambda: compute.snapshots.get(rg, name), what=f"GET snapshot {name}"
        )
    )
    source_tags = source.get("tags") or {}
    if source_tags.get(MANAGED_TAG) != "true":
        raise ProviderError(
            f"refusing to copy {ref.id}: it is not tagged {MANAGED_TAG}=true", code="NotManaged"
        )
    if not dig(source, "properties", "incremental"):
        raise ProviderError(
            f"{ref.id} is a full snapshot: Azure copies only incremental snapshots to another "
            "region (CopyStart)",
            code="CopyUnsupported",
        )
    target = copy_name(name, region)
    replica_tags = {
        **{k: v for k, v in source_tags.items() if k.startswith("quiesce:")},
        **{k: _tag_value(v) for k, v in tags.items()},
        MANAGED_TAG: "true",
        REGION_TAG: region,
    }
    body: dict[str, Any] = {
        "location": region,
        "tags": replica_tags,
        "properties": {
            "creationData": {"createOption": "CopyStart", "sourceResourceId": ref.id},
            "incremental": True,
        },
    }
    if key:
        body["properties"]["encryption"] = {"type": CUSTOMER_KEY, "diskEncryptionSetId": key}
    snapshotter.backoff.call(
        lambda: compute.snapshots.begin_create_or_update(
            rg, target, models.Snapshot(body), polling=False
        ),
        what=f"copy snapshot {name} to {region}",
    )
    replica_id = (
        f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/snapshots/{target}"
    )
    return _replica(ref, replica_id, replica_tags, region)


def restore_point_state(point: dict[str, Any]) -> SnapshotState:
    """A restore point's state, read with `$expand=instanceView`: Succeeded, and (for a copy)
    every disk restore point replicated to 100 %; a failed replication fails it."""
    state = provisioning_state(dig(point, "properties", "provisioningState"))
    if state is not SnapshotState.COMPLETED:
        return state
    for disk in dig(point, "properties", "instanceView", "diskRestorePoints") or []:
        status = disk.get("replicationStatus") or {}
        code = str(dig(status, "status", "code") or "").lower()
        if "failed" in code:
            return SnapshotState.FAILED
        percent = status.get("completionPercent")
        if percent is not None and float(percent) < 100:
            return SnapshotState.PENDING
    return SnapshotState.COMPLETED
