#!/usr/bin/env python3
"""Quiesce guest hook runner: runs one backup hook on this machine, safely, as root.

One self-contained file (Python 3.8+, standard library only) that is copied onto every machine
as-is. Usage:

    python3 quiesce_guest.py run [--request-file PATH | --request JSON]   (else JSON on stdin)
    python3 quiesce_guest.py run-args --phase pre --run-id ID --member NAME --script PATH ...
    python3 quiesce_guest.py watchdog --state-dir DIR --key KEY             (internal)
    python3 quiesce_guest.py status --state-dir DIR --key KEY

`run` prints exactly one JSON result on stdout and exits 0 (2 when the request is malformed).
`run-args` builds the same request from typed flags (one per field, no JSON to assemble in a
shell), for channels such as an SSM Command document that substitute parameters into a script.
Before anything runs, the script is vetted (absolute path, regular file, trusted owner, nothing
on the way to it writable by other users, executable, optional SHA-256 pin). A `pre` arms a
detached watchdog that runs the thaw (post) hook at the deadline unless a `post` came first;
the post hook runs exactly once per run and member, whoever runs it. State lives in
<state_dir>/runs/<run_id>--<member>.json, written atomically under an flock.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import functools
import json
import os
import re
import select
import signal
import stat
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, NoReturn, Optional, Sequence, Tuple

JSON = Dict[str, Any]

REQUEST_VERSION = 1
STATE_VERSION = 1
DEFAULT_STATE_DIR = "/var/lib/quiesce"
STATE_DIR_ENV = "QUIESCE_GUEST_STATE_DIR"
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OUTPUT_TAIL_BYTES = 4096
TERM_GRACE_SECONDS = 1.0  # after SIGTERM to a process group, before SIGKILL
KILL_WAIT_SECONDS = 5.0  # after SIGKILL, how long to wait for the processes to be gone
WATCHDOG_READY_SECONDS = 15.0  # how long a pre waits for its watchdog to report armed
WATCHDOG_POLL_SECONDS = 1.0  # the watchdog re-reads the state this often while it waits
MAX_TIMEOUT_SECONDS = 3600.0
MAX_RETRIES = 5
MAX_FREEZE_SECONDS = 3600.0
MAX_EVENTS = 200

RUN_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
MEMBER_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
KEY_RE = re.compile(r"[A-Za-z0-9._-]{1,128}--[a-z0-9][a-z0-9_-]{0,62}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
PHASES = ("pre", "post", "verify", "check")
REQUEST_FIELDS = (
    "version",
    "run_id",
    "member",
    "phase",
    "hook",
    "thaw",
    "max_freeze_seconds",
    "extra_args",
    "state_dir",
    "expires_at",
)
HOOK_FIELDS = ("run", "sha256", "timeout_seconds", "retries", "env")
RESERVED_ENV = ("QUIESCE_RUN_ID", "QUIESCE_PHASE", "QUIESCE_MEMBER")


# --------------------------------------------------------------------------------------------
# Request


class BadRequest(Exception):
    """The request itself is malformed; `field` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__("bad request: " + field + " " + problem)
        self.field = field


