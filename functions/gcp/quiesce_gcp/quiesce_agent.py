#!/usr/bin/env python3
# ruff: noqa: UP006, UP022, UP031, UP035, UP045
# (It must run on Python 3.8 guests: keep its syntax old-fashioned.)
"""Quiesce's guest agent for Compute Engine: runs declared hooks the orchestrator asks for
through the instance metadata, and answers through guest attributes. Commands and answers are
signed with this VM's own key.

One file, Python 3.8 or newer, standard library only; it runs as a systemd service (as root)
next to the guest hook runner (quiesce_guest.py). Its configuration IS the machine's hook
allowlist (/etc/quiesce/hooks.json, docs/guest-protocol.md); the agent's own settings sit under
its top-level "agent" object, which the runner ignores:

    "agent": {"runner": "/usr/local/lib/quiesce/quiesce_guest.py",
              "signing_key_file": "/etc/quiesce/agent.key"}

The loop:

1. long-polls the metadata server for the instance attribute `quiesce-command`;
2. the value is {"v": 2, "command": "<canonical JSON>", "sig": "<hex>"}; before anything else
   the agent checks `sig` = HMAC-SHA256(this VM's key, "quiesce-command/v2\\n" + command) in
   constant time. An unsigned or mis-signed command is logged and dropped: nothing runs and
   nothing is answered, so whoever can write metadata cannot freeze the VM on demand;
3. the command {"phase", "run_id", "member", "hook", "nonce", "expires_at", "instance"} must
   name this instance (projects/P/zones/Z/instances/NAME, read from the metadata server) and a
   nonce not seen before (replays are dropped; seen nonces are kept in the state folder until
   their commands expire); past `expires_at` it is answered refused/Stale;
4. it runs `quiesce_guest.py run --config <this file>` with a version 2 request naming the hook
   (the runner finds the argv, env and timeouts in the same allowlist), each command in its own
   thread (a `post` must be able to arrive while a `pre` still runs);
5. it writes {"nonce", "result": "<the runner's result, canonical JSON>", "sig"} as the guest
   attribute `quiesce/<run_id>-<member>-<phase>`, with `sig` = HMAC-SHA256(key,
   "quiesce-answer/v2\\n" + nonce + "\\n" + key name + "\\n" + result). Any process on the VM can
   write guest attributes; the orchestrator refuses an answer whose signature does not verify.

Files are opened race-free: every folder on the way is opened with O_NOFOLLOW and checked
(owned by root or this user, not writable by others unless a root-owned sticky folder), the
file itself is opened with O_NOFOLLOW and checked on the opened descriptor; the key file must
be readable by its owner only. The state folder is opened once and used by descriptor; the
seen-nonce file is written to a fresh random name with O_EXCL|O_NOFOLLOW, then renamed.

The runner's watchdog still thaws a machine whose `post` never comes.

    python3 quiesce_agent.py [--config /etc/quiesce/hooks.json]
                             [--metadata-url http://metadata.google.internal/computeMetadata/v1]
"""

from __future__ import annotations

import argparse
import binascii
import contextlib
import errno
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, List, Optional, Tuple

log = logging.getLogger("quiesce-agent")

PROTOCOL_VERSION = 2
REQUEST_VERSION = 2
METADATA_KEY = "quiesce-command"
GUEST_NAMESPACE = "quiesce"
COMMAND_CONTEXT = b"quiesce-command/v2\n"
ANSWER_CONTEXT = b"quiesce-answer/v2\n"
DEFAULT_METADATA_URL = "http://metadata.google.internal/computeMetadata/v1"
DEFAULT_CONFIG = "/etc/quiesce/hooks.json"
DEFAULT_RUNNER = "/usr/local/lib/quiesce/quiesce_guest.py"
DEFAULT_KEY_FILE = "/etc/quiesce/agent.key"
DEFAULT_STATE_DIR = "/var/lib/quiesce"
SEEN_FILE = "agent-seen.json"
PHASES = ("pre", "post", "verify", "check")
COMMAND_FIELDS = ("expires_at", "hook", "instance", "member", "nonce", "phase", "run_id")
#: The metadata server's long-poll bound, and the pause after an error.
POLL_TIMEOUT_SECONDS = 60
ERROR_PAUSE_SECONDS = 1.0
#: Seen nonces are kept this long past their command's expiry.
SEEN_GRACE_SECONDS = 300.0
#: The answer's `output` is cut to this many characters (a guest attribute is small).
MAX_OUTPUT_CHARS = 2048
MAX_COMMAND_BYTES = 4096
MAX_FILE_BYTES = 1024 * 1024
#: A hook's budget when the allowlist does not say (the runner enforces the real one).
DEFAULT_BUDGET_SECONDS = 30.0

