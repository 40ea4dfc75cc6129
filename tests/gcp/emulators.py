"""Starts the real Firestore and Pub/Sub emulators (from the Google Cloud SDK) for the tests.

`gcloud emulators firestore start` runs on a free port in its own process group (gcloud, a shell
script and the Java emulator); the whole group is stopped when the session ends. Starting takes
about 6-8 s on this machine. Tests are skipped, with the reason, only when gcloud, Java or the
emulator component is missing. Each test gets its own collection prefix, so nothing needs to be
cleared between tests. `start_pubsub_emulator` does the same for Pub/Sub (the conftest's
`pubsub_emulator` fixture and bench/calls_gcp.py use it).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

PROJECT = "quiesce-test"
START_TIMEOUT = 60.0
_counter = itertools.count()


@dataclass(frozen=True)
class FirestoreEmulator:
    host: str  # host:port, what FIRESTORE_EMULATOR_HOST takes
    started_in: float  # seconds from launch to the first answer

    def client(self) -> firestore.Client:
        """A firestore.Client talking to the emulator (FIRESTORE_EMULATOR_HOST is set)."""
        return firestore.Client(project=PROJECT, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]


def unique_prefix(name: str = "t") -> str:
    """A collection prefix no other test uses."""
    return f"{name}{os.getpid()}x{next(_counter)}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _emulator_installed(gcloud: str) -> bool:
    root = Path(os.path.realpath(gcloud)).parent.parent
    candidates = [
        root / "platform" / "cloud-firestore-emulator",
        root / "lib" / "google-cloud-sdk" / "platform" / "cloud-firestore-emulator",
        Path("/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator"),
    ]
    return any(c.is_dir() for c in candidates)


def start_firestore_emulator(log: Path) -> Iterator[FirestoreEmulator]:
    """Starts the emulator, yields it, and stops its whole process group."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip("the Firestore emulator needs the Google Cloud SDK (gcloud is not on PATH)")
    if shutil.which("java") is None:
        pytest.skip("the Firestore emulator needs Java (java is not on PATH)")
    if not _emulator_installed(gcloud):
        pytest.skip("the gcloud component cloud-firestore-emulator is not installed")
    host = f"127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [gcloud, "emulators", "firestore", "start", f"--host-port={host}", "--quiet"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: gcloud, the script and java
        )
    try:
        while not _answers(host):
            if process.poll() is not None:
                raise RuntimeError(f"the Firestore emulator exited: {log.read_text()[-2000:]}")
            if time.monotonic() - started > START_TIMEOUT:
                raise RuntimeError(f"the Firestore emulator did not answer in {START_TIMEOUT}s")
            time.sleep(0.1)
        previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = host
        try:
            yield FirestoreEmulator(host=host, started_in=time.monotonic() - started)
        finally:
            if previous is None:
                os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
            else:
                os.environ["FIRESTORE_EMULATOR_HOST"] = previous
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirestoreEmulator]:
    log = tmp_path_factory.mktemp("firestore") / "emulator.log"
    yield from start_firestore_emulator(log)


def start_pubsub_emulator(log: Path) -> Iterator[str]:
    """Starts the Pub/Sub emulator on a free port, yields its host:port, and stops its whole
    process group (gcloud and the Java child). Skips when it cannot run here."""
    gcloud, java = shutil.which("gcloud"), shutil.which("java")
    if gcloud is None or java is None:
        pytest.skip("the Pub/Sub emulator needs gcloud and java on PATH (not installed here)")
    host = f"127.0.0.1:{_free_port()}"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [gcloud, "beta", "emulators", "pubsub", "start", f"--host-port={host}", "--quiet"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.skip(f"the Pub/Sub emulator did not start: {log.read_text()[-500:]}")
            try:
                with socket.create_connection(tuple(host.split(":")), timeout=0.5):  # type: ignore[arg-type]
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.skip(f"the Pub/Sub emulator did not answer in 60s: {log.read_text()[-500:]}")
        yield host
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # gcloud and its Java child: our own group
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
