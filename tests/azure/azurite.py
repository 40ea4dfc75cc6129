"""Starts a real Azurite (the Azure Storage emulator, Table service only) for the tests.

Azurite is installed with npm into a cache folder outside the repository
(QUIESCE_AZURITE_DIR, default ~/.cache/quiesce/azurite) the first time (~30 s), then started
from there (~1 s) on a free port, in memory, in its own process group; the group is stopped when
the session ends. Tests are skipped, with the reason, only when node or npm is missing.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

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


class FaultyTables:
    """A proxy in front of Azurite's Table service that answers chosen writes the way a
    throttled storage account does (503 `ServerBusy`, the service's JSON error) and passes
    every other request through unchanged: a transient fault on the wire, seen by the real
    azure-data-tables client as it would see it from Azure.

    `fail_writes(partition, times)` answers the next `times` entity writes (POST, PUT, PATCH,
    MERGE) whose body names PartitionKey `partition`; `failed` lists the requests so answered."""

    def __init__(self, connection: str) -> None:
        endpoint = dict(p.split("=", 1) for p in connection.split(";") if p)["TableEndpoint"]
        host_port = endpoint.split("//", 1)[1].split("/", 1)[0]
        self.upstream = host_port.split(":")[0], int(host_port.split(":")[1])
        self._through = connection, host_port
        self.armed: dict[str, int] = {}
        self.failed: list[tuple[str, str]] = []
        self._server: ThreadingHTTPServer | None = None

    def fail_writes(self, partition: str, times: int = 1) -> None:
        self.armed[partition] = times

    def _faulted(self, method: str, path: str, body: bytes) -> bool:
        """Whether to answer this request 503: an entity write (its JSON body names the
        PartitionKey) to an armed partition. Batches (multipart) pass through."""
        if method not in ("POST", "PUT", "PATCH", "MERGE"):
            return False
        try:
            entity = json.loads(body or b"null")
        except ValueError:
            return False
        partition = entity.get("PartitionKey") if isinstance(entity, dict) else None
        if self.armed.get(partition, 0) <= 0:
            return False
        self.armed[partition] -= 1
        self.failed.append((method, path))
        return True

    def start(self) -> str:
        """Starts the proxy; returns the connection string that goes through it."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy._faulted(self.command, self.path, body):
                    error = {
                        "odata.error": {
                            "code": "ServerBusy",
                            "message": {"lang": "en-US", "value": "The server is busy."},
                        }
                    }
                    self._answer(
                        503,
                        [("Content-Type", "application/json"), ("x-ms-error-code", "ServerBusy")],
                        json.dumps(error).encode(),
                    )
                    return
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP]
                    self._answer(response.status, kept, payload)
                finally:
                    upstream.close()

            def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    if key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_MERGE = do_HEAD = _relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        connection, host_port = self._through
        return connection.replace(host_port, f"127.0.0.1:{self._server.server_address[1]}")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}