class Refused(Exception):
    """A check failed: nothing was executed. `code` is the result code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Hook:
    """A script to run without a shell: argv, optional SHA-256 pin, timeout, retries, env."""

    def __init__(
        self,
        run: List[str],
        sha256: Optional[str],
        timeout_seconds: float,
        retries: int,
        env: Dict[str, str],
    ) -> None:
        self.run = run
        self.sha256 = sha256
        self.timeout_seconds = timeout_seconds
        self.retries = retries
        self.env = env

    @property
    def script(self) -> str:
        return self.run[0]

    def to_json(self) -> JSON:
        return {
            "run": list(self.run),
            "sha256": self.sha256,
            "timeout_seconds": self.timeout_seconds,
            "retries": self.retries,
            "env": dict(self.env),
        }


class Request:
    def __init__(
        self,
        run_id: str,
        member: str,
        phase: str,
        hook: Hook,
        thaw: Optional[Hook],
        max_freeze_seconds: Optional[float],
        extra_args: List[str],
        state_dir: str,
        expires_at: Optional[float],
    ) -> None:
        self.run_id = run_id
        self.member = member
        self.phase = phase
        self.hook = hook
        self.thaw = thaw
        self.max_freeze_seconds = max_freeze_seconds
        self.extra_args = extra_args
        self.state_dir = state_dir
        self.expires_at = expires_at

    @property
    def key(self) -> str:
        return state_key(self.run_id, self.member)


def state_key(run_id: str, member: str) -> str:
    return run_id + "--" + member


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(
    data: JSON, name: str, field: str, default: Optional[float], maximum: float
) -> Optional[float]:
    value = data.get(name, default)
    if value is None:
        return None
    if not _is_number(value) or not 0 < float(value) <= maximum:
        raise BadRequest(field, "must be a number greater than 0 and at most %g" % maximum)
    return float(value)


def _strings(value: object, field: str, allow_empty: bool) -> List[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadRequest(field, "must be a list of strings")
    if not value and not allow_empty:
        raise BadRequest(field, "must not be empty")
    if any("\x00" in item for item in value):
        raise BadRequest(field, "must not contain NUL bytes")
    return list(value)


def _refuse_unknown(data: JSON, known: Sequence[str], prefix: str) -> None:
    for name in sorted(data):
        if name not in known:
            raise BadRequest(
                prefix + name,
                "is not a known field (known: %s); unknown fields are refused so that a "
                "misspelt one never silently drops a check" % ", ".join(known),
            )


def parse_hook(value: object, field: str) -> Hook:
    if not isinstance(value, dict):
        raise BadRequest(field, 'must be an object like {"run": ["/abs/script"]}')
    _refuse_unknown(value, HOOK_FIELDS, field + ".")
    if "run" not in value:
        raise BadRequest(field + ".run", "is missing")
    run = _strings(value["run"], field + ".run", allow_empty=False)
    if not run[0].strip():
        raise BadRequest(field + ".run", "must start with the script's path")
    sha256 = value.get("sha256")
    if sha256 is not None and not (isinstance(sha256, str) and SHA256_RE.fullmatch(sha256)):
        raise BadRequest(field + ".sha256", "must be null or 64 hexadecimal digits")
    timeout = _number(
        value, "timeout_seconds", field + ".timeout_seconds", 30.0, MAX_TIMEOUT_SECONDS
    )
    retries = value.get("retries", 0)
    if retries is None:
        retries = 0
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= MAX_RETRIES:
        raise BadRequest(field + ".retries", "must be an integer from 0 to %d" % MAX_RETRIES)
    env = value.get("env") or {}
    if not isinstance(env, dict):
        raise BadRequest(field + ".env", "must be an object of NAME: value strings")
    for name, text in env.items():
        if not ENV_NAME_RE.fullmatch(name):
            raise BadRequest(field + ".env", "has an invalid variable name %r" % name)
        if not isinstance(text, str) or "\x00" in text:
            raise BadRequest(field + ".env." + name, "must be a string without NUL bytes")
    return Hook(
        run=run,
        sha256=sha256.lower() if sha256 else None,
        timeout_seconds=float(timeout or 30.0),
        retries=retries,
        env=dict(env),
    )


def parse_request(raw: str) -> Request:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BadRequest("request", "is not valid JSON (%s)" % exc) from None
    if not isinstance(data, dict):
        raise BadRequest("request", "must be a JSON object")
    _refuse_unknown(data, REQUEST_FIELDS, "")
    version = data.get("version")
    if version != REQUEST_VERSION or isinstance(version, bool):
        raise BadRequest("version", "must be %d (got %r)" % (REQUEST_VERSION, version))
    run_id = data.get("run_id")
    if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
        raise BadRequest("run_id", "must match ^[A-Za-z0-9._-]{1,128}$ (got %r)" % (run_id,))
    member = data.get("member")
    if not isinstance(member, str) or not MEMBER_RE.fullmatch(member):
        raise BadRequest("member", "must match ^[a-z0-9][a-z0-9_-]{0,62}$ (got %r)" % (member,))
    phase = data.get("phase")
    if phase not in PHASES:
        raise BadRequest("phase", "must be one of %s (got %r)" % (", ".join(PHASES), phase))
    if "hook" not in data:
        raise BadRequest("hook", "is missing")
    hook = parse_hook(data["hook"], "hook")
    thaw = None if data.get("thaw") is None else parse_hook(data["thaw"], "thaw")
    max_freeze = _number(data, "max_freeze_seconds", "max_freeze_seconds", None, MAX_FREEZE_SECONDS)
    if phase == "pre":
        if thaw is None:
            raise BadRequest("thaw", "is required for pre: the post hook the watchdog runs")
        if max_freeze is None:
            raise BadRequest("max_freeze_seconds", "is required for pre: the watchdog's bound")
    extra = data.get("extra_args")
    extra_args = [] if extra is None else _strings(extra, "extra_args", allow_empty=True)
    state_dir = data.get("state_dir")
    if state_dir is None:
        state_dir = os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR
    if not isinstance(state_dir, str) or not os.path.isabs(state_dir) or "\x00" in state_dir:
        raise BadRequest("state_dir", "must be an absolute path (got %r)" % (state_dir,))
    expires_at = data.get("expires_at")
    if expires_at is not None and not _is_number(expires_at):
        raise BadRequest("expires_at", "must be null or epoch seconds")
    return Request(
        run_id=run_id,
        member=member,
        phase=phase,
        hook=hook,
        thaw=thaw,
        max_freeze_seconds=max_freeze,
        extra_args=extra_args,
        state_dir=os.path.normpath(state_dir),
        expires_at=None if expires_at is None else float(expires_at),
    )


# --------------------------------------------------------------------------------------------
# Results


def iso(ts: Optional[float]) -> Optional[str]:
    """ISO-8601 UTC with milliseconds, e.g. 2026-11-29T10:00:00.123+00:00."""
    if ts is None:
        return None
    millis = int(ts * 1000)
    clock = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis // 1000))
    return "%s.%03d+00:00" % (clock, millis % 1000)


def make_result(
    status: str,
    code: str,
    message: str,
    exit_code: Optional[int] = None,
    attempts: int = 0,
    started: Optional[float] = None,
    ended: Optional[float] = None,
    output: str = "",
    by: str = "orchestrator",
) -> JSON:
    duration = None
    if started is not None and ended is not None:
        duration = round((ended - started) * 1000.0, 3)
    return {
        "status": status,
        "code": code,
        "message": message,
        "exit_code": exit_code,
        "attempts": attempts,
        "started_at": iso(started),
        "ended_at": iso(ended),
        "duration_ms": duration,
        "output": output,
        "by": by,
    }


def refused(code: str, message: str) -> JSON:
    return make_result("refused", code, message)


# --------------------------------------------------------------------------------------------
# Security checks


def _trusted_owner(uid: int) -> bool:
    return uid in (0, os.geteuid())


def _owner_hint(path: str) -> str:
    return "chown root:root " + path if os.geteuid() == 0 else "chown $(id -un) " + path


def _parents(path: str) -> List[str]:
    """Every folder above `path`, nearest first, up to /."""
    folders = []
    current = os.path.dirname(path)
    while True:
        folders.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            return folders
        current = parent


def _folder_problem(folder: str, script: str) -> Optional[str]:
    try:
        st = os.stat(folder)
    except OSError as exc:
        return "the folder %s (on the way to %s) cannot be inspected (%s)" % (
            folder,
            script,
            exc.strerror,
        )
    if st.st_uid == 0 and st.st_mode & stat.S_ISVTX:
        return None  # like /tmp: others may add files there, but not replace ours
    fixes = []
    reasons = []
    if not _trusted_owner(st.st_uid):
        reasons.append("is owned by uid %d" % st.st_uid)
        fixes.append(_owner_hint(folder))
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        reasons.append("is group- or world-writable (mode %04o)" % stat.S_IMODE(st.st_mode))
        fixes.append("chmod go-w " + folder)
    if not reasons:
        return None
    return (
        "the folder %s (on the way to %s) %s, so another user could swap the script that runs "
        "as root; fix it with: %s" % (folder, script, " and ".join(reasons), " && ".join(fixes))
    )


def sha256_of(path: str) -> str:
    import hashlib  # only when a hook is pinned: keeps the runner's start-up short

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(functools.partial(handle.read, 1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def vet(hook: Hook) -> str:
    """Runs every security check in order; returns the real path to execute or raises Refused."""
    script = hook.script
    if not os.path.isabs(script):
        raise Refused(
            "NotAbsolute",
            "the hook script %r is not an absolute path; hooks run as root, so give the full "
            "path, e.g. /etc/quiesce/hooks/%s" % (script, os.path.basename(script) or "hook.sh"),
        )
    if not os.path.exists(script):
        raise Refused(
            "ScriptNotFound",
            "the hook script %s does not exist on this machine; install it there (e.g. "
            "install -o root -g root -m 0755 %s %s) or fix the path in the policy"
            % (script, os.path.basename(script), script),
        )
    real = os.path.realpath(script)
    shown = script if real == script else "%s (-> %s)" % (script, real)
    try:
        st = os.stat(real)
    except OSError as exc:
        raise Refused(
            "ScriptNotFound", "the hook script %s cannot be read (%s)" % (shown, exc.strerror)
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise Refused(
            "NotARegularFile",
            "the hook script %s is not a regular file; point run[0] at the script itself" % shown,
        )
    if not _trusted_owner(st.st_uid):
        raise Refused(
            "InsufficientPermission",
            "the hook script %s is owned by uid %d, not by root or the user running hooks "
            "(uid %d), so someone else could change what runs as root; fix it with: %s"
            % (shown, st.st_uid, os.geteuid(), _owner_hint(real)),
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise Refused(
            "InsufficientPermission",
            "the hook script %s is group- or world-writable (mode %04o), so another user could "
            "change what runs as root; fix it with: chmod go-w %s"
            % (shown, stat.S_IMODE(st.st_mode), real),
        )
    seen = set()
    for folder in _parents(real) + _parents(script):
        if folder in seen:
            continue
        seen.add(folder)
        problem = _folder_problem(folder, shown)
        if problem:
            raise Refused("InsufficientPermission", problem)
    if not st.st_mode & stat.S_IXUSR:
        raise Refused(
            "NotExecutable",
            "the hook script %s is not executable by its owner; fix it with: chmod u+x %s "
            "(and give it a #! line)" % (shown, real),
        )
    if hook.sha256:
        actual = sha256_of(real)
        if actual != hook.sha256:
            raise Refused(
                "HashMismatch",
                "the hook script %s has SHA-256 %s but the policy pins %s; if the change is "
                "intended, update sha256 in the policy (sha256sum %s), otherwise find out who "
                "changed the script" % (shown, actual, hook.sha256, real),
            )
    return real


def vet_thaw(thaw: Hook) -> str:
    try:
        return vet(thaw)
    except Refused as exc:
        raise Refused(
            "ThawHookRefused",
            "the pre hook was not run because the thaw hook (the post hook the watchdog would "
            "run) is refused, and nothing is frozen that could not be thawed: %s: %s"
            % (exc.code, exc.message),
        ) from None


# --------------------------------------------------------------------------------------------
# State: <state_dir>/runs/<key>.json (atomic writes) guarded by <state_dir>/runs/<key>.lock


class StateDir:
    def __init__(self, root: str) -> None:
        self.root = root
        self.runs = os.path.join(root, "runs")
        self.tmp = os.path.join(root, "tmp")

    def state_path(self, key: str) -> str:
        return os.path.join(self.runs, key + ".json")

    def lock_path(self, key: str) -> str:
        return os.path.join(self.runs, key + ".lock")

    def watchdog_log(self, key: str) -> str:
        return os.path.join(self.runs, key + ".watchdog.log")

    def prepare(self) -> None:
        """Creates the folders (mode 0700) and refuses to use them if others could write them."""
        parent = os.path.dirname(self.root)
        if not os.path.isdir(parent):
            os.makedirs(parent, exist_ok=True)
        for folder in (self.root, self.runs, self.tmp):
            try:
                os.mkdir(folder, 0o700)
                os.chmod(folder, 0o700)
            except FileExistsError:
                pass
            st = os.stat(folder)
            if not stat.S_ISDIR(st.st_mode):
                raise Refused(
                    "InsufficientPermission",
                    "the state folder %s is not a folder; remove it or set state_dir" % folder,
                )
            if not _trusted_owner(st.st_uid) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise Refused(
                    "InsufficientPermission",
                    "the state folder %s must be owned by root (or the user running hooks) and "
                    "not writable by others, because the watchdog acts on what it finds there; "
                    "fix it with: %s && chmod 700 %s" % (folder, _owner_hint(folder), folder),
                )
        for folder in _parents(self.root):
            problem = _folder_problem(folder, self.root)
            if problem:
                raise Refused("InsufficientPermission", problem)
        self._forget_old_output()

    def _forget_old_output(self) -> None:
        """Removes output files left by runners that were killed more than a day ago."""
        cutoff = time.time() - 86400
        with contextlib.suppress(OSError), os.scandir(self.tmp) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)

    def load(self, key: str) -> Optional[JSON]:
        try:
            with open(self.state_path(key), encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return None
        if not isinstance(data, dict):
            raise ValueError("the state file %s is not a JSON object" % self.state_path(key))
        return data

    def save(self, key: str, state: JSON) -> None:
        fd, tmp = private_file(self.runs, "." + key + ".", ".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(state, handle, indent=2, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.state_path(key))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.lock_path(key), flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


def private_file(folder: str, prefix: str, suffix: str) -> Tuple[int, str]:
    """Creates a new file only we can read (mode 0600) with an unpredictable name."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    while True:
        path = os.path.join(folder, prefix + os.urandom(8).hex() + suffix)
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue


