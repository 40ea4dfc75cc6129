#!/usr/bin/env python3
# ruff: noqa: UP006, UP022, UP031, UP035, UP045
# (It must run on Python 3.8 guests: keep its syntax old-fashioned.)
"""Quiesce's guest agent for Compute Engine: runs hooks the orchestrator asks for through the
instance metadata, and answers through guest attributes.

One file, Python 3.8 or newer, standard library only; it runs as a systemd service (as root)
next to the guest hook runner (quiesce_guest.py). The loop:

1. long-polls the metadata server for the instance attribute `quiesce-command`
   (`.../instance/attributes/quiesce-command?wait_for_change=true&last_etag=...`, header
   `Metadata-Flavor: Google`);
2. parses the command: {"v": 1, "phase", "run_id", "member", "hook", "nonce", "expires_at"}.
   It names a hook, never a script: the argv, timeouts, env and pins come from this agent's
   own root-owned config (/etc/quiesce/hooks.json, written by an OS policy);
3. refuses a command past its `expires_at` (answer: refused/Stale) and a command whose nonce it
   has seen before (replayed: logged, no answer, so the first answer is never overwritten); the
   nonces seen are kept in the state folder until their commands expire;
4. runs the guest hook runner (`quiesce_guest.py run`, request on stdin) as a subprocess, each
   command in its own thread (a `post` must be able to arrive while a `pre` still runs);
5. writes {"nonce": ..., "result": <the runner's JSON result>} as the guest attribute
   `quiesce/<run_id>-<member>-<phase>`.

The runner's watchdog still thaws a machine whose `post` never comes.

    python3 quiesce_agent.py [--config /etc/quiesce/hooks.json]
                             [--metadata-url http://metadata.google.internal/computeMetadata/v1]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
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

PROTOCOL_VERSION = 1
METADATA_KEY = "quiesce-command"
GUEST_NAMESPACE = "quiesce"
DEFAULT_METADATA_URL = "http://metadata.google.internal/computeMetadata/v1"
DEFAULT_CONFIG = "/etc/quiesce/hooks.json"
DEFAULT_RUNNER = "/usr/local/lib/quiesce/quiesce_guest.py"
DEFAULT_STATE_DIR = "/var/lib/quiesce"
SEEN_FILE = "agent-seen.json"
PHASES = ("pre", "post", "verify", "check")
HOOKS = ("pre", "post", "verify")
#: The metadata server's long-poll bound, and the pause after an error.
POLL_TIMEOUT_SECONDS = 60
ERROR_PAUSE_SECONDS = 1.0
#: Seen nonces are kept this long past their command's expiry.
SEEN_GRACE_SECONDS = 300.0
#: The answer's `output` is cut to this many characters (a guest attribute is small).
MAX_OUTPUT_CHARS = 2048

RUN_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
MEMBER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
NONCE = re.compile(r"^[0-9a-f]{16,64}$")
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def result_key(run_id: str, member: str, phase: str) -> str:
    return _KEY_UNSAFE.sub("_", "%s-%s-%s" % (run_id, member, phase))[:128]


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


def check_private(path: str) -> None:
    """The config decides what runs as root: it must be owned by root (or this user) and
    writable by nobody else."""
    st = os.stat(path)
    if st.st_uid not in (0, os.getuid()):
        raise Refused("InsufficientPermission", "%s is not owned by root" % path)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise Refused("InsufficientPermission", "%s is group- or world-writable" % path)


def load_config(path: str) -> Dict[str, Any]:
    check_private(path)
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    if not isinstance(config, dict) or not isinstance(config.get("members"), dict):
        raise ValueError('%s: expected {"members": {...}}' % path)
    return config


def parse_command(raw: str) -> Dict[str, Any]:
    """The command, validated; raises ValueError for anything malformed."""
    cmd = json.loads(raw)
    if not isinstance(cmd, dict):
        raise ValueError("not an object")
    expected = {"v", "phase", "run_id", "member", "hook", "nonce", "expires_at"}
    if set(cmd) != expected:
        raise ValueError("fields must be exactly %s" % sorted(expected))
    if cmd["v"] != PROTOCOL_VERSION:
        raise ValueError("unknown version %r" % cmd["v"])
    if cmd["phase"] not in PHASES or cmd["hook"] not in HOOKS:
        raise ValueError("unknown phase or hook")
    if cmd["phase"] != "check" and cmd["hook"] != cmd["phase"]:
        raise ValueError("a %s command must name the %s hook" % (cmd["phase"], cmd["phase"]))
    for name, pattern in (("run_id", RUN_ID), ("member", MEMBER), ("nonce", NONCE)):
        if not isinstance(cmd[name], str) or not pattern.match(cmd[name]):
            raise ValueError("bad %s" % name)
    if not isinstance(cmd["expires_at"], (int, float)) or isinstance(cmd["expires_at"], bool):
        raise ValueError("bad expires_at")
    return cmd


class SeenNonces:
    """The nonces of commands already accepted, persisted in the state folder."""

    def __init__(self, state_dir: str, clock: Callable[[], float] = time.time) -> None:
        self.path = os.path.join(state_dir, SEEN_FILE)
        self.clock = clock
        self.lock = threading.Lock()
        os.makedirs(state_dir, mode=0o700, exist_ok=True)

    def _load(self) -> Dict[str, float]:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
            return {str(k): float(v) for k, v in data.items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def claim(self, nonce: str, expires_at: float) -> bool:
        """Records the nonce; False when it was seen before."""
        with self.lock:
            seen = self._load()
            if nonce in seen:
                return False
            now = self.clock()
            seen = {k: v for k, v in seen.items() if v + SEEN_GRACE_SECONDS > now}
            seen[nonce] = expires_at
            tmp = self.path + ".tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(seen, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
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
        self.state_dir = str(config.get("state_dir") or DEFAULT_STATE_DIR)
        self.runner = str(config.get("runner") or DEFAULT_RUNNER)
        self.seen = SeenNonces(self.state_dir, clock)
        self.stop = threading.Event()
        self.threads: List[threading.Thread] = []

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
        status, text, _ = self._request(url, method="PUT", data=body)
        if status >= 300:
            log.error("writing guest attribute %s: HTTP %d %s", key, status, text[:200])

    # ------------------------------------------------------------------ commands

    def build_request(self, cmd: Dict[str, Any], config: Dict[str, Any]) -> Dict[str, Any]:
        member = config["members"].get(cmd["member"])
        if not isinstance(member, dict) or not isinstance(member.get(cmd["hook"]), dict):
            raise Refused(
                "HookNotConfigured",
                "%s has no %s hook in %s" % (cmd["member"], cmd["hook"], self.config_path),
            )
        request: Dict[str, Any] = {
            "version": 1,
            "run_id": cmd["run_id"],
            "member": cmd["member"],
            "phase": cmd["phase"],
            "hook": member[cmd["hook"]],
            "state_dir": self.state_dir,
            "expires_at": cmd["expires_at"],
        }
        if cmd["phase"] in ("pre", "check") and isinstance(member.get("post"), dict):
            request["thaw"] = member["post"]
        if cmd["phase"] == "pre":
            request["max_freeze_seconds"] = member.get("max_freeze_seconds")
        return request

    def run_runner(self, request: Dict[str, Any]) -> Dict[str, Any]:
        hook = request["hook"]
        budget = float(hook.get("timeout_seconds", 30)) * (int(hook.get("retries", 0)) + 1)
        proc = subprocess.run(
            [self.python, self.runner, "run"],
            input=json.dumps(request).encode("utf-8"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=budget + 60,
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
            cmd = parse_command(raw)
        except ValueError as exc:
            log.error("ignoring a malformed command: %s", exc)
            return None
        key = result_key(cmd["run_id"], cmd["member"], cmd["phase"])
        if not self.seen.claim(cmd["nonce"], float(cmd["expires_at"])):
            log.warning("refusing a replayed command (nonce %s, %s)", cmd["nonce"], key)
            return None
        try:
            if self.clock() > float(cmd["expires_at"]):
                raise Refused(
                    "Stale",
                    "the command expired at %.3f, %.3fs ago"
                    % (cmd["expires_at"], self.clock() - float(cmd["expires_at"])),
                )
            config = load_config(self.config_path)
            result = self.run_runner(self.build_request(cmd, config))
        except Refused as exc:
            result = refusal(exc.code, str(exc))
        except Exception as exc:  # the runner could not be run: say so
            result = refusal("ExecutionFailed", "the agent could not run the hook: %s" % exc)
            result["status"] = "failed"
        output = result.get("output") or ""
        if len(output) > MAX_OUTPUT_CHARS:
            result["output"] = "[...]" + output[-MAX_OUTPUT_CHARS:]
        answer = {"nonce": cmd["nonce"], "result": result}
        self.answer(key, answer)
        log.info("%s: %s/%s", key, result.get("status"), result.get("code"))
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
