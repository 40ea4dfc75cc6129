"""Fixtures of the local provider's tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import fill_volume


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    return fill_volume(tmp_path / "volumes" / "db")


# ------------------------------------------------------------------------------ XFS with reflink


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


@pytest.fixture(scope="session")
def xfs_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder on a freshly made XFS filesystem with reflink=1, on a loop device."""
    missing = [
        tool for tool in ("mkfs.xfs", "losetup", "mount", "umount") if not shutil.which(tool)
    ]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} to make an XFS loop filesystem (apt: xfsprogs)")
    if os.geteuid() != 0:
        pytest.skip("needs root to attach a loop device and mount it")
    base = tmp_path_factory.mktemp("xfs")
    image, mountpoint = base / "xfs.img", base / "mnt"
    mountpoint.mkdir()
    with open(image, "wb") as f:
        f.truncate(300 * 1024 * 1024)
    made = _sh("mkfs.xfs", "-q", "-m", "reflink=1", str(image))
    if made.returncode != 0:
        pytest.skip(f"mkfs.xfs -m reflink=1 failed: {made.stderr.strip()}")
    attached = _sh("losetup", "--find", "--show", str(image))
    if attached.returncode != 0:
        pytest.skip(f"no loop device could be attached: {attached.stderr.strip()}")
    device = attached.stdout.strip()
    mounted = False
    try:
        result = _sh("mount", "-t", "xfs", device, str(mountpoint))
        if result.returncode != 0:
            pytest.skip(f"mounting XFS failed (no xfs in this kernel?): {result.stderr.strip()}")
        mounted = True
        yield mountpoint
    finally:
        if mounted:
            _sh("umount", str(mountpoint))
        _sh("losetup", "-d", device)
        image.unlink(missing_ok=True)
