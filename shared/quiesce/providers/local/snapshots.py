"""Snapshots of local folders: btrfs snapshots of subvolumes, reflink clones or copies.

Layout, one folder per volume snapshot, named by the snapshot id:

    <state_dir>/snapshots/<recovery_point>/<member>/<index>-<volume name>/
        manifest.json   the SnapshotRef, tags included (what `find` reads)
        data/           the volume's files (reflink and copy)

A btrfs snapshot cannot leave its filesystem: its data is a read-only subvolume at
`<mount point>/.quiesce-snapshots/<snapshot id>`, which the manifest names as its location
(methods.py says which method a volume gets, btrfs.py how btrfs snapshots are kept).

The manifest is written before the data, with state "failed", and rewritten "pending" once the
copy is complete: a take that dies half-way leaves a snapshot `find` lists as failed (so cleanup
finds it), never one that looks usable. `wait_durable` fsyncs everything and makes it "completed".
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from quiesce.errors import ProviderError
from quiesce.policy.model import LocalMember, MemberBase
from quiesce.ports import Machine, SnapshotCall, Snapshotter
from quiesce.providers.local.btrfs import BtrfsError
from quiesce.providers.local.methods import (
    Choice,
    VolumeMethod,
    choose,
    data_of,
    taken_by,
)
from quiesce.providers.local.reflink import CloneStopped
from quiesce.record import SnapshotRef, SnapshotState, utcnow
from quiesce.tags import snapshot_tags

MANIFEST = "manifest.json"
DATA = "data"
PROVIDER = "local"


class LocalSnapshotter(Snapshotter):
    """The Snapshotter port for folders on this host, plus `restore` for `quiesce restore`.

    `freezing_members` names the members whose volumes a pre hook may freeze (a member of an
    application-consistent group in which some member's pre hook may freeze its volumes: the
    library's PostgreSQL hook also freezes the WAL member's filesystem). Their volumes are never
    snapshotted with btrfs, whose snapshot of a frozen filesystem waits for the thaw."""

    def __init__(self, state_dir: Path, freezing_members: Collection[str] = ()) -> None:
        self.state_dir = Path(state_dir)
        self.root = self.state_dir / "snapshots"
        self.freezing_members = frozenset(freezing_members)
        # Snapshots deleted while their take may still be copying: the take stops at once.
        self._discarded: set[str] = set()
        self._discarded_lock = threading.Lock()

    # ------------------------------------------------------------------------------ the port

    def take(self, call: SnapshotCall) -> list[SnapshotRef]:
        _check_name("recovery point", call.recovery_point)
        _check_name("member", call.member)
        volumes = [Path(v) for v in call.machine.volumes]
        for volume in volumes:
            self._check_volume(call.member, volume)
        may_freeze = self._may_freeze(call.member, call.spec)
        refs: list[SnapshotRef] = []
        created: list[tuple[Path, VolumeMethod, Path]] = []
        try:
            for index, volume in enumerate(volumes):
                snapshot_id = f"{call.recovery_point}/{call.member}/{index}-{volume.name or 'root'}"
                folder = self.root / snapshot_id
                method = self._choose(volume, may_freeze).method
                try:
                    _make_folder(folder)
                except FileExistsError:
                    raise ProviderError(
                        f"member {call.member!r}: snapshot {snapshot_id} already exists",
                        code="SnapshotExists",
                    ) from None
                except OSError as exc:
                    raise ProviderError(
                        f"member {call.member!r}: cannot create {folder}: {exc}",
                        code="SnapshotFailed",
                    ) from exc
                data = method.location(snapshot_id, folder)
                created.append((folder, method, data))
                started = utcnow()
                ref = SnapshotRef(
                    id=snapshot_id,
                    provider=PROVIDER,
                    machine_id=call.machine.machine_id,
                    volume=str(volume),
                    method=method.name,
                    state=SnapshotState.FAILED,  # until the data is complete
                    started_at=started,
                    fixed_at=started,
                    location=str(folder if data.parent == folder else data),
                    tags=snapshot_tags(call),
                )
                stop = self._stop_check([r.id for r in refs] + [snapshot_id])
                try:
                    _write_manifest(folder, ref)
                    taken = method.take(volume, data, stop)
                    fixed = utcnow()  # the point in time (a copy's last file) is fixed by now
                    if stop():
                        raise CloneStopped(snapshot_id)
                    ref = ref.model_copy(
                        update={
                            "method": taken.method,
                            "state": SnapshotState.PENDING,
                            "fixed_at": fixed,
                            "size_bytes": taken.size,
                        }
                    )
                    _write_manifest(folder, ref)
                except (CloneStopped, OSError, BtrfsError) as exc:
                    if not stop():
                        raise ProviderError(
                            f"member {call.member!r}: could not snapshot volume {volume}: {exc}",
                            code="SnapshotFailed",
                        ) from exc
                    raise ProviderError(
                        f"member {call.member!r}: snapshot {snapshot_id} was discarded while "
                        "it was being copied; the copy stopped",
                        code="SnapshotDiscarded",
                    ) from None
                refs.append(ref)
        except BaseException:
            for folder, method, data in created:
                with contextlib.suppress(OSError, BtrfsError):
                    method.remove(data)
                self._remove(folder)
            raise
        return refs

    def wait_durable(self, snapshots: Sequence[SnapshotRef], timeout: float) -> list[SnapshotRef]:
        """fsyncs every file and folder of each snapshot, then marks it completed.

        A snapshot not made durable before `timeout` comes back unchanged (still pending); one
        whose folder is gone comes back failed.
        """
        deadline = time.monotonic() + timeout
        out: list[SnapshotRef] = []
        for ref in snapshots:
            folder = self._folder(ref)
            data = self._data_or_none(ref)
            if ref.state is not SnapshotState.PENDING:
                out.append(ref)  # completed already, or never usable
            elif data is None or not data.is_dir():
                out.append(ref.model_copy(update={"state": SnapshotState.FAILED}))
            elif (
                time.monotonic() >= deadline
                or (tree := _fsync_tree(data, deadline)) is None
                or not self._durable(ref, data)
            ):
                out.append(ref)
            else:
                done = ref.model_copy(
                    update={
                        "state": SnapshotState.COMPLETED,
                        "durable_at": utcnow(),
                        "file_count": tree.files,
                        "size_bytes": tree.size,
                        "digest": tree.digest(),
                    }
                )
                _write_manifest(folder, done)
                _fsync_parents(folder, self.state_dir)
                out.append(done)
        return out

    def delete(self, snapshot: SnapshotRef) -> None:
        """Deletes the snapshot's data and folder. A btrfs snapshot is deleted only when it is
        where Quiesce keeps that snapshot and is a read-only subvolume (see btrfs.delete)."""
        folder = self._folder(snapshot)
        with self._discarded_lock:
            self._discarded.add(snapshot.id)  # a take still copying it stops
        # The manifest on disk says where the data is (the caller's copy may predate the take).
        ref = self.manifest(snapshot.id) or snapshot
        try:
            taken_by(ref.method).remove(data_of(ref, folder))
        except (OSError, BtrfsError) as exc:
            raise ProviderError(
                f"could not delete snapshot {snapshot.id}: {exc}", code="DeleteFailed"
            ) from exc
        if folder.exists() or folder.is_symlink():
            self._remove(folder)

    def partial(self) -> list[SnapshotRef]:
        """Snapshot folders without a manifest (a take killed before its first manifest was
        complete): listed as failed, tagged with their recovery point and member only, so the
        engine can tell from the catalog whether their run is over (see engine.orphans)."""
        out: list[SnapshotRef] = []
        for folder in sorted(self.root.glob("*/*/*")):
            if not folder.is_dir() or folder.is_symlink() or (folder / MANIFEST).exists():
                continue
            point, member, name = folder.relative_to(self.root).parts
            with contextlib.suppress(OSError, ValidationError):
                when = datetime.fromtimestamp(folder.lstat().st_mtime, UTC)
                out.append(
                    SnapshotRef(
                        id=f"{point}/{member}/{name}",
                        provider=PROVIDER,
                        machine_id="",
                        volume="",
                        method="copy",
                        state=SnapshotState.FAILED,
                        started_at=when,
                        fixed_at=when,
                        location=str(folder),
                        tags={
                            "quiesce:managed": "true",
                            "quiesce:recovery-point": point,
                            "quiesce:member": member,
                        },
                    )
                )
        return out

    def check(self, snapshot: SnapshotRef) -> None:
        """Raises ProviderError unless the snapshot's data is complete: its files, bytes and
        file-list digest match what was recorded when it was made durable. A snapshot made
        before these were recorded (no digest) is only checked for its data folder: the size
        its take counted was read from a live volume, so it is no measure of the copy."""
        data = self._data(snapshot)
        if not data.is_dir():
            raise ProviderError(
                f"snapshot {snapshot.id} is incomplete: its data folder {data} is missing",
                code="SnapshotIncomplete",
            )
        if snapshot.digest is None:
            return
        tree = _fsync_tree(data, None)
        assert tree is not None
        pairs: list[tuple[str, object, object]] = [
            ("files", tree.files, snapshot.file_count),
            ("bytes", tree.size, snapshot.size_bytes),
            ("file list digest", tree.digest(), snapshot.digest),
        ]
        wrong = [
            f"{what} {found} (recorded: {wanted})"
            for what, found, wanted in pairs
            if wanted is not None and found != wanted
        ]
        if wrong:
            raise ProviderError(
                f"snapshot {snapshot.id} at {data} is incomplete or damaged: " + ", ".join(wrong),
                code="SnapshotIncomplete",
            )

    def find(self, policy: str, group: str, run_id: str | None = None) -> list[SnapshotRef]:
        wanted = {"quiesce:managed": "true", "quiesce:policy": policy, "quiesce:group": group}
        if run_id is not None:
            wanted["quiesce:run-id"] = run_id
        found = [
            ref for ref in self._manifests() if all(ref.tags.get(k) == v for k, v in wanted.items())
        ]
        return sorted(found, key=lambda r: (r.started_at, r.id))

    def describe(self, machine: Machine) -> dict[str, str]:
        """Per volume: "btrfs" if it is a subvolume snapshotted read-only on its filesystem,
        "reflink" if its files can be cloned into the snapshot folder, "copy" if they would be
        copied (with why not btrfs, for a volume on btrfs), "missing" if it is not a folder.
        Writes nothing (see methods.choose)."""
        may_freeze = machine.member in self.freezing_members
        out: dict[str, str] = {}
        for volume in machine.volumes:
            path = Path(volume)
            out[volume] = self._choose(path, may_freeze).display if path.is_dir() else "missing"
        return out

    # ------------------------------------------------------------------------------ extras

    def restore(self, snapshot: SnapshotRef, target: Path) -> Path:
        """Recreates the snapshot's data at `target` (absent or an empty folder) and returns it:
        a btrfs snapshot becomes a writable snapshot of it when `target` is absent and on the
        same filesystem, every other case a clone (reflink) or copy of its files."""
        data = self._data_or_none(snapshot)
        if data is None or not data.is_dir():
            raise ProviderError(
                f"snapshot {snapshot.id} has no data at {data}", code="SnapshotNotFound"
            )
        target = Path(target)
        existed = target.is_dir() and not target.is_symlink()
        if (target.exists() or target.is_symlink()) and (not existed or any(target.iterdir())):
            raise ProviderError(
                f"cannot restore snapshot {snapshot.id} into {target}: "
                "it exists and is not an empty folder",
                code="TargetNotEmpty",
            )
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            taken_by(snapshot.method).restore(data, target)
        except (OSError, BtrfsError) as exc:
            if existed:
                for child in list(target.iterdir()):
                    _rmtree(child)
            else:
                _rmtree(target)
            raise ProviderError(
                f"could not restore snapshot {snapshot.id} into {target}: {exc}",
                code="RestoreFailed",
            ) from exc
        return target

    def manifest(self, snapshot_id: str) -> SnapshotRef | None:
        """The stored SnapshotRef of one snapshot, or None."""
        path = self._folder_of(snapshot_id) / MANIFEST
        try:
            return SnapshotRef.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            return None

    # ------------------------------------------------------------------------------ helpers

    def _stop_check(self, ids: list[str]) -> Callable[[], bool]:
        def stop() -> bool:
            with self._discarded_lock:
                return any(i in self._discarded for i in ids)

        return stop

    def _may_freeze(self, member: str, spec: MemberBase) -> bool:
        own = isinstance(spec, LocalMember) and spec.hooks.pre is not None
        return member in self.freezing_members or (
            own and isinstance(spec, LocalMember) and spec.pre_freezes_volumes
        )

    def _choose(self, volume: Path, may_freeze: bool) -> Choice:
        return choose(volume, _nearest_existing(self.root), may_freeze)

    def _data(self, ref: SnapshotRef) -> Path:
        try:
            return data_of(ref, self._folder(ref))
        except BtrfsError as exc:
            raise ProviderError(str(exc), code="BadSnapshotLocation") from exc

    def _data_or_none(self, ref: SnapshotRef) -> Path | None:
        try:
            return data_of(ref, self._folder(ref))
        except BtrfsError:
            return None

    def _durable(self, ref: SnapshotRef, data: Path) -> bool:
        try:
            taken_by(ref.method).durable(data)
        except (OSError, BtrfsError):
            return False
        return True

    def _check_volume(self, member: str, volume: Path) -> None:
        if not volume.is_dir():
            what = "is not a folder" if volume.exists() else "does not exist"
            raise ProviderError(f"member {member!r}: volume {volume} {what}", code="VolumeNotFound")
        if _inside(self.state_dir, volume):
            raise ProviderError(
                f"member {member!r}: volume {volume} holds the state folder {self.state_dir}; "
                "it would snapshot its own snapshots. Move state_dir out of the volume",
                code="StateInsideVolume",
            )

    def _folder(self, ref: SnapshotRef) -> Path:
        return self._folder_of(ref.id)

    def _folder_of(self, snapshot_id: str) -> Path:
        parts = snapshot_id.split("/")
        if len(parts) != 3 or any(p in ("", ".", "..") for p in parts):
            raise ProviderError(f"{snapshot_id!r} is not a local snapshot id", code="BadSnapshotId")
        return self.root.joinpath(*parts)

    def _manifests(self) -> Iterator[SnapshotRef]:
        for path in sorted(self.root.glob(f"*/*/*/{MANIFEST}")):
            try:
                yield SnapshotRef.model_validate_json(path.read_bytes())
            except (OSError, ValidationError):
                continue  # being written, or not ours

    def _remove(self, folder: Path) -> None:
        _rmtree(folder)
        parent = folder.parent
        while parent != self.root and _inside(parent, self.root):
            try:
                parent.rmdir()
            except OSError:
                break  # not empty (another member's snapshots), or gone already
            parent = parent.parent


def _nearest_existing(folder: Path) -> Path:
    """`folder`, or its nearest parent that exists (where the folder would be created)."""
    current = folder.absolute()
    while not current.is_dir() and current.parent != current:
        current = current.parent
    return current


def _make_folder(folder: Path) -> None:
    """mkdir -p, then the folder itself; retried if a concurrent delete pruned a new parent."""
    for attempt in range(3):
        folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            folder.mkdir(mode=0o700)
            return
        except FileNotFoundError:
            if attempt == 2:
                raise


def _check_name(what: str, value: str) -> None:
    if not value or "/" in value or "\x00" in value or value in (".", ".."):
        raise ProviderError(f"{what} {value!r} cannot name a folder", code="BadName")


def _inside(folder: Path, path: Path) -> bool:
    """Whether `folder` is `path` or lies below it."""
    try:
        return folder.resolve().is_relative_to(path.resolve())
    except OSError:
        return False


def _write_manifest(folder: Path, ref: SnapshotRef) -> None:
    """Replaces the manifest atomically: a reader sees the old one or the new one."""
    tmp = folder / f".{MANIFEST}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(ref.model_dump_json(indent=2))
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / MANIFEST)


def _fsync_path(path: str | Path, flags: int) -> None:
    fd = os.open(path, flags | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class TreeInventory:
    """What a snapshot's data holds: regular files, their bytes, and its file list."""

    files: int = 0
    size: int = 0
    listing: list[str] = field(default_factory=list)

    def digest(self) -> str:
        return "sha256:" + hashlib.sha256("\n".join(sorted(self.listing)).encode()).hexdigest()