RUN_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
MEMBER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
HOOK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
NONCE = re.compile(r"^[0-9a-f]{32,64}$")
SIG = re.compile(r"^[0-9a-f]{64}$")
INSTANCE = re.compile(
    r"^projects/[a-z0-9.:-]{1,80}/zones/[a-z0-9-]{1,63}/instances/[a-z0-9-]{1,63}$"
)
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")

O_PATH = getattr(os, "O_PATH", 0)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def result_key(run_id: str, member: str, phase: str) -> str:
    return _KEY_UNSAFE.sub("_", "%s-%s-%s" % (run_id, member, phase))[:128]


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def command_signature(key: bytes, command: str) -> str:
    return hmac.new(key, COMMAND_CONTEXT + command.encode("utf-8"), hashlib.sha256).hexdigest()


def answer_signature(key: bytes, nonce: str, key_name: str, result: str) -> str:
    text = "%s\n%s\n%s" % (nonce, key_name, result)
    return hmac.new(key, ANSWER_CONTEXT + text.encode("utf-8"), hashlib.sha256).hexdigest()


class Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03d+00:00" % int(t % 1 * 1000)


def refusal(code: str, message: str) -> Dict[str, Any]:
    stamp = now_iso()
    return {
        "status": "refused",
        "code": code,
        "message": message,
        "exit_code": None,
        "attempts": 0,
        "started_at": stamp,
        "ended_at": stamp,
        "duration_ms": 0.0,
        "output": "",
        "by": "orchestrator",
    }


# ---------------------------------------------------------------------- files, opened safely


def _trusted(uid: int) -> bool:
    return uid in (0, os.geteuid())


def _folder_ok(st: os.stat_result, where: str) -> None:
    if not stat.S_ISDIR(st.st_mode):
        raise Refused("InsufficientPermission", "%s is not a folder" % where)
    if not _trusted(st.st_uid):
        raise Refused(
            "InsufficientPermission",
            "the folder %s is owned by uid %d, not by root: fix it with chown root %s"
            % (where, st.st_uid, where),
        )
    sticky_root = st.st_uid == 0 and st.st_mode & stat.S_ISVTX
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky_root:
        raise Refused(
            "InsufficientPermission",
            "the folder %s is group- or world-writable (mode %04o): fix it with chmod go-w %s"
            % (where, stat.S_IMODE(st.st_mode), where),
        )


