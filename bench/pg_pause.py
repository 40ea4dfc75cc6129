#!/usr/bin/env python3
"""Holds a PostgreSQL server without freezing a filesystem: a hook for btrfs and reflink.

pre:  CHECKPOINT (so a restore replays little WAL), then stop every process of the cluster
      (SIGSTOP: the postmaster first, so it starts no new backend, then its children) and wait
      until each one is stopped. A process stops only when it returns from the system call it
      is in, so every write it started is in the page cache: the files on both filesystems no
      longer change, and a snapshot of each, taken one after the other, is one point in time.
post: let them go on (SIGCONT), children first. Safe to run when nothing is stopped.

Usage: pg_pause.py pre|post --data DIR [--socket DIR] [--port N] [--os-user USER]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: How long the pre waits for every process to stop before it lets them all go and fails.
STOP_TIMEOUT = 10.0


def postmaster(data: str) -> int:
    return int(Path(data, "postmaster.pid").read_text().split("\n", 1)[0])


def children(parent: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone
            if int(fields[1]) == parent:
                found.add(int(entry))
    return found


def state(pid: int) -> str:
    """The process's state letter (T: stopped, Z: exited), or "gone"."""
    try:
        return Path("/proc", str(pid), "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def signal_all(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def pre(args: argparse.Namespace) -> None:
    if args.socket:
        subprocess.run(
            ["runuser", "-u", args.os_user, "--", "psql", "-X", "-q", "-h", args.socket,
             "-p", str(args.port), "-U", "postgres", "-c", "CHECKPOINT", "postgres"],
            check=True, timeout=120,
        )  # fmt: skip
    main_pid = postmaster(args.data)
    os.kill(main_pid, signal.SIGSTOP)
    stopped = {main_pid}
    deadline = time.monotonic() + STOP_TIMEOUT
    while True:
        new = children(main_pid) - stopped
        signal_all(new, signal.SIGSTOP)
        stopped |= new
        if not new and all(state(p) in ("T", "t", "Z", "gone") for p in stopped):
            break
        if time.monotonic() > deadline:
            post(args)
            sys.exit(f"not every PostgreSQL process stopped within {STOP_TIMEOUT:g} s")
        time.sleep(0.001)
    print(f"postgresql held: {len(stopped)} processes stopped")


def post(args: argparse.Namespace) -> None:
    main_pid = postmaster(args.data)
    signal_all(children(main_pid), signal.SIGCONT)
    signal_all({main_pid}, signal.SIGCONT)
    print("postgresql released")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=("pre", "post"))
    parser.add_argument("--data", required=True)
    parser.add_argument("--socket")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--os-user", default="postgres")
    args = parser.parse_args()
    (pre if args.phase == "pre" else post)(args)


if __name__ == "__main__":
    main()
