"""The MariaDB/MySQL library hooks on a real server under write load: FLUSH TABLES WITH READ
LOCK held across a freeze of the data filesystem, the binlog position recorded, restored with
`quiesce restore` and checked by a server started on the copy (CHECK TABLE on every table)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .servers import backup_and_restore, base, library, loop_mount, need, write_policy

__all__ = ["base"]


COUNT = "SELECT count(*) FROM shop.orders"


def sql(sock: Path, statement: str, delimiter: str = ";") -> str:
    done = subprocess.run(
        [
            "mariadb",
            "--socket",
            str(sock),
            "-u",
            "root",
            "-N",
            "-B",
            f"--delimiter={delimiter}",
            "-e",
            statement,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def writer(sock: Path, folder: Path) -> subprocess.Popen[bytes]:
    """One client session inserting short transactions as fast as it can."""
    script = folder / "load.sql"
    script.write_text("INSERT INTO shop.orders (note) VALUES (REPEAT('x', 200));\n" * 200_000)
    with open(script, "rb") as statements:
        return subprocess.Popen(
            ["mariadb", "--socket", str(sock), "-u", "root"],
            stdin=statements, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip


@pytest.fixture
def server(base: Path) -> Iterator[dict[str, Any]]:
    need("mariadbd", "mariadb-install-db", "mariadb", "mariadb-check")
    data_fs = loop_mount(base / "fs-data", 300, owner="mysql")
    data = data_fs / "mysql"
    run = base / "run"
    run.mkdir()
    subprocess.run(["chown", "mysql:mysql", str(run)], check=True)
    subprocess.run(
        ["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=mysql",
         "--auth-root-authentication-method=socket", "--skip-test-db"],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    sock = run / "mysqld.sock"
    server = subprocess.Popen(
        ["mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={sock}", "--user=mysql",
         "--skip-networking", f"--pid-file={run}/mysqld.pid", f"--log-bin={data}/binlog",
         "--server-id=1", f"--log-error={run}/error.log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert time.monotonic() < deadline, (run / "error.log").read_text()
            time.sleep(0.2)
        sql(sock, "CREATE DATABASE shop")
        sql(sock, "CREATE TABLE shop.orders (id INT AUTO_INCREMENT PRIMARY KEY, note TEXT)")
        sql(
            sock,
            "CREATE PROCEDURE shop.load(seconds INT) BEGIN DECLARE stop DATETIME DEFAULT "
            "NOW() + INTERVAL seconds SECOND; WHILE NOW() < stop DO INSERT INTO shop.orders "
            "(note) VALUES (REPEAT('x', 200)); END WHILE; END",
            delimiter="//",
        )
        yield {"data": data, "sock": sock}
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_a_loaded_mariadb_restores_with_every_table_checking_ok(
    server: dict[str, Any], base: Path
) -> None:
    sock = str(server["sock"])
    freeze = ["--freeze", str(server["data"])]
    member = {
        "name": "db",
        "provider": "local",
        "volumes": [str(server["data"])],
        "hooks": {
            "pre": {
                "run": library("mysql", "pre", "--socket", sock, *freeze),
                "timeout_seconds": 30,
            },
            "post": {
                "run": library("mysql", "post", "--socket", sock, *freeze),
                "timeout_seconds": 30,
            },
            "verify": {
                "run": library("mysql", "verify", "--restored-data", "mysql", "--query", COUNT),
                "timeout_seconds": 300,
            },
        },
    }
    policy = write_policy(base / "policy.yaml", [member], base / "state")
    load = writer(server["sock"], base)
    time.sleep(1)  # rows are being written
    try:
        record, result = backup_and_restore(policy, base / "r")
    finally:
        load.terminate()
        load.wait(timeout=60)

    facts = record["members"][0]["machines"][0]["pre"]["facts"]
    assert facts["binlog"]["file"].startswith("binlog.")
    assert facts["binlog"]["position"] > 0
    assert record["members"][0]["machines"][0]["post"]["facts"]["released"] is True
    assert result["verified"] is True, result
    verify = result["members"][0]["verify"]
    assert "every table checks OK" in verify["output"]
    assert int(verify["facts"]["answer"]) > 0
    # the lock is gone: the live server takes writes again
    assert sql(server["sock"], "INSERT INTO shop.orders (note) VALUES ('after'); SELECT 1") == "1"
