"""The Redis library hooks on a real server: BGSAVE completes before the snapshot, and the
restored dump passes redis-check-rdb and loads into a server with every key."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .servers import backup_and_restore, base, library, need, write_policy

__all__ = ["base"]


def cli(sock: Path, *command: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-s", str(sock), *command], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def start(folder: Path, sock: Path) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(sock), "--dir", str(folder),
         "--save", "", "--appendonly", "no", "--enable-debug-command", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not sock.exists():
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    return server


@pytest.fixture
def server(base: Path) -> Iterator[dict[str, Any]]:
    need("redis-server", "redis-cli", "redis-check-rdb", "redis-benchmark")
    data = base / "redis"
    data.mkdir()
    sock = base / "redis.sock"
    proc = start(data, sock)
    try:
        assert cli(sock, "DEBUG", "POPULATE", "20000", "key", "64") == "OK"
        yield {"data": data, "sock": sock}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_redis_dump_is_complete_in_the_recovery_point(server: dict[str, Any], base: Path) -> None:
    sock = str(server["sock"])
    member = {
        "name": "cache",
        "provider": "local",
        "volumes": [str(server["data"])],
        "hooks": {
            "pre": {"run": library("redis", "pre", "--socket", sock), "timeout_seconds": 30},
            "post": {"run": library("redis", "post", "--socket", sock), "timeout_seconds": 10},
            "verify": {
                "run": library("redis", "verify", "--restored-data", "redis"),
                "timeout_seconds": 60,
            },
        },
    }
    policy = write_policy(base / "policy.yaml", [member], base / "state")
    load = subprocess.Popen(
        ["redis-benchmark", "-s", sock, "-t", "set", "-n", "5000000", "-r", "100000", "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        record, result = backup_and_restore(policy, base / "r")
    finally:
        load.kill()
        load.wait(timeout=30)

    assert record["members"][0]["machines"][0]["pre"]["facts"]["lastsave"] > 0
    assert result["verified"] is True, result
    copy = base / "r" / "cache" / "redis"
    restored = start(copy, base / "restored.sock")
    try:
        assert int(cli(base / "restored.sock", "DBSIZE")) >= 20000
    finally:
        restored.terminate()
        restored.wait(timeout=30)


def test_two_saves_within_one_second_are_both_seen(server: dict[str, Any]) -> None:
    # LASTSAVE has a one-second resolution: a pre that compared it waited for a change that
    # never came when its BGSAVE finished in the same second as the one before.
    pre = library("redis", "pre", "--socket", str(server["sock"]), "--save-timeout", "5")

    results = [subprocess.run(pre, capture_output=True, text=True, timeout=30) for _ in range(3)]

    assert [r.returncode for r in results] == [0, 0, 0], [r.stdout for r in results]
