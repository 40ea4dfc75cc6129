"""The fsfreeze library hook on real loop-mounted filesystems."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from quiesce.hooklib import LIBRARY_PATH


def hook(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", str(LIBRARY_PATH), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def writable(folder: Path, seconds: float = 5) -> bool:
    probe = subprocess.Popen(["sh", "-c", f"echo x > {folder}/probe-$$ && rm {folder}/probe-$$"])
    try:
        return probe.wait(timeout=seconds) == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[list[Path]]:
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None or shutil.which("fsfreeze") is None:
        pytest.skip("needs root, mkfs.ext4 and fsfreeze")
    made = []
    try:
        for name in ("a", "b"):
            image = Path("/var/tmp") / f"quiesce-fs-{uuid.uuid4().hex[:8]}.img"
            with open(image, "wb") as handle:
                handle.truncate(16 * 1024 * 1024)
            subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
            folder = tmp_path / name
            folder.mkdir()
            done = subprocess.run(["mount", "-o", "loop", str(image), str(folder)])
            image.unlink()
            if done.returncode != 0:
                pytest.skip("cannot loop-mount here")
            made.append(folder)
        yield made
    finally:
        for folder in made:
            subprocess.run(["fsfreeze", "-u", str(folder)], capture_output=True)
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_pre_freezes_every_filesystem_and_post_thaws_them(mounts: list[Path]) -> None:
    args = [arg for m in mounts for arg in ("--mount", str(m))]

    frozen = hook("fsfreeze", "pre", *args)
    held = [writable(m, 1) for m in mounts]
    thawed = hook("fsfreeze", "post", *args)

    assert frozen.returncode == 0, frozen.stdout
    assert held == [False, False]
    assert thawed.returncode == 0, thawed.stdout
    assert all(writable(m) for m in mounts)
    assert '"frozen": [' in frozen.stdout


def test_post_is_safe_when_nothing_is_frozen(mounts: list[Path]) -> None:
    done = hook("fsfreeze", "post", "--mount", str(mounts[0]))

    assert done.returncode == 0, done.stdout
    assert "was not frozen" in done.stdout


def test_a_pre_that_cannot_freeze_everything_thaws_what_it_froze(mounts: list[Path]) -> None:
    subprocess.run(["fsfreeze", "-f", str(mounts[1])], check=True)  # the second one fails

    done = hook("fsfreeze", "pre", "--mount", str(mounts[0]), "--mount", str(mounts[1]))

    subprocess.run(["fsfreeze", "-u", str(mounts[1])], check=True)
    assert done.returncode == 1
    assert writable(mounts[0]), "the first filesystem was left frozen"


def test_the_root_filesystem_and_the_runners_state_are_refused(mounts: list[Path]) -> None:
    root = hook("fsfreeze", "pre", "--mount", "/etc")
    state = mounts[0] / "state"
    state.mkdir()
    runner = hook(
        "fsfreeze", "pre", "--mount", str(mounts[0]), env={"QUIESCE_STATE_DIR": str(state)}
    )

    assert root.returncode == 1
    assert "--allow-root" in root.stdout
    assert runner.returncode == 1
    assert "runner's state" in runner.stdout
    assert writable(mounts[0])
