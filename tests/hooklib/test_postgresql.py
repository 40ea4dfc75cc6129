"""The PostgreSQL library hooks on a real server under write load: data and WAL on two
loop-mounted filesystems, backed up as two members of one group with `quiesce run`, restored
with `quiesce restore`, and verified by a throwaway server on the copy with pg_amcheck."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from quiesce.cli.app import app

from .servers import base, loop_mount

__all__ = ["base"]

PG_USER = "quiesce-pg"
PG_BIN = Path("/usr/lib/postgresql")


def pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for version in sorted(PG_BIN.iterdir(), reverse=True) if PG_BIN.is_dir() else []:
        if (version / "bin" / name).exists():
            return str(version / "bin" / name)
    pytest.skip(f"PostgreSQL's {name} is not installed")


def as_pg(*argv: str, timeout: float = 120) -> str:
    done = subprocess.run(
        ["runuser", "-u", PG_USER, "--", *argv], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (argv, done.stdout, done.stderr)
    return done.stdout


@pytest.fixture(scope="module")
def pg_user() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("running a server as its own user and mounting filesystems need root")
    for tool in ("useradd", "runuser", "mkfs.ext4", "fsfreeze", "mount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    created = subprocess.run(["id", PG_USER], capture_output=True).returncode != 0
    if created:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_USER], check=True)
    yield PG_USER
    if created:
        subprocess.run(["userdel", PG_USER], check=False)


@pytest.fixture
def server(pg_user: str, base: Path) -> Iterator[dict[str, Any]]:
    """A PostgreSQL cluster: data on one filesystem, WAL on another, a socket in a private
    folder, pgbench tables loaded."""
    data_fs = loop_mount(base / "fs-data", 200, owner=pg_user)
    wal_fs = loop_mount(base / "fs-wal", 200, owner=pg_user)
    sock = base / "sock"
    sock.mkdir()
    os.chown(sock, *_ids(pg_user))
    data, wal = data_fs / "data", wal_fs / "wal"
    as_pg(pg_tool("initdb"), "-D", str(data), "--waldir", str(wal), "-U", "postgres", "-A", "trust")
    port = 5400 + os.getpid() % 500
    as_pg(
        pg_tool("pg_ctl"), "-D", str(data), "-l", str(data_fs / "server.log"), "-w",
        "-o", f"-c listen_addresses='' -c unix_socket_directories={sock} -p {port}", "start",
    )  # fmt: skip
    info = {"data": data, "wal": wal, "sock": sock, "port": port, "user": pg_user}
    try:
        as_pg(pg_tool("pgbench"), "-h", str(sock), "-p", str(port), "-U", "postgres", "-i",
              "-s", "2", "-q", "postgres")  # fmt: skip
        yield info
    finally:
        subprocess.run(
            [
                "runuser",
                "-u",
                pg_user,
                "--",
                pg_tool("pg_ctl"),
                "-D",
                str(data),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            capture_output=True,
            timeout=60,
        )  # fmt: skip (the base fixture unmounts the filesystems)


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def test_a_loaded_postgresql_on_two_filesystems_restores_clean(
    server: dict[str, Any], base: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "name": "pg",
                "state_dir": str(tmp_path / "state"),
                "groups": {
                    "orders": {
                        "consistency": "application",
                        "on_quiesce_failure": "abort",
                        "max_freeze_seconds": 60,
                        "members": [
                            {
                                "name": "db",
                                "provider": "local",
                                "volumes": [str(server["data"])],
                                "hooks": {
                                    "use": "postgresql",
                                    "with": {
                                        "data": str(server["data"]),
                                        "wal": str(server["wal"]),
                                        "socket": str(server["sock"]),
                                        "port": server["port"],
                                        "restored_data": "data",
                                        "os_user": server["user"],
                                        "query": "SELECT count(*) FROM pgbench_history",
                                    },
                                },
                            },
                            {"name": "wal", "provider": "local", "volumes": [str(server["wal"])]},
                        ],
                    }
                },
            }
        )
    )
    runner = CliRunner()
    load = subprocess.Popen(
        ["runuser", "-u", server["user"], "--", pg_tool("pgbench"), "-h", str(server["sock"]),
         "-p", str(server["port"]), "-U", "postgres", "-c", "2", "-T", "20", "-n", "postgres"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        ran = runner.invoke(app, ["run", str(policy), "-g", "orders", "--json"])
    finally:
        load.terminate()
        load.wait(timeout=60)
    assert ran.exit_code == 0, ran.output
    record = json.loads(ran.output)
    assert record["consistency"] == "application", record
    facts = record["members"][0]["machines"][0]["pre"]["facts"]
    assert facts["kind"] == "postgresql"
    assert facts["checkpoint_lsn"]
    assert facts["wal_lsn"]
    assert len(facts["frozen"]) == 2

    restored = runner.invoke(
        app,
        ["restore", str(policy), record["recovery_point"], "--to", str(base / "r"), "--json"],
    )

    assert restored.exit_code == 0, restored.output
    result = json.loads(restored.output)
    assert result["verified"] is True, result
    verify = result["members"][0]["verify"]
    assert "pg_amcheck: no corruption found" in verify["output"]
    assert (server["data"] / "postmaster.pid").exists()  # the live server's is never touched
    points = json.loads(runner.invoke(app, ["points", str(policy), "--json"]).output)
    [point] = [p for p in points if p["id"] == record["recovery_point"]]
    assert point["members"][0]["facts"]["vm"]["pre"]["wal_lsn"] == facts["wal_lsn"]
