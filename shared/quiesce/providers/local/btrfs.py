"""btrfs read-only snapshots of subvolumes: one point in time per volume, in tens of milliseconds.

A volume qualifies when it is a btrfs subvolume (inode 256 on a btrfs mount) that is not the
root of its mount, has no nested subvolumes (a btrfs snapshot leaves them out: they would come
back as empty folders) and Quiesce runs as root (creating and deleting subvolumes needs it).

Snapshots live on the volume's own filesystem (a snapshot cannot leave it), in one folder at
the mount point, named like the snapshot's folder in the state directory:

    <mount point>/.quiesce-snapshots/<recovery point>/<member>/<index>-<volume name>

The manifest stays in the state directory and names that path as the snapshot's location;
deletes check that the path is in such a folder, is named for the snapshot, and is a read-only
subvolume, so only Quiesce's own snapshots are ever deleted.

A btrfs snapshot of a frozen filesystem (fsfreeze) does not fail: it waits for the thaw, and
then captures the filesystem as it is after the thaw. So the btrfs method is never used for a
volume that a pre hook may freeze (see methods.py); a snapshot that still does not return
within `timeout` is reported as blocked, and removed once it completes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

#: The folder at each btrfs mount point that holds Quiesce's snapshots of that filesystem.
STORE = ".quiesce-snapshots"

#: The inode number of every subvolume's root folder (BTRFS_FIRST_FREE_OBJECTID).
SUBVOLUME_INODE = 256

#: How long a snapshot may take before it is reported as blocked (a frozen filesystem).
SNAPSHOT_TIMEOUT = 60.0

#: How long a delete, sync or show may take.
COMMAND_TIMEOUT = 120.0

MOUNTINFO = Path("/proc/self/mountinfo")


class BtrfsError(Exception):
    """A btrfs command failed, or a path is not what it must be."""


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo."""

    device: str  # major:minor of the filesystem (one per btrfs filesystem, whatever the mount)
    point: Path
    fstype: str


