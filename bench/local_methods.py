"""Freeze window of a loaded PostgreSQL per local snapshot method: btrfs, reflink, copy.

One PostgreSQL cluster, data and WAL on two volumes, pgbench writing to it, backed up with
`quiesce run` as two members of one group (data with the hooks, WAL without), several times,
then restored with `quiesce restore` and verified by the library's PostgreSQL verify (a
throwaway server on the copy, pg_amcheck). Per method:

- btrfs:   data and WAL each a subvolume of its own btrfs filesystem; the hooks hold the server
           without freezing (bench/pg_pause.py: CHECKPOINT, SIGSTOP every process), because a
           btrfs snapshot of a frozen filesystem waits for the thaw;
- reflink: data, WAL and the state folder on one XFS filesystem (reflink=1): the files are
           cloned into the state folder while the same hooks hold the server;
- copy:    data and WAL on two ext4 filesystems, the library's PostgreSQL hook (CHECKPOINT,
           fsfreeze of both), the state folder on another filesystem: the files are copied.

The freeze window is the engine's: from the pre hook done to the post hook started, i.e. how
long the writers stall. Needs root, loop devices, PostgreSQL, btrfs-progs and xfsprogs.

Usage: python bench/local_methods.py [--methods btrfs,reflink,copy] [--scale 20] [--runs 3]
       [--no-verify] [--json] [--markdown]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from quiesce.hooklib import LIBRARY_PATH

HERE = Path(__file__).resolve().parent
PAUSE = HERE / "pg_pause.py"
PG_USER = "quiesce-pg"
QUIESCE = [sys.executable, "-m", "quiesce.cli.app"]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def sh(*argv: str, timeout: float = 600, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    root = Path("/usr/lib/postgresql")
    for version in sorted(root.iterdir(), reverse=True) if root.is_dir() else []:
        if (version / "bin" / name).exists():
            return str(version / "bin" / name)
    raise SystemExit(f"PostgreSQL's {name} is not installed")


def as_pg(*argv: str, timeout: float = 600) -> str:
    return sh("runuser", "-u", PG_USER, "--", *argv, timeout=timeout)


# ------------------------------------------------------------------------------ filesystems


class Machine:
    """Loop-mounted filesystems and what was made on them; all undone by close()."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.mounts: list[tuple[Path, str]] = []

    def filesystem(self, name: str, kind: str, size_mb: int) -> Path:
        image = Path("/var/tmp") / f"quiesce-bench-{os.getpid()}-{name}.img"
        with open(image, "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        mkfs = {
            "btrfs": ["mkfs.btrfs", "-q", "-f"],
            "xfs": ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"],
            "ext4": ["mkfs.ext4", "-q", "-F"],
        }[kind]
        sh(*mkfs, str(image))
        device = sh("losetup", "--find", "--show", str(image)).strip()
        folder = self.base / name
        folder.mkdir()
        try:
            sh("mount", "-t", kind, device, str(folder))
        except SystemExit:
            sh("losetup", "-d", device, check=False)
            image.unlink()
            raise
        image.unlink()  # the loop device keeps it until it is detached
        self.mounts.append((folder, device))
        folder.chmod(0o755)
        return folder

    def close(self) -> None:
        for folder, device in reversed(self.mounts):
            sh("fsfreeze", "--unfreeze", str(folder), check=False)
            for _ in range(3):
                sh("umount", str(folder), check=False, timeout=60)
                if not folder.is_mount():
                    break
                time.sleep(1)  # a server or hook may still be closing its files
            if folder.is_mount():
                sh("umount", "-l", str(folder), check=False)
            sh("losetup", "-d", device, check=False)


def volume(folder: Path, kind: str) -> Path:
    """The folder a member backs up: a subvolume on btrfs, a plain folder elsewhere."""
    if kind == "btrfs":
        sh("btrfs", "subvolume", "create", str(folder))
    else:
        folder.mkdir()
    shutil.chown(folder, PG_USER, PG_USER)
    folder.chmod(0o700)
    return folder


# ------------------------------------------------------------------------------ PostgreSQL


