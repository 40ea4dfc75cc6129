"""Starts a real Azurite (the Azure Storage emulator, Table service only) for the tests.

Azurite is installed with npm into a cache folder outside the repository
(QUIESCE_AZURITE_DIR, default ~/.cache/quiesce/azurite) the first time (~30 s), then started
from there (~1 s) on a free port, in memory, in its own process group; the group is stopped when
the session ends. Tests are skipped, with the reason, only when node or npm is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

VERSION = "3.35.0"
ACCOUNT = "devstoreaccount1"
#: Azurite's well-known development key (public, documented by Microsoft).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "quiesce" / "azurite"
    return Path(os.environ.get("QUIESCE_AZURITE_DIR", str(default)))


def connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"TableEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def install() -> Path:
    """The azurite-table launcher, installed into the cache folder if it is not there yet."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Azurite needs Node.js and npm, and this machine has neither on PATH")
    folder = cache_dir() / VERSION
    launcher = folder / "node_modules" / ".bin" / "azurite-table"
    if not launcher.exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(folder),
                f"azurite@{VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return launcher


def _wait_for(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Azurite exited with {process.returncode} before it listened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"Azurite did not listen on port {port} within {timeout:g}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stops Azurite and its children (its own process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def run_azurite() -> Iterator[str]:
    """Yields the connection string of a fresh in-memory Azurite Table service."""
    launcher = install()
    port = _free_port()
    process = subprocess.Popen(
        [
            str(launcher),
            "--silent",
            "--inMemoryPersistence",
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(port),
            "--skipApiVersionCheck",
            "--disableProductStyleUrl",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for(port, process)
        yield connection_string(port)
    finally:
        stop(process)


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    yield from run_azurite()
