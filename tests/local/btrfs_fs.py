"""Real btrfs filesystems for the local provider's tests: loop-mounted images with subvolumes,
a writer that appends numbered records to them, and the hooks that pause it."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

#: One record of the writer: its number, file and volume, padded to 64 bytes (a page holds a
#: whole number of them, so a record is in a snapshot whole or not at all).
RECORD = 64


def sh(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)


def need_btrfs() -> None:
    """Skips the test, with the reason, when btrfs loop filesystems cannot be made here."""
    missing = [t for t in ("mkfs.btrfs", "btrfs", "losetup", "mount", "umount") if not _has(t)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} to make a btrfs loop filesystem (btrfs-progs)")
    if os.geteuid() != 0:
        pytest.skip("needs root to attach a loop device, mount it and make subvolumes")


def _has(tool: str) -> bool:
    return shutil.which(tool) is not None or Path("/usr/sbin", tool).exists()


@contextlib.contextmanager
def btrfs_mount(folder: Path, size_mb: int = 256) -> Iterator[Path]:
    """A fresh btrfs filesystem on a loop device, mounted at `folder`; unmounted, detached
    and deleted afterwards, whatever happens (thawed first, should a test have frozen it)."""
    need_btrfs()
    folder.mkdir(parents=True, exist_ok=True)
    image = folder.parent / f"{folder.name}.img"
    with open(image, "wb") as f:
        f.truncate(size_mb * 1024 * 1024)
    device = None
    mounted = False
    try:
        made = sh("mkfs.btrfs", "-q", "-f", str(image))
        if made.returncode != 0:
            pytest.skip(f"mkfs.btrfs failed: {made.stderr.strip()}")
        attached = sh("losetup", "--find", "--show", str(image))
        if attached.returncode != 0:
            pytest.skip(f"no loop device could be attached: {attached.stderr.strip()}")
        device = attached.stdout.strip()
        result = sh("mount", "-t", "btrfs", device, str(folder))
        if result.returncode != 0:
            pytest.skip(f"mounting btrfs failed (no btrfs in this kernel?): {result.stderr}")
        mounted = True
        yield folder
    finally:
        if mounted:
            sh("fsfreeze", "--unfreeze", str(folder))
            if sh("umount", str(folder)).returncode != 0:
                time.sleep(0.5)  # a hook or writer may still be closing its files
                if sh("umount", str(folder)).returncode != 0:
                    sh("umount", "-l", str(folder))
        if device is not None:
            sh("losetup", "-d", device)
        image.unlink(missing_ok=True)


def subvolume(path: Path) -> Path:
    done = sh("btrfs", "subvolume", "create", str(path))
    assert done.returncode == 0, done.stderr
    return path


def is_subvolume(path: Path) -> bool:
    return path.is_dir() and os.stat(path).st_ino == 256


def read_only(path: Path) -> bool:
    return sh("btrfs", "property", "get", "-ts", str(path), "ro").stdout.strip() == "ro=true"


# ------------------------------------------------------------------------------ the writer

WRITER = textwrap.dedent(
    '''
    """Appends record n to a.log, fsyncs, then to b.log, fsyncs, in every volume in turn."""
    import os, sys

    RECORD = 64
    volumes = sys.argv[1:]
    files = [(v, name, os.open(os.path.join(v, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND))
             for v in volumes for name in ("a.log", "b.log")]
    n = 0
    while True:
        n += 1
        for volume, name, fd in files:
            text = f"{n:010d} {name} {os.path.basename(volume)}"
            os.write(fd, text.encode().ljust(RECORD - 1, b".") + b"\\n")
            os.fsync(fd)
    '''
)


def record(n: int, name: str, volume: str) -> bytes:
    return f"{n:010d} {name} {volume}".encode().ljust(RECORD - 1, b".") + b"\n"


def expected(name: str, volume: str, count: int) -> bytes:
    """The file the writer has written after `count` records: what a snapshot must hold."""
    return b"".join(record(n, name, volume) for n in range(1, count + 1))


def records_in(folder: Path, name: str, volume: str) -> int:
    """How many records the file holds; fails unless it is byte for byte the writer's file
    after that many records (nothing torn, nothing out of order)."""
    data = (folder / name).read_bytes() if (folder / name).exists() else b""
    assert len(data) % RECORD == 0, f"{folder / name}: a torn record ({len(data)} bytes)"
    count = len(data) // RECORD
    assert data == expected(name, volume, count), f"{folder / name}: not the writer's file"
    return count


def consistent_volume(folder: Path, volume: str) -> int:
    """Checks one volume's copy is one point in time of the writer: b.log is written after
    a.log, so a.log holds as many records as b.log, or one more. Returns a.log's count."""
    a = records_in(folder, "a.log", volume)
    b = records_in(folder, "b.log", volume)
    assert b <= a <= b + 1, f"{folder}: a.log has {a} records, b.log {b}: not one point in time"
    return a


@contextlib.contextmanager
def running_writer(base: Path, *volumes: Path) -> Iterator[subprocess.Popen[bytes]]:
    script = base / "writer.py"
    script.write_text(WRITER)
    process = subprocess.Popen([sys.executable, str(script), *map(str, volumes)])
    try:
        deadline = time.monotonic() + 30
        while not all((v / "b.log").exists() and (v / "b.log").stat().st_size for v in volumes):
            assert process.poll() is None, "the writer stopped"
            assert time.monotonic() < deadline, "the writer wrote nothing in 30 s"
            time.sleep(0.05)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, 18)  # SIGCONT, should a pre hook have stopped it
        process.kill()
        process.wait(timeout=30)


# ------------------------------------------------------------------------------ the hooks

PAUSE = textwrap.dedent(
    '''
    """pre: stop the writer (SIGSTOP), wait until it is stopped, then copy the volumes into
    REFERENCE (the state at the point in time). post: let it go on (SIGCONT)."""
    import os, shutil, signal, sys, time

    phase, pid = sys.argv[1], int(sys.argv[2])
    if phase == "post":
        os.kill(pid, signal.SIGCONT)
        sys.exit(0)
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "T":
        if time.monotonic() > deadline:
            sys.exit("the writer did not stop")
        time.sleep(0.005)
    reference = sys.argv[3]
    for volume in sys.argv[4:]:
        shutil.copytree(volume, os.path.join(reference, os.path.basename(volume)))
    print("writer stopped; reference copied")
    '''
)


def pause_hooks(base: Path, pid: int, reference: Path, *volumes: Path) -> dict[str, object]:
    script = base / "pause.py"
    script.write_text(PAUSE)
    pre = [sys.executable, str(script), "pre", str(pid), str(reference), *map(str, volumes)]
    return {
        "pre": {"run": pre, "timeout_seconds": 30},
        "post": {"run": [sys.executable, str(script), "post", str(pid)], "timeout_seconds": 30},
    }
