#!/usr/bin/env python3
"""Quiesce's hook library: tested pre, post and verify hooks for common workloads.

One self-contained file (Python 3.8+, standard library only), installed on machines next to the
guest hook runner and declared in the machine's allowlist like any hook, e.g.

    "orders.db.pre":  {"phase": "pre",  "run": ["/usr/local/lib/quiesce/quiesce_hooks.py",
                       "postgresql", "pre", "--data", "/var/lib/postgresql/15/main",
                       "--wal", "/pg_wal", "--socket", "/run/postgresql"], ...}
    "orders.db.post": {"phase": "post", "run": [".../quiesce_hooks.py", "postgresql", "post",
                       "--data", "/var/lib/postgresql/15/main", "--wal", "/pg_wal"], ...}

Usage: quiesce_hooks.py KIND PHASE [options]
       (KIND: fsfreeze, postgresql, mysql, redis; --help for each)

Every workload has the same three functions, `pre`, `post` and `verify`, over shared helpers
(borgmatic's data-source hooks are the model). Each prints what it did, and one line

    quiesce-info {"kind": ..., "phase": ..., ...}

with the facts a restore needs (frozen filesystems, WAL positions), which reaches the hook's
result, the run record and the events. Exit codes: 0 done, 1 failed, 2 bad usage.

A `post` is safe to run when nothing is frozen (a watchdog may run it after a failed `pre`),
and a failing `pre` thaws what it froze before it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

TOOL_TIMEOUT = 60.0
DEFAULT_RUNNER_STATE = "/var/lib/quiesce"
POSTGRES_START_SECONDS = 120


class HookError(Exception):
    """A failure with a message meant for the operator."""


# --------------------------------------------------------------------------------------------
# Shared helpers


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def info(kind: str, phase: str, **facts: Any) -> None:
    """The one machine-readable line of a hook's output."""
    say("quiesce-info " + json.dumps(dict(kind=kind, phase=phase, **facts), sort_keys=True))


def run(argv: Sequence[str], timeout: float = TOOL_TIMEOUT, user: Optional[str] = None,
        env: Optional[Dict[str, str]] = None) -> str:  # fmt: skip
    """Runs a tool (as `user` when given and we are root); returns its output or raises."""
    command = list(argv)
    if user is not None and os.geteuid() == 0 and user != "root":
        command = ["runuser", "-u", user, "--", *command]
    try:
        done = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=timeout, env=env, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        raise HookError("%s is not installed (not found in PATH)" % argv[0]) from None
    except subprocess.TimeoutExpired:
        raise HookError("%s did not finish within %gs" % (" ".join(argv), timeout)) from None
    output = done.stdout.decode("utf-8", "replace").strip()
    if done.returncode != 0:
        raise HookError("%s exited %d: %s" % (" ".join(argv), done.returncode, output[-500:]))
    return output


def mount_point(path: str) -> str:
    """The mount point of the filesystem that holds `path`."""
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def same_filesystem(a: str, b: str) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# fsfreeze: freeze whole filesystems (any Linux filesystem with freeze support)


def freeze_targets(paths: Sequence[str], allow_root: bool) -> List[str]:
    """The distinct mount points to freeze, refusing the ones that must never be frozen."""
    state = os.environ.get("QUIESCE_STATE_DIR") or DEFAULT_RUNNER_STATE
    mounts: List[str] = []
    for path in paths:
        if not os.path.exists(path):
            raise HookError("%s does not exist" % path)
        mount = mount_point(path)
        if mount == "/" and not allow_root:
            raise HookError(
                "%s is on the root filesystem; freezing / stops the machine's own logging and "
                "Quiesce's runner, so it is refused (pass --allow-root to do it anyway)" % path
            )
        if os.path.exists(state) and same_filesystem(mount, state):
            raise HookError(
                "%s is on the filesystem that holds the hook runner's state (%s): freezing it "
                "would hold up the runner's own writes; move the state folder "
                "(state_dir in the allowlist) to another filesystem" % (path, state)
            )
        if mount not in mounts:
            mounts.append(mount)
    return mounts


def fsfreeze_pre(mounts: Sequence[str]) -> List[str]:
    """Flushes, then freezes each mount point in order; thaws them all if one fails."""
    os.sync()
    frozen: List[str] = []
    try:
        for mount in mounts:
            run(["fsfreeze", "--freeze", mount])
            frozen.append(mount)
            say("froze %s" % mount)
    except HookError:
        fsfreeze_post(list(reversed(frozen)))
        raise
    return frozen


