"""Azure Files shares in a recovery point: one share snapshot per run, taken inside the freeze.

The snapshot is made through ARM (azure-mgmt-storage: `fileShares.create` with
`$expand=snapshots`), with the same identity and RBAC as the rest of the adapters; a share
snapshot is a read-only, crash-consistent image of the whole share at the instant the call is
served, so its point in time is fixed when the PUT answers (`snapshotTime`) and it is durable
then (no background copy): `take` returns it completed. Snapshots carry no tags; Quiesce's carry
metadata instead (`quiesce_managed=true`, the policy, group, run, recovery point: metadata
names must be identifiers, so `:` becomes `_`), and only snapshots with that metadata are listed
or deleted. The share itself is never deleted, nor a snapshot someone else made.

Restore (`cloud_restore`): Azure Files has no call that turns a snapshot into a share. Quiesce
creates a new share in the same storage account (ARM, the source's quota and tier) and copies
the snapshot into it with the file service's server-side copy (azure-storage-file-share: every
directory created, every file `Copy File` from the snapshot's URL, authorized with the same
credential and the backup intent); it returns once every copy was accepted, which the service
then completes on its own. The equivalent command line is printed with azcopy.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from azure.core.exceptions import AzureError, ResourceNotFoundError

from quiesce.errors import ProviderError
from quiesce.policy.model import MemberBase, Policy
from quiesce.ports import (
    CloudRestore,
    Machine,
    PointMethod,
    RestoreStep,
    SnapshotCall,
    Snapshotter,
)
from quiesce.providers.registry import expect_member, members_by_group
from quiesce.record import SnapshotRef, SnapshotState, utcnow
from quiesce.tags import MANAGED_TAG, snapshot_tags
from quiesce_azure.clients import as_json, dig, parse_time
from quiesce_azure.managed import ManagedClients, raw
from quiesce_azure.managed_member import AzureFilesMember
from quiesce_azure.permissions import Permission
from quiesce_azure.retry import Backoff, delete_failed, error_code, error_message, read_failed

PROVIDER = "azure-files"
METHOD = "share_snapshot"

SHARE_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.Storage/storageAccounts/(?P<account>[^/]+)/fileServices/default/shares/"
    r"(?P<share>[^/@]+)(?:@(?P<snapshot>.+))?$",
    re.IGNORECASE,
)


def metadata_key(tag: str) -> str:
    """A tag's name as a metadata name (an identifier): quiesce:run-id -> quiesce_run_id."""
    return re.sub(r"[^A-Za-z0-9_]", "_", tag)


def tags_of(metadata: dict[str, str]) -> dict[str, str]:
    """The Quiesce tags a snapshot's metadata carries (metadata names are case-insensitive)."""
    lowered = {k.lower(): v for k, v in (metadata or {}).items()}
    return {
        tag: lowered[metadata_key(tag).lower()]
        for tag in (
            MANAGED_TAG,
            "quiesce:policy",
            "quiesce:group",
            "quiesce:run-id",
            "quiesce:recovery-point",
            "quiesce:member",
            "quiesce:machine",
            "quiesce:consistency",
        )
        if metadata_key(tag).lower() in lowered
    }


def snapshot_parts(match: re.Match[str]) -> tuple[str, str, str, str, str]:
    """A share snapshot id's parts (SHARE_ID matched): subscription, resource group, storage
    account, share, snapshot time."""
    return match["sub"], match["rg"], match["account"], match["share"], match["snapshot"]


def share_name(name: str) -> str:
    """A share name the service accepts: lower-case letters, digits, single hyphens, 3-63."""
    cleaned = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", name.lower())).strip("-")[:63]
    cleaned = cleaned.rstrip("-")
    return cleaned if len(cleaned) >= 3 else f"{cleaned}-restored"