def new_state(run_id: str, member: str) -> JSON:
    return {
        "version": STATE_VERSION,
        "key": state_key(run_id, member),
        "run_id": run_id,
        "member": member,
        "created_at": iso(time.time()),
        "thaw": None,
        "max_freeze_seconds": None,
        "deadline": None,
        "pre": None,
        "post": None,
        "thaw_requested_at": None,
        "thaw_requested_by": None,
        "post_refused": None,
        "watchdog_pid": None,
        "watchdog_stopped_at": None,
        "events": [],
    }


def add_event(state: JSON, by: str, what: str) -> None:
    events = state.setdefault("events", [])
    events.append({"at": iso(time.time()), "by": by, "what": what})
    del events[:-MAX_EVENTS]


def thaw_happened(state: Optional[JSON]) -> bool:
    """True once a post (or the watchdog) took over this key: no pre may freeze after that."""
    if not state:
        return False
    return state.get("post") is not None or state.get("thaw_requested_at") is not None


# --------------------------------------------------------------------------------------------
# Processes


def _proc_stat(pid: int) -> Optional[Tuple[str, int, int]]:
    """(state, process group, start time) from /proc/<pid>/stat, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return fields[0].decode("ascii", "replace"), int(fields[2]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _have_proc() -> bool:
    return os.path.isdir("/proc/self")


def group_members(pgid: int) -> Optional[List[int]]:
    """Live (non-zombie) processes in the group, or None when /proc cannot tell."""
    if not _have_proc():
        return None
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = _proc_stat(int(name))
            if info is not None and info[1] == pgid and info[0] not in ("Z", "X", "x"):
                members.append(int(name))
    return members


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _wait_group_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    pause = 0.005
    while True:
        members = group_members(pgid)
        if members is None:  # no /proc: ask the kernel (a zombie leader still counts)
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                pass
        elif not members:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


def stop_group(pgid: int) -> None:
    """SIGTERM the whole process group, wait up to 1 s, then SIGKILL what is left."""
    _signal_group(pgid, signal.SIGTERM)
    if _wait_group_gone(pgid, TERM_GRACE_SECONDS):
        return
    _signal_group(pgid, signal.SIGKILL)
    _wait_group_gone(pgid, KILL_WAIT_SECONDS)


def _environ_has(pid: int, markers: Sequence[bytes]) -> bool:
    try:
        with open("/proc/%d/environ" % pid, "rb") as handle:
            entries = handle.read().split(b"\0")
    except OSError:
        return False
    return all(marker in entries for marker in markers)


def group_is_ours(pgid: int, starttime: Optional[int], run_id: str, member: str) -> bool:
    """Guards against pid reuse before signalling a pre hook's group recorded in the state."""
    if not _have_proc():
        return True  # cannot tell; the group id was recorded moments ago by this key's pre
    leader = _proc_stat(pgid)
    if leader is not None:
        return starttime is None or leader[2] == starttime
    # The leader is gone; its group lives on only while members remain (its id is not reused
    # meanwhile). Accept it if one of them carries this key's markers.
    markers = [
        ("QUIESCE_RUN_ID=" + run_id).encode(),
        ("QUIESCE_MEMBER=" + member).encode(),
        b"QUIESCE_PHASE=pre",
    ]
    return any(_environ_has(pid, markers) for pid in group_members(pgid) or [])


