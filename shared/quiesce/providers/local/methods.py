"""How the local provider snapshots one volume: the snapshot-method seam.

Each method declares whether one volume's snapshot is one point in time (`atomic`) and so what
level it can honestly give without hooks: an atomic snapshot of a running application is what
a power cut would leave (`crash`); a file-by-file copy spans an interval and is `none`. With
hooks holding the application, any method gives `application` (the engine judges; see
engine/outcome.py, which treats the file-by-file methods, and only them, as not one point in
time).

| method  | atomic | without hooks | chosen when                                      |
|---------|--------|---------------|--------------------------------------------------|
| btrfs   | yes    | crash         | the volume is a btrfs subvolume no pre hook freezes |
| reflink | no     | none          | its files can be cloned into the state folder    |
| copy    | no     | none          | otherwise                                        |

Several volumes of one member are snapshotted one after the other, each atomic on its own: the
member is one point in time only while hooks hold the application; without hooks each volume
is crash-consistent and the spread between them is the run's measured skew.

`lvm-thin` and `zfs` fit the same seam (a `VolumeMethod` with `atomic = True`: `lvcreate -s`
of a thin volume, `zfs snapshot`); they are described in docs/local-snapshots.md and are added
once a machine that runs the tests has device-mapper or ZFS.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from quiesce.providers.local import btrfs
from quiesce.providers.local.reflink import CloneStopped, can_clone, clone_tree
from quiesce.record import Consistency, SnapshotRef

#: The data folder of a file-by-file snapshot, inside its folder in the state directory.
DATA = "data"


@dataclass(frozen=True)
class Taken:
    """What one volume's snapshot became: its method, where its data is, and its bytes (None
    when only made known by wait_durable)."""

    method: str
    location: Path
    size: int | None


class VolumeMethod(ABC):
    """One way to snapshot a volume. `folder` is the snapshot's folder in the state directory
    (it holds the manifest); where the data goes is the method's choice (`Taken.location`)."""

    name: ClassVar[str]
    atomic: ClassVar[bool]

    @classmethod
    def without_hooks(cls) -> Consistency:
        """The highest level this method gives while nothing holds the application."""
        return Consistency.CRASH if cls.atomic else Consistency.NONE

    @abstractmethod
    def location(self, snapshot_id: str, folder: Path) -> Path:
        """Where the data of this snapshot will be (written in the manifest before the take)."""

    @abstractmethod
    def take(self, volume: Path, location: Path, stop: Callable[[], bool]) -> Taken:
        """Snapshots `volume` into `location`; the point in time is fixed when this returns."""

    def durable(self, data: Path) -> None:  # noqa: B027 (optional step)
        """Makes what `take` made durable, beyond fsyncing its files (a filesystem commit)."""

    @abstractmethod
    def remove(self, data: Path) -> None:
        """Deletes the data of one snapshot of this method (not its folder)."""

    @abstractmethod
    def restore(self, data: Path, target: Path) -> None:
        """Recreates the snapshot's data at `target` (absent, or an empty folder)."""


class FileByFile(VolumeMethod):
    """A reflink clone of every file where the filesystem allows, a plain copy elsewhere. The
    method recorded is what happened: `reflink` only when every file was cloned."""

    name = "copy"
    atomic = False

    def location(self, snapshot_id: str, folder: Path) -> Path:
        return folder / DATA

    def take(self, volume: Path, location: Path, stop: Callable[[], bool]) -> Taken:
        method, size = clone_tree(volume, location, stop=stop)
        if stop():
            raise CloneStopped(str(location))
        return Taken(method, location, size)

    def remove(self, data: Path) -> None:
        pass  # inside the snapshot's folder, removed with it

    def restore(self, data: Path, target: Path) -> None:
        clone_tree(data, target)


class Btrfs(VolumeMethod):
    """A read-only btrfs snapshot of a subvolume, kept on its own filesystem (see btrfs.py).
    Without a subvolume it can only handle snapshots already taken (durable, remove, restore)."""

    name = "btrfs"
    atomic = True

    def __init__(self, subvolume: btrfs.Subvolume | None = None) -> None:
        self.subvolume = subvolume

    def location(self, snapshot_id: str, folder: Path) -> Path:
        assert self.subvolume is not None
        return self.subvolume.store.joinpath(*snapshot_id.split("/"))

    def take(self, volume: Path, location: Path, stop: Callable[[], bool]) -> Taken:
        assert self.subvolume is not None
        if stop():
            raise CloneStopped(str(location))
        btrfs.snapshot(self.subvolume.path, location)
        return Taken(self.name, location, None)

    def durable(self, data: Path) -> None:
        btrfs.sync(data)

    def remove(self, data: Path) -> None:
        if data.exists() or data.is_symlink():
            btrfs.delete(data)
        store = next((p for p in data.parents if p.name == btrfs.STORE), None)
        current = data.parent
        while store is not None and current != store and store in current.parents:
            try:
                current.rmdir()  # the recovery point's and member's folders, once empty
            except OSError:
                break
            current = current.parent

    def restore(self, data: Path, target: Path) -> None:
        if not btrfs.writable_copy(data, target):
            clone_tree(data, target)


def taken_by(method: str) -> VolumeMethod:
    """The method that handles a snapshot already taken, by the method its manifest names."""
    return Btrfs() if method == Btrfs.name else FileByFile()


def data_of(ref: SnapshotRef, folder: Path) -> Path:
    """Where a snapshot's data is: a btrfs snapshot at its recorded location, provided that is
    a path Quiesce names its own snapshots by; every other method in its folder's `data`."""
    if ref.method != Btrfs.name:
        return folder / DATA
    location = Path(ref.location)
    tail = (btrfs.STORE, *ref.id.split("/"))
    if not location.is_absolute() or location.parts[-len(tail) :] != tail:
        raise btrfs.BtrfsError(
            f"snapshot {ref.id}: its location {ref.location!r} is not where Quiesce keeps that "
            f"snapshot (<mount point>/{btrfs.STORE}/{ref.id})"
        )
    return location


@dataclass(frozen=True)
class Choice:
    """The method for one volume, and why a better one (btrfs) was not used, when it was not."""

    method: VolumeMethod
    display: str
    why_not_btrfs: str | None = None


def choose(volume: Path, store_probe: Path, may_freeze: bool) -> Choice:
    """The method for `volume`: btrfs when it is a subvolume no pre hook may freeze, else a
    file-by-file clone (reflink when `store_probe`, where the data would go, can clone it).
    Writes nothing."""
    found = btrfs.subvolume(volume)
    why: str | None = None
    if isinstance(found, btrfs.Subvolume):
        if not may_freeze:
            return Choice(Btrfs(found), Btrfs.name)
        why = (
            "a pre hook in its group may freeze it (pre_freezes_volumes), and a btrfs snapshot "
            "of a frozen filesystem waits for the thaw"
        )
    elif found not in ("not on btrfs", "a folder on btrfs, not a subvolume"):
        why = found
    fallback = "reflink" if can_clone(volume, store_probe) else "copy"
    display = fallback if why is None else f"{fallback} (not btrfs: {why})"
    return Choice(FileByFile(), display, why)
