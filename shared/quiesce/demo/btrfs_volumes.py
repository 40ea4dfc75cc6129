"""The demo's volumes on btrfs, when this machine can mount one: root, a loop device and btrfs.

The workspace's `data/` folder becomes the mount point of a fresh btrfs filesystem in the image
`data.img` (sparse), and volumes A and B are subvolumes of it, so the local provider snapshots
them read-only with btrfs (one point in time per volume, in milliseconds) instead of copying
them. The filesystem is unmounted and its loop device detached when the demo ends; the image is
kept with the workspace: `sudo mount -o loop data.img data` shows the volumes and Quiesce's
snapshots (in `data/.quiesce-snapshots`) again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

#: The image's size: sparse, so it takes only what the volumes and snapshots hold.
IMAGE_BYTES = 512 * 1024 * 1024
TOOLS = ("mkfs.btrfs", "btrfs", "losetup", "mount", "umount")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 1, "", str(exc))


def _why(done: subprocess.CompletedProcess[str]) -> str:
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit {done.returncode}"


def unavailable() -> str | None:
    """None when a btrfs loop filesystem can be tried here, else why not."""
    if os.geteuid() != 0:
        return "mounting a loop device needs root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (btrfs-progs)"
    return None


@contextlib.contextmanager
def btrfs_volumes(mount_point: Path, image: Path, names: tuple[str, ...]) -> Iterator[str | None]:
    """Mounts a new btrfs filesystem at `mount_point` with one subvolume per name, and yields
    None; or yields why it could not (nothing is left behind then). Unmounts and detaches on
    the way out, whatever happens."""
    why = unavailable()
    if why is not None:
        yield why
        return
    device: str | None = None
    mounted = False
    try:
        with open(image, "wb") as f:
            f.truncate(IMAGE_BYTES)
        made = _run("mkfs.btrfs", "-q", "-f", str(image))
        if made.returncode != 0:
            why = f"mkfs.btrfs failed: {_why(made)}"
        else:
            attached = _run("losetup", "--find", "--show", str(image))
            if attached.returncode != 0:
                why = f"no loop device: {_why(attached)}"
            else:
                device = attached.stdout.strip()
                mount_point.mkdir(parents=True, exist_ok=True)
                done = _run("mount", "-t", "btrfs", device, str(mount_point))
                if done.returncode != 0:
                    why = f"cannot mount btrfs: {_why(done)}"
                else:
                    mounted = True
                    for name in names:
                        made = _run("btrfs", "subvolume", "create", str(mount_point / name))
                        if made.returncode != 0:
                            why = f"btrfs subvolume create failed: {_why(made)}"
                            break
        if why is not None:
            _undo(mount_point, device, mounted)
            mounted, device = False, None
            image.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                mount_point.rmdir()
        yield why
    finally:
        _undo(mount_point, device, mounted)


def _undo(mount_point: Path, device: str | None, mounted: bool) -> None:
    if mounted and _run("umount", str(mount_point)).returncode != 0:
        _run("umount", "-l", str(mount_point))  # a process still closing its files
    if device is not None:
        _run("losetup", "-d", device)
