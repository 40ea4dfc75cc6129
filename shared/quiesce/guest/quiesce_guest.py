#!/usr/bin/env python3
"""Quiesce guest hook runner: runs one backup hook on this machine, safely, as root.

One self-contained file (Python 3.8+, standard library only) that is copied onto every machine
as-is. Usage:

    python3 quiesce_guest.py run [--config PATH] [--request-file PATH | --request JSON]
    python3 quiesce_guest.py run-args [--config PATH] --phase pre --run-id ID --member NAME
                                      --hook NAME [--expires-at T] [--restore-path DIR]
    python3 quiesce_guest.py status --state-dir DIR --key KEY
    python3 quiesce_guest.py watchdog ...                                    (internal)

Hooks are declared on the machine, never chosen by the caller: the root-owned allowlist
(`--config`, default /etc/quiesce/hooks.json) names each hook with its argv, environment,
timeouts and optional SHA-256 pin, and a request carries only a hook's name and the run's
identifiers (docs/guest-protocol.md). Before anything runs, every file and folder on the way to
the script is opened one component at a time without following links that another user could
have planted, checked, and the checked file descriptor is what is executed. A `pre` hands its
thaw hook (already checked and opened) to a detached watchdog that runs it at the deadline
unless a `post` came first; the post hook runs exactly once per run and member, whoever runs it.
A thaw never waits on a write: hook output goes to memory, and state is recorded after the thaw.
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
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, NoReturn, Optional, Sequence, Tuple

JSON = Dict[str, Any]

REQUEST_VERSION = 2
CONFIG_VERSION = 1
STATE_VERSION = 2
DEFAULT_CONFIG = "/etc/quiesce/hooks.json"
DEFAULT_STATE_DIR = "/var/lib/quiesce"
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OUTPUT_TAIL_BYTES = 4096
TERM_GRACE_SECONDS = 1.0  # after SIGTERM to a process group, before SIGKILL
KILL_WAIT_SECONDS = 5.0  # after SIGKILL, how long to wait for the processes to be gone
WATCHDOG_READY_SECONDS = 15.0  # how long a pre waits for its watchdog to report armed
WATCHDOG_POLL_SECONDS = 1.0  # the watchdog re-reads the state this often while it waits
WATCHDOG_LOCK_SECONDS = 5.0  # at the deadline: how long the watchdog waits for the lock
RECORD_WAIT_SECONDS = 3.0  # on the thaw path, how long a state write may block
LOCK_SLACK_SECONDS = 10.0  # a post waits for the lock this long beyond its hook's budget
MAX_TIMEOUT_SECONDS = 3600.0
MAX_RETRIES = 5
MAX_FREEZE_SECONDS = 3600.0
MAX_EVENTS = 200
MAX_REQUEST_BYTES = 64 * 1024
MAX_CONFIG_BYTES = 1024 * 1024
MAX_SECRET_BYTES = 64 * 1024
MAX_JSON_DEPTH = 8
MAX_LINKS = 40

RUN_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
MEMBER_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
KEY_RE = re.compile(r"[A-Za-z0-9._-]{1,128}--[a-z0-9][a-z0-9_-]{0,62}")
HOOK_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
PHASES = ("pre", "post", "verify", "check")
HOOK_PHASES = ("pre", "post", "verify")
REQUEST_FIELDS = ("version", "run_id", "member", "phase", "hook", "expires_at", "restore_path")
CONFIG_FIELDS = ("version", "state_dir", "hooks", "agent")
ENTRY_FIELDS = (
    "phase",
    "run",
    "sha256",
    "env",
    "env_files",
    "timeout_seconds",
    "retries",
    "thaw",
    "max_freeze_seconds",
)

#: Environment variables a declared hook may not set: they change which code a program loads or
#: how a shell parses its input, so they would turn a reviewed script into someone else's code.
DENIED_ENV_NAMES = frozenset(
    (
        "PATH", "IFS", "ENV", "BASH_ENV", "CDPATH", "GLOBIGNORE", "SHELLOPTS", "BASHOPTS",
        "PS4", "PROMPT_COMMAND", "FPATH", "ZDOTDIR", "HOSTALIASES", "RES_OPTIONS",
        "LOCALDOMAIN", "LOCPATH", "NLSPATH", "TCLLIBPATH", "CLASSPATH", "PHPRC",
        "PHP_INI_SCAN_DIR", "OPENSSL_CONF", "OPENSSL_ENGINES", "RUBYOPT", "RUBYLIB",
        "MALLOC_CONF", "GLIBC_TUNABLES",
    )
)  # fmt: skip
DENIED_ENV_PREFIXES = (
    "LD_", "DYLD_", "BASH_FUNC_", "PYTHON", "PERL", "RUBY", "NODE_", "GCONV_", "LUA_",
    "JAVA_", "_JAVA_", "JDK_", "GIT_", "QUIESCE_",
)  # fmt: skip

#: Interpreters whose first non-option argument is the script they run: that script is checked
#: like a hook, and only the options listed here are accepted (no inline code such as `-c`).
#: The value: single-letter flags that may be combined, and long options with one argument.
INTERPRETERS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "sh": ("euxvfn", ("-o",)),
    "bash": ("euxvfn", ("-o",)),
    "dash": ("euxvfn", ("-o",)),
    "ksh": ("euxvfn", ("-o",)),
    "mksh": ("euxvfn", ("-o",)),
    "zsh": ("euxvfn", ("-o",)),
    "ash": ("euxvfn", ("-o",)),
    "python": ("IEsSBuOq", ()),
    "perl": ("wWXTt", ()),
    "ruby": ("w", ()),
    "node": ("", ()),
    "nodejs": ("", ()),
    "php": ("", ()),
    "lua": ("", ()),
    "tclsh": ("", ()),
}
SHELL_OPTIONS = frozenset(("errexit", "nounset", "pipefail", "xtrace", "noglob", "verbose"))
#: Programs that run another program named in their arguments: never a hook's run[0].
COMMAND_RUNNERS = frozenset(
    (
        "env", "sudo", "su", "runuser", "doas", "pkexec", "setsid", "nohup", "nice", "ionice",
        "chrt", "taskset", "timeout", "stdbuf", "xargs", "chroot", "flock", "unshare",
        "nsenter", "systemd-run", "script", "watch", "time", "strace", "ltrace", "gdb",
        "busybox", "find", "awk", "gawk", "mawk", "nawk", "sed", "expect", "parallel",
        "setpriv", "capsh", "firejail", "bwrap", "eval", "exec", "command", "builtin",
    )
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Errors


class Invalid(ValueError):
    """Malformed input; `field` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(field + " " + problem)
        self.field = field
        self.problem = problem


class BadRequest(Invalid):
    """The request itself is malformed."""

    def __str__(self) -> str:
        return "bad request: " + self.field + " " + self.problem


