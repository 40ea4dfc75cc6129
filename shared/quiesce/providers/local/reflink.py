"""Copy-on-write cloning of files and folder trees, with an honest fallback to a plain copy.

A reflink (the FICLONE ioctl: XFS with reflink=1, Btrfs, bcachefs, OCFS2) shares the file's
extents, so cloning is nearly instant whatever the size and takes no space until either copy is
written. A filesystem that cannot clone (ext4, tmpfs, another filesystem than the source's)
refuses the ioctl; the file is then copied byte for byte and the method says so.

Each file keeps its mode, times and, where the process may set them, its owner. Symbolic links
are copied as links (never followed), FIFOs and device nodes are recreated, sockets are skipped
(they are endpoints of a live process, not data). Hard links become independent files. An entry
deleted while the tree is walked (a live volume snapshotted crash-consistently) is left out.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Literal

#: _IOW(0x94, 9, int): make the destination file share the source file's extents.
FICLONE = 0x40049409

Method = Literal["reflink", "copy"]

#: What a filesystem answers when it cannot clone this file (as opposed to a real I/O error).
_REFUSED = frozenset(
    {
        errno.EOPNOTSUPP,  # the filesystem has no reflink support (ext4, tmpfs)
        errno.ENOTSUP,
        errno.EXDEV,  # source and destination are on different filesystems
        errno.EINVAL,  # not supported for this file or this filesystem
        errno.ENOTTY,  # the ioctl is unknown to this file's driver
        errno.ENOSYS,
        errno.ETXTBSY,  # the source is an active swap file
    }
)


def clone_file(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Method:
    """Clones one regular file to `dst` (which must not exist); returns the method used.

    Mode, times and owner are copied too. A refused clone falls back to shutil.copyfile.
    """
    src_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            method = _try_ficlone(src_fd, dst_fd)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)
    if method == "copy":
        shutil.copyfile(src, dst, follow_symlinks=False)
    _copy_metadata(src, dst)
    return method


def _try_ficlone(src_fd: int, dst_fd: int) -> Method:
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError as exc:
        if exc.errno in _REFUSED:
            return "copy"
        raise
    return "reflink"


class CloneStopped(Exception):
    """clone_tree was told to stop (its snapshot was discarded while it copied)."""


def clone_tree(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    stop: Callable[[], bool] | None = None,
) -> tuple[Method, int]:
    """Recreates the folder `src` at `dst`; returns the method and the bytes of regular files.

    `dst` must not exist, or be an empty folder. The method is "reflink" when every regular file
    was cloned, "copy" as soon as one was copied. A tree without regular files is "reflink" only
    when both sides are on one filesystem and a probe clone there works (see can_clone).
    """
    src_path, dst_path = Path(src), Path(dst)
    if not src_path.is_dir() or src_path.is_symlink():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(src_path))
    if dst_path.exists() and (not dst_path.is_dir() or any(dst_path.iterdir())):
        raise FileExistsError(errno.EEXIST, "exists and is not an empty folder", str(dst_path))
    walker = _TreeCloner(stop)
    walker.clone_dir(src_path, dst_path)
    if walker.files == 0:
        return ("reflink" if can_clone(src_path, dst_path) else "copy"), 0
    return ("copy" if walker.copied else "reflink"), walker.size


class _TreeCloner:
    def __init__(self, stop: Callable[[], bool] | None = None) -> None:
        self.stop = stop
        self.files = 0
        self.copied = 0
        self.size = 0

    def clone_dir(self, src: Path, dst: Path) -> None:
        dst.mkdir(mode=0o700, exist_ok=True)
        with os.scandir(src) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if self.stop is not None and self.stop():
                raise CloneStopped(str(dst))
            try:
                self.clone_entry(entry, dst / entry.name)
            except FileNotFoundError:
                if os.path.lexists(entry.path):
                    raise
                # Deleted while we walked (a live, crash-consistent volume): as if never there.
                _remove_partial(dst / entry.name)
        # Last, so that creating the children does not change the folder's times.
        _copy_metadata(src, dst)

    def clone_entry(self, entry: os.DirEntry[str], dst: Path) -> None:
        st = entry.stat(follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(entry.path), dst)
            _copy_metadata(entry.path, dst)
        elif stat.S_ISDIR(mode):
            self.clone_dir(Path(entry.path), dst)
        elif stat.S_ISREG(mode):
            if clone_file(entry.path, dst) == "copy":
                self.copied += 1
            self.files += 1
            self.size += st.st_size
        elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            os.mknod(dst, mode, st.st_rdev)
            _copy_metadata(entry.path, dst)
        # Sockets (and anything stranger) are not data: skipped.


def _remove_partial(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _copy_metadata(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Owner (when allowed), mode, times and extended attributes; links are not followed."""
    st = os.lstat(src)
    with contextlib.suppress(PermissionError):
        os.lchown(dst, st.st_uid, st.st_gid)
    if stat.S_ISLNK(st.st_mode):
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        return
    shutil.copystat(src, dst, follow_symlinks=False)


def can_clone(src: str | os.PathLike[str], dst_dir: str | os.PathLike[str]) -> bool:
    """Whether the files of folder `src` can be cloned into folder `dst_dir`.

    Leaves nothing behind: the probe clones into an anonymous O_TMPFILE file (gone when closed),
    from a small file of `src` when one is near its top, else from a second anonymous file (then
    `src` must be on the same device as `dst_dir`).
    """
    try:
        dst_fd = os.open(dst_dir, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError:
        return False  # not writable, or no O_TMPFILE: nothing can be said, so no claim
    try:
        sample = _sample_file(Path(src))
        if sample is not None:
            src_fd = os.open(sample, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        else:
            if os.stat(src).st_dev != os.fstat(dst_fd).st_dev:
                return False
            src_fd = os.open(dst_dir, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
            os.write(src_fd, b"quiesce")
        try:
            return _try_ficlone(src_fd, dst_fd) == "reflink"
        except OSError:
            return False
        finally:
            os.close(src_fd)
    except OSError:
        return False
    finally:
        os.close(dst_fd)


#: The probe clones a real file of the volume if one this small is among the first entries.
_SAMPLE_MAX_BYTES = 64 * 1024 * 1024
_SAMPLE_MAX_ENTRIES = 256


def _sample_file(top: Path) -> Path | None:
    seen = 0
    for dirpath, _dirnames, filenames in os.walk(top):
        for name in filenames:
            seen += 1
            if seen > _SAMPLE_MAX_ENTRIES:
                return None
            path = Path(dirpath) / name
            with contextlib.suppress(OSError):
                st = path.lstat()
                if stat.S_ISREG(st.st_mode) and 0 < st.st_size <= _SAMPLE_MAX_BYTES:
                    return path
    return None