def wait_exit(pid: int, seconds: float) -> bool:
    """Waits for our child to exit WITHOUT reaping it (its pid stays reserved); True if it did."""
    deadline = time.monotonic() + seconds
    pause = 0.002
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.025)


def reap(proc: subprocess.Popen[bytes]) -> Optional[int]:
    try:
        return proc.wait(timeout=KILL_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        return None  # stuck in the kernel (e.g. writing to a frozen filesystem)


def _start(
    argv: List[str], real: str, out_fd: int, cwd: str, env: Dict[str, str]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        executable=real,
        stdin=subprocess.DEVNULL,
        stdout=out_fd,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=env,
        start_new_session=True,
        close_fds=True,
    )


def _tail(path: str) -> str:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - OUTPUT_TAIL_BYTES))
        return handle.read(OUTPUT_TAIL_BYTES).decode("utf-8", "replace")


def hook_env(hook: Hook, run_id: str, phase: str, member: str) -> Dict[str, str]:
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8"}
    env.update(hook.env)
    env.update({"QUIESCE_RUN_ID": run_id, "QUIESCE_PHASE": phase, "QUIESCE_MEMBER": member})
    return env


def _describe_exit(code: Optional[int]) -> str:
    if code is None:
        return "did not exit even after SIGKILL (stuck in the kernel?)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "signal %d" % -code
        return "was killed by %s" % name
    return "exited with code %d" % code


class Gate:
    """Around each attempt: `spawn` may decline to start it, `finished` reaps the process and
    says whether a thaw overtook the attempt. The plain gate never declines."""

    def spawn(
        self, attempt: int, start: Callable[[], subprocess.Popen[bytes]]
    ) -> Optional[subprocess.Popen[bytes]]:
        return start()

    def finished(self, proc: subprocess.Popen[bytes]) -> bool:
        reap(proc)
        return False


class PreGate(Gate):
    """A pre attempt starts only while no thaw has happened, under the key's lock, and its
    process group is recorded so that a post or the watchdog can stop it."""

    def __init__(self, states: StateDir, key: str) -> None:
        self.states = states
        self.key = key

    def spawn(
        self, attempt: int, start: Callable[[], subprocess.Popen[bytes]]
    ) -> Optional[subprocess.Popen[bytes]]:
        with self.states.locked(self.key):
            state = self.states.load(self.key) or {}
            if thaw_happened(state) or not state.get("pre"):
                return None
            proc = start()
            info = _proc_stat(proc.pid)
            state["pre"].update(
                {
                    "pid": proc.pid,
                    "pgid": proc.pid,
                    "pgid_starttime": info[2] if info else None,
                    "attempt": attempt,
                }
            )
            self.states.save(self.key, state)
            return proc

    def finished(self, proc: subprocess.Popen[bytes]) -> bool:
        with self.states.locked(self.key):
            state = self.states.load(self.key) or {}
            pre = state.get("pre")
            if pre:
                pre.update({"pid": None, "pgid": None, "pgid_starttime": None})
                self.states.save(self.key, state)
            reap(proc)  # only now may the pid (= the group id) be reused
            return thaw_happened(state)