class Refused(Exception):
    """A check failed: nothing was executed. `code` is the result code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------------------------
# Bounded JSON: size and nesting are capped before and after parsing


def _depth(value: object, limit: int) -> int:
    """The nesting depth of a parsed JSON value, counting no deeper than `limit` + 1."""
    if limit < 0 or not isinstance(value, (dict, list)):
        return 0
    items = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(item, limit - 1) for item in items), default=0)


def parse_json(raw: str, field: str, max_bytes: int, error: Callable[[str, str], Exception]) -> Any:
    if len(raw) > max_bytes:
        raise error(field, "is larger than %d bytes" % max_bytes)
    try:
        value = json.loads(raw)
    except RecursionError:
        raise error(field, "is nested deeper than %d levels" % MAX_JSON_DEPTH) from None
    except ValueError as exc:
        raise error(field, "is not valid JSON (%s)" % exc) from None
    if _depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise error(field, "is nested deeper than %d levels" % MAX_JSON_DEPTH)
    return value


# --------------------------------------------------------------------------------------------
# Declared hooks: the allowlist entries, normalized


def env_name_problem(name: object) -> Optional[str]:
    """Why a hook may not set the variable `name`, or None when it may."""
    if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
        return "is not a valid variable name"
    upper = name.upper()
    if upper in DENIED_ENV_NAMES or upper.startswith(DENIED_ENV_PREFIXES):
        return (
            "is refused: it changes which code a program loads or how a shell reads its input "
            "(refused: %s and names starting with %s)"
            % (", ".join(sorted(DENIED_ENV_NAMES)), ", ".join(DENIED_ENV_PREFIXES))
        )
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bounded_number(value: object, field: str, maximum: float) -> float:
    if not _is_number(value) or not 0 < float(value) <= maximum:  # type: ignore[arg-type]
        raise Invalid(field, "must be a number greater than 0 and at most %g" % maximum)
    return float(value)  # type: ignore[arg-type]


def _strings(value: object, field: str, allow_empty: bool) -> List[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Invalid(field, "must be a list of strings")
    if not value and not allow_empty:
        raise Invalid(field, "must not be empty")
    if any("\x00" in item for item in value):
        raise Invalid(field, "must not contain NUL bytes")
    return list(value)


def _refuse_unknown(data: JSON, known: Sequence[str], prefix: str) -> None:
    for name in sorted(data):
        if name not in known:
            raise Invalid(
                prefix + str(name),
                "is not a known field (known: %s); unknown fields are refused so that a "
                "misspelt one never silently drops a check" % ", ".join(known),
            )


def _env_map(value: object, field: str, paths: bool) -> Dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(field, "must be an object of NAME: value strings")
    env = {}
    for name, text in value.items():
        problem = env_name_problem(name)
        if problem:
            raise Invalid(field + "." + str(name), problem)
        if not isinstance(text, str) or "\x00" in text:
            raise Invalid(field + "." + name, "must be a string without NUL bytes")
        if paths and not os.path.isabs(text):
            raise Invalid(field + "." + name, "must be an absolute path (got %r)" % text)
        env[name] = text
    return env


def normalize_entry(entry: object, field: str = "hook") -> JSON:
    """A declared hook with every field present and checked; raises Invalid naming the field.

    The same function builds the entries that `quiesce hooks allowlist` prints, so the digest of
    a policy's hook and of a machine's declaration can be compared (`entry_digest`)."""
    if not isinstance(entry, dict):
        raise Invalid(field, 'must be an object like {"phase": "pre", "run": ["/abs/script"]}')
    _refuse_unknown(entry, ENTRY_FIELDS, field + ".")
    phase = entry.get("phase")
    if phase not in HOOK_PHASES:
        raise Invalid(field + ".phase", "must be one of pre, post, verify (got %r)" % (phase,))
    if "run" not in entry:
        raise Invalid(field + ".run", "is missing")
    run = _strings(entry["run"], field + ".run", allow_empty=False)
    if not os.path.isabs(run[0]):
        raise Invalid(
            field + ".run", "must start with the script's absolute path (got %r)" % run[0]
        )
    sha256 = entry.get("sha256")
    if sha256 is not None and not (isinstance(sha256, str) and SHA256_RE.fullmatch(sha256)):
        raise Invalid(field + ".sha256", "must be null or 64 hexadecimal digits")
    env = _env_map(entry.get("env"), field + ".env", paths=False)
    env_files = _env_map(entry.get("env_files"), field + ".env_files", paths=True)
    both = sorted(set(env) & set(env_files))
    if both:
        raise Invalid(field + ".env_files", "names %s, which env sets too" % ", ".join(both))
    timeout = entry.get("timeout_seconds")
    timeout = 30.0 if timeout is None else timeout
    retries = entry.get("retries")
    retries = 0 if retries is None else retries
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= MAX_RETRIES:
        raise Invalid(field + ".retries", "must be an integer from 0 to %d" % MAX_RETRIES)
    thaw = entry.get("thaw")
    max_freeze = entry.get("max_freeze_seconds")
    if phase == "pre":
        if not isinstance(thaw, str) or not HOOK_NAME_RE.fullmatch(thaw):
            raise Invalid(field + ".thaw", "is required for a pre hook: the post hook's name")
        if max_freeze is None:
            raise Invalid(field + ".max_freeze_seconds", "is required for a pre hook")
        max_freeze = _bounded_number(max_freeze, field + ".max_freeze_seconds", MAX_FREEZE_SECONDS)
    else:
        for name, value in (("thaw", thaw), ("max_freeze_seconds", max_freeze)):
            if value is not None:
                raise Invalid(field + "." + name, "is only for pre hooks")
    return {
        "phase": phase,
        "run": run,
        "sha256": sha256.lower() if sha256 else None,
        "env": env,
        "env_files": env_files,
        "timeout_seconds": _bounded_number(
            timeout, field + ".timeout_seconds", MAX_TIMEOUT_SECONDS
        ),
        "retries": retries,
        "thaw": thaw if phase == "pre" else None,
        "max_freeze_seconds": max_freeze if phase == "pre" else None,
    }


def entry_digest(entry: JSON) -> str:
    """SHA-256 of a declared hook's canonical JSON (with defaults filled in)."""
    import hashlib

    canonical = json.dumps(normalize_entry(entry), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class Hook:
    """A declared hook, resolved: its name and normalized entry."""

    def __init__(self, name: str, entry: JSON) -> None:
        self.name = name
        self.entry = entry

    @property
    def run(self) -> List[str]:
        return list(self.entry["run"])

    @property
    def script(self) -> str:
        return str(self.entry["run"][0])

    @property
    def timeout_seconds(self) -> float:
        return float(self.entry["timeout_seconds"])

    @property
    def retries(self) -> int:
        return int(self.entry["retries"])

    @property
    def budget_seconds(self) -> float:
        return self.timeout_seconds * (self.retries + 1)


class Config:
    """The machine's hook allowlist."""

    def __init__(self, path: str, state_dir: str, hooks: Dict[str, JSON]) -> None:
        self.path = path
        self.state_dir = state_dir
        self.hooks = hooks

    def hook(self, name: str, phase: str) -> Hook:
        entry = self.hooks.get(name)
        if entry is None:
            raise Refused(
                "HookNotDeclared",
                "this machine's hook allowlist %s declares no hook named %r, so nothing was run; "
                "add it there (quiesce hooks allowlist POLICY prints the entries a policy needs) "
                "or fix the hook's name in the policy" % (self.path, name),
            )
        if phase != "check" and entry["phase"] != phase:
            raise Refused(
                "WrongPhase",
                "the hook %r is declared in %s for the %s phase and cannot be run as %s"
                % (name, self.path, entry["phase"], phase),
            )
        return Hook(name, entry)


def _config_problem(path: str, problem: str) -> Refused:
    return Refused("ConfigRefused", "the hook allowlist %s %s" % (path, problem))


def parse_config(raw: str, path: str) -> Config:
    def error(field: str, problem: str) -> Exception:
        return _config_problem(path, problem if field == "config" else field + " " + problem)

    data = parse_json(raw, "config", MAX_CONFIG_BYTES, error)
    if not isinstance(data, dict):
        raise error("config", "must be a JSON object")
    try:
        _refuse_unknown(data, CONFIG_FIELDS, "")
        version = data.get("version")
        if version != CONFIG_VERSION or isinstance(version, bool):
            raise Invalid("version", "must be %d (got %r)" % (CONFIG_VERSION, version))
        state_dir = data.get("state_dir") or DEFAULT_STATE_DIR
        if not isinstance(state_dir, str) or "\x00" in state_dir:
            raise Invalid("state_dir", "must be a path")
        state_dir = os.path.normpath(os.path.join(os.path.dirname(path), state_dir))
        hooks_raw = data.get("hooks")
        if not isinstance(hooks_raw, dict):
            raise Invalid("hooks", 'must be an object: {"<name>": {"phase": ..., "run": [...]}}')
        hooks: Dict[str, JSON] = {}
        for name, entry in hooks_raw.items():
            if not HOOK_NAME_RE.fullmatch(name):
                raise Invalid(
                    "hooks." + name, "is not a valid hook name (%s)" % HOOK_NAME_RE.pattern
                )
            hooks[name] = normalize_entry(entry, "hooks." + name)
        for name, entry in hooks.items():
            thaw = entry.get("thaw")
            if thaw is not None and (thaw not in hooks or hooks[thaw]["phase"] != "post"):
                raise Invalid(
                    "hooks.%s.thaw" % name, "names %r, which is not a declared post hook" % thaw
                )
    except Invalid as exc:
        raise error(exc.field, exc.problem) from None
    return Config(path, state_dir, hooks)


def load_config(path: str) -> Config:
    """Opens the allowlist without following untrusted links, checks it, then parses it."""
    if not os.path.isabs(path):
        raise _config_problem(path, "must be given as an absolute path")
    try:
        opened = open_checked(path, "file", "the hook allowlist")
    except Refused as exc:
        if exc.code == "ScriptNotFound":
            raise _config_problem(
                path,
                "does not exist, so no hook is declared on this machine; install one (quiesce "
                "hooks allowlist POLICY prints it; docs/guest-protocol.md)",
            ) from None
        raise Refused("ConfigRefused", exc.message) from None
    try:
        raw = _read_fd(opened.fd, MAX_CONFIG_BYTES + 1)
    finally:
        opened.close()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _config_problem(path, "is not UTF-8 text") from None
    return parse_config(text, path)


def _read_fd(fd: int, limit: int) -> bytes:
    chunks = []
    size = 0
    offset = 0
    while size < limit:
        chunk = os.pread(fd, min(1 << 16, limit - size), offset)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------------------------
# Request


class Request:
    def __init__(
        self,
        run_id: str,
        member: str,
        phase: str,
        hook: str,
        expires_at: Optional[float],
        restore_path: Optional[str],
    ) -> None:
        self.run_id = run_id
        self.member = member
        self.phase = phase
        self.hook = hook
        self.expires_at = expires_at
        self.restore_path = restore_path

    @property
    def key(self) -> str:
        return state_key(self.run_id, self.member)


def state_key(run_id: str, member: str) -> str:
    return run_id + "--" + member


def parse_request(raw: str) -> Request:
    data = parse_json(raw, "request", MAX_REQUEST_BYTES, BadRequest)
    if not isinstance(data, dict):
        raise BadRequest("request", "must be a JSON object")
    version = data.get("version")
    if version != REQUEST_VERSION or isinstance(version, bool):
        raise BadRequest(
            "version",
            "must be %d (got %r); requests name a hook declared on the machine and carry no "
            "argv (docs/guest-protocol.md)" % (REQUEST_VERSION, version),
        )
    try:
        _refuse_unknown(data, REQUEST_FIELDS, "")
    except Invalid as exc:
        raise BadRequest(exc.field, exc.problem) from None
    run_id = data.get("run_id")
    if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
        raise BadRequest("run_id", "must match ^[A-Za-z0-9._-]{1,128}$ (got %r)" % (run_id,))
    member = data.get("member")
    if not isinstance(member, str) or not MEMBER_RE.fullmatch(member):
        raise BadRequest("member", "must match ^[a-z0-9][a-z0-9_-]{0,62}$ (got %r)" % (member,))
    phase = data.get("phase")
    if phase not in PHASES:
        raise BadRequest("phase", "must be one of %s (got %r)" % (", ".join(PHASES), phase))
    hook = data.get("hook")
    if not isinstance(hook, str) or not HOOK_NAME_RE.fullmatch(hook):
        raise BadRequest(
            "hook", "must be a declared hook's name, %s (got %r)" % (HOOK_NAME_RE.pattern, hook)
        )
    expires_at = data.get("expires_at")
    if expires_at is not None and not _is_number(expires_at):
        raise BadRequest("expires_at", "must be null or epoch seconds")
    restore_path = data.get("restore_path")
    if restore_path is not None:
        if phase != "verify":
            raise BadRequest("restore_path", "is only for verify")
        if not isinstance(restore_path, str) or not os.path.isabs(restore_path):
            raise BadRequest("restore_path", "must be an absolute path (got %r)" % (restore_path,))
        if "\x00" in restore_path or len(restore_path) > 4096:
            raise BadRequest("restore_path", "must be a path without NUL bytes")
    return Request(
        run_id=run_id,
        member=member,
        phase=phase,
        hook=hook,
        expires_at=None if expires_at is None else float(expires_at),
        restore_path=restore_path,
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
# Security checks: open one component at a time, check what was opened, keep the descriptor

O_PATH = getattr(os, "O_PATH", 0)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def _trusted_owner(uid: int) -> bool:
    return uid in (0, os.geteuid())


def _owner_hint(path: str) -> str:
    return "chown root:root " + path if os.geteuid() == 0 else "chown $(id -un) " + path


class Opened:
    """A file or folder reached safely: its descriptor, status, real path and parent folder."""

    def __init__(self, fd: int, st: os.stat_result, path: str, parent_fd: int) -> None:
        self.fd = fd
        self.st = st
        self.path = path
        self.parent_fd = parent_fd

    def close(self) -> None:
        for fd in {self.fd, self.parent_fd}:
            with contextlib.suppress(OSError):
                os.close(fd)


def _folder_problem(st: os.stat_result, folder: str, what: str) -> Optional[str]:
    fixes = []
    reasons = []
    if not _trusted_owner(st.st_uid):
        reasons.append("is owned by uid %d" % st.st_uid)
        fixes.append(_owner_hint(folder))
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and not (st.st_uid == 0 and st.st_mode & stat.S_ISVTX):
        reasons.append("is group- or world-writable (mode %04o)" % stat.S_IMODE(st.st_mode))
        fixes.append("chmod go-w " + folder)
    if not reasons:
        return None
    return (
        "the folder %s (on the way to %s) %s, so another user could swap what runs as root; fix "
        "it with: %s" % (folder, what, " and ".join(reasons), " && ".join(fixes))
    )


def open_checked(path: str, kind: str, what: str, create: bool = False) -> Opened:
    """Walks `path` from / one component at a time with O_NOFOLLOW: every folder must be owned
    by root (or this user) and not writable by others (a root-owned sticky folder such as /tmp
    is accepted: its entries can only be replaced by their owners, and every entry on the way
    must be ours), every symlink must be owned by root (or this user), and the final component
    must be a `kind` ("file" or "dir") that passes the same checks. Returns the opened
    descriptor: callers read, hash and execute *that*, never the path again. With `create`,
    missing folders are created (mode 0700) below checked ones."""
    if not os.path.isabs(path):
        raise Refused("NotAbsolute", "%s %r is not an absolute path" % (what, path))
    parts = [p for p in path.split("/") if p not in ("", ".")]
    stack = [os.open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)]
    names: List[str] = []
    links = 0
    try:
        problem = _folder_problem(os.fstat(stack[-1]), "/", path)
        if problem:
            raise Refused("InsufficientPermission", problem)
        while parts:
            name = parts.pop(0)
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                    names.pop()
                continue
            here = "/" + "/".join([*names, name])
            last = not parts
            try:
                fd = os.open(name, O_PATH | O_NOFOLLOW | O_CLOEXEC, dir_fd=stack[-1])
            except FileNotFoundError:
                if not (create and (kind == "dir" or not last)):
                    raise Refused(
                        "ScriptNotFound", "%s %s does not exist (no %s)" % (what, path, here)
                    ) from None
                os.mkdir(name, 0o700, dir_fd=stack[-1])
                fd = os.open(name, O_PATH | O_NOFOLLOW | O_CLOEXEC, dir_fd=stack[-1])
            except OSError as exc:
                raise Refused(
                    "ScriptNotFound",
                    "%s %s cannot be opened at %s (%s)" % (what, path, here, exc.strerror),
                ) from None
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                try:
                    if not _trusted_owner(st.st_uid):
                        raise Refused(
                            "InsufficientPermission",
                            "the symlink %s (on the way to %s) is owned by uid %d, so another "
                            "user chose where it points; remove it or fix it with: %s"
                            % (
                                here,
                                path,
                                st.st_uid,
                                _owner_hint(here).replace("chown", "chown -h"),
                            ),
                        )
                    target = os.readlink(name, dir_fd=stack[-1])
                finally:
                    os.close(fd)
                links += 1
                if links > MAX_LINKS:
                    raise Refused("ScriptNotFound", "%s %s has too many symlinks" % (what, path))
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                    names = []
                continue
            if not last or kind == "dir":
                if not stat.S_ISDIR(st.st_mode):
                    os.close(fd)
                    code = "ScriptNotFound" if not last else "NotARegularFile"
                    raise Refused(code, "%s %s: %s is not a folder" % (what, path, here))
                problem = _folder_problem(st, here, path)
                if problem:
                    os.close(fd)
                    raise Refused("InsufficientPermission", problem)
                stack.append(fd)
                names.append(name)
                if last:
                    real = "/" + "/".join(names)
                    parent = os.dup(stack[-2]) if len(stack) > 1 else os.dup(stack[-1])
                    return Opened(os.dup(fd), st, real, parent)
                continue
            try:
                if not stat.S_ISREG(st.st_mode):
                    raise Refused(
                        "NotARegularFile",
                        "%s %s (-> %s) is not a regular file" % (what, path, here),
                    )
                if not _trusted_owner(st.st_uid):
                    raise Refused(
                        "InsufficientPermission",
                        "%s %s (-> %s) is owned by uid %d, not by root or the user running "
                        "hooks (uid %d), so someone else could change what runs as root; fix "
                        "it with: %s"
                        % (what, path, here, st.st_uid, os.geteuid(), _owner_hint(here)),
                    )
                if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                    raise Refused(
                        "InsufficientPermission",
                        "%s %s (-> %s) is group- or world-writable (mode %04o), so another user "
                        "could change what runs as root; fix it with: chmod go-w %s"
                        % (what, path, here, stat.S_IMODE(st.st_mode), here),
                    )
                readable = os.open(name, os.O_RDONLY | O_NOFOLLOW | O_CLOEXEC, dir_fd=stack[-1])
            finally:
                os.close(fd)
            again = os.fstat(readable)
            if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino):
                os.close(readable)
                raise Refused(
                    "InsufficientPermission", "%s %s changed while it was checked" % (what, path)
                )
            return Opened(readable, again, here, os.dup(stack[-1]))
        # the path was "/" itself
        if kind != "dir":
            raise Refused("NotARegularFile", "%s %s is not a regular file" % (what, path))
        return Opened(os.dup(stack[-1]), os.fstat(stack[-1]), "/", os.dup(stack[-1]))
    finally:
        for fd in stack:
            with contextlib.suppress(OSError):
                os.close(fd)


