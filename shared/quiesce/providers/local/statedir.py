"""The local state folder, opened only when it is safely ours.

The folder holds the catalog of recovery points, the event bus, the snapshots and the guest
runner's state and hook allowlist; `quiesce` often runs as root. A folder (or a catalog in it)
that another user owns or can write would let that user rewrite what `quiesce points` lists, or
what the runner thaws with. So before any of it is used, the folder is reached from `/` one
component at a time without following untrusted symlinks (the guest runner's own walk), and the
folder and the files Quiesce keeps in it are checked: owned by this user (or root), not
writable by group or others, not symlinks. Every refusal says how to fix it.

`same_device_problems` is the other layout rule: Quiesce's own writes must never go to a
filesystem a pre hook may freeze (they would block until the thaw, and so would the thaw).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from quiesce.errors import QuiesceError
from quiesce.guest.quiesce_guest import Refused, open_checked
from quiesce.policy.model import LocalMember, Policy

#: What Quiesce keeps in the state folder (checked when present).
KNOWN_ENTRIES = (
    "catalog.sqlite3",
    "catalog.sqlite3-wal",
    "catalog.sqlite3-shm",
    "events.sqlite3",
    "events.sqlite3-wal",
    "events.sqlite3-shm",
    "snapshots",
    "guest",
    "guest/hooks.json",
)


class StateDirError(QuiesceError):
    """The state folder (or a file in it) is not safely Quiesce's."""


def _whoami() -> str:
    return "root" if os.geteuid() == 0 else "$(id -un)"


def _entry_problem(st: os.stat_result, path: str, what: str) -> str | None:
    uid = os.geteuid()
    if stat.S_ISLNK(st.st_mode):
        return (
            f"{what} {path} is a symbolic link, which Quiesce never follows in its state "
            f"folder (someone could point it at another file); remove it: rm {path}"
        )
    fixes = []
    reasons = []
    if st.st_uid not in (0, uid):
        reasons.append(f"is owned by uid {st.st_uid}, not by you (uid {uid}) or root")
        fixes.append(f"chown -R {_whoami()} {path}")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        reasons.append(f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})")
        fixes.append(f"chmod go-w {path}")
    if not reasons:
        return None
    return (
        f"{what} {path} {' and '.join(reasons)}, so another user could rewrite the catalog of "
        f"recovery points or what the hook runner reads; check what it holds, then fix it "
        f"with: {' && '.join(fixes)} (or use another state_dir)"
    )


def check_state_dir(path: Path | str, *, create: bool = False) -> bool:
    """Checks the state folder and the files Quiesce keeps in it; creates it (mode 0700) when
    `create`. Returns whether it exists. Raises StateDirError naming the path and the fix."""
    folder = os.path.abspath(os.fspath(path))
    try:
        opened = open_checked(folder, "dir", "the state folder", create=create)
    except Refused as exc:
        if exc.code == "ScriptNotFound" and not create and not os.path.lexists(folder):
            return False
        message = exc.message.replace("what runs as root", "the catalog")
        raise StateDirError(
            f"the state folder {folder} is refused: {message}; or choose a state_dir on a path "
            "that only you and root can write"
        ) from None
    try:
        problem = _entry_problem(opened.st, folder, "the state folder")
        if problem:
            raise StateDirError(problem)
        for name in KNOWN_ENTRIES:
            try:
                st = os.stat(name, dir_fd=opened.fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            except NotADirectoryError:
                continue
            problem = _entry_problem(st, os.path.join(opened.path, name), "the state file")
            if problem:
                raise StateDirError(problem)
    finally:
        opened.close()
    return True


def ensure_private_dir(path: Path) -> None:
    """Creates a folder Quiesce keeps private (0700) inside a checked state folder."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    problem = _entry_problem(st, str(path), "the folder")
    if problem is None and not stat.S_ISDIR(st.st_mode):
        problem = f"{path} is not a folder"
    if problem:
        raise StateDirError(problem)


def _device(path: str) -> tuple[int, str]:
    """The device of `path`, or of its nearest existing parent; and that path."""
    here = os.path.abspath(path)
    while True:
        try:
            return os.stat(here).st_dev, here
        except OSError:
            parent = os.path.dirname(here)
            if parent == here:
                raise
            here = parent


def same_device_problems(policy: Policy) -> list[str]:
    """Quiesce's write paths on the same filesystem as a volume a pre hook may freeze."""
    state = policy.state_dir
    ours = {
        "state_dir": state,
        "the hook runner's state folder": os.path.join(state, "guest"),
        "the snapshot destination": os.path.join(state, "snapshots"),
    }
    problems = []
    for group_name, group in policy.groups.items():
        for member in group.members:
            if not isinstance(member, LocalMember) or member.hooks.pre is None:
                continue
            if not member.pre_freezes_volumes or group.consistency != "application":
                continue
            for volume in member.volumes:
                try:
                    volume_dev, _ = _device(volume)
                except OSError:
                    continue
                shared = []
                for what, path in ours.items():
                    try:
                        dev, _ = _device(path)
                    except OSError:
                        continue
                    if dev == volume_dev:
                        shared.append(f"{what} {path}")
                if shared:
                    problems.append(
                        f"groups.{group_name}.members[{member.name}]: {', '.join(shared)} "
                        f"{'is' if len(shared) == 1 else 'are'} on the same filesystem as the "
                        f"volume {volume}, which the pre hook may freeze: Quiesce's writes "
                        "there (and so the thaw) would block until the thaw. Put state_dir on "
                        "another filesystem, or set pre_freezes_volumes: false if the pre hook "
                        "only pauses the application"
                    )
    return problems