def open_folder(path: str, create: bool = False) -> int:
    """Opens `path` one component at a time with O_NOFOLLOW (a symlink anywhere is refused),
    checking each folder on the descriptor it opened; returns the last one (O_PATH)."""
    if not os.path.isabs(path):
        raise Refused("InsufficientPermission", "%s is not an absolute path" % path)
    fd = os.open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)
    where = ""
    try:
        _folder_ok(os.fstat(fd), "/")
        for name in [p for p in path.split("/") if p not in ("", ".")]:
            if name == "..":
                raise Refused("InsufficientPermission", "%s contains '..'" % path)
            where += "/" + name
            try:
                nxt = os.open(name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(name, 0o700, dir_fd=fd)
                nxt = os.open(name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise Refused(
                        "InsufficientPermission",
                        "%s is a symlink or not a folder: refused on the way to %s" % (where, path),
                    ) from None
                raise
            os.close(fd)
            fd = nxt
            _folder_ok(os.fstat(fd), where)
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_private(path: str, what: str, secret: bool = False) -> bytes:
    """Reads a root-owned file: its folders checked (open_folder), the file opened with
    O_NOFOLLOW and checked on that descriptor (regular, owned by root or this user, not
    writable by others; with `secret`, readable by its owner only). No path is looked up twice,
    so nothing can be swapped between the check and the read."""
    folder, name = os.path.split(path)
    try:
        dir_fd = open_folder(folder)
    except FileNotFoundError:
        raise Refused("ConfigRefused", "%s %s does not exist" % (what, path)) from None
    try:
        try:
            fd = os.open(name, os.O_RDONLY | O_NOFOLLOW | O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
        except FileNotFoundError:
            raise Refused("ConfigRefused", "%s %s does not exist" % (what, path)) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Refused(
                    "InsufficientPermission", "%s %s is a symlink: refused" % (what, path)
                ) from None
            raise
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused("InsufficientPermission", "%s %s is not a regular file" % (what, path))
        if not _trusted(st.st_uid):
            raise Refused(
                "InsufficientPermission",
                "%s %s is owned by uid %d, not by root: fix it with chown root %s"
                % (what, path, st.st_uid, path),
            )
        mode = stat.S_IMODE(st.st_mode)
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise Refused(
                "InsufficientPermission",
                "%s %s is group- or world-writable (mode %04o): fix it with chmod go-w %s"
                % (what, path, mode, path),
            )
        if secret and mode & 0o077:
            raise Refused(
                "InsufficientPermission",
                "%s %s is readable by others (mode %04o): fix it with chmod 600 %s"
                % (what, path, mode, path),
            )
        data = os.read(fd, MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise Refused("ConfigRefused", "%s %s is too large" % (what, path))
        return data
    finally:
        os.close(fd)


def load_config(path: str) -> Dict[str, Any]:
    """The allowlist (docs/guest-protocol.md) as JSON; its "agent" object holds our settings."""
    try:
        config = json.loads(read_private(path, "the hook allowlist").decode("utf-8"))
    except ValueError as exc:
        raise Refused(
            "ConfigRefused", "the hook allowlist %s is not JSON: %s" % (path, exc)
        ) from None
    if not isinstance(config, dict) or not isinstance(config.get("hooks"), dict):
        raise Refused("ConfigRefused", 'the hook allowlist %s: expected {"hooks": {...}}' % path)
    agent = config.get("agent", {})
    if not isinstance(agent, dict):
        raise Refused("ConfigRefused", "the hook allowlist %s: agent must be an object" % path)
    for name in ("runner", "signing_key_file"):
        value = agent.get(name)
        if value is not None and not (isinstance(value, str) and os.path.isabs(value)):
            raise Refused("ConfigRefused", "%s: agent.%s must be an absolute path" % (path, name))
    return config


def settings(config: Dict[str, Any], path: str) -> Tuple[str, str, str]:
    """(runner, signing key file, state folder) of a loaded allowlist."""
    agent = config.get("agent") or {}
    state_dir = config.get("state_dir") or DEFAULT_STATE_DIR
    if not isinstance(state_dir, str):
        raise Refused("ConfigRefused", "%s: state_dir must be a path" % path)
    state_dir = os.path.normpath(os.path.join(os.path.dirname(path), state_dir))
    return (
        str(agent.get("runner") or DEFAULT_RUNNER),
        str(agent.get("signing_key_file") or DEFAULT_KEY_FILE),
        state_dir,
    )


def load_key(path: str) -> bytes:
    """This VM's signing key: 64 hexadecimal digits in a root-only file (mode 0600)."""
    text = read_private(path, "the signing key", secret=True).decode("ascii", "replace").strip()
    try:
        key = binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < 32:
        raise Refused("ConfigRefused", "the signing key %s is not 64+ hex digits" % path)
    return key


# ---------------------------------------------------------------------- commands


def parse_command(raw: str, key: bytes) -> Dict[str, Any]:
    """The verified command; raises ValueError for anything malformed or mis-signed. The
    signature is checked before the command is even parsed."""
    if len(raw) > MAX_COMMAND_BYTES:
        raise ValueError("larger than %d bytes" % MAX_COMMAND_BYTES)
    outer = json.loads(raw)
    if not isinstance(outer, dict) or set(outer) != {"v", "command", "sig"}:
        raise ValueError('expected exactly {"v", "command", "sig"} (an unsigned command?)')
    if outer["v"] != PROTOCOL_VERSION:
        raise ValueError("unknown version %r" % (outer["v"],))
    text, sig = outer["command"], outer["sig"]
    if not isinstance(text, str) or not isinstance(sig, str) or not SIG.match(sig):
        raise ValueError("command and sig must be strings (sig: 64 hex digits)")
    if not hmac.compare_digest(command_signature(key, text), sig):
        raise ValueError("the signature does not verify with this VM's key")
    cmd = json.loads(text)
    if not isinstance(cmd, dict) or sorted(cmd) != list(COMMAND_FIELDS):
        raise ValueError("fields must be exactly %s" % list(COMMAND_FIELDS))
    if cmd["phase"] not in PHASES:
        raise ValueError("unknown phase")
    patterns = (
        ("run_id", RUN_ID),
        ("member", MEMBER),
        ("hook", HOOK),
        ("nonce", NONCE),
        ("instance", INSTANCE),
    )
    for name, pattern in patterns:
        if not isinstance(cmd[name], str) or not pattern.match(cmd[name]):
            raise ValueError("bad %s" % name)
    if not isinstance(cmd["expires_at"], (int, float)) or isinstance(cmd["expires_at"], bool):
        raise ValueError("bad expires_at")
    return cmd


class SeenNonces:
    """The nonces of commands already accepted, persisted in the state folder. The folder is
    opened once (checked, no symlinks) and used by descriptor; the file is replaced atomically
    from a fresh, randomly named temporary file created with O_EXCL|O_NOFOLLOW, so nothing
    planted in the folder can redirect a root write."""

    def __init__(
        self,
        state_dir: str,
        clock: Callable[[], float] = time.time,
        token: Callable[[], str] = lambda: secrets.token_hex(8),
    ) -> None:
        self.state_dir = state_dir
        self.clock = clock
        self.token = token
        self.lock = threading.Lock()
        self.dir_fd = open_folder(state_dir, create=True)
        # O_PATH descriptors cannot be used for *at() writes on every kernel: reopen it.
        fd = os.open(".", os.O_RDONLY | O_DIRECTORY | O_CLOEXEC, dir_fd=self.dir_fd)
        os.close(self.dir_fd)
        self.dir_fd = fd
        st = os.fstat(fd)
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            os.close(fd)
            raise Refused(
                "InsufficientPermission",
                "the state folder %s is writable by others (mode %04o): fix it with chmod 700 %s"
                % (state_dir, stat.S_IMODE(st.st_mode), state_dir),
            )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.dir_fd)

    def _load(self) -> Dict[str, float]:
        try:
            fd = os.open(SEEN_FILE, os.O_RDONLY | O_NOFOLLOW | O_CLOEXEC, dir_fd=self.dir_fd)
        except FileNotFoundError:
            return {}
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or not _trusted(st.st_uid):
                raise OSError(errno.EPERM, "not a regular file of ours")
            data = json.loads(os.read(fd, MAX_FILE_BYTES).decode("utf-8"))
        finally:
            os.close(fd)
        return {str(k): float(v) for k, v in data.items()}

    def _write(self, seen: Dict[str, float]) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC
        for _ in range(16):
            tmp = "%s.%s.tmp" % (SEEN_FILE, self.token())
            try:
                fd = os.open(tmp, flags, 0o600, dir_fd=self.dir_fd)
            except FileExistsError:
                continue  # something is there already: never write through it
            break
        else:
            raise OSError(errno.EEXIST, "no free temporary name in the state folder")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(seen, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, SEEN_FILE, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self.dir_fd)
            raise

    def claim(self, nonce: str, expires_at: float) -> bool:
        """Records the nonce; False when it was seen before. Raises when the record cannot be
        read or written (the command is then not run: replay protection fails closed)."""
        with self.lock:
            seen = self._load()
            if nonce in seen:
                return False
            now = self.clock()
            seen = {k: v for k, v in seen.items() if v + SEEN_GRACE_SECONDS > now}
            seen[nonce] = expires_at
            self._write(seen)
            return True


class Agent:
    def __init__(
        self,
        config_path: str = DEFAULT_CONFIG,
        metadata_url: str = DEFAULT_METADATA_URL,
        *,
        python: str = sys.executable or "python3",
        poll_timeout: int = POLL_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config_path = config_path
        self.metadata_url = metadata_url.rstrip("/")
        self.python = python
        self.poll_timeout = poll_timeout
        self.clock = clock
        config = load_config(config_path)
        _, key_file, state_dir = settings(config, config_path)
        load_key(key_file)  # refuse to start without a usable key
        self.seen = SeenNonces(state_dir, clock)
        self.stop = threading.Event()
        self.threads: List[threading.Thread] = []
        self._instance: Optional[str] = None

    # ------------------------------------------------------------------ metadata server

    def _request(
        self, url: str, method: str = "GET", data: Optional[bytes] = None, timeout: float = 10.0
    ) -> Tuple[int, bytes, str]:
        req = urllib.request.Request(  # noqa: S310 (http only: the metadata server)
            url, data=data, method=method, headers={"Metadata-Flavor": "Google"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
                return resp.status, resp.read(), resp.headers.get("ETag", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("ETag", "") if exc.headers else ""

    def _value(self, path: str) -> str:
        status, body, _ = self._request("%s/%s" % (self.metadata_url, path))
        if status != 200:
            raise OSError("metadata server answered %d for %s" % (status, path))
        return body.decode("utf-8").strip()

    def instance(self) -> str:
        """This VM as projects/P/zones/Z/instances/NAME, from the metadata server."""
        if self._instance is None:
            project = self._value("project/project-id")
            zone = self._value("instance/zone").rsplit("/", 1)[-1]
            name = self._value("instance/name")
            self._instance = "projects/%s/zones/%s/instances/%s" % (project, zone, name)
        return self._instance

    def poll(self, etag: str) -> Tuple[Optional[str], str]:
        """The command's current value (None when absent) and its ETag; waits for a change
        when `etag` is given."""
        url = "%s/instance/attributes/%s" % (self.metadata_url, METADATA_KEY)
        if etag:
            url += "?" + urllib.parse.urlencode(
                {"wait_for_change": "true", "last_etag": etag, "timeout_sec": self.poll_timeout}
            )
        status, body, new_etag = self._request(url, timeout=self.poll_timeout + 10)
        if status == 404:
            return None, new_etag or etag
        if status != 200:
            raise OSError("metadata server answered %d" % status)
        return body.decode("utf-8"), new_etag

    def answer(self, key: str, value: Dict[str, Any]) -> None:
        url = "%s/instance/guest-attributes/%s/%s" % (self.metadata_url, GUEST_NAMESPACE, key)
        body = json.dumps(value, sort_keys=True).encode("utf-8")
        try:
            status, text, _ = self._request(url, method="PUT", data=body)
        except OSError as exc:
            log.error("writing guest attribute %s: %s", key, exc)
            return
        if status >= 300:
            log.error("writing guest attribute %s: HTTP %d %s", key, status, text[:200])

    # ------------------------------------------------------------------ commands

    def run_runner(
        self, cmd: Dict[str, Any], config: Dict[str, Any], runner: str
    ) -> Dict[str, Any]:
        read_private(runner, "the hook runner")  # root-owned, no links, not writable by others
        entry = config["hooks"].get(cmd["hook"])
        budget = DEFAULT_BUDGET_SECONDS
        if isinstance(entry, dict):
            timeout = entry.get("timeout_seconds")
            retries = entry.get("retries")
            if isinstance(timeout, (int, float)) and isinstance(retries, (int, type(None))):
                budget = float(timeout) * ((retries or 0) + 1)
        request = {
            "version": REQUEST_VERSION,
            "run_id": cmd["run_id"],
            "member": cmd["member"],
            "phase": cmd["phase"],
            "hook": cmd["hook"],
            "expires_at": cmd["expires_at"],
        }
        proc = subprocess.run(
            [self.python, "-I", runner, "run", "--config", self.config_path],
            input=json.dumps(request).encode("utf-8"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=min(budget, 6 * 3600.0) + 60,
            check=False,
        )
        lines = [ln for ln in proc.stdout.decode("utf-8", "replace").splitlines() if ln.strip()]
        if not lines:
            raise RuntimeError(
                "the runner printed nothing (exit %d): %s"
                % (proc.returncode, proc.stderr.decode("utf-8", "replace")[-500:])
            )
        result = json.loads(lines[-1])
        if not isinstance(result, dict):
            raise RuntimeError("the runner's result is not an object")
        return result

    def handle(self, raw: str) -> Optional[Dict[str, Any]]:
        """Handles one command value; returns what was answered (None when nothing was)."""
        try:
            config = load_config(self.config_path)
            runner, key_file, _ = settings(config, self.config_path)
            key = load_key(key_file)
        except (Refused, OSError) as exc:
            log.error("not handling the command: %s", exc)
            return None
        try:
            cmd = parse_command(raw, key)
        except ValueError as exc:
            log.error("refusing a command: %s; nothing was run", exc)
            return None
        try:
            mine = self.instance()
        except OSError as exc:
            log.error("not handling the command: this instance's name is unknown: %s", exc)
            return None
        if not hmac.compare_digest(cmd["instance"], mine):
            log.error("refusing a command for %s (this is %s)", cmd["instance"], mine)
            return None
        rkey = result_key(cmd["run_id"], cmd["member"], cmd["phase"])
        try:
            fresh = self.seen.claim(cmd["nonce"], float(cmd["expires_at"]))
        except (OSError, ValueError, AttributeError) as exc:
            log.error("not running %s: the seen-nonce record is unusable: %s", rkey, exc)
            return None
        if not fresh:
            log.warning("refusing a replayed command (nonce %s, %s)", cmd["nonce"], rkey)
            return None
        try:
            if self.clock() > float(cmd["expires_at"]):
                raise Refused(
                    "Stale",
                    "the command expired at %.3f, %.3fs ago"
                    % (cmd["expires_at"], self.clock() - float(cmd["expires_at"])),
                )
            result = self.run_runner(cmd, config, runner)
        except Refused as exc:
            result = refusal(exc.code, str(exc))
        except Exception as exc:  # the runner could not be run: say so
            result = refusal("ExecutionFailed", "the agent could not run the hook: %s" % exc)
            result["status"] = "failed"
        output = result.get("output") or ""
        if isinstance(output, str) and len(output) > MAX_OUTPUT_CHARS:
            result["output"] = "[...]" + output[-MAX_OUTPUT_CHARS:]
        text = canonical(result)
        answer = {
            "nonce": cmd["nonce"],
            "result": text,
            "sig": answer_signature(key, cmd["nonce"], rkey, text),
        }
        self.answer(rkey, answer)
        log.info("%s: %s/%s", rkey, result.get("status"), result.get("code"))
        return answer

    def serve(self) -> None:
        """The loop: until `stop` is set."""
        etag = ""
        first = True
        while not self.stop.is_set():
            try:
                value, new_etag = self.poll(etag)
            except Exception as exc:
                log.warning("metadata poll: %s", exc)
                self.stop.wait(ERROR_PAUSE_SECONDS)
                continue
            changed = new_etag != etag
            etag = new_etag
            if value and (changed or first) and not self.stop.is_set():
                thread = threading.Thread(target=self.handle, args=(value,), daemon=True)
                thread.start()
                self.threads = [t for t in self.threads if t.is_alive()] + [thread]
            if not new_etag:
                self.stop.wait(ERROR_PAUSE_SECONDS)
            first = False


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--metadata-url", default=DEFAULT_METADATA_URL)
    parser.add_argument("--python", default=sys.executable or "python3")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    agent = Agent(args.config, args.metadata_url, python=args.python)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop.set())
    try:
        agent.serve()
    except KeyboardInterrupt:
        agent.stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