@dataclass(frozen=True)
class Subvolume:
    """A volume the btrfs method can snapshot: the subvolume and where its snapshots go."""

    path: Path
    mount: Mount

    @property
    def store(self) -> Path:
        return self.mount.point / STORE


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040)."""
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts(mountinfo: Path = MOUNTINFO) -> list[Mount]:
    out = []
    for line in mountinfo.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        try:
            sep = fields.index("-")
            out.append(Mount(fields[2], Path(_unescape(fields[4])), fields[sep + 1]))
        except (ValueError, IndexError):
            continue
    return out


def mount_of(path: Path, mountinfo: Path = MOUNTINFO) -> Mount | None:
    """The mount that holds `path` (resolved): the one with the longest mount point above it."""
    real = Path(os.path.realpath(path))
    best: Mount | None = None
    for mount in mounts(mountinfo):
        above = real == mount.point or mount.point in real.parents
        if above and (best is None or len(mount.point.parts) >= len(best.point.parts)):
            best = mount  # the last of equal ones is the one on top
    return best


def available() -> str | None:
    """None when btrfs snapshots can be taken here, else why not."""
    if os.geteuid() != 0:
        return "creating and deleting btrfs subvolumes needs root"
    if shutil.which("btrfs") is None:
        return "the btrfs command is not installed (btrfs-progs)"
    return None


def subvolume(path: Path) -> Subvolume | str:
    """The subvolume at `path`, or why the btrfs method cannot snapshot it."""
    mount = mount_of(path)
    if mount is None or mount.fstype != "btrfs":
        return "not on btrfs"
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot stat it: {exc.strerror}"
    if st.st_ino != SUBVOLUME_INODE:
        return "a folder on btrfs, not a subvolume"
    if Path(os.path.realpath(path)) == mount.point:
        return "the root of its mount: its snapshots would have to be kept inside it"
    why = available()
    if why is not None:
        return why
    nested = _run(["btrfs", "subvolume", "list", "-o", str(path)], COMMAND_TIMEOUT)
    if nested.returncode != 0:
        return f"btrfs subvolume list failed: {_tail(nested)}"
    if nested.stdout.strip():
        return "it holds nested subvolumes, which a btrfs snapshot leaves out"
    return Subvolume(Path(os.path.realpath(path)), mount)


def snapshot(source: Path, destination: Path, timeout: float = SNAPSHOT_TIMEOUT) -> None:
    """`btrfs subvolume snapshot -r`: the point in time is fixed when this returns.

    Everything that touches the filesystem (its folders, then the command) runs in a worker
    thread. When it has not finished after `timeout` seconds it is waiting for a frozen
    filesystem: BtrfsError is raised at once, and the snapshot the worker makes after the
    thaw is deleted when it appears (it is not of the moment asked for)."""
    worker = _Snapshot(source, destination)
    thread = threading.Thread(target=worker.run, name="btrfs-snapshot", daemon=True)
    thread.start()
    if not worker.wait(timeout):
        raise BtrfsError(
            f"btrfs subvolume snapshot of {source} did not return within {timeout:g} s: its "
            "filesystem is probably frozen (a btrfs snapshot waits for the thaw). Hooks that "
            "freeze a btrfs volume cannot be combined with btrfs snapshots"
        )
    if worker.error is not None:
        raise worker.error


class _Snapshot:
    def __init__(self, source: Path, destination: Path) -> None:
        self.source, self.destination = source, destination
        self.error: BtrfsError | None = None
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._abandoned = False

    def wait(self, timeout: float) -> bool:
        """Whether the snapshot finished in time; if not, it is abandoned (and removed once
        it completes)."""
        finished = self._finished.wait(timeout)
        with self._lock:
            if self._finished.is_set():
                return True
            self._abandoned = True
            return finished

    def run(self) -> None:
        try:
            _private_folders(self.destination.parent)
            argv = ["btrfs", "subvolume", "snapshot", "-r", str(self.source), str(self.destination)]
            done = _run(argv, None)
            if done.returncode != 0:
                self.error = BtrfsError(
                    f"btrfs subvolume snapshot of {self.source} failed: {_tail(done)}"
                )
        except OSError as exc:
            self.error = BtrfsError(f"cannot create {self.destination.parent}: {exc}")
        with self._lock:
            self._finished.set()
            abandoned = self._abandoned
        if abandoned and self.error is None:
            with contextlib.suppress(BtrfsError, OSError):
                delete(self.destination)


def _private_folders(folder: Path) -> None:
    """mkdir -p with every folder it creates private (0700): the store holds copies of data
    whose own folders may have kept others out."""
    missing = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)


def delete(path: Path) -> None:
    """Deletes one of Quiesce's read-only snapshots; refuses anything else."""
    if STORE not in path.parts:
        raise BtrfsError(f"{path} is not in a {STORE} folder: not a Quiesce snapshot")
    st = os.lstat(path)
    if st.st_ino != SUBVOLUME_INODE or not os.path.isdir(path) or os.path.islink(path):
        raise BtrfsError(f"{path} is not a btrfs subvolume: not a Quiesce snapshot")
    ro = _run(["btrfs", "property", "get", "-ts", str(path), "ro"], COMMAND_TIMEOUT)
    if ro.returncode != 0 or ro.stdout.strip() != "ro=true":
        raise BtrfsError(f"{path} is not a read-only snapshot: not a Quiesce snapshot")
    done = _run(["btrfs", "subvolume", "delete", str(path)], COMMAND_TIMEOUT)
    if done.returncode != 0:
        raise BtrfsError(f"btrfs subvolume delete {path} failed: {_tail(done)}")


def writable_copy(snapshot_path: Path, target: Path) -> bool:
    """Restores by a writable snapshot of the snapshot at `target`, when `target` does not
    exist and its parent is on the same filesystem; returns whether it did."""
    if target.exists() or target.is_symlink():
        return False
    source, here = mount_of(snapshot_path), mount_of(target.parent)
    if source is None or here is None or source.device != here.device:
        return False
    done = _run(
        ["btrfs", "subvolume", "snapshot", str(snapshot_path), str(target)], SNAPSHOT_TIMEOUT
    )
    if done.returncode != 0:
        raise BtrfsError(f"btrfs subvolume snapshot into {target} failed: {_tail(done)}")
    return True


def sync(path: Path) -> None:
    """Commits the filesystem's current transaction: snapshots made before are durable."""
    done = _run(["btrfs", "filesystem", "sync", str(path)], COMMAND_TIMEOUT)
    if done.returncode != 0:
        raise BtrfsError(f"btrfs filesystem sync {path} failed: {_tail(done)}")


def _run(argv: list[str], timeout: float | None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 1, "", str(exc))


def _tail(done: subprocess.CompletedProcess[str]) -> str:
    return (done.stderr or done.stdout).strip()[-400:] or f"exit {done.returncode}"