def fsfreeze_post(mounts: Sequence[str]) -> List[str]:
    """Thaws each mount point; one that is not frozen is fine (exit 0 all the same)."""
    thawed: List[str] = []
    problems = []
    for mount in mounts:
        try:
            run(["fsfreeze", "--unfreeze", mount])
            thawed.append(mount)
            say("thawed %s" % mount)
        except HookError as exc:
            if "Invalid argument" in str(exc):
                say("%s was not frozen" % mount)
            else:
                problems.append(str(exc))
    if problems:
        raise HookError("; ".join(problems))
    return thawed


def fsfreeze_main(phase: str, args: argparse.Namespace) -> None:
    mounts = freeze_targets(args.mount, args.allow_root)
    if phase == "pre":
        info("fsfreeze", "pre", frozen=fsfreeze_pre(mounts))
    elif phase == "post":
        info("fsfreeze", "post", thawed=fsfreeze_post(list(reversed(mounts))))
    else:
        raise HookError("fsfreeze has no verify: verify the application that uses the files")


# --------------------------------------------------------------------------------------------
# PostgreSQL: CHECKPOINT, then freeze the data and WAL filesystems; verify by starting a
# throwaway server on the restored copy and running pg_amcheck and the user's query


def _pg_bin(name: str, data: Optional[str] = None) -> str:
    """A PostgreSQL program: from PATH, else from the server's own bin folder."""
    found = shutil.which(name)
    if found:
        return found
    for base in sorted(os.listdir("/usr/lib/postgresql"), reverse=True) if os.path.isdir(
        "/usr/lib/postgresql"
    ) else []:  # fmt: skip
        candidate = os.path.join("/usr/lib/postgresql", base, "bin", name)
        if os.path.exists(candidate):
            return candidate
    raise HookError("%s is not installed" % name)


def _owner(path: str) -> str:
    return pwd.getpwuid(os.stat(path).st_uid).pw_name