def sha256_fd(fd: int) -> str:
    import hashlib  # only when a hook is pinned: keeps the runner's start-up short

    digest = hashlib.sha256()
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return digest.hexdigest()
        digest.update(chunk)
        offset += len(chunk)


def _program_name(path: str) -> str:
    """`python3.11` -> `python`, `bash` -> `bash`: the family an executable belongs to."""
    base = os.path.basename(path)
    return re.sub(r"[0-9.]+$", "", base) or base


def script_argument(family: str, argv: List[str], shown: str) -> int:
    """The index of the script an interpreter runs; refuses inline code and unknown options."""
    letters, with_value = INTERPRETERS[family]
    index = 1
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            index += 1
            break
        if arg == "-" or not arg.startswith("-"):
            break
        if arg in with_value:
            value = argv[index + 1] if index + 1 < len(argv) else ""
            if value not in SHELL_OPTIONS:
                raise Refused(
                    "InlineCode",
                    "the hook %s passes %s %r, which is not an accepted option (accepted: %s)"
                    % (shown, arg, value, ", ".join(sorted(SHELL_OPTIONS))),
                )
            index += 2
            continue
        flags = arg[1:]
        if not flags or any(flag not in letters for flag in flags):
            raise Refused(
                "InlineCode",
                "the hook %s gives the interpreter the option %r; hooks run a script file, "
                "never inline code (-c, -e, -m, ...) or options that load other code; accepted "
                "flags: %s" % (shown, arg, " ".join("-" + f for f in letters) or "none"),
            )
        index += 1
    if index >= len(argv) or argv[index] == "-":
        raise Refused(
            "InlineCode",
            "the hook %s runs an interpreter without a script file (it would read code from its "
            "input); name the script: run: [%s, /etc/quiesce/hooks/NAME]" % (shown, argv[0]),
        )
    return index