class ShareSnapshotter(Snapshotter):
    """The Snapshotter port over Azure Files share snapshots."""

    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "take": [
            Permission("Microsoft.Storage/storageAccounts/fileServices/shares/read"),
            Permission(
                "Microsoft.Storage/storageAccounts/fileServices/shares/write",
                conditions={"only": "$expand=snapshots: creates a snapshot, never a share"},
            ),
        ],
        "wait_durable": [],
        "delete": [
            Permission("Microsoft.Storage/storageAccounts/fileServices/shares/read"),
            Permission(
                "Microsoft.Storage/storageAccounts/fileServices/shares/delete",
                conditions={"metadata": f"{metadata_key(MANAGED_TAG)}=true, snapshots only"},
            ),
        ],
        "find": [Permission("Microsoft.Storage/storageAccounts/fileServices/shares/read")],
    }
    #: `quiesce restore --execute` (run by an operator, not granted to the Function App).
    RESTORE_PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        # Before anything is created: is the share snapshot still there?
        "check": [Permission("Microsoft.Storage/storageAccounts/fileServices/shares/read")],
        "cloud_restore": [
            Permission("Microsoft.Storage/storageAccounts/read"),
            Permission("Microsoft.Storage/storageAccounts/fileServices/shares/read"),
            Permission("Microsoft.Storage/storageAccounts/fileServices/shares/write"),
            Permission(
                "Microsoft.Storage/storageAccounts/fileServices/fileshares/files/read",
                scope="resource",
            ),
            Permission(
                "Microsoft.Storage/storageAccounts/fileServices/fileshares/files/write",
                scope="resource",
            ),
            Permission(
                "Microsoft.Storage/storageAccounts/fileServices/readFileBackupSemantics/action",
                scope="resource",
            ),
            Permission(
                "Microsoft.Storage/storageAccounts/fileServices/writeFileBackupSemantics/action",
                scope="resource",
            ),
        ],
    }

    def __init__(
        self,
        clients: ManagedClients,
        *,
        policy: Policy | None = None,
        backoff: Backoff | None = None,
        now: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        file_client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.clients = clients
        #: Options of the file service's client (the restore's copy), e.g. connection_verify.
        self.file_client_kwargs = dict(file_client_kwargs or {})
        self.backoff = backoff or Backoff(sleep=sleep)
        self.now = now
        self.members = members_by_group(policy, AzureFilesMember)

    def _storage(self, subscription: str) -> Any:
        return self.clients.service("storage", subscription)

    def share_id(self, member: MemberBase) -> str:
        m = expect_member(member, AzureFilesMember)
        return (
            f"/subscriptions/{m.subscription}/resourceGroups/{m.resource_group}/providers/"
            f"Microsoft.Storage/storageAccounts/{m.storage_account}/fileServices/default/"
            f"shares/{m.share}"
        )

    def locate(self, member: MemberBase) -> Machine:
        m = expect_member(member, AzureFilesMember)
        storage = self._storage(m.subscription)
        try:
            share = self.backoff.call(
                lambda: storage.file_shares.get(
                    m.resource_group, m.storage_account, m.share, cls=raw
                ),
                what=f"GET share {m.share}",
            )
        except ResourceNotFoundError as exc:
            raise ProviderError(
                f"member {m.name!r}: share {m.share} of storage account {m.storage_account} "
                "was not found",
                code="NotFound",
            ) from exc
        except AzureError as exc:
            raise read_failed(m.name, f"share {m.share}", exc) from exc
        return Machine(
            provider=PROVIDER,
            member=m.name,
            machine_id=str(share.get("id") or self.share_id(m)),
            volumes=(m.share,),
        )

    # ------------------------------------------------------------------------------ the port

    def point_method(self, spec: MemberBase) -> PointMethod:
        return PointMethod(
            "snapshot", 0.0, "a share snapshot, fixed when the service answers the call"
        )

    def describe(self, machine: Machine) -> dict[str, str]:
        return {v: "share snapshot (fixed when accepted, durable at once)" for v in machine.volumes}

    def take(self, call: SnapshotCall) -> list[SnapshotRef]:
        m = expect_member(call.spec, AzureFilesMember)
        storage = self._storage(m.subscription)
        tags = snapshot_tags(call)
        body = {"properties": {"metadata": {metadata_key(k): v for k, v in tags.items()}}}
        started = utcnow()
        try:
            snap = self.backoff.call(
                lambda: storage.file_shares.create(
                    m.resource_group,
                    m.storage_account,
                    m.share,
                    body,
                    expand="snapshots",
                    cls=raw,
                ),
                what=f"snapshot share {m.share}",
            )
        except AzureError as exc:
            raise ProviderError(
                f"member {call.member!r}: snapshot of share {m.share} failed: {error_message(exc)}",
                code=error_code(exc) or "SnapshotFailed",
            ) from exc
        fixed = utcnow()
        stamp = str(dig(snap, "properties", "snapshotTime") or "")
        if not stamp:
            raise ProviderError(
                f"member {call.member!r}: the service answered without a snapshot time for "
                f"share {m.share}",
                code="SnapshotFailed",
            )
        return [self._completed(m, stamp, call.machine.machine_id, tags, started, fixed)]

    def wait_durable(self, snapshots: Sequence[SnapshotRef], timeout: float) -> list[SnapshotRef]:
        """A share snapshot is durable when it exists: `take` returned it completed."""
        return list(snapshots)

    def find(self, policy: str, group: str, run_id: str | None = None) -> list[SnapshotRef]:
        wanted = {MANAGED_TAG: "true", "quiesce:policy": policy, "quiesce:group": group}
        found: list[SnapshotRef] = []
        seen: set[tuple[str, str, str, str]] = set()
        for m in self.members.get(group, []):
            key = (m.subscription, m.resource_group, m.storage_account, m.share)
            if key in seen:
                continue
            seen.add(key)
            for item in self._snapshots_of(m):
                tags = tags_of(dig(item, "properties", "metadata") or {})
                if not all(tags.get(k) == v for k, v in wanted.items()):
                    continue
                if run_id is not None and tags.get("quiesce:run-id") != run_id:
                    continue
                found.append(self._ref(m, item, tags))
        return sorted(found, key=lambda r: (r.started_at, r.id))

    def _snapshots_of(self, m: AzureFilesMember) -> Iterator[dict[str, Any]]:
        storage = self._storage(m.subscription)
        items = self.backoff.call(
            lambda: [
                as_json(s)
                for s in storage.file_shares.list(
                    m.resource_group, m.storage_account, expand="snapshots"
                )
            ],
            what=f"list shares of {m.storage_account}",
        )
        for item in items:
            stamp = dig(item, "properties", "snapshotTime")
            if str(item.get("name") or "") != m.share or not stamp:
                continue
            if dig(item, "properties", "metadata") is None:
                item = self._snapshot(
                    m.subscription, m.resource_group, m.storage_account, m.share, str(stamp)
                )
            yield item

    def _snapshot(
        self, subscription: str, rg: str, account: str, share: str, stamp: str
    ) -> dict[str, Any]:
        storage = self._storage(subscription)
        got: dict[str, Any] = self.backoff.call(
            lambda: storage.file_shares.get(rg, account, share, x_ms_snapshot=stamp, cls=raw),
            what=f"GET snapshot {stamp} of share {share}",
        )
        return got

    def _ref(self, m: AzureFilesMember, item: dict[str, Any], tags: dict[str, str]) -> SnapshotRef:
        stamp = str(dig(item, "properties", "snapshotTime"))
        when = parse_time(stamp) or utcnow()
        machine_id = tags.get("quiesce:machine", self.share_id(m))
        return self._completed(m, stamp, machine_id, tags, when, when)

    def _completed(
        self,
        m: AzureFilesMember,
        stamp: str,
        machine_id: str,
        tags: dict[str, str],
        started: datetime,
        fixed: datetime,
    ) -> SnapshotRef:
        """The share snapshot `stamp` of `m`'s share as a reference: completed, and durable
        when fixed (a share snapshot is durable once it exists)."""
        snapshot_id = f"{self.share_id(m)}@{stamp}"
        return SnapshotRef(
            id=snapshot_id,
            provider=PROVIDER,
            machine_id=machine_id,
            volume=m.share,
            method=METHOD,
            state=SnapshotState.COMPLETED,
            started_at=started,
            fixed_at=fixed,
            durable_at=fixed,
            location=snapshot_id,
            tags=tags,
        )

    def check(self, snapshot: SnapshotRef) -> None:
        """Raises unless the share snapshot is still there: before a restore creates anything
        (quiesce.restore.check_complete)."""
        match = SHARE_ID.match(snapshot.id)
        if not match or not match["snapshot"]:
            raise ProviderError(f"{snapshot.id!r} is not a share snapshot", code="BadSnapshotId")
        try:
            self._snapshot(*snapshot_parts(match))
        except ResourceNotFoundError as exc:
            raise ProviderError(
                f"{snapshot.id}: the share snapshot is gone", code="NotRestorable"
            ) from exc
        except AzureError as exc:
            raise ProviderError(
                f"{snapshot.id}: could not read the share snapshot: {error_message(exc)}",
                code="CheckFailed",
            ) from exc

    def delete(self, snapshot: SnapshotRef) -> None:
        match = SHARE_ID.match(snapshot.id)
        if not match or not match["snapshot"]:
            raise ProviderError(
                f"refusing to delete {snapshot.id!r}: it names no share snapshot (Quiesce never "
                "deletes a share)",
                code="BadSnapshotId",
            )
        sub, rg, account, share, stamp = snapshot_parts(match)
        storage = self._storage(sub)
        try:
            live = self._snapshot(sub, rg, account, share, stamp)
            if tags_of(dig(live, "properties", "metadata") or {}).get(MANAGED_TAG) != "true":
                raise ProviderError(
                    f"refusing to delete share snapshot {snapshot.id}: its metadata has no "
                    f"{metadata_key(MANAGED_TAG)}=true, so Quiesce did not make it",
                    code="NotManaged",
                )
            self.backoff.call(
                lambda: storage.file_shares.delete(rg, account, share, x_ms_snapshot=stamp),
                what=f"delete snapshot {stamp} of share {share}",
            )
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise delete_failed(snapshot.id, exc) from exc

    # ------------------------------------------------------------------------------ restore

    def plan_cloud_restore(self, request: CloudRestore) -> RestoreStep:
        return self._step(request)[0]

    def _step(self, request: CloudRestore) -> tuple[RestoreStep, re.Match[str], str]:
        match = SHARE_ID.match(request.snapshot.id)
        if not match or not match["snapshot"]:
            raise ProviderError(
                f"{request.snapshot.id!r} is not a share snapshot", code="BadSnapshotId"
            )
        if request.zone:
            raise ProviderError(
                f"member {request.member!r}: a share snapshot is restored into its own storage "
                "account",
                code="RestoreUnsupported",
            )
        target = share_name(request.name)
        account, share, stamp = match["account"], match["share"], match["snapshot"]
        base = request.snapshot.id.split("/fileServices/", 1)[0]
        target_id = f"{base}/fileServices/default/shares/{target}"
        url = f"https://{account}.file.core.windows.net"
        step = RestoreStep(
            member=request.member,
            snapshot=request.snapshot.id,
            action="PUT fileShares (a new share) + Copy File of every file from the snapshot",
            parameters={
                "source": f"{base}/fileServices/default/shares/{share}",
                "sharesnapshot": stamp,
                "target": target_id,
            },
            command=(
                f"az storage share-rm create --resource-group {match['rg']} --storage-account "
                f"{account} --name {target} && azcopy copy '{url}/{share}?sharesnapshot={stamp}' "
                f"'{url}/{target}' --recursive --as-subdir=false --preserve-smb-info=true "
                "--preserve-permissions=true"
            ),
        )
        return step, match, target

    def cloud_restore(self, request: CloudRestore) -> RestoreStep:
        step, match, target = self._step(request)
        sub, rg, account, share, stamp = snapshot_parts(match)
        storage = self._storage(sub)
        try:
            source = self._snapshot(sub, rg, account, share, stamp)
            props: dict[str, Any] = {"metadata": {"quiesce_restored_from": request.snapshot.id}}
            for key in ("shareQuota", "accessTier", "enabledProtocols"):
                value = dig(source, "properties", key)
                if value is not None:
                    props[key] = value
            self.backoff.call(
                lambda: storage.file_shares.create(rg, account, target, {"properties": props}),
                what=f"create share {target}",
            )
            endpoint = self._file_endpoint(sub, rg, account)
            copied = self._copy(endpoint, share, stamp, target)
        except AzureError as exc:
            raise ProviderError(
                f"member {request.member!r}: restoring share snapshot {stamp} of {share} into "
                f"{target} failed: {error_message(exc)}",
                code=error_code(exc) or "RestoreFailed",
            ) from exc
        step.parameters["files"] = str(copied)
        step.created = [step.parameters["target"]]
        return step

    def _file_endpoint(self, sub: str, rg: str, account: str) -> str:
        storage = self._storage(sub)
        found = self.backoff.call(
            lambda: storage.storage_accounts.get_properties(rg, account, cls=raw),
            what=f"GET storage account {account}",
        )
        endpoint = str(dig(found, "properties", "primaryEndpoints", "file") or "")
        return endpoint or f"https://{account}.file.core.windows.net/"

    def _copy(self, endpoint: str, share: str, stamp: str, target: str) -> int:
        """Server-side copies of every file of the snapshot into `target`; how many started."""
        from azure.storage.fileshare import ShareServiceClient

        service = ShareServiceClient(
            endpoint.rstrip("/"),
            credential=self.clients.credential,
            token_intent="backup",  # noqa: S106 - the file service's backup intent
            user_agent="quiesce",
            **self.file_client_kwargs,
        )
        source = service.get_share_client(share, snapshot=stamp)
        dest = service.get_share_client(target)
        copied = 0
        pending = [""]
        while pending:
            folder = pending.pop()
            listing = (
                source.get_directory_client(folder) if folder else source.get_directory_client()
            )
            for item in self.backoff.call(
                lambda listing=listing: list(  # type: ignore[misc]
                    listing.list_directories_and_files()
                ),
                what=f"list {share}/{folder}",
            ):
                path = f"{folder}/{item['name']}" if folder else str(item["name"])
                if item.get("is_directory"):
                    self.backoff.call(
                        lambda path=path: dest.get_directory_client(path).create_directory(),  # type: ignore[misc]
                        what=f"create {target}/{path}",
                    )
                    pending.append(path)
                    continue
                url = source.get_file_client(path).url
                self.backoff.call(
                    lambda path=path, url=url: dest.get_file_client(path).start_copy_from_url(  # type: ignore[misc]
                        url
                    ),
                    what=f"copy {share}/{path}",
                )
                copied += 1
        return copied