@contextlib.contextmanager
def pg_user() -> Iterator[str]:
    created = subprocess.run(["id", PG_USER], capture_output=True).returncode != 0
    if created:
        sh("useradd", "--system", "--no-create-home", PG_USER)
    try:
        yield PG_USER
    finally:
        if created:
            sh("userdel", PG_USER, check=False)


@contextlib.contextmanager
def server(data: Path, wal: Path, sock: Path, scale: int) -> Iterator[dict[str, Any]]:
    sock.mkdir()
    shutil.chown(sock, PG_USER, PG_USER)
    as_pg(pg_tool("initdb"), "-D", str(data), "--waldir", str(wal), "-U", "postgres",
          "-A", "trust")  # fmt: skip
    port = 5400 + os.getpid() % 500
    options = f"-c listen_addresses='' -c unix_socket_directories={sock} -p {port}"
    log = sock / "server.log"  # the server writes it as its own user
    as_pg(pg_tool("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", options, "start")
    try:
        say(f"  pgbench -i -s {scale}…")
        as_pg(pg_tool("pgbench"), "-h", str(sock), "-p", str(port), "-U", "postgres", "-i",
              "-s", str(scale), "-q", "postgres")  # fmt: skip
        yield {"data": data, "wal": wal, "sock": sock, "port": port}
    finally:
        sh("runuser", "-u", PG_USER, "--", pg_tool("pg_ctl"), "-D", str(data), "-m",
           "immediate", "-w", "stop", check=False)  # fmt: skip


@contextlib.contextmanager
def load(pg: dict[str, Any]) -> Iterator[None]:
    process = subprocess.Popen(
        ["runuser", "-u", PG_USER, "--", pg_tool("pgbench"), "-h", str(pg["sock"]), "-p",
         str(pg["port"]), "-U", "postgres", "-c", "2", "-T", "3600", "-n", "postgres"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(2)  # let it reach its pace
        yield
    finally:
        process.terminate()
        process.wait(timeout=60)


def tree_bytes(*folders: Path) -> int:
    total = 0
    for folder in folders:
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


# ------------------------------------------------------------------------------ the policy


def hooks_for(method: str, pg: dict[str, Any]) -> dict[str, Any]:
    verify = [sys.executable, "-I", str(LIBRARY_PATH), "postgresql", "verify",
              "--restored-data", "data", "--os-user", PG_USER,
              "--query", "SELECT count(*) FROM pgbench_history"]  # fmt: skip
    if method == "copy":
        return {
            "use": "postgresql",
            "with": {
                "data": str(pg["data"]),
                "wal": str(pg["wal"]),
                "socket": str(pg["sock"]),
                "port": pg["port"],
                "restored_data": "data",
                "os_user": PG_USER,
                "query": "SELECT count(*) FROM pgbench_history",
            },
        }
    common = ["--data", str(pg["data"]), "--os-user", PG_USER]
    return {
        "pre": {
            "run": [
                sys.executable,
                str(PAUSE),
                "pre",
                *common,
                "--socket",
                str(pg["sock"]),
                "--port",
                str(pg["port"]),
            ],
            "timeout_seconds": 30,
        },
        "post": {"run": [sys.executable, str(PAUSE), "post", *common], "timeout_seconds": 30},
        "verify": {"run": verify, "timeout_seconds": 600},
    }


def write_policy(path: Path, state: Path, method: str, pg: dict[str, Any]) -> Path:
    db: dict[str, Any] = {
        "name": "db",
        "provider": "local",
        "volumes": [str(pg["data"])],
        "hooks": hooks_for(method, pg),
    }
    if method != "copy":
        db["pre_freezes_volumes"] = False  # the hooks stop the server; nothing is frozen
    doc = {
        "version": 1,
        "name": f"bench-{method}",
        "state_dir": str(state),
        "groups": {
            "pg": {
                "consistency": "application",
                "on_quiesce_failure": "abort",
                "max_freeze_seconds": 60,
                "members": [db, {"name": "wal", "provider": "local", "volumes": [str(pg["wal"])]}],
            }
        },
    }
    path.write_text(yaml.safe_dump(doc))
    return path


# ------------------------------------------------------------------------------ one method


def layout(method: str, machine: Machine) -> tuple[Path, Path, Path]:
    """The data, WAL and state folders of a method."""
    if method == "reflink":
        fs = machine.filesystem("fs-xfs", "xfs", 4096)
        return volume(fs / "data", "xfs"), volume(fs / "wal", "xfs"), fs / "state"
    kind = "btrfs" if method == "btrfs" else "ext4"
    data_fs = machine.filesystem("fs-data", kind, 2048)
    wal_fs = machine.filesystem("fs-wal", kind, 1024)
    return volume(data_fs / "data", kind), volume(wal_fs / "wal", kind), machine.base / "state"


def bench_method(method: str, scale: int, runs: int, verify: bool) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix=f"quiesce-bench-{method}-", dir="/tmp"))
    base.chmod(0o755)
    machine = Machine(base)
    try:
        data, wal, state = layout(method, machine)
        with server(data, wal, base / "sock", scale) as pg:
            size = tree_bytes(data, wal)
            policy = write_policy(base / "policy.yaml", state, method, pg)
            records = []
            with load(pg):
                for i in range(runs):
                    say(f"  backup {i + 1}/{runs}…")
                    done = subprocess.run(
                        [*QUIESCE, "run", str(policy), "-g", "pg", "--json"],
                        capture_output=True, text=True, timeout=900,
                    )  # fmt: skip
                    if done.returncode != 0:
                        raise SystemExit(f"quiesce run failed: {done.stdout}{done.stderr}")
                    records.append(json.loads(done.stdout))
                    time.sleep(1)
            points = json.loads(sh(*QUIESCE, "points", str(policy), "--json"))
            methods = sorted(
                {s["method"] for p in points for m in p["members"] for s in m["snapshots"]}
            )
            verified = None
            if verify:
                say("  restore and verify the last point…")
                restored = json.loads(
                    sh(
                        *QUIESCE,
                        "restore",
                        str(policy),
                        records[-1]["recovery_point"],
                        "--to",
                        str(base / "restored"),
                        "--json",
                    )
                )
                verified = restored["verified"]
                shutil.rmtree(base / "restored", ignore_errors=True)
    finally:
        machine.close()
        shutil.rmtree(base, ignore_errors=True)
    windows = [r["freeze_window_ms"] for r in records]
    skews = [r["skew_ms"] for r in records]
    return {
        "method": method,
        "snapshot_methods": methods,
        "data_mb": round(size / 1024 / 1024),
        "runs": runs,
        "consistency": sorted({r["consistency"] for r in records}),
        "freeze_window_ms": windows,
        "freeze_window_median_ms": round(statistics.median(windows), 1),
        "skew_ms": skews,
        "verified": verified,
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| method | snapshots | data + WAL | freeze window (each run) | median | skew (median) "
        "| consistency | restored copy |",
        "|---|---|---:|---|---:|---:|---|---|",
    ]
    for r in rows:
        each = ", ".join(f"{w:,.0f}" for w in r["freeze_window_ms"])
        verdict = {True: "pg_amcheck clean", False: "FAILED", None: "not checked"}[r["verified"]]
        lines.append(
            f"| {r['method']} | {', '.join(r['snapshot_methods'])} | {r['data_mb']} MB "
            f"| {each} ms | {r['freeze_window_median_ms']:,.0f} ms "
            f"| {statistics.median(r['skew_ms']):,.0f} ms | {', '.join(r['consistency'])} "
            f"| {verdict} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="btrfs,reflink,copy")
    parser.add_argument("--scale", type=int, default=20, help="pgbench scale (20: ~330 MB)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("needs root: loop devices, mounts and a server run as its own user")
    rows = []
    with pg_user():
        pwd.getpwnam(PG_USER)
        for method in args.methods.split(","):
            say(f"{method}:")
            rows.append(bench_method(method, args.scale, args.runs, not args.no_verify))
            row = rows[-1]
            say(
                f"  freeze window {row['freeze_window_ms']} ms, skew {row['skew_ms']} ms, "
                f"{row['consistency']}, verified {row['verified']}"
            )
    if args.json:
        print(json.dumps(rows, indent=2))
    if args.markdown or not args.json:
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
