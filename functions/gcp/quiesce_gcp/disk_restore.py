"""Restoring a VM member's disk snapshot in the cloud: a new persistent disk created from the
snapshot (disks.insert with sourceSnapshot), in the zone of the disk it was taken of unless the
restore names another, labelled with the snapshot and recovery point it came from. The
original disk and the snapshot are left as they are; attaching the new disks (or building a
VM from them) is the operator's step. `cloud_restore` returns once Compute Engine accepted the
insert (the disk is then CREATING).

GceSnapshotter mixes this in; its permissions (the `restore` scope: never the functions') are
declared here.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from typing import ClassVar

from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from quiesce.errors import ProviderError
from quiesce.ports import CloudRestore, RestoreStep
from quiesce_gcp.clients import GcpClients, parse_global, parse_zonal
from quiesce_gcp.permissions import DISK, RESTORE, SNAPSHOT, Permission
from quiesce_gcp.retry import MUTATION_RETRYABLE, Backoff, error_message

_UNSAFE = re.compile(r"[^a-z0-9-]")


def disk_name(name: str) -> str:
    """A valid disk name (^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$) from `name`: shortened with a
    digest of the whole when longer than 63 characters."""
    out = _UNSAFE.sub("-", name.lower()).strip("-")
    if not out or not out[0].isalpha():
        out = f"q-{out}".rstrip("-")
    if len(out) > 63:
        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        out = f"{out[:52].rstrip('-')}-{digest}"
    return out


class GceDiskRestore:
    """plan_cloud_restore / cloud_restore of Compute Engine disk snapshots."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        # GceSnapshotter.check, before anything is created: is the snapshot still there?
        "check": [Permission("compute.snapshots.get", SNAPSHOT, scope=RESTORE)],
        "cloud_restore": [
            Permission("compute.disks.create", DISK, scope=RESTORE),
            Permission("compute.snapshots.useReadOnly", SNAPSHOT, scope=RESTORE),
        ],
    }

    clients: GcpClients
    backoff: Backoff

    @staticmethod
    def _disk_request(request: CloudRestore) -> tuple[str, str, compute_v1.Disk]:
        ref = request.snapshot
        if not ref.location:
            raise ProviderError(f"snapshot {ref.id}: no location", code="BadResourceUrl")
        snap_project, snap_name = parse_global(ref.location)
        project, zone, _ = parse_zonal(ref.volume) if ref.volume else (snap_project, "", "")
        zone = request.zone or zone
        if not zone:
            raise ProviderError(
                f"snapshot {ref.id}: the disk it was taken of is unknown; name a zone",
                code="NoZone",
            )
        labels = {"quiesce-restored-from": snap_name[:63]}
        point = ref.tags.get("quiesce-point")
        if point:
            labels["quiesce-point"] = point
        disk = compute_v1.Disk(
            name=disk_name(request.name),
            source_snapshot=f"projects/{snap_project}/global/snapshots/{snap_name}",
            labels=labels,
        )
        return project, zone, disk

    def plan_cloud_restore(self, request: CloudRestore) -> RestoreStep:
        project, zone, disk = self._disk_request(request)
        command = [
            "gcloud", "compute", "disks", "create", disk.name,
            f"--project={project}", f"--zone={zone}", f"--source-snapshot={disk.source_snapshot}",
            "--labels=" + ",".join(f"{k}={v}" for k, v in sorted(disk.labels.items())),
        ]  # fmt: skip
        return RestoreStep(
            member=request.member,
            snapshot=request.snapshot.id,
            action="disks.insert",
            parameters={
                "project": project,
                "zone": zone,
                "name": disk.name,
                "sourceSnapshot": disk.source_snapshot,
            },
            command=shlex.join(command),
        )

    def cloud_restore(self, request: CloudRestore) -> RestoreStep:
        step = self.plan_cloud_restore(request)
        project, zone, disk = self._disk_request(request)
        client = self.clients.disks()
        try:
            self.backoff.call(
                lambda: client.insert_unary(
                    project=project, zone=zone, disk_resource=disk, retry=None
                ),
                retry_on=MUTATION_RETRYABLE,
                what=f"disks.insert {project}/{zone}/{disk.name}",
            )
        except gexc.Conflict as exc:
            raise ProviderError(
                f"disks.insert {project}/{zone}/{disk.name}: a disk of that name exists "
                f"already: {error_message(exc)}",
                code="DiskExists",
            ) from exc
        except gexc.GoogleAPICallError as exc:
            raise ProviderError(
                f"disks.insert {project}/{zone}/{disk.name} from {disk.source_snapshot}: "
                f"{error_message(exc)}",
                code=type(exc).__name__,
            ) from exc
        step.created.append(f"projects/{project}/zones/{zone}/disks/{disk.name}")
        return step