def run_hook(
    hook: Hook,
    real: str,
    extra_args: List[str],
    run_id: str,
    member: str,
    phase: str,
    states: StateDir,
    gate: Gate,
    by: str = "orchestrator",
) -> JSON:
    """Runs the hook, retrying a failed or timed-out attempt up to `hook.retries` times."""
    argv = list(hook.run) + list(extra_args)
    env = hook_env(hook, run_id, phase, member)
    cwd = os.path.dirname(hook.script) or "/"
    total = hook.retries + 1
    first_start: Optional[float] = None
    last: Optional[JSON] = None
    key = state_key(run_id, member)
    for attempt in range(1, total + 1):
        out_fd, out_path = private_file(states.tmp, key + "." + phase + ".", ".out")
        try:
            started = time.time()
            try:
                proc = gate.spawn(attempt, functools.partial(_start, argv, real, out_fd, cwd, env))
            except OSError as exc:
                ended = time.time()
                first_start = started if first_start is None else first_start
                last = make_result(
                    "failed",
                    "ExecutionFailed",
                    "the hook %s could not be started (%s); check its #! line and that its "
                    "interpreter exists" % (hook.script, exc.strerror or exc),
                    attempts=attempt,
                    started=first_start,
                    ended=ended,
                    by=by,
                )
                continue
            if proc is None:
                done = attempt - 1
                message = (
                    "the thaw for this run and member already happened, so attempt %d of the "
                    "pre hook was not started (nothing is frozen after a thaw)" % attempt
                )
                if last is not None:
                    return dict(last, status="refused", code="AlreadyThawed", message=message)
                return make_result("refused", "AlreadyThawed", message, attempts=done, by=by)
            first_start = started if first_start is None else first_start
            timed_out = not wait_exit(proc.pid, hook.timeout_seconds)
            if timed_out:
                stop_group(proc.pid)
                wait_exit(proc.pid, KILL_WAIT_SECONDS)
            overtaken = gate.finished(proc)
            ended = time.time()
            code = proc.returncode
            output = _tail(out_path)
        finally:
            os.close(out_fd)
            with contextlib.suppress(OSError):
                os.unlink(out_path)
        tries = "attempt %d of %d" % (attempt, total)
        if overtaken:
            return make_result(
                "failed",
                "AlreadyThawed",
                "the thaw for this run and member happened while the pre hook ran (%s), so its "
                "process group was stopped and the member is not quiesced; it %s"
                % (tries, _describe_exit(code)),
                exit_code=code,
                attempts=attempt,
                started=first_start,
                ended=ended,
                output=output,
                by=by,
            )
        if timed_out:
            last = make_result(
                "timed_out",
                "Timeout",
                "the hook %s did not finish within %gs (%s); its whole process group was "
                "stopped (SIGTERM, then SIGKILL after %gs). Make it faster or raise "
                "timeout_seconds" % (hook.script, hook.timeout_seconds, tries, TERM_GRACE_SECONDS),
                exit_code=code,
                attempts=attempt,
                started=first_start,
                ended=ended,
                output=output,
                by=by,
            )
        elif code == 0:
            return make_result(
                "succeeded",
                "Succeeded",
                "the hook %s exited 0 (%s)" % (hook.script, tries),
                exit_code=0,
                attempts=attempt,
                started=first_start,
                ended=ended,
                output=output,
                by=by,
            )
        else:
            last = make_result(
                "failed",
                "ExecutionFailed",
                "the hook %s %s (%s); its output shows why"
                % (hook.script, _describe_exit(code), tries),
                exit_code=code,
                attempts=attempt,
                started=first_start,
                ended=ended,
                output=output,
                by=by,
            )
    assert last is not None
    return last


# --------------------------------------------------------------------------------------------
# Watchdog


def _runner_file() -> str:
    path = os.path.abspath(__file__)
    if not os.path.isfile(path):
        raise OSError(errno.ENOENT, "the runner must be run from a file to arm its watchdog")
    return path


def spawn_watchdog(states: StateDir, key: str) -> int:
    """Starts the watchdog detached (own session, stdio to its log) and waits until it is armed."""
    read_fd, write_fd = os.pipe()
    log_flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
    log_fd = os.open(states.watchdog_log(key), log_flags, 0o600)
    try:
        argv = [sys.executable or "python3", "-I", _runner_file(), "watchdog"]
        argv += ["--state-dir", states.root, "--key", key, "--ready-fd", str(write_fd)]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            cwd="/",
            env={"PATH": SAFE_PATH, "LANG": "C.UTF-8"},
            start_new_session=True,
            close_fds=True,
            pass_fds=(write_fd,),
        )
    finally:
        os.close(log_fd)
        os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], WATCHDOG_READY_SECONDS)
        answer = os.read(read_fd, 16) if ready else b""
    finally:
        os.close(read_fd)
    _DETACHED.append(proc)
    if answer != b"armed":
        with contextlib.suppress(OSError):
            proc.kill()
        raise OSError(
            errno.EIO, "the watchdog did not report armed; see " + states.watchdog_log(key)
        )
    return proc.pid


_DETACHED: List[subprocess.Popen[bytes]] = []  # keeps detached watchdogs' handles quiet


