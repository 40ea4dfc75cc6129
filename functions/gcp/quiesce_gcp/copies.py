"""A recovery point's copy in another region, on Compute Engine: an image of each disk snapshot,
stored in that region.

What "a copy in another region" means here. A snapshot is a global resource kept in one storage
location (by default the multi-region nearest its disk: `eu`, `us`, `asia`), and a disk can be
made from it in any zone. So a snapshot can already be restored anywhere, and within its
multi-region it survives the loss of one region. It is still not a copy: it is ONE object, in
one storage location, under one key, deleted by the group's own retention; and its data cannot
be moved after the fact (`storageLocations` is fixed when a snapshot is created from a disk,
and no API creates a snapshot from a snapshot). The copy Quiesce makes is therefore an image
created from the snapshot (images.insert with `sourceSnapshot`) with `storageLocations` set to
the copy's region, encrypted with the copy's KMS key when the policy names one
(`imageEncryptionKey`; the region's default encryption otherwise). It is a separate object with
its own data in that region, its own key and its own retention (`copies[].keep_last`), and it
stays when the source snapshot is deleted. A restore in that region creates its disks from it
(disks.insert with `sourceImage`, quiesce_gcp.restorer). Images are made even when the
snapshot's storage location happens to cover the region: its retention and key would still be
the source's.

An image is PENDING while its data is copied and READY after (FAILED when it failed): the
replica `copy_to_region` returns is pending, `wait_durable` follows it like a snapshot (one
images.get each per round), and a restore or drill in that region is refused until every
replica of the point is READY (the core's copies refresh). Images are named
`q-c-<digest of snapshot and region>`: a repeated copy finds the image already there (409) and
follows it; infra/gcp grants creating, labelling and deleting images on `q-` names only.

Each image carries the source snapshot's labels plus `quiesce-copy-of` (the source snapshot's
name), `quiesce-region` and `quiesce-machine-type` (the source instance's machine type, read
when the copy is made, so a restore there needs no access to the original's region), and a
label for each of the core's tags the snapshot has one for. Its description holds the core's
tags with their exact values (those of the snapshot, `quiesce:copy-of` and `quiesce:region`)
as JSON, as the snapshots' does, read by the same rule (quiesce_gcp.snapshots.exact_tags): an
exact value is believed only where its label agrees, so `find` gives the orphan sweep a copy's
run and point as the run wrote them.

`GceCopies` adds `copy_to_region` to the snapshotter and takes the image side of
`wait_durable`, `delete` and `find`, handing snapshots on to it: the provider's snapshotter is
`GceSnapshotterWithCopies` (GceCopies mixed in ahead of GceSnapshotter).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from quiesce.durability import poll_durable
from quiesce.errors import ProviderError
from quiesce.ports import fan_out
from quiesce.record import SnapshotRef, SnapshotState, utcnow
from quiesce.tags import COPY_OF_TAG, REGION_TAG
from quiesce_gcp.clients import GcpClients, label_filter, parse_global, parse_zonal
from quiesce_gcp.permissions import (
    IMAGE,
    INSTANCE,
    QUIESCE_IMAGES,
    QUIESCE_SNAPSHOTS,
    SNAPSHOT,
    Permission,
)
from quiesce_gcp.restorer import MACHINE_TYPE_LABEL, label_value
from quiesce_gcp.retry import MUTATION_RETRYABLE, Backoff, error_message
from quiesce_gcp.snapshots import (
    MANAGED_LABEL,
    TAG_LABELS,
    GceSnapshotter,
    asked_tags,
    find_projects,
    listed_tags,
    tag_description,
    tag_labels,
    wanted_labels,
)

log = logging.getLogger(__name__)

COPY_OF_LABEL = "quiesce-copy-of"
REGION_LABEL = "quiesce-region"
#: Every copy is an image named with this prefix (infra/gcp scopes image rights to `q-`).
COPY_PREFIX = "q-c-"
#: The label that holds each of the core's tags of a copy (the description holds them exact).
COPY_TAG_LABELS: dict[str, str] = {
    **TAG_LABELS,
    COPY_OF_TAG: COPY_OF_LABEL,
    REGION_TAG: REGION_LABEL,
}
#: What an image's status says of the copy's durability (other statuses: still pending).
IMAGE_DURABILITY = {"READY": SnapshotState.COMPLETED, "FAILED": SnapshotState.FAILED}
#: The tags a snapshot ref carries that are not labels of the snapshot.
_NOT_LABELS = frozenset({"status", "guest-flush"})
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_KMS_LOCATION = re.compile(r"projects/[^/]+/locations/([^/]+)/keyRings/[^/]+/cryptoKeys/[^/]+$")


def copy_name(snapshot: str, region: str) -> str:
    digest = hashlib.sha256(f"{snapshot}|{region}".encode()).hexdigest()[:24]
    return f"{COPY_PREFIX}{digest}"


def is_copy(ref: SnapshotRef) -> bool:
    """A replica made by `copy_to_region` (an image), not a snapshot."""
    return "/global/images/" in ref.location


def copy_labels(tags: Mapping[str, str]) -> dict[str, str]:
    """The labels among `tags` (the source's labels; not the core's `quiesce:` tags)."""
    return {
        k: label_value(v) for k, v in tags.items() if k not in _NOT_LABELS and _LABEL_KEY.match(k)
    }


class GceCopies:
    """copy_to_region, and images as replicas in wait_durable, delete and find."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "copy_to_region": [
            Permission("compute.instances.get", INSTANCE),
            Permission("compute.images.get", IMAGE),
            Permission("compute.images.create", IMAGE, scope=QUIESCE_IMAGES),
            Permission("compute.images.setLabels", IMAGE, scope=QUIESCE_IMAGES),
            Permission("compute.snapshots.useReadOnly", SNAPSHOT, scope=QUIESCE_SNAPSHOTS),
        ],
        "wait_durable": [Permission("compute.images.get", IMAGE)],
        "delete": [
            Permission("compute.images.get", IMAGE),
            Permission(
                "compute.images.delete",
                IMAGE,
                {"resource.labels.quiesce-managed": "true"},
                scope=QUIESCE_IMAGES,
            ),
        ],
        "find": [Permission("compute.images.list", "projects/*")],
    }

    clients: GcpClients
    backoff: Backoff
    poll_interval: float
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    projects: dict[str, Sequence[str]]
    default_project: str | None

    # ------------------------------------------------- the snapshotter's, with the images

    def wait_durable(self, snapshots: Sequence[SnapshotRef], timeout: float) -> list[SnapshotRef]:
        copies = [s for s in snapshots if is_copy(s)]
        rest = [s for s in snapshots if not is_copy(s)]
        done: dict[str, SnapshotRef] = {}
        if rest:
            done.update((r.id, r) for r in super().wait_durable(rest, timeout))  # type: ignore[misc]
        if copies:
            done.update((r.id, r) for r in self.wait_copies(copies, timeout))
        return [done[s.id] for s in snapshots]

    def delete(self, snapshot: SnapshotRef) -> None:
        if is_copy(snapshot):
            self.delete_copy(snapshot)
        else:
            super().delete(snapshot)  # type: ignore[misc]

    def find(self, policy: str, group: str, run_id: str | None = None) -> list[SnapshotRef]:
        found: list[SnapshotRef] = super().find(policy, group, run_id)  # type: ignore[misc]
        asked = asked_tags(policy, group, run_id)
        for project in find_projects(self.projects, group, self.default_project):
            found += self.find_copies(project, asked)
        return found

    # ------------------------------------------------------------------------ the copy

    def copy_to_region(
        self, snapshot: SnapshotRef, region: str, key: str | None, tags: dict[str, str]
    ) -> SnapshotRef:
        if is_copy(snapshot):
            raise ProviderError(
                f"{snapshot.id} is a copy already: copy the point's own snapshots",
                code="CopyOfCopy",
            )
        if snapshot.state is not SnapshotState.COMPLETED:
            raise ProviderError(
                f"snapshot {snapshot.id} is {snapshot.state.value}: only a completed snapshot "
                "is copied",
                code="NotCompleted",
            )
        if not _REGION.match(region):
            raise ProviderError(
                f"copies: {region!r} is not a Compute Engine region (e.g. europe-west4)",
                code="BadRegion",
            )
        if not snapshot.location:
            raise ProviderError(f"snapshot {snapshot.id}: no location", code="BadResourceUrl")
        project, source = parse_global(snapshot.location)
        name = copy_name(source, region)
        labels = {**copy_labels(tags), **tag_labels(tags)}
        labels.update(
            {MANAGED_LABEL: "true", COPY_OF_LABEL: label_value(source), REGION_LABEL: region}
        )
        machine_type = self._machine_type(snapshot)
        if machine_type:
            labels[MACHINE_TYPE_LABEL] = machine_type
        image = compute_v1.Image(
            name=name,
            source_snapshot=f"projects/{project}/global/snapshots/{source}",
            storage_locations=[region],
            labels=labels,
            description=tag_description(tags, COPY_TAG_LABELS),
        )
        if key:
            _check_key(key, region)
            image.image_encryption_key = compute_v1.CustomerEncryptionKey(kms_key_name=key)
        started = utcnow()
        try:
            self.backoff.call(
                lambda: self.clients.images().insert_unary(
                    project=project, image_resource=image, retry=None
                ),
                retry_on=MUTATION_RETRYABLE,
                what=f"images.insert {name}",
            )
        except gexc.Conflict:
            existing = self._image(project, name)
            if existing is None or existing.labels.get(COPY_OF_LABEL) != label_value(source):
                raise ProviderError(
                    f"image {name} exists and is not the copy of {source}: not using it",
                    code="NameTaken",
                ) from None
        except gexc.GoogleAPICallError as exc:
            raise ProviderError(
                f"images.insert {project}/{name} from snapshot {source} into {region}: "
                f"{error_message(exc)}",
                code=type(exc).__name__,
            ) from exc
        return snapshot.model_copy(
            update={
                "id": name,
                "state": SnapshotState.PENDING,
                "started_at": started,
                "durable_at": None,
                "size_bytes": None,
                "location": f"projects/{project}/global/images/{name}",
                "tags": {**tags, **labels, "status": "PENDING"},
            }
        )

    def _machine_type(self, snapshot: SnapshotRef) -> str | None:
        """The source instance's machine type (None when it cannot be read)."""
        try:
            project, zone, _ = parse_zonal(snapshot.volume)
        except ProviderError:
            return None
        try:
            instance = self.backoff.call(
                lambda: self.clients.instances().get(
                    project=project, zone=zone, instance=snapshot.machine_id, retry=None
                ),
                what=f"instances.get {snapshot.machine_id}",
            )
        except (gexc.GoogleAPICallError, ProviderError) as exc:
            log.info("cannot read the machine type of %s: %s", snapshot.machine_id, exc)
            return None
        return instance.machine_type.rsplit("/", 1)[-1] or None

    def _image(self, project: str, name: str) -> compute_v1.Image | None:
        try:
            return self.backoff.call(
                lambda: self.clients.images().get(project=project, image=name, retry=None),
                what=f"images.get {name}",
            )
        except gexc.NotFound:
            return None

    # ------------------------------------------------------------------- the image side

    def wait_copies(self, copies: Sequence[SnapshotRef], timeout: float) -> list[SnapshotRef]:
        """Follows replicas until their images are READY (or FAILED, or gone: failed)."""
        seen: dict[str, compute_v1.Image] = {}

        def states(pending: Sequence[SnapshotRef]) -> dict[str, SnapshotState]:
            looks = fan_out(lambda ref: self._image(*parse_global(ref.location)), pending)
            found: dict[str, SnapshotState] = {}
            for ref, look in zip(pending, looks, strict=True):
                if isinstance(look, BaseException):
                    log.warning("polling copy %s failed: %s", ref.id, error_message(look))
                elif look is None:
                    found[ref.id] = SnapshotState.FAILED
                else:
                    seen[ref.id] = look
                    if look.status in IMAGE_DURABILITY:
                        found[ref.id] = IMAGE_DURABILITY[look.status]
            return found

        done = poll_durable(
            copies, timeout, states, clock=self.clock, sleep=self.sleep, interval=self.poll_interval
        )
        out = []
        for ref in done:
            image = seen.get(ref.id)
            if image is not None:
                update: dict[str, object] = {"tags": {**ref.tags, "status": image.status}}
                if ref.state is SnapshotState.COMPLETED:
                    update["size_bytes"] = image.archive_size_bytes or None
                ref = ref.model_copy(update=update)
            out.append(ref)
        return out

    def delete_copy(self, copy: SnapshotRef) -> None:
        project, name = parse_global(copy.location)
        image = self._image(project, name)
        if image is None:
            return
        if image.labels.get(MANAGED_LABEL) != "true" or COPY_OF_LABEL not in image.labels:
            raise ProviderError(
                f"image {name} is not a copy Quiesce made ({MANAGED_LABEL}, {COPY_OF_LABEL}): "
                "not deleting it",
                code="NotManaged",
            )
        try:
            self.backoff.call(
                lambda: self.clients.images().delete_unary(project=project, image=name, retry=None),
                retry_on=MUTATION_RETRYABLE,
                what=f"images.delete {name}",
            )
        except gexc.NotFound:
            return

    def find_copies(self, project: str, asked: Mapping[str, str]) -> list[SnapshotRef]:
        """The copies in `project` of the `asked` tags (asked_tags): selected by their labels,
        each with the core's tags exact where its labels agree, and none whose exact values
        are not the asked ones."""
        wanted = wanted_labels(asked)
        request = compute_v1.ListImagesRequest(project=project, filter=label_filter(wanted))
        found = self.backoff.call(
            lambda: list(self.clients.images().list(request=request, retry=None)),
            what=f"images.list {project}",
        )
        out = []
        for image in found:
            labels = dict(image.labels)
            exact = listed_tags(labels, image.description, asked, COPY_TAG_LABELS)
            if COPY_OF_LABEL not in labels or exact is None:
                continue
            created = utcnow()
            out.append(
                SnapshotRef(
                    id=image.name,
                    provider="gcp",
                    machine_id=exact.get("quiesce:machine") or labels.get("quiesce-machine", ""),
                    volume="",
                    method="gce-image-copy",
                    state=IMAGE_DURABILITY.get(image.status, SnapshotState.PENDING),
                    started_at=created,
                    fixed_at=created,
                    location=f"projects/{project}/global/images/{image.name}",
                    tags={**labels, **exact},
                )
            )
        return out


def _check_key(key: str, region: str) -> None:
    match = _KMS_LOCATION.search(key)
    if match is None:
        raise ProviderError(
            f"copies: key {key!r} is not a Cloud KMS key "
            "(projects/P/locations/L/keyRings/R/cryptoKeys/K)",
            code="BadKey",
        )
    location = match[1]
    if _REGION.match(location) and location != region:
        raise ProviderError(
            f"copies: the key for {region} is in {location}: name a key in {region} (or a "
            "multi-region or global key covering it)",
            code="KeyNotInRegion",
        )


class GceSnapshotterWithCopies(GceCopies, GceSnapshotter):
    """Disk snapshots and their copies in other regions (the provider's snapshotter)."""
