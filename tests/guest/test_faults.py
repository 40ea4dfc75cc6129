"""The thaw never depends on a write, a lock holder or a signal: the runner's cells of the fault
matrix (docs/engine.md), with real filesystems and real signals.

- the state folder fills up during the freeze (a 1 MiB tmpfs that the pre hook fills);
- the state folder sits on the filesystem that the pre hook freezes (a loop-mounted ext4);
- SIGTERM to the runner's whole process group while the post hook runs;
- SIGTERM to the watchdog; a watchdog that died before the post.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Guest, alive, wait_until


def _root_only(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting filesystems needs root")
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


@pytest.fixture
def full_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, unmounted afterwards."""
    _root_only("mount", "umount")
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mnt)])
    if done.returncode != 0:
        pytest.skip("tmpfs cannot be mounted here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def freezable(tmp_path: Path) -> Iterator[Path]:
    """A loop-mounted ext4 filesystem that fsfreeze works on; always thawed and unmounted."""
    _root_only("mkfs.ext4", "mount", "umount", "fsfreeze")
    image = Path("/var/tmp") / f"quiesce-freeze-{uuid.uuid4().hex[:8]}.img"
    mnt = tmp_path / "frozen"
    mnt.mkdir()
    with open(image, "wb") as handle:
        handle.truncate(16 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    done = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True)
    if done.returncode != 0:
        image.unlink()
        pytest.skip(f"cannot loop-mount here: {done.stderr.decode().strip()}")
    mnt.chmod(0o755)
    try:
        yield mnt
    finally:
        subprocess.run(["fsfreeze", "-u", str(mnt)], check=False, capture_output=True)
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        image.unlink()


def writable(folder: Path, seconds: float = 10) -> bool:
    """True when a write to `folder` completes (a frozen filesystem blocks it)."""
    probe = subprocess.Popen(["sh", "-c", f"echo x > {folder}/probe-$$ && rm {folder}/probe-$$"])
    try:
        return probe.wait(timeout=seconds) == 0
    except subprocess.TimeoutExpired:
        return False  # left blocked; it ends when the filesystem is thawed


def first_line(proc: subprocess.Popen[str], seconds: float = 30) -> dict[str, Any]:
    """The runner's result line, as soon as it is printed (before the process exits)."""
    assert proc.stdout is not None
    ready = wait_until(lambda: proc.poll() is not None or _peek(proc), seconds)
    assert ready, "the runner printed nothing"
    line = proc.stdout.readline()
    result: dict[str, Any] = json.loads(line)
    return result


def _peek(proc: subprocess.Popen[str]) -> bool:
    import select

    assert proc.stdout is not None
    return bool(select.select([proc.stdout], [], [], 0)[0])


# ---- the state folder fills up during the freeze -----------------------------------------------


def test_a_full_state_folder_does_not_keep_the_post_from_thawing(
    guest: Guest, full_tmpfs: Path
) -> None:
    guest.use_state_dir(full_tmpfs / "state")
    pre = guest.script("pause.sh", f"head -c 2000000 /dev/zero > {full_tmpfs}/fill; true")
    thaw, thawed = guest.marking_script("resume.sh")
    request = guest.pre(pre, thaw, max_freeze_seconds=30)

    held = guest.run(request)
    result = guest.run(guest.post_for(request))

    assert held["status"] == "succeeded"
    assert thawed.exists()
    assert result["status"] == "succeeded", result
    assert "could not be recorded" in result["message"]


def test_a_full_state_folder_does_not_keep_the_watchdog_from_thawing(
    guest: Guest, full_tmpfs: Path
) -> None:
    guest.use_state_dir(full_tmpfs / "state")
    pre = guest.script("pause.sh", f"head -c 2000000 /dev/zero > {full_tmpfs}/fill; true")
    thaw, thawed = guest.marking_script("resume.sh")

    guest.run(guest.pre(pre, thaw, max_freeze_seconds=1))

    assert wait_until(thawed.exists, 10), "the watchdog did not thaw"


# ---- the state folder on the filesystem the pre hook freezes -----------------------------------


def frozen_by_pre(guest: Guest, mnt: Path, max_freeze: float) -> dict[str, Any]:
    guest.use_state_dir(mnt / "state")
    pre = guest.script("freeze.sh", f"fsfreeze -f {mnt}")
    thaw = guest.script("thaw.sh", f"fsfreeze -u {mnt}")
    return guest.pre(pre, thaw, max_freeze_seconds=max_freeze)


def test_a_post_thaws_the_filesystem_that_holds_the_state_folder(
    guest: Guest, freezable: Path
) -> None:
    request = frozen_by_pre(guest, freezable, max_freeze=120)
    runner = guest.start(request)
    held = first_line(runner)
    assert not writable(freezable, 1), "the pre hook did not freeze"

    post = guest.start(guest.post_for(request))
    result = first_line(post, 60)

    assert held["status"] == "succeeded"
    assert result["status"] == "succeeded", result
    assert result["by"] == "orchestrator"
    assert writable(freezable)
    assert runner.wait(timeout=30) == 0
    assert post.wait(timeout=30) == 0


def test_the_watchdog_thaws_the_filesystem_that_holds_the_state_folder(
    guest: Guest, freezable: Path
) -> None:
    request = frozen_by_pre(guest, freezable, max_freeze=2)
    runner = guest.start(request)
    held = first_line(runner)

    assert held["status"] == "succeeded"
    assert wait_until(lambda: writable(freezable, 1), 20), "still frozen after the deadline"
    assert wait_until(lambda: (guest.state() or {}).get("post") is not None, 10)
    assert (guest.state() or {})["post"]["by"] == "watchdog"


# ---- stop signals --------------------------------------------------------------------------------


def test_sigterm_to_the_whole_process_group_during_the_post_lets_the_thaw_finish(
    guest: Guest,
) -> None:
    pre, _ = guest.marking_script("pause.sh")
    started = guest.root / "post.started"
    thaw = guest.script("resume.sh", f"touch {started}; sleep 1; echo thawed")
    request = guest.pre(pre, thaw, max_freeze_seconds=60)
    guest.run(request)

    post = subprocess.Popen(
        [*guest.run_command(), "--request", json.dumps(guest.post_for(request))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    guest.started.append(post)
    assert wait_until(started.exists, 10)
    os.killpg(post.pid, signal.SIGTERM)  # what a service manager's stop does to the runner
    out, _ = post.communicate(timeout=30)

    result = json.loads(out)
    assert post.returncode == 0
    assert result["status"] == "succeeded", result
    assert result["output"] == "thawed\n"
    assert "stop signal" in result["message"]
    assert (guest.state() or {})["post"]["by"] == "orchestrator"


def test_sigterm_to_the_watchdog_thaws_at_once(guest: Guest) -> None:
    pre, _ = guest.marking_script("pause.sh")
    thaw, thawed = guest.marking_script("resume.sh")
    guest.run(guest.pre(pre, thaw, max_freeze_seconds=300))
    watchdog = (guest.state() or {})["watchdog_pid"]

    os.kill(watchdog, signal.SIGTERM)

    assert wait_until(thawed.exists, 10)
    assert wait_until(lambda: not alive(watchdog), 10)
    state = guest.state() or {}
    assert state["post"]["by"] == "watchdog"
    assert "SIGTERM" in json.dumps(state["events"])


def test_a_post_warns_when_the_watchdog_had_died(guest: Guest) -> None:
    pre, _ = guest.marking_script("pause.sh")
    thaw, thawed = guest.marking_script("resume.sh")
    request = guest.pre(pre, thaw, max_freeze_seconds=300)
    guest.run(request)
    watchdog = (guest.state() or {})["watchdog_pid"]
    os.kill(watchdog, signal.SIGKILL)
    assert wait_until(lambda: not alive(watchdog), 10)

    result = guest.run(guest.post_for(request))

    assert result["status"] == "succeeded"
    assert thawed.exists()
    assert "watchdog" in result["message"]
    assert "no longer running" in result["message"]
