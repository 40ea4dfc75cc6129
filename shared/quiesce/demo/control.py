"""The sample application's pause/resume client (what the demo's hooks call).

    python -m quiesce.demo.control pause|resume|status SOCKET [--timeout SECONDS]

Prints the application's one-line answer (``ok paused 1234``) and exits 0 when it starts with
``ok``, 1 when the application answered with an error, and 2 when it could not be reached.
Standard library only: it starts fast, which keeps the pause hook short.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

COMMANDS = ("pause", "resume", "status")
DEFAULT_TIMEOUT = 15.0


class ControlError(Exception):
    """The application could not be reached or did not answer."""


def request(path: str | Path, command: str, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Sends one command to the application at `path` and returns its answer (one line)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(command.encode() + b"\n")
        chunks: list[bytes] = []
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                break
    except OSError as exc:
        raise ControlError(f"cannot reach the application at {path}: {exc}") from exc
    finally:
        sock.close()
    answer = b"".join(chunks).decode("utf-8", errors="replace").strip()
    if not answer:
        raise ControlError(f"the application at {path} closed the connection without an answer")
    return answer


def wait_ready(path: str | Path, timeout: float = 10.0) -> str:
    """Polls `status` until the application answers; returns its answer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return request(path, "status", timeout=1.0)
        except ControlError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def paused_at(answer: str) -> int | None:
    """The transaction id in an ``ok paused <id>`` answer."""
    parts = answer.split()
    if len(parts) == 3 and parts[:2] == ["ok", "paused"] and parts[2].isdigit():
        return int(parts[2])
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m quiesce.demo.control",
        description="Pause, resume or ask the status of Quiesce's sample application.",
    )
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("socket", type=Path, help="the application's control socket")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for the answer (%(default)g)",
    )
    args = parser.parse_args(argv)
    try:
        answer = request(args.socket, args.command, args.timeout)
    except ControlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(answer)
    return 0 if answer.startswith("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