class Checked:
    """A hook that passed every check: what to execute (descriptors), how, and its secrets."""

    def __init__(self, hook: Hook) -> None:
        self.hook = hook
        self.argv = hook.run
        self.exec_fd = -1
        self.cwd_fd = -1
        self.fds: List[int] = []
        self.secrets: Dict[str, str] = {}

    def keep(self, opened: Opened) -> None:
        self.fds.extend([opened.fd, opened.parent_fd])

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []

    def handoff(self) -> JSON:
        """What a watchdog needs to run this hook later with the same descriptors."""
        return {
            "name": self.hook.name,
            "entry": self.hook.entry,
            "argv": self.argv,
            "exec_fd": self.exec_fd,
            "cwd_fd": self.cwd_fd,
            "fds": self.fds,
            "secrets": self.secrets,
        }

    @classmethod
    def from_handoff(cls, data: JSON) -> "Checked":
        checked = cls(Hook(str(data["name"]), dict(data["entry"])))
        checked.argv = [str(a) for a in data["argv"]]
        checked.exec_fd = int(data["exec_fd"])
        checked.cwd_fd = int(data["cwd_fd"])
        checked.fds = [int(fd) for fd in data["fds"]]
        checked.secrets = {str(k): str(v) for k, v in data["secrets"].items()}
        return checked


def _shebang_interpreter(fd: int) -> Optional[List[str]]:
    head = os.pread(fd, 256, 0)
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    return line.split() or None


def _vet_shebang(checked: Checked, fd: int, shown: str) -> None:
    """The interpreter on a script's #! line is executed as root too: check it like a hook."""
    words = _shebang_interpreter(fd)
    if not words:
        return
    interpreter = words[0]
    opened = open_checked(interpreter, "file", "the interpreter of %s (#! line)" % shown)
    checked.keep(opened)
    if _program_name(interpreter) == "env" and len(words) > 1:
        program = words[1]
        if program.startswith("-"):
            raise Refused(
                "InlineCode",
                "the #! line of %s passes options to env (%s); name the interpreter directly"
                % (shown, " ".join(words)),
            )
        for folder in SAFE_PATH.split(":"):
            candidate = os.path.join(folder, program)
            if os.path.exists(candidate):
                found = open_checked(candidate, "file", "the interpreter of %s (#! line)" % shown)
                checked.keep(found)
                return
        raise Refused(
            "ScriptNotFound",
            "the #! line of %s names %s, which is not in %s" % (shown, program, SAFE_PATH),
        )


def _read_secret(name: str, path: str, shown: str) -> str:
    opened = open_checked(path, "file", "the secret file for %s of %s" % (name, shown))
    try:
        if opened.st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise Refused(
                "InsufficientPermission",
                "the secret file %s (for %s of %s) can be read by other users (mode %04o); fix "
                "it with: chmod 600 %s"
                % (path, name, shown, stat.S_IMODE(opened.st.st_mode), path),
            )
        data = _read_fd(opened.fd, MAX_SECRET_BYTES + 1)
    finally:
        opened.close()
    if len(data) > MAX_SECRET_BYTES or b"\x00" in data:
        raise Refused("BadSecret", "the secret file %s is larger than 64 KiB or binary" % path)
    text = data.decode("utf-8", "replace")
    return text[:-1] if text.endswith("\n") else text


def vet(hook: Hook) -> Checked:
    """Runs every check on a declared hook and opens what it will execute, or raises Refused."""
    checked = Checked(hook)
    shown = hook.script
    try:
        family = _program_name(hook.script)
        if family in COMMAND_RUNNERS:
            raise Refused(
                "InlineCode",
                "the hook %s is a program that runs other commands named in its arguments; "
                "declare the hook's own script instead" % shown,
            )
        opened = open_checked(hook.script, "file", "the hook script")
        checked.keep(opened)
        checked.exec_fd, checked.cwd_fd = opened.fd, opened.parent_fd
        if not opened.st.st_mode & stat.S_IXUSR:
            raise Refused(
                "NotExecutable",
                "the hook script %s is not executable by its owner; fix it with: chmod u+x %s "
                "(and give it a #! line)" % (shown, opened.path),
            )
        family = family if family in INTERPRETERS else _program_name(opened.path)
        if family in COMMAND_RUNNERS:
            raise Refused(
                "InlineCode",
                "the hook %s is %s, a program that runs other commands; declare the hook's own "
                "script instead" % (shown, opened.path),
            )
        pinned = opened.fd
        argv = hook.run
        if family in INTERPRETERS:
            index = script_argument(family, argv, shown)
            script = open_checked(argv[index], "file", "the script of the hook %s" % shown)
            checked.keep(script)
            checked.cwd_fd = script.parent_fd
            argv = [*argv[:index], "/dev/fd/%d" % script.fd, *argv[index + 1 :]]
            pinned = script.fd
        else:
            _vet_shebang(checked, opened.fd, shown)
        checked.argv = argv
        pin = hook.entry.get("sha256")
        if pin:
            actual = sha256_fd(pinned)
            if actual != pin:
                raise Refused(
                    "HashMismatch",
                    "the hook %s has SHA-256 %s but its declaration pins %s; if the change is "
                    "intended, update sha256 in the allowlist (sha256sum %s), otherwise find "
                    "out who changed the script" % (shown, actual, pin, shown),
                )
        for name, path in sorted(hook.entry.get("env_files", {}).items()):
            checked.secrets[name] = _read_secret(name, path, shown)
        return checked
    except BaseException:
        checked.close()
        raise


def vet_thaw(thaw: Hook) -> Checked:
    try:
        return vet(thaw)
    except Refused as exc:
        raise Refused(
            "ThawHookRefused",
            "the pre hook was not run because the thaw hook %s (the post hook the watchdog "
            "would run) is refused, and nothing is frozen that could not be thawed: %s: %s"
            % (thaw.name, exc.code, exc.message),
        ) from None


# --------------------------------------------------------------------------------------------
# State: <state_dir>/runs/<key>.json (atomic writes) guarded by <state_dir>/runs/<key>.lock.
# The folder is opened once, safely; every read and write is relative to its descriptors.


class LockTimeout(Exception):
    pass