def _fsync_tree(top: Path, deadline: float | None) -> TreeInventory | None:
    """Walks `top` and returns its inventory; with a deadline, fsyncs every regular file and
    folder on the way and returns None when the deadline passed."""
    tree = TreeInventory()
    for dirpath, dirnames, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            entry = os.path.normpath(os.path.join(rel, name))
            if stat.S_ISREG(st.st_mode):
                tree.files += 1
                tree.size += st.st_size
                tree.listing.append(f"f {st.st_size} {entry!r}")
                if deadline is not None:
                    _fsync_path(path, os.O_RDONLY | os.O_NOFOLLOW)
            else:
                kind = "d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else "o"
                tree.listing.append(f"{kind} {entry!r}")
            if deadline is not None and time.monotonic() >= deadline:
                return None
        if deadline is not None:
            _fsync_path(dirpath, os.O_RDONLY | os.O_DIRECTORY)
    return tree


def _fsync_parents(folder: Path, stop: Path) -> None:
    """fsyncs `folder` and its parents up to `stop`, so the new entries themselves are durable."""
    current = folder
    while True:
        _fsync_path(current, os.O_RDONLY | os.O_DIRECTORY)
        if current == stop or current.parent == current or not _inside(current.parent, stop):
            break
        current = current.parent


def _rmtree(path: Path) -> None:
    """Removes a file or tree, also when the snapshot kept the source's read-only folders."""
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except PermissionError:
        _make_writable(path)
        shutil.rmtree(path)


def _make_writable(top: Path) -> None:
    """Gives the owner rwx on every folder below `top` (a non-root user deleting a copy of
    read-only folders needs it)."""

    def allow(path: str) -> None:
        with contextlib.suppress(OSError):
            os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) | stat.S_IRWXU)

    allow(str(top))
    for dirpath, dirnames, _files in os.walk(top):
        for name in dirnames:
            child = os.path.join(dirpath, name)
            if not os.path.islink(child):
                allow(child)