def psql(args: argparse.Namespace, sql: str, host: str, port: int, user: str) -> str:
    return run(
        [_pg_bin("psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", str(port),
         "-U", args.db_user, "-d", args.database, "-c", sql],
        user=user,
    )  # fmt: skip


def postgresql_pre(args: argparse.Namespace) -> None:
    user = args.os_user or _owner(args.data)
    mounts = freeze_targets([args.data] + ([args.wal] if args.wal else []), args.allow_root)
    psql(args, "CHECKPOINT", args.socket, args.port, user)
    lsn = psql(args, "SELECT pg_current_wal_lsn()", args.socket, args.port, user)
    checkpoint = psql(args, "SELECT checkpoint_lsn FROM pg_control_checkpoint()", args.socket,
                      args.port, user)  # fmt: skip
    say("checkpoint done at %s; WAL at %s" % (checkpoint, lsn))
    frozen = fsfreeze_pre(mounts)
    info("postgresql", "pre", checkpoint_lsn=checkpoint, wal_lsn=lsn, frozen=frozen)


def postgresql_post(args: argparse.Namespace) -> None:
    mounts = freeze_targets([args.data] + ([args.wal] if args.wal else []), args.allow_root)
    info("postgresql", "post", thawed=fsfreeze_post(list(reversed(mounts))))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _restored_data(args: argparse.Namespace) -> str:
    root = os.environ.get("QUIESCE_RESTORE_PATH") or (args.restored[-1] if args.restored else "")
    if not root:
        raise HookError("no restored copy: verify runs with the restored folder as its argument")
    data = os.path.join(root, args.restored_data) if args.restored_data else root
    if not os.path.isfile(os.path.join(data, "PG_VERSION")):
        raise HookError("%s holds no PostgreSQL data folder (no PG_VERSION)" % data)
    return data


def _check_wal_link(data: str, root: str) -> None:
    wal = os.path.join(data, "pg_wal")
    if os.path.islink(wal):
        target = os.path.realpath(wal)
        restore_root = os.path.dirname(os.path.realpath(root))
        if not target.startswith(restore_root + os.sep):
            raise HookError(
                "the restored pg_wal points at %s, outside the restored copy: starting a server "
                "on it would replay the live WAL; restore the WAL member too (quiesce restore "
                "rewrites the link when it does)" % target
            )


def postgresql_verify(args: argparse.Namespace) -> None:
    data = _restored_data(args)
    root = os.environ.get("QUIESCE_RESTORE_PATH") or data
    _check_wal_link(data, root)
    user = args.os_user or "postgres"
    for stale in ("postmaster.pid", "postmaster.opts"):
        path = os.path.join(data, stale)
        if os.path.lexists(path):
            os.unlink(path)  # of the restored copy only: the live server's are never touched
            say("removed %s from the restored copy" % stale)
    if os.geteuid() == 0:
        uid = pwd.getpwnam(user).pw_uid
        gid = pwd.getpwnam(user).pw_gid
        for base in {data, os.path.realpath(os.path.join(data, "pg_wal"))}:
            for folder, dirs, files in os.walk(base):
                os.chown(folder, uid, gid)
                for name in files + dirs:
                    os.lchown(os.path.join(folder, name), uid, gid)
        os.chmod(data, 0o700)
    sock = tempfile.mkdtemp(prefix="quiesce-pg-")
    os.chmod(sock, 0o755)  # noqa: S103 (the server's user must reach its socket folder)
    if os.geteuid() == 0:
        os.chown(sock, pwd.getpwnam(user).pw_uid, -1)
    port = _free_port()
    log = os.path.join(sock, "server.log")
    pg_ctl = _pg_bin("pg_ctl")
    options = "-c listen_addresses='' -c unix_socket_directories=%s -p %d" % (sock, port)
    started = time.monotonic()
    try:
        run([pg_ctl, "-D", data, "-o", options, "-l", log, "-w", "-t",
             str(POSTGRES_START_SECONDS), "start"], timeout=POSTGRES_START_SECONDS + 10,
            user=user)  # fmt: skip
        say("started a throwaway server on the restored copy in %.1fs (socket %s, port %d)"
            % (time.monotonic() - started, sock, port))  # fmt: skip
        amcheck = [_pg_bin("pg_amcheck"), "-h", sock, "-p", str(port), "-U", args.db_user,
                   "--install-missing", "--all"]  # fmt: skip
        checked = run(amcheck, timeout=args.check_timeout, user=user)
        say("pg_amcheck: no corruption found" + (": " + checked if checked else ""))
        answer = None
        if args.query:
            answer = psql(args, args.query, sock, port, user)
            say("query %r -> %s" % (args.query, answer))
        info("postgresql", "verify", amcheck="clean", query=args.query, answer=answer)
    except HookError:
        if os.path.exists(log):
            with open(log, encoding="utf-8", errors="replace") as handle:
                say("server log: " + handle.read()[-1500:])
        raise
    finally:
        subprocess.run(
            ["runuser", "-u", user, "--", pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"]
            if os.geteuid() == 0 and user != "root" else [pg_ctl, "-D", data, "-m", "immediate",
                                                           "-w", "stop"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False,
        )  # fmt: skip
        shutil.rmtree(sock, ignore_errors=True)


def postgresql_main(phase: str, args: argparse.Namespace) -> None:
    {"pre": postgresql_pre, "post": postgresql_post, "verify": postgresql_verify}[phase](args)


# --------------------------------------------------------------------------------------------
# MySQL / MariaDB: FLUSH TABLES WITH READ LOCK held by a session for the length of the freeze,
# the binary log position recorded; verify by starting a server on the restored copy and
# checking every table


def _mysql_client() -> str:
    for name in ("mariadb", "mysql"):
        found = shutil.which(name)
        if found:
            return found
    raise HookError("neither mariadb nor mysql (the client) is installed")


def _holder_file(args: argparse.Namespace) -> str:
    """Where the pre records the session that holds the lock (private to root)."""
    folder = os.path.join(os.environ.get("QUIESCE_STATE_DIR") or DEFAULT_RUNNER_STATE, "hooklib")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    key = "%s--%s" % (os.environ.get("QUIESCE_RUN_ID", "manual"),
                      os.environ.get("QUIESCE_MEMBER", "mysql"))  # fmt: skip
    return os.path.join(folder, "mysql-lock-%s.pid" % "".join(
        c if c.isalnum() or c in "._-" else "_" for c in key))  # fmt: skip


def _hold_lock(args: argparse.Namespace, ready: int) -> None:
    """The child that holds the lock: one client session, kept open until the post ends it
    (or --max-hold seconds pass: a lost post never keeps the database read-only)."""
    client = subprocess.Popen(
        [_mysql_client(), "--socket", args.socket, "-u", args.db_user, "-N", "-B", "--unbuffered"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert client.stdin is not None
    assert client.stdout is not None
    client.stdin.write(
        (
            "SET SESSION lock_wait_timeout = %d;\nFLUSH TABLES WITH READ LOCK;\n"
            "SHOW MASTER STATUS;\nSELECT 'quiesce-locked';\n" % max(1, int(args.lock_timeout))
        ).encode("utf-8")
    )
    client.stdin.flush()
    lines: List[str] = []
    for raw in client.stdout:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        if line == "quiesce-locked":
            os.write(ready, ("\n".join(lines) + "\n").encode("utf-8"))
            os.close(ready)
            break
        lines.append(line)
    else:
        os.write(ready, ("ERROR " + " ".join(lines)).encode("utf-8"))
        os.close(ready)
        return
    deadline = time.monotonic() + args.max_hold
    while client.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    client.kill()  # closing the session releases the lock


def mysql_pre(args: argparse.Namespace) -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the holder
        os.close(read)
        try:
            _hold_lock(args, write)
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as handle:
        answer = handle.read().decode("utf-8", "replace")
    if answer.startswith("ERROR") or not answer:
        os.kill(pid, 9)
        raise HookError("FLUSH TABLES WITH READ LOCK failed: %s" % answer[6:].strip())
    with open(_holder_file(args), "w", encoding="utf-8") as handle:
        handle.write(str(pid))
    status = [line.split("\t") for line in answer.splitlines() if line.strip()]
    binlog = {"file": status[0][0], "position": int(status[0][1])} if status else None
    say("tables flushed and read-locked by session process %d; binlog %s" % (pid, binlog))
    frozen = fsfreeze_pre(freeze_targets(args.freeze, args.allow_root)) if args.freeze else []
    info("mysql", "pre", binlog=binlog, lock_holder=pid, frozen=frozen)


def mysql_post(args: argparse.Namespace) -> None:
    thawed = fsfreeze_post(freeze_targets(args.freeze, args.allow_root)) if args.freeze else []
    path = _holder_file(args)
    released = False
    try:
        with open(path, encoding="utf-8") as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        pid = 0
    if pid > 0:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                ours = b"mysql" in handle.read()
        except OSError:
            ours = False
        if ours:
            os.kill(pid, 15)
            released = True
    if os.path.exists(path):
        os.unlink(path)
    say("read lock released" if released else "no read lock was held (nothing to release)")
    info("mysql", "post", released=released, thawed=thawed)


def mysql_verify(args: argparse.Namespace) -> None:
    data = _restored_folder(args, "mysql")
    user = args.os_user or "mysql"
    for name in os.listdir(data):
        if name.endswith(".pid") or name.endswith(".sock") or name == "mysql.sock":
            os.unlink(os.path.join(data, name))  # of the restored copy only
            say("removed %s from the restored copy" % name)
    _give_to(data, user)
    sock_dir = tempfile.mkdtemp(prefix="quiesce-mysql-")
    os.chmod(sock_dir, 0o755)  # noqa: S103 (the server's user must reach its socket folder)
    if os.geteuid() == 0:
        os.chown(sock_dir, pwd.getpwnam(user).pw_uid, -1)
    sock = os.path.join(sock_dir, "mysqld.sock")
    # With binary logging the server recovers prepared transactions from the binlog: start it
    # on the copy's own binlog, as the live server ran.
    binlog = [
        "--log-bin=" + os.path.join(data, name[: -len(".index")])
        for name in sorted(os.listdir(data))
        if name.endswith(".index") and not name.startswith("relay")
    ][:1]
    binlog += ["--server-id=1"] if binlog else []
    server = subprocess.Popen(
        [_server_bin(), "--no-defaults", "--datadir=" + data, "--socket=" + sock,
         "--skip-networking", "--pid-file=" + os.path.join(sock_dir, "mysqld.pid"),
         "--log-error=" + os.path.join(sock_dir, "error.log")] + binlog
        + (["--user=" + user] if os.geteuid() == 0 else []),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        if not _mysql_ready(sock, args, server, args.check_timeout):
            raise HookError("the server on the restored copy did not start")
        checker = shutil.which("mariadb-check") or shutil.which("mysqlcheck") or "mysqlcheck"
        checked = run([checker, "--socket", sock, "-u", args.db_user, "--all-databases",
                       "--check"], timeout=args.check_timeout)  # fmt: skip
        bad = [line for line in checked.splitlines() if line.strip() and not line.endswith("OK")
               and "note" not in line.lower()]  # fmt: skip
        if bad:
            raise HookError("CHECK TABLE found problems: %s" % "; ".join(bad[:5]))
        say("every table checks OK")
        answer = None
        if args.query:
            answer = run([_mysql_client(), "--socket", sock, "-u", args.db_user, "-N", "-B",
                          "-e", args.query])  # fmt: skip
            say("query %r -> %s" % (args.query, answer))
        info("mysql", "verify", check="ok", query=args.query, answer=answer)
    except HookError:
        log = os.path.join(sock_dir, "error.log")
        if os.path.exists(log):
            with open(log, encoding="utf-8", errors="replace") as handle:
                say("server log: " + handle.read()[-1500:])
        raise
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(sock_dir, ignore_errors=True)


def _mysql_ready(
    sock: str, args: argparse.Namespace, server: subprocess.Popen[bytes], seconds: float
) -> bool:
    """Waits until the server answers a ping (or exits, or `seconds` pass)."""
    admin = shutil.which("mariadb-admin") or shutil.which("mysqladmin") or "mysqladmin"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.poll() is None:
        if os.path.exists(sock):
            done = subprocess.run(
                [admin, "--socket", sock, "-u", args.db_user, "ping"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=False,
            )  # fmt: skip
            if done.returncode == 0:
                return True
        time.sleep(0.2)
    return False


def _server_bin() -> str:
    for name in ("mariadbd", "mysqld"):
        found = shutil.which(name) or (
            "/usr/sbin/" + name if os.path.exists("/usr/sbin/" + name) else None
        )
        if found:
            return found
    raise HookError("neither mariadbd nor mysqld is installed")


def mysql_main(phase: str, args: argparse.Namespace) -> None:
    {"pre": mysql_pre, "post": mysql_post, "verify": mysql_verify}[phase](args)


# --------------------------------------------------------------------------------------------
# Redis: BGSAVE and wait until the dump is written (then, optionally, freeze); verify checks the
# restored dump with redis-check-rdb


def _redis(args: argparse.Namespace, *command: str) -> str:
    return run(["redis-cli", "-s", args.socket, *command])


def _redis_info(args: argparse.Namespace) -> Dict[str, str]:
    lines = _redis(args, "INFO", "persistence").splitlines()
    return dict(line.strip().split(":", 1) for line in lines if ":" in line)


def _redis_saves(state: Dict[str, str]) -> int:
    """How many saves the server has made: `rdb_saves` (Redis 7), else LASTSAVE's second."""
    return int(state.get("rdb_saves") or state.get("rdb_last_save_time") or 0)


def redis_pre(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.save_timeout
    state = _redis_info(args)
    while state.get("rdb_bgsave_in_progress") == "1":  # a save started before us: not ours
        if time.monotonic() > deadline:
            raise HookError(
                "a BGSAVE already running did not finish within %gs" % args.save_timeout
            )
        time.sleep(0.05)
        state = _redis_info(args)
    before = _redis_saves(state)
    _redis(args, "BGSAVE")
    while True:
        state = _redis_info(args)
        if state.get("rdb_bgsave_in_progress") == "0" and _redis_saves(state) > before:
            break
        if time.monotonic() > deadline:
            raise HookError("BGSAVE did not finish within %gs" % args.save_timeout)
        time.sleep(0.05)
    if state.get("rdb_last_bgsave_status") != "ok":
        raise HookError(
            "BGSAVE failed: rdb_last_bgsave_status=%s" % state.get("rdb_last_bgsave_status")
        )
    say("BGSAVE written at %s" % state.get("rdb_last_save_time"))
    frozen = fsfreeze_pre(freeze_targets(args.freeze, args.allow_root)) if args.freeze else []
    info("redis", "pre", lastsave=int(state.get("rdb_last_save_time") or 0), frozen=frozen)


def redis_post(args: argparse.Namespace) -> None:
    thawed = fsfreeze_post(freeze_targets(args.freeze, args.allow_root)) if args.freeze else []
    info("redis", "post", thawed=thawed)


def redis_verify(args: argparse.Namespace) -> None:
    folder = _restored_folder(args, "redis")
    dump = os.path.join(folder, args.dump)
    if not os.path.isfile(dump):
        raise HookError("the restored copy has no %s" % args.dump)
    checked = run(["redis-check-rdb", dump])
    say(checked.splitlines()[-1] if checked else "redis-check-rdb: ok")
    info("redis", "verify", check="ok")


def redis_main(phase: str, args: argparse.Namespace) -> None:
    {"pre": redis_pre, "post": redis_post, "verify": redis_verify}[phase](args)


def _restored_folder(args: argparse.Namespace, kind: str) -> str:
    root = os.environ.get("QUIESCE_RESTORE_PATH") or (args.restored[-1] if args.restored else "")
    if not root:
        raise HookError("no restored copy: verify runs with the restored folder as its argument")
    folder = os.path.join(root, args.restored_data) if args.restored_data else root
    if not os.path.isdir(folder):
        raise HookError("%s is not a folder of the restored copy" % folder)
    return folder


def _give_to(folder: str, user: str) -> None:
    """Hands the restored copy (a throwaway) to the server's user."""
    if os.geteuid() != 0:
        return
    uid, gid = pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid
    for base, dirs, files in os.walk(folder):
        os.chown(base, uid, gid)
        for name in files + dirs:
            os.lchown(os.path.join(base, name), uid, gid)


# --------------------------------------------------------------------------------------------
# Command line


WORKLOADS: Dict[str, Callable[[str, argparse.Namespace], None]] = {
    "fsfreeze": fsfreeze_main,
    "postgresql": postgresql_main,
    "mysql": mysql_main,
    "redis": redis_main,
}

#: What each workload's hooks do, and the argv of each phase as an allowlist declares it
#: (after the library's own path), for `quiesce hooks list` and `quiesce hooks show`.
CATALOG: Dict[str, Dict[str, Any]] = {
    "fsfreeze": {
        "requires": ["mount"],
        "summary": "Freeze whole filesystems (any Linux filesystem with freeze support); the "
        "post thaws, and tolerates a filesystem that is not frozen. Refuses / and the "
        "filesystem of the runner's state unless told otherwise.",
        "phases": {
            "pre": ["fsfreeze", "pre", "--mount", "/data", "--mount", "/logs"],
            "post": ["fsfreeze", "post", "--mount", "/data", "--mount", "/logs"],
        },
    },
    "postgresql": {
        "requires": ["data"],
        "summary": "CHECKPOINT (so a restore replays little WAL), record the checkpoint and "
        "WAL positions, then freeze the data and WAL filesystems; the post thaws. verify starts "
        "a throwaway server on the restored copy (private socket and port), runs pg_amcheck "
        "and an optional query, and stops it.",
        "phases": {
            "pre": [
                "postgresql",
                "pre",
                "--data",
                "/var/lib/postgresql/15/main",
                "--wal",
                "/pg_wal",
                "--socket",
                "/run/postgresql",
            ],
            "post": [
                "postgresql",
                "post",
                "--data",
                "/var/lib/postgresql/15/main",
                "--wal",
                "/pg_wal",
            ],
            "verify": [
                "postgresql",
                "verify",
                "--restored-data",
                "main",
                "--query",
                "SELECT count(*) FROM orders",
            ],
        },
    },
    "mysql": {
        "summary": "FLUSH TABLES WITH READ LOCK, held by one session for the length of the "
        "freeze, and the binlog position recorded; optionally freeze the data filesystem too "
        "(recommended for InnoDB). The post ends the session. verify starts a server on the "
        "restored copy (its own binlog, no network) and checks every table.",
        "phases": {
            "pre": [
                "mysql",
                "pre",
                "--socket",
                "/run/mysqld/mysqld.sock",
                "--freeze",
                "/var/lib/mysql",
            ],
            "post": [
                "mysql",
                "post",
                "--socket",
                "/run/mysqld/mysqld.sock",
                "--freeze",
                "/var/lib/mysql",
            ],
            "verify": [
                "mysql",
                "verify",
                "--restored-data",
                "mysql",
                "--query",
                "SELECT count(*) FROM shop.orders",
            ],
        },
    },
    "redis": {
        "summary": "BGSAVE and wait until the dump is written, so the snapshot holds a "
        "complete dump.rdb; verify checks the restored dump with redis-check-rdb.",
        "phases": {
            "pre": ["redis", "pre", "--socket", "/run/redis/redis-server.sock"],
            "post": ["redis", "post", "--socket", "/run/redis/redis-server.sock"],
            "verify": ["redis", "verify", "--restored-data", "redis"],
        },
    },
}


#: Each workload's command line: (help, phases, options). An option is (flag, settings) with
#: argparse's settings; `build_parser` and Quiesce's policy check (`hooks: {use, with}`) both
#: read this one table.
ALLOW_ROOT = ("--allow-root", {"action": "store_true", "help": "allow freezing /"})
RESTORED = ("--restored-data", {"help": "verify: the folder inside the restored copy"})
QUERY = ("--query", {"help": "verify: a query that must succeed on the restored copy"})
COMMAND_LINE: Dict[str, Tuple[str, Tuple[str, ...], List[Tuple[str, Dict[str, Any]]]]] = {
    "fsfreeze": ("freeze whole filesystems (fsfreeze -f / -u)", ("pre", "post"), [
        ("--mount", {"action": "append", "required": True,
                     "help": "a path on a filesystem to freeze (repeat)"}),
        ALLOW_ROOT,
    ]),
    "postgresql": ("CHECKPOINT + freeze; verify a restored copy", ("pre", "post", "verify"), [
        ("--data", {"help": "the live data folder (pre, post)"}),
        ("--wal", {"help": "the live WAL folder when it is on another filesystem"}),
        ("--socket", {"default": "/run/postgresql", "help": "the server's socket folder"}),
        ("--port", {"type": int, "default": 5432}),
        ("--db-user", {"default": "postgres", "help": "the database role to connect as"}),
        ("--database", {"default": "postgres"}),
        ("--os-user", {"help": "the OS user that runs psql/postgres (default: the data "
                               "folder's owner; for verify: postgres)"}),
        ALLOW_ROOT, RESTORED, QUERY,
        ("--check-timeout", {"type": float, "default": 600.0}),
    ]),
    "mysql": ("FLUSH TABLES WITH READ LOCK held across the freeze", ("pre", "post", "verify"), [
        ("--socket", {"default": "/run/mysqld/mysqld.sock", "help": "the server's socket"}),
        ("--db-user", {"default": "root", "help": "the account (socket authentication)"}),
        ("--freeze", {"action": "append", "default": [],
                      "help": "also freeze this path's filesystem while locked (repeat)"}),
        ("--max-hold", {"type": float, "default": 600.0,
                        "help": "release the lock after this long even without a post"}),
        ("--lock-timeout", {"type": float, "default": 10.0,
                            "help": "give up on the lock after this long"}),
        ("--os-user", {"help": "verify: the OS user that runs the server (mysql)"}),
        ALLOW_ROOT, RESTORED, QUERY,
        ("--check-timeout", {"type": float, "default": 300.0}),
    ]),
    "redis": ("BGSAVE and wait for the dump before the snapshot", ("pre", "post", "verify"), [
        ("--socket", {"default": "/run/redis/redis-server.sock", "help": "the unix socket"}),
        ("--save-timeout", {"type": float, "default": 60.0}),
        ("--freeze", {"action": "append", "default": [], "help": "also freeze (repeat)"}),
        ALLOW_ROOT, RESTORED,
        ("--dump", {"default": "dump.rdb", "help": "verify: the dump file's name"}),
    ]),
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quiesce_hooks.py", description=__doc__.split("\n")[0])
    kinds = parser.add_subparsers(dest="kind", required=True)
    for kind, (text, phases, options) in COMMAND_LINE.items():
        sub = kinds.add_parser(kind, help=text)
        sub.add_argument("phase", choices=phases)
        for flag, settings in options:
            sub.add_argument(flag, **settings)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # verify gets the restored copy's folder as its last argument (and in QUIESCE_RESTORE_PATH)
    if extra and not (getattr(args, "phase", None) == "verify" and len(extra) == 1
                      and os.path.isabs(extra[0])):  # fmt: skip
        parser.error("unrecognized arguments: %s" % " ".join(extra))
    args.restored = extra
    if args.kind == "postgresql" and args.phase in ("pre", "post") and not args.data:
        say("postgresql %s needs --data" % args.phase)
        return 2
    try:
        WORKLOADS[args.kind](args.phase, args)
    except HookError as exc:
        say("%s %s failed: %s" % (args.kind, args.phase, exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