class StateDir:
    def __init__(self, root: str) -> None:
        self.root = root
        self.fd = -1
        self.runs_fd = -1

    @classmethod
    def from_fd(cls, root: str, fd: int) -> "StateDir":
        states = cls(root)
        states.fd = fd
        states.runs_fd = states._subfolder("runs", create=False)
        return states

    def prepare(self, create: bool = True) -> "StateDir":
        """Opens (and creates, mode 0700) the folder; refuses it if others could write it."""
        try:
            opened = open_checked(self.root, "dir", "the state folder", create=create)
        except Refused as exc:
            raise Refused(
                exc.code if exc.code != "ScriptNotFound" else "StateMissing", exc.message
            ) from None
        os.close(opened.parent_fd)
        self.fd = opened.fd
        self._private(opened.st, self.root)
        self.runs_fd = self._subfolder("runs", create)
        return self

    def _private(self, st: os.stat_result, path: str) -> None:
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise Refused(
                "InsufficientPermission",
                "the state folder %s must not be writable by other users, because the watchdog "
                "acts on what it finds there; fix it with: %s && chmod 700 %s"
                % (path, _owner_hint(path), path),
            )

    def _subfolder(self, name: str, create: bool) -> int:
        path = os.path.join(self.root, name)
        flags = O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC
        try:
            try:  # open first: even a mkdir that finds the folder waits on a frozen filesystem
                fd = os.open(name, flags, dir_fd=self.fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o700, dir_fd=self.fd)
                fd = os.open(name, flags, dir_fd=self.fd)
        except OSError as exc:
            raise Refused(
                "InsufficientPermission" if exc.errno != errno.ENOENT else "StateMissing",
                "the state folder %s cannot be used (%s); remove it or fix its owner"
                % (path, exc.strerror),
            ) from None
        st = os.fstat(fd)
        if not _trusted_owner(st.st_uid):
            os.close(fd)
            raise Refused(
                "InsufficientPermission",
                "the state folder %s is owned by uid %d; fix it with: %s"
                % (path, st.st_uid, _owner_hint(path)),
            )
        self._private(st, path)
        return fd

    def open(self, name: str, flags: int, mode: int = 0o600) -> int:
        return os.open(name, flags | O_NOFOLLOW | O_CLOEXEC, mode, dir_fd=self.runs_fd)

    def load(self, key: str) -> Optional[JSON]:
        try:
            fd = self.open(key + ".json", os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or not _trusted_owner(st.st_uid):
                raise ValueError("the state file for %s is not a regular file of ours" % key)
            data = json.loads(_read_fd(fd, MAX_CONFIG_BYTES).decode("utf-8"))
        finally:
            os.close(fd)
        if not isinstance(data, dict):
            raise ValueError("the state file for %s is not a JSON object" % key)
        return data

    def save(self, key: str, state: JSON) -> None:
        fd, tmp = private_file(self.runs_fd, "." + key + ".", ".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(state, handle, indent=2, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, key + ".json", src_dir_fd=self.runs_fd, dst_dir_fd=self.runs_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self.runs_fd)
            raise

    @contextlib.contextmanager
    def locked(
        self, key: str, timeout: Optional[float] = None, lock: str = ".lock"
    ) -> Iterator[bool]:
        """Holds one of the key's flocks: `.lock` guards short read-modify-write updates of the
        state, `.thaw` is held for a whole thaw (so the post hook runs once, whoever runs it).
        With `timeout`, yields False (unlocked) when it was not had in time, so a thaw never
        waits forever on a holder stuck on a frozen filesystem."""
        try:  # read-only: opening for writing waits while the filesystem is frozen
            fd = self.open(key + lock, os.O_RDONLY)
        except FileNotFoundError:
            fd = self.open(key + lock, os.O_RDONLY | os.O_CREAT)
        try:
            if timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield True
                return
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.02)
            yield True
        finally:
            os.close(fd)  # releases the lock


def private_file(dir_fd: int, prefix: str, suffix: str) -> Tuple[int, str]:
    """Creates a new file only we can read (mode 0600) with an unpredictable name."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC
    while True:
        name = prefix + os.urandom(8).hex() + suffix
        try:
            return os.open(name, flags, 0o600, dir_fd=dir_fd), name
        except FileExistsError:
            continue


def bounded(action: Callable[[], None], seconds: float) -> Optional[str]:
    """Runs `action` in a thread for at most `seconds`; None when it finished, else why not.

    For writes on the thaw path: a full disk fails them and a frozen filesystem blocks them,
    and neither may keep a machine frozen."""
    problem: List[str] = []

    def target() -> None:
        try:
            action()
        except BaseException as exc:  # reported, never raised
            problem.append("%s: %s" % (type(exc).__name__, exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    PENDING.append(thread)
    thread.join(seconds)
    if thread.is_alive():
        return "did not finish within %gs (is the state folder on a frozen filesystem?)" % seconds
    return problem[0] if problem else None


def update(
    states: StateDir, key: str, change: Callable[[JSON], None], seconds: float, fresh: JSON
) -> Optional[str]:
    """Applies `change` to the key's current state under its lock and saves it, for at most
    `seconds` (None when done, else why not). A write that is held up (a frozen filesystem)
    still applies `change` to the state as it is *then*, so it never overwrites what others
    recorded meanwhile."""

    def apply() -> None:
        with states.locked(key):
            try:
                state = states.load(key) or dict(fresh)
            except ValueError:
                state = dict(fresh)  # damaged: start over rather than fail the thaw's record
            change(state)
            states.save(key, state)

    return bounded(apply, seconds)


PENDING: List[threading.Thread] = []


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


def _start(checked: Checked, out_fd: int, env: Dict[str, str]) -> subprocess.Popen[bytes]:
    """Executes the checked descriptor (not the path again), in the checked folder."""
    return subprocess.Popen(
        checked.argv,
        executable="/proc/self/fd/%d" % checked.exec_fd,
        stdin=subprocess.DEVNULL,
        stdout=out_fd,
        stderr=subprocess.STDOUT,
        cwd="/proc/self/fd/%d" % checked.cwd_fd,
        env=env,
        start_new_session=True,
        close_fds=True,
        pass_fds=tuple(checked.fds),
    )


def output_file() -> int:
    """Where a hook's output goes: memory, so that writing it never waits on a filesystem that
    a hook froze or filled."""
    return os.memfd_create("quiesce-hook-output", getattr(os, "MFD_CLOEXEC", 1))


def redact(text: str, secrets: Dict[str, str]) -> str:
    """Replaces every line that contains a secret value by `[redacted: NAME]`."""
    values = [(name, value) for name, value in secrets.items() if value.strip()]
    if not values:
        return text
    lines = text.split("\n")
    for index, line in enumerate(lines):
        for name, value in values:
            if value in line or value.strip() in line:
                lines[index] = "[redacted: %s]" % name
                break
    return "\n".join(lines)


def _tail(fd: int, secrets: Dict[str, str]) -> str:
    size = os.fstat(fd).st_size
    longest = max((len(v.encode("utf-8")) for v in secrets.values()), default=0)
    start = max(0, size - OUTPUT_TAIL_BYTES - longest - 1)
    data = os.pread(fd, size - start, start).decode("utf-8", "replace")
    if start > 0 and secrets:
        data = data.split("\n", 1)[1] if "\n" in data else ""  # a cut first line may hide a secret
    data = redact(data, secrets)
    return data[-OUTPUT_TAIL_BYTES:]


def hook_env(
    checked: Checked, run_id: str, phase: str, member: str, restore_path: Optional[str]
) -> Dict[str, str]:
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8"}
    env.update(checked.hook.entry.get("env") or {})
    env.update(checked.secrets)
    env.update(
        {
            "QUIESCE_RUN_ID": run_id,
            "QUIESCE_PHASE": phase,
            "QUIESCE_MEMBER": member,
            "QUIESCE_HOOK": checked.hook.name,
            "QUIESCE_HOOK_PATH": checked.hook.script,
        }
    )
    if restore_path is not None:
        env["QUIESCE_RESTORE_PATH"] = restore_path
    if HOOK_STATE_DIR:
        env["QUIESCE_STATE_DIR"] = HOOK_STATE_DIR[0]
    return env


#: The runner's state folder, told to hooks (QUIESCE_STATE_DIR) so that a hook that freezes
#: filesystems can refuse to freeze the one the runner keeps its state on. Set once per process.
HOOK_STATE_DIR: List[str] = []


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
    """A pre attempt starts only before the deadline and while no thaw has happened, under the
    key's lock, and its process group is recorded so that a post or the watchdog can stop it."""

    def __init__(self, states: StateDir, key: str, deadline: float) -> None:
        self.states = states
        self.key = key
        self.deadline = deadline

    def spawn(
        self, attempt: int, start: Callable[[], subprocess.Popen[bytes]]
    ) -> Optional[subprocess.Popen[bytes]]:
        with self.states.locked(self.key, WATCHDOG_LOCK_SECONDS) as held:
            if not held or time.time() >= self.deadline:
                return None
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
            # The hook already runs: failing to record its group must not crash the runner.
            bounded(lambda: self.states.save(self.key, state), 1.0)
            return proc

    def finished(self, proc: subprocess.Popen[bytes]) -> bool:
        with self.states.locked(self.key, WATCHDOG_LOCK_SECONDS) as held:
            state: JSON = {}
            with contextlib.suppress(ValueError, OSError):
                state = self.states.load(self.key) or {}
            pre = state.get("pre")
            if held and pre:
                pre.update({"pid": None, "pgid": None, "pgid_starttime": None})
                bounded(lambda: self.states.save(self.key, state), 1.0)
            reap(proc)  # only now may the pid (= the group id) be reused
            return thaw_happened(state) or time.time() >= self.deadline


def run_hook(
    checked: Checked,
    run_id: str,
    member: str,
    phase: str,
    gate: Gate,
    by: str = "orchestrator",
    restore_path: Optional[str] = None,
) -> JSON:
    """Runs the hook, retrying a failed or timed-out attempt up to `retries` times."""
    hook = checked.hook
    env = hook_env(checked, run_id, phase, member, restore_path)
    argv_extra = [] if restore_path is None else [restore_path]
    total = hook.retries + 1
    first_start: Optional[float] = None
    last: Optional[JSON] = None
    shown = "%s (%s)" % (hook.name, hook.script)
    base_argv = checked.argv
    checked.argv = base_argv + argv_extra
    try:
        for attempt in range(1, total + 1):
            out_fd = output_file()
            try:
                started = time.time()
                try:
                    proc = gate.spawn(attempt, functools.partial(_start, checked, out_fd, env))
                except OSError as exc:
                    ended = time.time()
                    first_start = started if first_start is None else first_start
                    last = make_result(
                        "failed",
                        "ExecutionFailed",
                        "the hook %s could not be started (%s); check its #! line and that its "
                        "interpreter exists" % (shown, exc.strerror or exc),
                        attempts=attempt,
                        started=first_start,
                        ended=ended,
                        by=by,
                    )
                    continue
                if proc is None:
                    message = (
                        "the thaw for this run and member already happened (or its deadline "
                        "passed), so attempt %d of the pre hook was not started (nothing is "
                        "frozen after a thaw)" % attempt
                    )
                    if last is not None:
                        return dict(last, status="refused", code="AlreadyThawed", message=message)
                    return make_result(
                        "refused", "AlreadyThawed", message, attempts=attempt - 1, by=by
                    )
                first_start = started if first_start is None else first_start
                timed_out = not wait_exit(proc.pid, hook.timeout_seconds)
                if timed_out:
                    stop_group(proc.pid)
                    wait_exit(proc.pid, KILL_WAIT_SECONDS)
                overtaken = gate.finished(proc)
                ended = time.time()
                code = proc.returncode
                output = _tail(out_fd, checked.secrets)
            finally:
                os.close(out_fd)
            tries = "attempt %d of %d" % (attempt, total)
            common = dict(
                exit_code=code,
                attempts=attempt,
                started=first_start,
                ended=ended,
                output=output,
                by=by,
            )
            if overtaken:
                return make_result(
                    "failed",
                    "AlreadyThawed",
                    "the thaw for this run and member happened while the pre hook ran (%s), so "
                    "its process group was stopped and the member is not quiesced; it %s"
                    % (tries, _describe_exit(code)),
                    **common,  # type: ignore[arg-type]
                )
            if timed_out:
                last = make_result(
                    "timed_out",
                    "Timeout",
                    "the hook %s did not finish within %gs (%s); its whole process group was "
                    "stopped (SIGTERM, then SIGKILL after %gs). Make it faster or raise "
                    "timeout_seconds" % (shown, hook.timeout_seconds, tries, TERM_GRACE_SECONDS),
                    **common,  # type: ignore[arg-type]
                )
            elif code == 0:
                return make_result(
                    "succeeded",
                    "Succeeded",
                    "the hook %s exited 0 (%s)" % (shown, tries),
                    **common,  # type: ignore[arg-type]
                )
            else:
                last = make_result(
                    "failed",
                    "ExecutionFailed",
                    "the hook %s %s (%s)%s"
                    % (shown, _describe_exit(code), tries, _output_hint(output)),
                    **common,  # type: ignore[arg-type]
                )
        assert last is not None
        return last
    finally:
        checked.argv = base_argv


def _output_hint(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return "; its output ends with: %s" % lines[-1][-300:] if lines else "; it printed nothing"


# --------------------------------------------------------------------------------------------
# Watchdog


def _runner_file() -> str:
    path = os.path.abspath(__file__)
    if not os.path.isfile(path):
        raise OSError(errno.ENOENT, "the runner must be run from a file to arm its watchdog")
    return path


_DETACHED: List[subprocess.Popen[bytes]] = []  # keeps detached watchdogs' handles quiet


def spawn_watchdog(states: StateDir, key: str, handoff: JSON, fds: Sequence[int]) -> int:
    """Starts the watchdog detached (own session) and hands it, through a pipe, everything it
    needs to thaw: the checked thaw hook with its open descriptors, the deadline and the state
    folder's descriptor. It never re-reads a hook or a path. Waits until it reports armed."""
    read_fd, write_fd = os.pipe()
    log_fd = -1
    with contextlib.suppress(OSError):
        log_fd = states.open(key + ".watchdog.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    if log_fd < 0:
        log_fd = os.open(os.devnull, os.O_WRONLY | O_CLOEXEC)
    try:
        argv = [sys.executable or "python3", "-I", _runner_file(), "watchdog"]
        argv += ["--key", key, "--ready-fd", str(write_fd)]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=log_fd,
            stderr=log_fd,
            cwd="/",
            env={"PATH": SAFE_PATH, "LANG": "C.UTF-8"},
            start_new_session=True,
            close_fds=True,
            pass_fds=tuple([write_fd, *fds]),
        )
    finally:
        os.close(log_fd)
        os.close(write_fd)
    try:
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.write(json.dumps(handoff).encode("utf-8"))
            proc.stdin.close()
        ready, _, _ = select.select([read_fd], [], [], WATCHDOG_READY_SECONDS)
        answer = os.read(read_fd, 16) if ready else b""
    finally:
        os.close(read_fd)
    _DETACHED.append(proc)
    if answer != b"armed":
        with contextlib.suppress(OSError):
            proc.kill()
        raise OSError(
            errno.EIO, "the watchdog did not report armed; see its log in the state folder"
        )
    return proc.pid


class _Log:
    """The watchdog's log lines, written by a thread: a log on a frozen filesystem must not
    keep the watchdog from thawing."""

    def __init__(self) -> None:
        self.lines: List[str] = []
        self.ready = threading.Condition()
        threading.Thread(target=self._write, daemon=True).start()

    def __call__(self, text: str) -> None:
        with self.ready:
            self.lines.append("%s %s\n" % (iso(time.time()), text))
            self.ready.notify()

    def _write(self) -> None:
        while True:
            with self.ready:
                while not self.lines:
                    self.ready.wait()
                line = self.lines.pop(0)
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(line)
                sys.stderr.flush()

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.lines and time.monotonic() < deadline:
            time.sleep(0.01)


def _log(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write("%s %s\n" % (iso(time.time()), text))
        sys.stderr.flush()


def _watchdog_pid_is(pid: int, key: str) -> bool:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            args = handle.read().split(b"\0")
    except OSError:
        return False
    return b"watchdog" in args and key.encode() in args


def stop_watchdog(state: JSON, by: str) -> None:
    """Tells the key's watchdog that the post ran (SIGUSR1), after making sure the pid still is
    that watchdog. SIGTERM would make it thaw at once."""
    pid = state.get("watchdog_pid")
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return
    if state.get("watchdog_stopped_at"):
        return
    if _watchdog_pid_is(pid, state["key"]):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGUSR1)
            state["watchdog_stopped_at"] = iso(time.time())
            add_event(state, by, "stopped the watchdog (pid %d)" % pid)


def watchdog_missing(state: Optional[JSON]) -> Optional[str]:
    """A warning when the run's watchdog died before its post came."""
    if not state or not state.get("watchdog_pid") or state.get("watchdog_stopped_at"):
        return None
    pid = int(state["watchdog_pid"])
    if _watchdog_pid_is(pid, str(state.get("key"))):
        return None
    return (
        "warning: the watchdog (pid %d) was no longer running before the post, so nothing "
        "would have thawed this member had the post not come" % pid
    )


def stop_running_pre(state: JSON, by: str) -> Callable[[JSON], None]:
    """Stops a pre hook that is still running, whole process group, before any thaw; returns
    the change that records it."""
    pre = state.get("pre")
    if not pre or pre.get("result") is not None or not pre.get("pgid"):
        return lambda _state: None
    pgid = int(pre["pgid"])
    if not group_is_ours(pgid, pre.get("pgid_starttime"), state["run_id"], state["member"]):
        what = "process group %d is no longer the pre hook's; left alone" % pgid
        return lambda st: add_event(st, by, what)
    stop_group(pgid)
    stopped_at = iso(time.time())

    def change(st: JSON) -> None:
        if st.get("pre"):
            st["pre"].update({"stopped_at": stopped_at, "stopped_by": by})
        add_event(st, by, "stopped the still-running pre hook (process group %d)" % pgid)

    return change


def thaw_once(
    states: StateDir,
    key: str,
    run_id: str,
    member: str,
    checked_hook: Callable[[], Checked],
    by: str,
    wait: float,
    reason: str = "post",
) -> Tuple[JSON, bool, List[str]]:
    """Runs the thaw (post) hook unless a post or the watchdog already did: the one way both
    thaw. Returns the result, whether it was an earlier one, and warnings.

    The thaw is held back by nothing it does not need: it waits for another thaw of the same
    key (the `.thaw` lock) at most `wait` seconds, and every state write is bounded, because
    the state folder may be full or on a filesystem that the pre hook froze."""
    warnings: List[str] = []
    fresh = new_state(run_id, member)
    with states.locked(key, wait, ".thaw") as held:
        state, damaged = _load_quietly(states, key)
        if state is not None and state.get("post") is not None:
            return dict(state["post"]["result"]), True, warnings
        if not held:
            warnings.append("another thaw held the thaw lock for %gs; thawed anyway" % wait)
        if damaged:
            warnings.append("the state could not be read (%s)" % damaged)
        current = state or fresh
        if by == "orchestrator":
            missing = watchdog_missing(current)
            if missing:
                warnings.append(missing)

        def mark(st: JSON) -> None:
            if not st.get("thaw_requested_at"):
                st["thaw_requested_at"] = iso(time.time())
                st["thaw_requested_by"] = by
            add_event(st, by, "thawing: " + reason)

        problem = update(states, key, mark, 1.0, fresh)  # from now on no pre attempt starts
        if problem:
            warnings.append("the thaw could not be recorded before it ran (%s)" % problem)
        stopped = stop_running_pre(current, by)
        update(states, key, stopped, 1.0, fresh)
        try:
            checked = checked_hook()
        except Refused as exc:
            result = make_result("refused", exc.code, exc.message, by=by)
            code = exc.code

            def refuse(st: JSON) -> None:
                st["post_refused"] = result
                add_event(st, by, "thaw hook refused (the watchdog stays armed): " + code)

            update(states, key, refuse, RECORD_WAIT_SECONDS, fresh)
            return result, False, warnings
        try:
            result = run_hook(checked, run_id, member, "post", Gate(), by)
        finally:
            checked.close()

        signalled = dict(current, events=[])
        if by == "orchestrator":
            stop_watchdog(signalled, by)  # at once: the record below may be held up

        def record(st: JSON) -> None:
            st["post"] = {"result": result, "by": by, "at": iso(time.time())}
            add_event(st, by, "ran the thaw hook: " + result["status"])
            if signalled.get("watchdog_stopped_at"):
                st["watchdog_stopped_at"] = signalled["watchdog_stopped_at"]
                st.setdefault("events", []).extend(signalled["events"])

        problem = update(states, key, record, RECORD_WAIT_SECONDS, fresh)
        if problem:
            warnings.append("the thaw ran but could not be recorded (%s)" % problem)
    return result, False, warnings


def _load_quietly(states: StateDir, key: str) -> Tuple[Optional[JSON], Optional[str]]:
    try:
        return states.load(key), None
    except (OSError, ValueError) as exc:
        return None, str(exc)


def watchdog(key: str, ready_fd: Optional[int], handoff: JSON) -> int:
    """Sleeps until the deadline, a SIGTERM (thaw now) or a SIGUSR1 (the post ran), re-reading
    the state about once a second; then thaws unless a post already did."""
    log = _Log()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    os.set_blocking(wake_read, False)
    signal.set_wakeup_fd(wake_write)
    received: List[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP):
        signal.signal(signum, lambda num, _frame: received.append(num))
    states = StateDir.from_fd(str(handoff["state_dir"]), int(handoff["state_fd"]))
    HOOK_STATE_DIR[:] = [states.root]
    thaw = Checked.from_handoff(handoff["thaw"])
    deadline = float(handoff["deadline"])
    run_id, member = str(handoff["run_id"]), str(handoff["member"])
    if ready_fd is not None:
        with contextlib.suppress(OSError):
            os.write(ready_fd, b"armed")
            os.close(ready_fd)
    log("watchdog %s: armed, thaws at %s" % (key, iso(deadline)))
    why = "deadline reached without a post"
    while True:
        if signal.SIGUSR1 in received:
            log("watchdog %s: the post ran, exiting" % key)
            log.drain(1.0)
            return 0
        if signal.SIGTERM in received or signal.SIGINT in received:
            why = "asked to stop (SIGTERM) before a post came"
            break
        state, _ = _load_quietly(states, key)
        if state is not None and state.get("post") is not None:
            log("watchdog %s: the post already ran, exiting" % key)
            log.drain(1.0)
            return 0
        remaining = deadline - time.time()
        if remaining <= 0:
            break
        with contextlib.suppress(OSError, ValueError):
            select.select([wake_read], [], [], min(remaining, WATCHDOG_POLL_SECONDS))
            with contextlib.suppress(OSError):
                os.read(wake_read, 64)
    log("watchdog %s: %s: thawing" % (key, why))
    result, earlier, warnings = thaw_once(
        states,
        key,
        run_id,
        member,
        lambda: thaw,
        "watchdog",
        thaw.hook.budget_seconds + LOCK_SLACK_SECONDS,
        why,
    )
    for warning in warnings:
        log("watchdog %s: %s" % (key, warning))
    if earlier:
        log("watchdog %s: the post already ran, exiting" % key)
    else:
        log("watchdog %s: thawed: %s %s" % (key, result["status"], result["message"]))
    log.drain(2.0)
    return 0


# --------------------------------------------------------------------------------------------
# Phases


def phase_check(req: Request, config: Config) -> JSON:
    hook = config.hook(req.hook, "check")
    vet(hook).close()
    message = "%s (%s) passed every security check (not run: check only)" % (hook.name, hook.script)
    result = make_result("succeeded", "Allowed", message)
    result["declared"] = entry_digest(hook.entry)
    thaw_name = hook.entry.get("thaw")
    if thaw_name:
        thaw = config.hook(thaw_name, "post")
        vet_thaw(thaw).close()
        result["message"] += "; so did the thaw hook %s" % thaw.name
        result["thaw_declared"] = entry_digest(thaw.entry)
    return result


def phase_verify(req: Request, config: Config) -> JSON:
    checked = vet(config.hook(req.hook, "verify"))
    try:
        return run_hook(
            checked, req.run_id, req.member, "verify", Gate(), restore_path=req.restore_path
        )
    finally:
        checked.close()


def phase_pre(req: Request, config: Config) -> JSON:
    hook = config.hook(req.hook, "pre")
    checked = vet(hook)
    try:
        thaw = vet_thaw(config.hook(str(hook.entry["thaw"]), "post"))
    except BaseException:
        checked.close()
        raise
    try:
        return _pre(req, config, checked, thaw)
    finally:
        checked.close()
        thaw.close()


def _pre(req: Request, config: Config, checked: Checked, thaw: Checked) -> JSON:
    max_freeze = float(checked.hook.entry["max_freeze_seconds"])
    states = StateDir(config.state_dir).prepare()
    key = req.key
    with states.locked(key):
        try:
            state = states.load(key)
        except ValueError as exc:
            return refused(
                "StateDamaged",
                "the state of run %s, member %s cannot be read (%s), so the pre was not run; "
                "start a new run" % (req.run_id, req.member, exc),
            )
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
        deadline = now + max_freeze
        state.update(
            {
                "hook": checked.hook.name,
                "thaw": thaw.hook.name,
                "max_freeze_seconds": max_freeze,
                "deadline": deadline,
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
        add_event(state, "orchestrator", "pre accepted; the watchdog thaws at %s" % iso(deadline))
        states.save(key, state)
        os.close(states.open(key + ".thaw", os.O_RDONLY | os.O_CREAT))  # before any freeze
    handoff = {
        "state_dir": states.root,
        "state_fd": states.fd,
        "deadline": deadline,
        "run_id": req.run_id,
        "member": req.member,
        "thaw": thaw.handoff(),
    }
    try:
        watchdog_pid = spawn_watchdog(states, key, handoff, [states.fd, *thaw.fds])
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
    result = run_hook(checked, req.run_id, req.member, "pre", PreGate(states, key, deadline))

    def record() -> None:
        with states.locked(key, RECORD_WAIT_SECONDS) as held:
            if not held:
                raise LockTimeout("the state lock was not free")
            state = states.load(key) or new_state(req.run_id, req.member)
            if state.get("pre") is not None:
                state["pre"]["result"] = result
            add_event(state, "orchestrator", "pre hook: " + result["status"])
            states.save(key, state)

    problem = bounded(record, RECORD_WAIT_SECONDS)
    if problem:
        result["message"] += (
            "; warning: the result could not be recorded in the state folder %s (%s)"
            % (states.root, problem)
        )
    return result


class _DeferTerm:
    """Holds SIGTERM and SIGINT back while a thaw runs, so stopping the service (or the whole
    process group) lets the thaw finish instead of leaving the machine frozen."""

    def __init__(self) -> None:
        self.received: List[int] = []
        self.previous: Dict[int, Any] = {}

    def __enter__(self) -> "_DeferTerm":
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(ValueError, OSError):
                self.previous[signum] = signal.signal(
                    signum, lambda num, _frame: self.received.append(num)
                )
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, handler)


def phase_post(req: Request, config: Config) -> JSON:
    hook = config.hook(req.hook, "post")
    with _DeferTerm() as deferred:
        result = _post(req, config, hook)
    if deferred.received:
        result["message"] += "; a stop signal arrived during the post and was held until it ended"
    return result


def _post(req: Request, config: Config, hook: Hook) -> JSON:
    states = StateDir(config.state_dir).prepare()
    result, earlier, warnings = thaw_once(
        states,
        req.key,
        req.run_id,
        req.member,
        lambda: vet(hook),
        "orchestrator",
        hook.budget_seconds + LOCK_SLACK_SECONDS,
    )
    if earlier:
        return result
    if warnings:
        result = dict(result, message=result["message"] + "; " + "; ".join(warnings))
    return result


PHASE_HANDLERS: Dict[str, Callable[[Request, Config], JSON]] = {
    "check": phase_check,
    "verify": phase_verify,
    "pre": phase_pre,
    "post": phase_post,
}


def execute(req: Request, config_path: str) -> JSON:
    if req.expires_at is not None and time.time() > req.expires_at:
        return refused(
            "Stale",
            "the request expired at %s and arrived at %s, so it was not acted on; check this "
            "machine's clock (NTP) and the delivery delay"
            % (iso(req.expires_at), iso(time.time())),
        )
    try:
        config = load_config(config_path)
        HOOK_STATE_DIR[:] = [config.state_dir]
        return PHASE_HANDLERS[req.phase](req, config)
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


def request_from_flags(args: argparse.Namespace) -> str:
    """The JSON request `run` would get, built from `run-args` flags (then parsed as usual)."""
    request: JSON = {
        "version": REQUEST_VERSION,
        "run_id": args.run_id,
        "member": args.member,
        "phase": args.phase,
        "hook": args.hook,
        "expires_at": _flag_number(args.expires_at, "--expires-at"),
    }
    if args.restore_path:
        request["restore_path"] = args.restore_path
    return json.dumps(request)


def fit_result(result: JSON, max_chars: Optional[int]) -> JSON:
    """Shortens `output` (keeping its end), then `message` (keeping its start), as little as
    needed for the JSON result to fit in `max_chars` characters, so a channel that keeps only
    the first N characters of stdout (SSM: 2,500 in ListCommandInvocations) still gets a whole,
    parseable result."""
    if not max_chars:
        return result
    fitted = dict(result)

    def size() -> int:
        return len(json.dumps(fitted, sort_keys=True))

    for name, keep_end in (("output", True), ("message", False)):
        text = fitted.get(name) or ""
        if not text or size() <= max_chars:
            continue
        low, high = 0, len(text)  # the most characters of `text` that still fit
        while low < high:
            keep = (low + high + 1) // 2
            part = text[len(text) - keep :] if keep_end else text[:keep]
            fitted[name] = ("[...]" + part) if keep_end else (part + "[...]")
            if size() <= max_chars:
                low = keep
            else:
                high = keep - 1
        part = text[len(text) - low :] if keep_end else text[:low]
        fitted[name] = (("[...]" + part) if keep_end else (part + "[...]")) if low else ""
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


def _read_request(args: argparse.Namespace) -> str:
    if args.request is not None:
        return str(args.request)
    if args.request_file is not None:
        try:
            with open(args.request_file, encoding="utf-8") as handle:
                return handle.read(MAX_REQUEST_BYTES + 1)
        except (OSError, UnicodeDecodeError) as exc:
            raise BadRequest("--request-file", "cannot be read (%s)" % exc) from None
    if sys.stdin is None:
        raise BadRequest("request", "is missing: pass --request, --request-file or stdin")
    return sys.stdin.read(MAX_REQUEST_BYTES + 1)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="quiesce_guest.py", description="Quiesce guest hook runner")
    commands = parser.add_subparsers(dest="command")
    config_help = "the machine's hook allowlist (default %s)" % DEFAULT_CONFIG
    run = commands.add_parser("run", help="run one hook request; prints one JSON result")
    run.add_argument("--config", default=DEFAULT_CONFIG, help=config_help)
    source = run.add_mutually_exclusive_group()
    source.add_argument("--request-file", help="read the JSON request from this file")
    source.add_argument("--request", help="the JSON request itself (default: read stdin)")
    typed = commands.add_parser(
        "run-args", help="run one declared hook given as typed flags; prints one JSON result"
    )
    typed.add_argument("--config", default=DEFAULT_CONFIG, help=config_help)
    typed.add_argument("--phase", required=True, help="pre, post, verify or check")
    typed.add_argument("--run-id", required=True)
    typed.add_argument("--member", required=True)
    typed.add_argument("--hook", required=True, help="the declared hook's name")
    typed.add_argument("--expires-at", help="epoch seconds after which the request is stale")
    typed.add_argument("--restore-path", help="verify: the restored copy's folder")
    typed.add_argument(
        "--max-result-chars", type=int, default=None, help="shorten the result to fit"
    )
    status = commands.add_parser("status", help="print a run's state JSON (null when none)")
    status.add_argument("--state-dir", required=True)
    status.add_argument("--key", required=True)
    dog = commands.add_parser("watchdog", help="internal: thaw at the deadline unless a post came")
    dog.add_argument("--key", required=True)
    dog.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def _status(args: argparse.Namespace) -> int:
    if not KEY_RE.fullmatch(args.key or ""):
        raise BadRequest("--key", "must look like <run_id>--<member> (got %r)" % (args.key,))
    if not os.path.isabs(args.state_dir or ""):
        raise BadRequest("--state-dir", "must be an absolute path")
    try:
        states = StateDir(os.path.normpath(args.state_dir)).prepare(create=False)
        emit(states.load(args.key))
    except Refused as exc:
        if exc.code == "StateMissing":
            emit(None)
            return 0
        emit(refused(exc.code, exc.message))
        return 1
    except (OSError, ValueError) as exc:
        emit(refused("StateDamaged", "the state cannot be read: %s" % exc))
        return 1
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        emit(refused("BadRequest", "bad command line: %s" % exc))
        return 2
    if args.command is None:
        emit(refused("BadRequest", "bad command line: give a command: run, run-args or status"))
        return 2
    limit = getattr(args, "max_result_chars", None)
    try:
        if args.command == "watchdog":
            handoff = json.loads(sys.stdin.read())
            return watchdog(args.key, args.ready_fd, handoff)
        if args.command == "status":
            return _status(args)
        if args.command == "run":
            req = parse_request(_read_request(args))
        else:
            req = parse_request(request_from_flags(args))
    except BadRequest as exc:
        emit(fit_result(refused("BadRequest", str(exc)), limit))
        return 2
    try:
        result = execute(req, os.path.abspath(args.config))
    except Exception as exc:
        result = make_result(
            "failed",
            "ExecutionFailed",
            "the hook runner itself failed (%s: %s)" % (type(exc).__name__, exc),
        )
        emit(fit_result(result, limit))
        return 1
    emit(fit_result(result, limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
