"""Group restores and drills on Compute Engine: a machine of a recovery point launched again as
a copy in an isolated subnetwork (or its disks attached to an inspection instance), waited for
until its guest agent answers, and everything made for it deleted again, found by its label.

`launch`:

1. the zone: the inspection instance's (with the site's `inspect_on`), else the site's `zone`,
   else the original's (restoring in the group's own region), else the copy region's first zone
   (regions.get, sorted);
2. the machine type: the original instance's (instances.get at launch), else the one a copy
   recorded when it was made (the image's `quiesce-machine-type` label: a copy in another
   region restores when the original, or its region, is gone); neither: refused before anything
   is made;
3. one disk per snapshot (disks.insert with `sourceSnapshot`, or `sourceImage` for a copy's
   replica, quiesce_gcp.copies), all at once, waited for until READY;
4. the copy: instances.insert of that machine type with those disks (the original's boot disk
   boots; each disk keeps the original's device name, so /dev/disk/by-id/google-NAME and the
   fstab on the copy still match), one network interface on the site's subnetwork with NO
   access config (no external IP), the site's network tags (`security_groups`), no service
   account (the copy holds no credentials), and guest attributes enabled (the agent answers
   through them). With `inspect_on`, the disks are attached to that instance instead
   (instances.attachDisk, device name = the disk's name) and nothing else is made.

Every disk and instance is named `qr-<digest of label, machine, disk>-...` (infra/gcp grants the
drill identity creating and deleting only such names) and labelled `quiesce-restore=<label>`
and `quiesce-restore-of=<original>` (label values lowercased), so a launch repeated with the
same label takes what exists, and `cleanup` finds all of it. `created` lists each resource as
soon as Compute Engine accepted it.

`wait_ready`: the instance RUNNING (TERMINATED, STOPPED or SUSPENDED: failed), then the guest
agent answering a signed `check` command through the instance metadata, as hooks do. A copy
boots with its original's key (quiesce_gcp.signing): the Machine this returns names the original
as `key_of`, so the hook runner signs for that key. Any signed answer is an agent that reads
commands and holds the key; an answer whose signature does not verify is refused at once (the
copy holds another key). Members on the guest flush channel wait for RUNNING only.

`cleanup(label)`: instances labelled with it first (instances.aggregatedList: every zone of the
projects at once, whatever region), waited for until gone; then its disks: one still attached to
an instance that is not the restore's (the inspection instance) is detached from it first. Only
resources carrying the label are ever touched; what cannot be deleted is reported with the
reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, ClassVar

from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from quiesce.errors import ProviderError
from quiesce.guest.protocol import Stopwatch
from quiesce.ports import Cleanup, Machine, MachineRestore, RestoredMachine, Restorer, fan_out
from quiesce.providers.registry import expect_member
from quiesce.record import HookResult, SnapshotRef
from quiesce_gcp.agent import Command
from quiesce_gcp.clients import (
    GcpClients,
    carries,
    label_filter,
    parse_global,
    parse_zonal,
    wait_zone_operation,
)
from quiesce_gcp.hooks import AgentHookRunner
from quiesce_gcp.member import GcpMember
from quiesce_gcp.permissions import (
    DISK,
    IMAGE,
    INSPECTION,
    INSTANCE,
    RESTORE_DRILL,
    RESTORED,
    SNAPSHOT,
    SUBNETWORK,
    ZONE_OPERATION,
    Permission,
)
from quiesce_gcp.retry import MUTATION_RETRYABLE, Backoff, error_message
from quiesce_gcp.signing import KEY_OF, instance_path

log = logging.getLogger(__name__)

RESTORE_LABEL = "quiesce-restore"
RESTORE_OF_LABEL = "quiesce-restore-of"
#: A copy's record of its original's machine type (quiesce_gcp.copies sets it).
MACHINE_TYPE_LABEL = "quiesce-machine-type"
#: Every disk and instance a restore makes is named with this prefix (infra/gcp scopes the
#: drill identity's create, delete and setMetadata rights to it).
RESTORED_PREFIX = "qr-"
#: The hook a readiness check names: no machine declares it, so the agent answers `refused`
#: without running anything; any signed answer shows the agent reads commands and has the key.
READY_HOOK = "quiesce.ready"
#: Instance states a copy never leaves by itself.
STOPPED = frozenset({"TERMINATED", "STOPPED", "STOPPING", "SUSPENDED", "SUSPENDING"})
#: How long a disk insert, an instance delete or a detach may take.
OPERATION_TIMEOUT_SECONDS = 300.0

_UNSAFE = re.compile(r"[^a-z0-9-]")
_LABEL_UNSAFE = re.compile(r"[^a-z0-9_-]")


def label_value(value: str) -> str:
    """A label value: lowercase letters, digits, `_` and `-`, at most 63 characters."""
    return _LABEL_UNSAFE.sub("_", value.lower())[:63]


def restored_name(label: str, machine_id: str, part: str = "") -> str:
    """`qr-<10 hex>-<stem>`: a valid name (^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$), the same for the
    same label, machine and disk, and different for another label."""
    digest = hashlib.sha256(f"{label}|{machine_id}|{part}".encode()).hexdigest()[:10]
    stem = _UNSAFE.sub("-", (part.rsplit("/", 1)[-1] or machine_id).lower()).strip("-")
    return f"{RESTORED_PREFIX}{digest}-{stem}"[:63].rstrip("-")


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def _basename(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _is_image(ref: SnapshotRef) -> bool:
    return "/global/images/" in ref.location


class GceRestorer(Restorer):
    """launch / wait_ready / cleanup of Compute Engine copies (see the module docstring)."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "launch": [
            Permission("compute.instances.get", INSTANCE, scope=RESTORE_DRILL),
            Permission("compute.regions.get", "projects/*/regions/*", scope=RESTORE_DRILL),
            Permission("compute.snapshots.useReadOnly", SNAPSHOT, scope=RESTORE_DRILL),
            Permission("compute.images.useReadOnly", IMAGE, scope=RESTORE_DRILL),
            Permission("compute.subnetworks.use", SUBNETWORK, scope=RESTORE_DRILL),
            Permission("compute.zoneOperations.get", ZONE_OPERATION, scope=RESTORE_DRILL),
            Permission("compute.disks.get", DISK, scope=RESTORE_DRILL),
            Permission("compute.disks.create", DISK, scope=RESTORED),
            Permission("compute.disks.setLabels", DISK, scope=RESTORED),
            Permission("compute.disks.use", DISK, scope=RESTORED),
            Permission("compute.instances.create", INSTANCE, scope=RESTORED),
            Permission("compute.instances.setLabels", INSTANCE, scope=RESTORED),
            Permission("compute.instances.setMetadata", INSTANCE, scope=RESTORED),
            Permission("compute.instances.setTags", INSTANCE, scope=RESTORED),
            # With `inspect_on`: only on the inspection instances infra/gcp names.
            Permission("compute.instances.attachDisk", INSTANCE, scope=INSPECTION),
        ],
        # The core looks at a copy's images (GceCopies.wait_copies) before restoring from it.
        "refresh_copies": [Permission("compute.images.get", IMAGE, scope=RESTORE_DRILL)],
        "wait_ready": [
            Permission("compute.instances.get", INSTANCE, scope=RESTORE_DRILL),
            Permission("compute.instances.getGuestAttributes", INSTANCE, scope=RESTORE_DRILL),
            Permission("compute.zoneOperations.get", ZONE_OPERATION, scope=RESTORE_DRILL),
            Permission("compute.instances.setMetadata", INSTANCE, scope=RESTORED),
            # The verify hooks on an inspection instance go through its agent too.
            Permission("compute.instances.setMetadata", INSTANCE, scope=INSPECTION),
        ],
        "cleanup": [
            Permission("compute.instances.list", "projects/*/zones/*", scope=RESTORE_DRILL),
            Permission("compute.disks.list", "projects/*/zones/*", scope=RESTORE_DRILL),
            Permission("compute.instances.get", INSTANCE, scope=RESTORE_DRILL),
            Permission("compute.zoneOperations.get", ZONE_OPERATION, scope=RESTORE_DRILL),
            Permission("compute.instances.delete", INSTANCE, scope=RESTORED),
            Permission("compute.disks.delete", DISK, scope=RESTORED),
            Permission("compute.instances.detachDisk", INSTANCE, scope=INSPECTION),
        ],
    }

    def __init__(
        self,
        clients: GcpClients,
        hooks: AgentHookRunner | None,
        *,
        projects: Sequence[str] = (),
        backoff: Backoff | None = None,
        poll_interval: float = 1.0,
        operation_timeout: float = OPERATION_TIMEOUT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = clients
        self.hooks = hooks
        self.projects = sorted(set(projects))  # where `cleanup` looks
        self.backoff = backoff or Backoff()
        self.poll_interval = poll_interval
        self.operation_timeout = operation_timeout
        self.sleep = sleep
        self.clock = clock

    # ------------------------------------------------------------------------------ launch

    def launch(self, request: MachineRestore) -> RestoredMachine:
        member = expect_member(request.spec, GcpMember)
        if not request.snapshots:
            raise ProviderError(
                f"{request.machine_id}: the recovery point holds no snapshot of it", code="NoDisks"
            )
        project = member.project
        original = self._original(project, member.zone, request.machine_id)
        site = request.site
        inspect = self._inspection(project, site.inspect_on) if site.inspect_on else None
        zone = self._zone(request, member, project, inspect)
        labels = {
            RESTORE_LABEL: label_value(request.label),
            RESTORE_OF_LABEL: label_value(request.machine_id),
        }
        description = json.dumps(
            {"quiesce:restore": request.label, "quiesce:restore-of": request.machine_id},
            sort_keys=True,
        )
        if inspect is None:
            machine_type = self._machine_type(request, original)
            subnetwork = self._subnetwork(site.network, project, zone)
        restored = RestoredMachine(
            member=request.member,
            source=request.machine_id,
            machine=Machine("gcp", request.member, ""),  # set below, once it is known
        )
        devices = self._devices(request, original)
        disks = self._disks(request, project, zone, labels, description, restored)
        if inspect is not None:
            return self._attach(request, member, inspect, disks, restored)
        boot = self._boot_index(request, original)
        name = restored_name(request.label, request.machine_id)
        instance = compute_v1.Instance(
            name=name,
            description=description,
            machine_type=f"zones/{zone}/machineTypes/{machine_type}",
            labels=labels,
            disks=[
                compute_v1.AttachedDisk(
                    source=url,
                    boot=i == boot,
                    auto_delete=False,
                    device_name=devices[i],
                    mode="READ_WRITE",
                )
                for i, url in enumerate(disks)
            ],
            # No access_configs: no external IP. No service account: no credentials.
            network_interfaces=[compute_v1.NetworkInterface(subnetwork=subnetwork)],
            metadata=compute_v1.Metadata(
                items=[compute_v1.Items(key="enable-guest-attributes", value="TRUE")]
            ),
        )
        if site.security_groups:
            instance.tags = compute_v1.Tags(items=list(site.security_groups))
        url = f"projects/{project}/zones/{zone}/instances/{name}"
        try:
            op = self.backoff.call(
                lambda: self.clients.instances().insert_unary(
                    project=project, zone=zone, instance_resource=instance, retry=None
                ),
                retry_on=MUTATION_RETRYABLE,
                what=f"instances.insert {name}",
            )
            if op.error and op.error.errors:
                raise ProviderError(
                    f"instances.insert {url}: {op.error.errors[0].message}", code="LaunchFailed"
                )
        except gexc.Conflict:
            self._ours(self._instance(project, zone, name), labels, url)
        except gexc.GoogleAPICallError as exc:
            raise ProviderError(
                f"instances.insert {url} ({machine_type}, subnetwork {subnetwork}): "
                f"{error_message(exc)}; the disks made for it ({', '.join(restored.created)}) "
                f"carry the label {RESTORE_LABEL}={labels[RESTORE_LABEL]}: "
                f"`quiesce restore-cleanup {request.label}` deletes them",
                code=type(exc).__name__,
            ) from exc
        restored.created.append(url)
        key_of = {KEY_OF: instance_path(project, member.zone, request.machine_id)}
        return _restored(restored, request, member, url, disks, devices, key_of)

    def _wait(self, project: str, zone: str, op: compute_v1.Operation) -> compute_v1.Operation:
        return wait_zone_operation(
            self.clients,
            project,
            zone,
            op,
            timeout=self.operation_timeout,
            interval=self.poll_interval,
            sleep=self.sleep,
            clock=self.clock,
        )

    def _original(self, project: str, zone: str, name: str) -> compute_v1.Instance | None:
        """The original instance, or None when it is gone or cannot be read (a region down)."""
        try:
            return self._instance(project, zone, name)
        except (gexc.GoogleAPICallError, ProviderError) as exc:
            log.info("original instance %s/%s/%s unreadable: %s", project, zone, name, exc)
            return None

    def _instance(self, project: str, zone: str, name: str) -> compute_v1.Instance:
        return self.backoff.call(
            lambda: self.clients.instances().get(
                project=project, zone=zone, instance=name, retry=None
            ),
            what=f"instances.get {name}",
        )

    def _inspection(self, project: str, inspect_on: str) -> compute_v1.Instance:
        """The inspection instance: projects/P/zones/Z/instances/NAME (or its URL)."""
        try:
            where = parse_zonal(inspect_on)
        except ProviderError:
            raise ProviderError(
                f"restore.inspect_on {inspect_on!r}: name the inspection instance as "
                "projects/PROJECT/zones/ZONE/instances/NAME",
                code="BadInspectionInstance",
            ) from None
        try:
            return self._instance(*where)
        except gexc.NotFound:
            raise ProviderError(
                f"restore.inspect_on: instance {inspect_on} does not exist",
                code="InstanceNotFound",
            ) from None

    def _zone(
        self,
        request: MachineRestore,
        member: GcpMember,
        project: str,
        inspect: compute_v1.Instance | None,
    ) -> str:
        if inspect is not None:
            return _basename(inspect.zone)
        if request.site.zone:
            zone = request.site.zone
            if request.region is not None and region_of(zone) != request.region:
                raise ProviderError(
                    f"restore.zone {zone} is not in {request.region}, the region of the copy "
                    "being restored",
                    code="ZoneNotInRegion",
                )
            return zone
        if request.region is None or region_of(member.zone) == request.region:
            return member.zone
        try:
            region = self.backoff.call(
                lambda: self.clients.regions().get(
                    project=project, region=request.region, retry=None
                ),
                what=f"regions.get {request.region}",
            )
        except gexc.GoogleAPICallError as exc:
            raise ProviderError(
                f"cannot read the zones of region {request.region}: {error_message(exc)}; "
                "name one with restore.zone",
                code=type(exc).__name__,
            ) from exc
        zones = sorted(_basename(z) for z in region.zones)
        if not zones:
            raise ProviderError(f"region {request.region} lists no zone", code="NoZone")
        return zones[0]

    @staticmethod
    def _machine_type(request: MachineRestore, original: compute_v1.Instance | None) -> str:
        if original is not None and original.machine_type:
            return _basename(original.machine_type)
        recorded = next(
            (
                r.tags[MACHINE_TYPE_LABEL]
                for r in request.snapshots
                if r.tags.get(MACHINE_TYPE_LABEL)
            ),
            None,
        )
        if recorded:
            return recorded
        raise ProviderError(
            f"{request.machine_id}: its machine type is unknown: the original instance cannot "
            f"be read and its snapshots carry no {MACHINE_TYPE_LABEL} label (a copy in another "
            "region records it when it is made); nothing was created",
            code="MachineTypeUnknown",
        )

    @staticmethod
    def _subnetwork(network: str, project: str, zone: str) -> str:
        """The site's subnetwork as projects/P/regions/R/subnetworks/S, in the zone's region."""
        if network.startswith("https://"):
            network = network.split("/compute/v1/", 1)[-1]
        if "/" not in network:
            network = f"projects/{project}/regions/{region_of(zone)}/subnetworks/{network}"
        match = re.search(r"regions/([^/]+)/subnetworks/[^/]+$", network)
        if match is None:
            raise ProviderError(
                f"restore.network {network!r}: name a subnetwork (NAME, or "
                "projects/P/regions/R/subnetworks/NAME)",
                code="BadSubnetwork",
            )
        if match[1] != region_of(zone):
            raise ProviderError(
                f"restore.network {network} is in {match[1]}, but the copies launch in {zone}: "
                "name a subnetwork of that region",
                code="SubnetworkNotInRegion",
            )
        return network

    @staticmethod
    def _devices(request: MachineRestore, original: compute_v1.Instance | None) -> list[str]:
        """Each disk's device name on the copy: the original's (or its disk's name)."""
        names = {}
        if original is not None:
            names = {_basename(d.source): d.device_name for d in original.disks if d.device_name}
        out = []
        for ref in request.snapshots:
            disk = _basename(ref.volume) if ref.volume else ref.id
            out.append(names.get(disk) or disk)
        return out

    @staticmethod
    def _boot_index(request: MachineRestore, original: compute_v1.Instance | None) -> int:
        """Which disk boots: the original's boot disk's; else the first (inventory lists the
        boot disk first, and snapshots keep that order)."""
        if original is not None:
            boot = next((_basename(d.source) for d in original.disks if d.boot), None)
            for i, ref in enumerate(request.snapshots):
                if boot and ref.volume and _basename(ref.volume) == boot:
                    return i
        return 0

    def _disks(
        self,
        request: MachineRestore,
        project: str,
        zone: str,
        labels: dict[str, str],
        description: str,
        restored: RestoredMachine,
    ) -> list[str]:
        """One disk per snapshot, all inserted at once, then waited for until READY."""

        def insert(ref: SnapshotRef) -> tuple[str, compute_v1.Operation | None]:
            if not ref.location:
                raise ProviderError(f"snapshot {ref.id}: no location", code="BadResourceUrl")
            src_project, src = parse_global(ref.location)
            name = restored_name(request.label, request.machine_id, ref.volume or ref.id)
            disk = compute_v1.Disk(name=name, labels=labels, description=description)
            if _is_image(ref):
                disk.source_image = f"projects/{src_project}/global/images/{src}"
            else:
                disk.source_snapshot = f"projects/{src_project}/global/snapshots/{src}"
            url = f"projects/{project}/zones/{zone}/disks/{name}"
            try:
                op = self.backoff.call(
                    lambda: self.clients.disks().insert_unary(
                        project=project, zone=zone, disk_resource=disk, retry=None
                    ),
                    retry_on=MUTATION_RETRYABLE,
                    what=f"disks.insert {name}",
                )
            except gexc.Conflict:
                existing = self.backoff.call(
                    lambda: self.clients.disks().get(
                        project=project, zone=zone, disk=name, retry=None
                    ),
                    what=f"disks.get {name}",
                )
                self._ours(existing, labels, url)
                op = None
            except gexc.GoogleAPICallError as exc:
                source = disk.source_image or disk.source_snapshot
                raise ProviderError(
                    f"disks.insert {url} from {source}: {error_message(exc)}",
                    code=type(exc).__name__,
                ) from exc
            restored.created.append(url)
            return url, op

        outcomes = fan_out(insert, list(request.snapshots))
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        made = [o for o in outcomes if not isinstance(o, BaseException)]
        for _url, op in made:
            if op is not None and not errors:
                try:
                    self._wait(project, zone, op)
                except ProviderError as exc:
                    errors.append(exc)
        if errors:
            first = errors[0]
            message = str(first) if isinstance(first, ProviderError) else error_message(first)
            raise ProviderError(
                f"{request.machine_id}: {len(errors)} of {len(outcomes)} disks could not be "
                f"restored: {message}"
                + (
                    f"; made and labelled {RESTORE_LABEL}={labels[RESTORE_LABEL]} (`quiesce "
                    f"restore-cleanup {request.label}` deletes them): {', '.join(restored.created)}"
                    if restored.created
                    else ""
                ),
                code=getattr(first, "code", None) or "DiskRestoreFailed",
            ) from first
        return [url for url, _ in made]

    @staticmethod
    def _ours(resource: Any, labels: Mapping[str, str], url: str) -> None:
        """A resource of the restore's name found already: taken only when it is the restore's."""
        held = dict(resource.labels)
        if not carries(held, labels):
            raise ProviderError(
                f"{url} exists and is not this restore's (labels {held}): not using it",
                code="NameTaken",
            )

    def _attach(
        self,
        request: MachineRestore,
        member: GcpMember,
        inspect: compute_v1.Instance,
        disks: list[str],
        restored: RestoredMachine,
    ) -> RestoredMachine:
        project, zone, name = parse_zonal(inspect.self_link)
        attached = {_basename(d.source) for d in inspect.disks}
        for url in disks:
            device = _basename(url)
            if device in attached:
                continue  # attached by an earlier attempt
            try:
                op = self.backoff.call(
                    lambda u=url, d=device: self.clients.instances().attach_disk_unary(  # type: ignore[misc]
                        project=project,
                        zone=zone,
                        instance=name,
                        attached_disk_resource=compute_v1.AttachedDisk(
                            source=u, device_name=d, mode="READ_WRITE", auto_delete=False
                        ),
                        retry=None,
                    ),
                    retry_on=MUTATION_RETRYABLE,
                    what=f"instances.attachDisk {name} {device}",
                )
                self._wait(project, zone, op)
            except gexc.GoogleAPICallError as exc:
                raise ProviderError(
                    f"instances.attachDisk {name} {url}: {error_message(exc)}; the restored "
                    f"disks carry the label {RESTORE_LABEL}={label_value(request.label)}",
                    code=type(exc).__name__,
                ) from exc
        devices = [_basename(url) for url in disks]
        return _restored(
            restored, request, member, inspect.self_link, disks, devices, {"inspection": "true"}
        )

    # ------------------------------------------------------------------------------ ready

    def wait_ready(self, restored: RestoredMachine, timeout: float) -> None:
        machine = restored.machine
        project, zone = machine.attributes["project"], machine.attributes["zone"]
        name = machine.machine_id
        deadline = self.clock() + timeout
        while True:
            try:
                status = self._instance(project, zone, name).status
            except gexc.NotFound:
                raise ProviderError(
                    f"restored instance {name} is gone (deleted while it was waited for)",
                    code="InstanceNotFound",
                ) from None
            if status == "RUNNING":
                break
            if status in STOPPED:
                raise ProviderError(
                    f"restored instance {project}/{zone}/{name} is {status}, not running: its "
                    "serial console (gcloud compute instances get-serial-port-output) shows why",
                    code="NotRunning",
                )
            if self.clock() >= deadline:
                raise ProviderError(
                    f"restored instance {name} is {status}, not RUNNING, after {timeout:g}s",
                    code="NotReady",
                )
            self.sleep(min(self.poll_interval, max(0.0, deadline - self.clock())))
        if machine.attributes.get("hook_channel", "agent") != "agent":
            return
        self._agent_answers(restored, deadline, timeout)

    def _agent_answers(self, restored: RestoredMachine, deadline: float, timeout: float) -> None:
        machine = restored.machine
        project, zone, name = (
            machine.attributes["project"],
            machine.attributes["zone"],
            machine.machine_id,
        )
        hooks = self.hooks
        if hooks is None or hooks.keys is None:
            raise ProviderError(
                f"cannot ask the agent on {name} whether it answers: no agent master key is "
                "configured (QUIESCE_AGENT_MASTER_KEY or QUIESCE_AGENT_MASTER_KEY_FILE)",
                code="NoSigningKey",
            )
        run_id = "ready-" + hashlib.sha256(f"{name}|{self.clock()}".encode()).hexdigest()[:16]
        command = Command.new(
            "check",
            run_id,
            restored.member,
            READY_HOOK,
            hooks.wall_clock() + max(timeout, hooks.command_ttl),
            instance_path(project, zone, name),
            signer=machine.attributes.get(KEY_OF, ""),
        )
        try:
            hooks.write_command(project, zone, name, command)
        except (ProviderError, gexc.GoogleAPICallError) as exc:
            raise ProviderError(
                f"cannot write a command to restored instance {name}: {error_message(exc)}",
                code="Undeliverable",
            ) from exc
        watch = Stopwatch(self.clock)
        while True:
            answer: HookResult | None
            try:
                answer = hooks.read_answer(project, zone, name, command, watch)
            except (ProviderError, gexc.GoogleAPICallError) as exc:
                log.info("getGuestAttributes %s: %s", name, error_message(exc))
                answer = None
            if answer is not None:
                if answer.code == "BadSignature":
                    raise ProviderError(
                        f"the agent on restored instance {name} answered with a signature that "
                        f"does not verify with the key of {machine.attributes.get(KEY_OF) or name}"
                        ": the copy holds another key than the machine it was restored from",
                        code="KeyMismatch",
                    )
                return
            if self.clock() >= deadline:
                raise ProviderError(
                    f"the guest agent on restored instance {name} did not answer within "
                    f"{timeout:g}s: is quiesce-agent enabled on the original's boot disk, does "
                    f"the copy hold the key of {machine.attributes.get(KEY_OF) or name} (an "
                    "agent drops commands its key does not verify), and can it reach the "
                    "metadata server?",
                    code="AgentNotAnswering",
                )
            self.sleep(min(self.poll_interval, max(0.0, deadline - self.clock())))

    # ------------------------------------------------------------------------------ cleanup

    def cleanup(self, label: str, regions: Sequence[str | None]) -> Cleanup:
        """Deletes the label's instances, then its disks, in every project of the policy
        (aggregated lists see every zone, so `regions` need not narrow the search)."""
        done = Cleanup()
        wanted = {RESTORE_LABEL: label_value(label)}
        if not self.projects:
            raise ProviderError(
                "no project to look in for restored resources: the policy names no gcp member",
                code="NoProject",
            )
        for project in self.projects:
            instances = self._aggregated(project, "instances", wanted)
            ops = fan_out(partial(self._delete_instance, project), instances)
            waits: list[tuple[str, str, compute_v1.Operation]] = []
            for item, outcome in zip(instances, ops, strict=True):
                url = _short(item.self_link)
                if isinstance(outcome, BaseException):
                    done.left.append(f"{url}: {error_message(outcome)}")
                elif outcome is not None:
                    waits.append((url, _zone_of(item.self_link), outcome))
                else:
                    done.deleted.append(url)
            for url, zone, op in waits:
                try:
                    self._wait(project, zone, op)
                    done.deleted.append(url)
                except ProviderError as exc:
                    done.left.append(f"{url}: {exc}")
            for disk in self._aggregated(project, "disks", wanted):
                url = _short(disk.self_link)
                try:
                    self._delete_disk(project, disk, wanted)
                    done.deleted.append(url)
                except (ProviderError, gexc.GoogleAPICallError) as exc:
                    done.left.append(f"{url}: {error_message(exc)}")
        return done

    def _aggregated(self, project: str, kind: str, wanted: dict[str, str]) -> list[Any]:
        """Every instance or disk of the project carrying the labels (all zones at once)."""
        client: Any = self.clients.instances() if kind == "instances" else self.clients.disks()
        request_type = (
            compute_v1.AggregatedListInstancesRequest
            if kind == "instances"
            else compute_v1.AggregatedListDisksRequest
        )
        request = request_type(project=project, filter=label_filter(wanted))
        pages = self.backoff.call(
            lambda: list(client.aggregated_list(request=request, retry=None)),
            what=f"{kind}.aggregatedList {project}",
        )
        out = []
        for _scope, scoped in pages:
            for item in getattr(scoped, kind):
                if carries(item.labels, wanted):
                    out.append(item)
        return out

    def _delete_instance(
        self, project: str, item: compute_v1.Instance
    ) -> compute_v1.Operation | None:
        zone = _zone_of(item.self_link)
        try:
            return self.backoff.call(
                lambda: self.clients.instances().delete_unary(
                    project=project, zone=zone, instance=item.name, retry=None
                ),
                retry_on=MUTATION_RETRYABLE,
                what=f"instances.delete {item.name}",
            )
        except gexc.NotFound:
            return None

    def _delete_disk(self, project: str, disk: compute_v1.Disk, wanted: dict[str, str]) -> None:
        zone = _zone_of(disk.self_link)
        for user in list(disk.users):
            self._detach(disk, user)
        try:
            op = self.backoff.call(
                lambda: self.clients.disks().delete_unary(
                    project=project, zone=zone, disk=disk.name, retry=None
                ),
                retry_on=MUTATION_RETRYABLE,
                what=f"disks.delete {disk.name}",
            )
        except gexc.NotFound:
            return
        self._wait(project, zone, op)

    def _detach(self, disk: compute_v1.Disk, user: str) -> None:
        """Detaches the restore's disk from an instance that is not the restore's (the
        inspection instance; the restore's own instances are deleted before)."""
        project, zone, name = parse_zonal(user)
        try:
            instance = self._instance(project, zone, name)
        except gexc.NotFound:
            return
        devices = [d.device_name for d in instance.disks if _basename(d.source) == disk.name]
        for device in devices:
            op = self.backoff.call(
                lambda d=device: self.clients.instances().detach_disk_unary(  # type: ignore[misc]
                    project=project, zone=zone, instance=name, device_name=d, retry=None
                ),
                retry_on=MUTATION_RETRYABLE,
                what=f"instances.detachDisk {name} {device}",
            )
            self._wait(project, zone, op)


def _restored(
    restored: RestoredMachine,
    request: MachineRestore,
    member: GcpMember,
    instance: str,
    disks: Sequence[str],
    devices: Sequence[str],
    attributes: Mapping[str, str],
) -> RestoredMachine:
    """`restored` with the machine that holds its disks (the copy, or the inspection instance;
    `instance` is its URL) and where each snapshot's disk appears on it: the disk of the i-th
    snapshot is `disks[i]`, attached as device `devices[i]`."""
    project, zone, name = parse_zonal(instance)
    restored.mounts = {
        ref.volume or ref.id: f"/dev/disk/by-id/google-{devices[i]}"
        for i, ref in enumerate(request.snapshots)
    }
    restored.machine = Machine(
        provider="gcp",
        member=request.member,
        machine_id=name,
        volumes=tuple(disks),
        attributes={
            "project": project,
            "zone": zone,
            "os": member.os,
            "hook_channel": member.hook_channel,
            "self_link": instance,
            "restore_label": request.label,
            "restore_of": request.machine_id,
            **attributes,
        },
    )
    return restored


def _short(url: str) -> str:
    """A resource URL as projects/P/zones/Z/KIND/NAME."""
    return url.split("/compute/v1/", 1)[-1]


def _zone_of(url: str) -> str:
    return parse_zonal(url)[1]