def _log(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write("%s %s\n" % (iso(time.time()), text))
        sys.stderr.flush()


def stop_watchdog(state: JSON, by: str) -> None:
    """SIGTERMs the key's watchdog, after making sure the pid still is that watchdog."""
    pid = state.get("watchdog_pid")
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return
    if state.get("watchdog_stopped_at"):
        return
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            args = handle.read().split(b"\0")
    except OSError:
        return  # gone (or no /proc: it notices the post itself within a second)
    if b"watchdog" in args and state["key"].encode() in args:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
            state["watchdog_stopped_at"] = iso(time.time())
            add_event(state, by, "stopped the watchdog (pid %d)" % pid)


def stop_running_pre(state: JSON, by: str) -> None:
    """Stops a pre hook that is still running, whole process group, before any thaw."""
    pre = state.get("pre")
    if not pre or pre.get("result") is not None or not pre.get("pgid"):
        return
    pgid = int(pre["pgid"])
    if not group_is_ours(pgid, pre.get("pgid_starttime"), state["run_id"], state["member"]):
        add_event(state, by, "process group %d is no longer the pre hook's; left alone" % pgid)
        return
    stop_group(pgid)
    pre["stopped_at"] = iso(time.time())
    pre["stopped_by"] = by
    add_event(state, by, "stopped the still-running pre hook (process group %d)" % pgid)


def watchdog(states: StateDir, key: str, ready_fd: Optional[int]) -> int:
    state = states.load(key)
    if ready_fd is not None:
        with contextlib.suppress(OSError):
            if state is not None and state.get("deadline") is not None:
                os.write(ready_fd, b"armed")
            os.close(ready_fd)
    if state is None or state.get("deadline") is None:
        _log("watchdog %s: no armed state, nothing to do" % key)
        return 1
    _log("watchdog %s: armed, thaws at %s" % (key, iso(float(state["deadline"]))))
    while True:
        state = states.load(key)
        if state is None:
            _log("watchdog %s: the state file is gone, exiting" % key)
            return 0
        if state.get("post") is not None:
            _log("watchdog %s: the post already ran, exiting" % key)
            return 0
        remaining = float(state["deadline"]) - time.time()
        if remaining <= 0:
            break
        time.sleep(min(remaining, WATCHDOG_POLL_SECONDS))
    with states.locked(key):
        state = states.load(key)
        if state is None or state.get("post") is not None:
            _log("watchdog %s: the post already ran, exiting" % key)
            return 0
        if not state.get("thaw_requested_at"):
            state["thaw_requested_at"] = iso(time.time())
            state["thaw_requested_by"] = "watchdog"
        add_event(state, "watchdog", "deadline reached without a post: thawing")
        states.save(key, state)
        stop_running_pre(state, "watchdog")
        thaw = parse_hook(state.get("thaw"), "thaw")
        try:
            real = vet(thaw)
        except Refused as exc:
            result = make_result("refused", exc.code, exc.message, by="watchdog")
            state["post_refused"] = result
            add_event(state, "watchdog", "the thaw hook was refused: " + exc.message)
            states.save(key, state)
            _log("watchdog %s: THE THAW HOOK WAS REFUSED: %s" % (key, exc.message))
            return 1
        result = run_hook(
            thaw, real, [], state["run_id"], state["member"], "post", states, Gate(), "watchdog"
        )
        state["post"] = {"result": result, "by": "watchdog", "at": iso(time.time())}
        add_event(state, "watchdog", "ran the thaw hook: " + result["status"])
        states.save(key, state)
    _log("watchdog %s: thawed: %s %s" % (key, result["status"], result["message"]))
    return 0


# --------------------------------------------------------------------------------------------
# Phases


def phase_check(req: Request) -> JSON:
    vet(req.hook)
    message = "%s passed every security check (not run: check only)" % req.hook.script
    if req.thaw is not None:
        vet_thaw(req.thaw)
        message += "; so did the thaw hook %s" % req.thaw.script
    return make_result("succeeded", "Allowed", message)


def phase_verify(req: Request) -> JSON:
    real = vet(req.hook)
    states = StateDir(req.state_dir)
    states.prepare()
    return run_hook(
        req.hook, real, req.extra_args, req.run_id, req.member, "verify", states, Gate()
    )


def phase_pre(req: Request) -> JSON:
    real = vet(req.hook)
    assert req.thaw is not None
    assert req.max_freeze_seconds is not None
    vet_thaw(req.thaw)
    states = StateDir(req.state_dir)
    states.prepare()
    key = req.key
    with states.locked(key):
        state = states.load(key)
        if thaw_happened(state):
            assert state is not None
            by = state.get("thaw_requested_by") or (state.get("post") or {}).get("by")
            return refused(
                "AlreadyThawed",
                "the thaw for run %s, member %s already happened (%s at %s); a pre after it "
                "is refused so nothing stays frozen. Start a new run"
                % (req.run_id, req.member, by or "post", state.get("thaw_requested_at")),
            )
        if state is not None and state.get("pre"):
            return refused(
                "Replayed",
                "a pre for run %s, member %s already started at %s; each run freezes a member "
                "once. Start a new run with a new run_id"
                % (req.run_id, req.member, state["pre"].get("started_at")),
            )
        state = state or new_state(req.run_id, req.member)
        now = time.time()
        state.update(
            {
                "thaw": req.thaw.to_json(),
                "max_freeze_seconds": req.max_freeze_seconds,
                "deadline": now + req.max_freeze_seconds,
                "pre": {
                    "started_at": iso(now),
                    "pid": None,
                    "pgid": None,
                    "pgid_starttime": None,
                    "attempt": 0,
                    "result": None,
                },
            }
        )
        add_event(
            state, "orchestrator", "pre accepted; the watchdog thaws at %s" % iso(state["deadline"])
        )
        states.save(key, state)
    try:
        watchdog_pid = spawn_watchdog(states, key)
    except OSError as exc:
        result = make_result(
            "failed",
            "ExecutionFailed",
            "the pre hook was not run because its watchdog could not be armed (%s); nothing "
            "is frozen" % (exc.strerror or exc),
        )
        with states.locked(key):
            state = states.load(key) or new_state(req.run_id, req.member)
            state["pre"]["result"] = result
            states.save(key, state)
        return result
    with states.locked(key):
        state = states.load(key) or new_state(req.run_id, req.member)
        state["watchdog_pid"] = watchdog_pid
        add_event(state, "orchestrator", "watchdog armed (pid %d)" % watchdog_pid)
        if thaw_happened(state):
            stop_watchdog(state, "orchestrator")
        states.save(key, state)
    result = run_hook(
        req.hook, real, req.extra_args, req.run_id, req.member, "pre", states, PreGate(states, key)
    )
    with states.locked(key):
        state = states.load(key) or new_state(req.run_id, req.member)
        if state.get("pre") is not None:
            state["pre"]["result"] = result
        add_event(state, "orchestrator", "pre hook: " + result["status"])
        states.save(key, state)
    return result


def phase_post(req: Request) -> JSON:
    states = StateDir(req.state_dir)
    states.prepare()
    key = req.key
    with states.locked(key):  # blocks while the watchdog may be thawing
        state = states.load(key) or new_state(req.run_id, req.member)
        if state.get("post") is not None:
            stop_watchdog(state, "orchestrator")
            states.save(key, state)
            return dict(state["post"]["result"])
        if not state.get("thaw_requested_at"):
            state["thaw_requested_at"] = iso(time.time())
            state["thaw_requested_by"] = "orchestrator"
        states.save(key, state)
        stop_running_pre(state, "orchestrator")
        try:
            real = vet(req.hook)
        except Refused as exc:
            result = refused(exc.code, exc.message)
            state["post_refused"] = result
            add_event(state, "orchestrator", "post refused (the watchdog stays armed): " + exc.code)
            states.save(key, state)
            return result
        result = run_hook(
            req.hook, real, req.extra_args, req.run_id, req.member, "post", states, Gate()
        )
        state["post"] = {"result": result, "by": "orchestrator", "at": iso(time.time())}
        add_event(state, "orchestrator", "ran the post hook: " + result["status"])
        stop_watchdog(state, "orchestrator")
        states.save(key, state)
    return result


PHASE_HANDLERS: Dict[str, Callable[[Request], JSON]] = {
    "check": phase_check,
    "verify": phase_verify,
    "pre": phase_pre,
    "post": phase_post,
}


def execute(req: Request) -> JSON:
    if req.expires_at is not None and time.time() > req.expires_at:
        return refused(
            "Stale",
            "the request expired at %s and arrived at %s, so it was not acted on; check this "
            "machine's clock (NTP) and the delivery delay"
            % (iso(req.expires_at), iso(time.time())),
        )
    try:
        return PHASE_HANDLERS[req.phase](req)
    except Refused as exc:
        return refused(exc.code, exc.message)


# --------------------------------------------------------------------------------------------
# Typed flags: `run-args` builds the JSON request from one flag per field


def _flag_number(text: Optional[str], flag: str) -> Optional[float]:
    """An optional number flag: absent or empty means "not given"."""
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(flag, "must be a number (got %r)" % (text,)) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise BadRequest(flag, "must be a finite number (got %r)" % (text,))
    return value


def _flag_int(text: Optional[str], flag: str) -> Optional[int]:
    if text is None or text == "":
        return None
    if not re.fullmatch(r"[0-9]{1,3}", text):
        raise BadRequest(flag, "must be a whole number (got %r)" % (text,))
    return int(text)


def _flag_list(
    items: Optional[List[str]], as_json: Optional[str], flag: str, json_flag: str
) -> List[str]:
    """Repeated `--arg` items, or one `--args-json` list (how SSM renders a StringList that is
    embedded in a command line: a JSON array; `null` when the list is empty)."""
    if as_json is None or as_json == "":
        return list(items or [])
    if items:
        raise BadRequest(flag, "give the items either one by one or as %s, not both" % json_flag)
    try:
        value = json.loads(as_json)
    except ValueError as exc:
        raise BadRequest(json_flag, "is not valid JSON (%s)" % exc) from None
    if value is None:
        return []
    return _strings(value, json_flag, allow_empty=True)


def _flag_env(
    items: Optional[List[str]], as_json: Optional[str], flag: str, json_flag: str
) -> Dict[str, str]:
    """NAME=value items (repeated flags, or a JSON list of them, or a JSON object)."""
    if as_json and as_json.lstrip().startswith("{"):
        if items:
            raise BadRequest(flag, "give the variables either one by one or as JSON, not both")
        try:
            value = json.loads(as_json)
        except ValueError as exc:
            raise BadRequest(json_flag, "is not valid JSON (%s)" % exc) from None
        if not isinstance(value, dict):
            raise BadRequest(json_flag, "must be a JSON object or list of NAME=value")
        return value
    env: Dict[str, str] = {}
    for item in _flag_list(items, as_json, flag, json_flag):
        name, sep, text = item.partition("=")
        if not sep:
            raise BadRequest(flag, "items must look like NAME=value (got %r)" % (item,))
        env[name] = text
    return env


def _flag_hook(args: argparse.Namespace, prefix: str, flag: str) -> Optional[JSON]:
    script = getattr(args, prefix + "script")
    if script is None or script == "":
        return None
    args_list = _flag_list(
        getattr(args, prefix + "arg"),
        getattr(args, prefix + "args_json"),
        flag + "arg",
        flag + "args-json",
    )
    run = [script, *args_list]
    hook: JSON = {
        "run": run,
        "sha256": getattr(args, prefix + "sha256") or None,
        "env": _flag_env(
            getattr(args, prefix + "env"),
            getattr(args, prefix + "env_json"),
            flag + "env",
            flag + "env-json",
        ),
    }
    timeout = _flag_number(getattr(args, prefix + "timeout"), flag + "timeout")
    if timeout is not None:
        hook["timeout_seconds"] = timeout
    retries = _flag_int(getattr(args, prefix + "retries"), flag + "retries")
    if retries is not None:
        hook["retries"] = retries
    return hook


def request_from_flags(args: argparse.Namespace) -> str:
    """The JSON request `run` would get, built from `run-args` flags (then parsed as usual)."""
    hook = _flag_hook(args, "", "--")
    if hook is None:
        raise BadRequest("--script", "is required: the hook script's absolute path")
    request: JSON = {
        "version": REQUEST_VERSION,
        "run_id": args.run_id,
        "member": args.member,
        "phase": args.phase,
        "hook": hook,
        "thaw": _flag_hook(args, "thaw_", "--thaw-"),
        "max_freeze_seconds": _flag_number(args.max_freeze_seconds, "--max-freeze-seconds"),
        "expires_at": _flag_number(args.expires_at, "--expires-at"),
    }
    if args.state_dir:
        request["state_dir"] = args.state_dir
    return json.dumps(request)


def fit_result(result: JSON, max_chars: Optional[int]) -> JSON:
    """Shortens `output` (keeping its end), then `message`, until the JSON result fits in
    `max_chars` characters, so a channel that keeps only the first N characters of stdout
    (SSM: 2,500 in ListCommandInvocations) still gets a whole, parseable result."""
    if not max_chars:
        return result
    fitted = dict(result)
    for name, keep_end in (("output", True), ("message", False)):
        text = fitted.get(name) or ""
        while text and len(json.dumps(fitted, sort_keys=True)) > max_chars:
            overflow = len(json.dumps(fitted, sort_keys=True)) - max_chars
            cut = max(overflow + 16, len(text) // 8)
            text = text[cut:] if keep_end else text[: max(0, len(text) - cut)]
            fitted[name] = ("[...]" + text) if keep_end else (text + "[...]")
            if len(text) <= 16:
                text = ""
                fitted[name] = ""
    return fitted


# --------------------------------------------------------------------------------------------
# Command line


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def emit(obj: object) -> None:
    """Prints one JSON document; a caller that went away (closed pipe) is not an error."""
    data = json.dumps(obj, sort_keys=True) + "\n"
    stream = sys.stdout
    if stream is None:
        return
    try:
        stream.write(data)
        stream.flush()
    except (OSError, ValueError):
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())  # so the interpreter's final flush stays quiet


def _bad_request(message: str) -> int:
    emit(refused("BadRequest", message))
    return 2


def _read_request(args: argparse.Namespace) -> str:
    if args.request is not None:
        return str(args.request)
    if args.request_file is not None:
        try:
            with open(args.request_file, encoding="utf-8") as handle:
                return handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadRequest("--request-file", "cannot be read (%s)" % exc) from None
    if sys.stdin is None:
        raise BadRequest("request", "is missing: pass --request, --request-file or stdin")
    return sys.stdin.read()


def _checked_key(args: argparse.Namespace) -> Tuple[StateDir, str]:
    if not KEY_RE.fullmatch(args.key or ""):
        raise BadRequest("--key", "must look like <run_id>--<member> (got %r)" % (args.key,))
    if not os.path.isabs(args.state_dir or ""):
        raise BadRequest("--state-dir", "must be an absolute path")
    return StateDir(os.path.normpath(args.state_dir)), args.key


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="quiesce_guest.py", description="Quiesce guest hook runner")
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="run one hook request; prints one JSON result")
    source = run.add_mutually_exclusive_group()
    source.add_argument("--request-file", help="read the JSON request from this file")
    source.add_argument("--request", help="the JSON request itself (default: read stdin)")
    typed = commands.add_parser(
        "run-args", help="run one hook given as typed flags; prints one JSON result"
    )
    typed.add_argument("--phase", required=True)
    typed.add_argument("--run-id", required=True)
    typed.add_argument("--member", required=True)
    for prefix, what in (("", "hook"), ("thaw-", "thaw (post) hook, for pre")):
        typed.add_argument("--%sscript" % prefix, help="the %s script's absolute path" % what)
        typed.add_argument("--%sarg" % prefix, action="append", help="one argument (repeat)")
        typed.add_argument("--%sargs-json" % prefix, help="all arguments as one JSON list")
        typed.add_argument("--%ssha256" % prefix, help="pin: the script's SHA-256 (or empty)")
        typed.add_argument("--%stimeout" % prefix, help="seconds per attempt (or empty)")
        typed.add_argument("--%sretries" % prefix, help="more attempts after a failed one")
        typed.add_argument("--%senv" % prefix, action="append", help="NAME=value (repeat)")
        typed.add_argument("--%senv-json" % prefix, help="NAME=value items as one JSON list")
    typed.add_argument("--max-freeze-seconds", help="for pre: the watchdog's bound")
    typed.add_argument("--expires-at", help="epoch seconds after which the request is stale")
    typed.add_argument(
        "--state-dir", help="default: $%s or %s" % (STATE_DIR_ENV, DEFAULT_STATE_DIR)
    )
    typed.add_argument(
        "--max-result-chars", type=int, default=None, help="shorten the result to fit"
    )
    for name, text in (
        ("watchdog", "internal: thaw at the deadline unless a post came"),
        ("status", "print a run's state JSON (null when there is none)"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--state-dir", required=True)
        command.add_argument("--key", required=True)
        if name == "watchdog":
            command.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        return _bad_request("bad command line: %s" % exc)
    if args.command is None:
        return _bad_request("bad command line: give a command: run, run-args, watchdog or status")
    limit = getattr(args, "max_result_chars", None)
    try:
        if args.command == "run":
            req = parse_request(_read_request(args))
        elif args.command == "run-args":
            req = parse_request(request_from_flags(args))
        else:
            states, key = _checked_key(args)
    except BadRequest as exc:
        emit(fit_result(refused("BadRequest", str(exc)), limit))
        return 2
    if args.command == "watchdog":
        try:
            return watchdog(states, key, args.ready_fd)
        except Exception as exc:
            _log("watchdog %s failed: %r" % (key, exc))
            raise
    if args.command == "status":
        emit(states.load(key))
        return 0
    try:
        result = execute(req)
    except Exception as exc:
        result = make_result(
            "failed",
            "ExecutionFailed",
            "the hook runner itself failed (%s: %s); see the state folder %s"
            % (type(exc).__name__, exc, req.state_dir),
        )
        emit(fit_result(result, limit))
        return 1
    emit(fit_result(result, limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
