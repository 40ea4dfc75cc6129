"""Fixtures of the GCP adapters' tests: the real google-cloud-compute clients against the
wire-level fake Compute API, fake metadata servers wired to it, the real guest agent and guest
hook runner on real hook scripts, and the Pub/Sub emulator.

A `Fleet` VM is an instance in the fake API, a FakeMetadata server for it, and (optionally) a
running Agent (quiesce_gcp/quiesce_agent.py) with its own allowlist, signing key (derived from
the fleet's master key, as the OS policy installs it), state folder and hooks in tmp_path: the
adapter's signed setMetadata reaches the agent through the metadata server's long poll, the
agent runs the hook through the real runner, and its signed guest attribute answer is what the
adapter's getGuestAttributes reads.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials

from quiesce.guest import RUNNER_PATH
from quiesce.policy.model import Policy
from quiesce_gcp import quiesce_agent as agent_mod
from quiesce_gcp.agent import allowlist
from quiesce_gcp.clients import GcpClients
from quiesce_gcp.signing import AgentKeys, instance_path

from .emulators import start_pubsub_emulator
from .fake_compute import FakeCompute
from .fake_filestore import FakeFilestore
from .fake_metadata import FakeMetadata

PROJECT = "quiesce-test"
ZONE = "europe-west1-b"


@pytest.fixture
def compute() -> Iterator[FakeCompute]:
    fake = FakeCompute().start()
    yield fake
    fake.stop()


@pytest.fixture
def filestore() -> Iterator[FakeFilestore]:
    fake = FakeFilestore().start()
    yield fake
    fake.stop()


@pytest.fixture
def app_main() -> Iterator[None]:
    """functions-framework loads main.py as the module `main`: forget it afterwards."""
    yield
    sys.modules.pop("main", None)


#: The fleet's agent master key (the orchestrator's secret); each VM gets only its derived key.
MASTER_KEY = "5e" * 32


@pytest.fixture
def clients(compute: FakeCompute) -> GcpClients:
    return GcpClients(AnonymousCredentials(), compute_endpoint=compute.url)  # type: ignore[no-untyped-call]


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


@dataclass
class Vm:
    name: str
    metadata: FakeMetadata
    config_path: Path
    state_dir: Path
    key_path: Path
    agent: agent_mod.Agent | None = None
    thread: threading.Thread | None = None

    def start_agent(self, poll_timeout: int = 2) -> agent_mod.Agent:
        self.agent = agent_mod.Agent(
            str(self.config_path), self.metadata.url, poll_timeout=poll_timeout
        )
        self.thread = threading.Thread(target=self.agent.serve, daemon=True)
        self.thread.start()
        return self.agent

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop.set()
        self.metadata.stop()
        if self.thread is not None:
            self.thread.join(timeout=10)
        if self.agent is not None:
            for t in self.agent.threads:
                t.join(timeout=30)


@dataclass
class Fleet:
    """VMs in the fake API, each with a metadata server and an agent config from the policy."""

    compute: FakeCompute
    root: Path
    vms: dict[str, Vm] = field(default_factory=dict)

    @property
    def journal(self) -> Path:
        return self.root / "journal.log"

    @property
    def keys(self) -> AgentKeys:
        return AgentKeys.from_hex(MASTER_KEY)

    @property
    def keys_hex(self) -> str:
        return MASTER_KEY

    def hooks(self, member: str) -> dict[str, Any]:
        """A member's hooks: scripts that append to the shared journal."""
        folder = self.root / "hooks"
        folder.mkdir(mode=0o755, exist_ok=True)
        pre = write_script(folder / f"{member}-pre.sh", f'echo "pre $1" >> {self.journal}')
        post = write_script(folder / f"{member}-post.sh", f'echo "post $1" >> {self.journal}')
        return {
            "pre": {"run": [str(pre), member], "timeout_seconds": 5},
            "post": {"run": [str(post), member], "timeout_seconds": 5},
        }

    def add(
        self,
        name: str,
        policy: Policy,
        *,
        labels: dict[str, str] | None = None,
        data_disks: int = 1,
        agent: bool = True,
    ) -> Vm:
        self.compute.journal_path = self.journal
        self.compute.add_instance(PROJECT, ZONE, name, labels=labels, data_disks=data_disks)
        folder = self.root / "vm" / name
        folder.mkdir(parents=True, mode=0o700)
        state = folder / "state"
        key_path = folder / "agent.key"
        key_path.write_text(self.keys.for_instance(instance_path(PROJECT, ZONE, name)).hex())
        key_path.chmod(0o600)
        config = allowlist(
            policy, runner=str(RUNNER_PATH), state_dir=str(state), signing_key_file=str(key_path)
        )
        config_path = folder / "hooks.json"
        config_path.write_text(json.dumps(config))
        config_path.chmod(0o600)
        metadata = FakeMetadata(self.compute, PROJECT, ZONE, name).start()
        vm = Vm(name, metadata, config_path, state, key_path)
        self.vms[name] = vm
        if agent:
            vm.start_agent()
        return vm

    def lines(self) -> list[str]:
        """The journal: hook runs ("pre db") and the fake API's mutations, in order."""
        return self.journal.read_text().splitlines() if self.journal.exists() else []

    def hook_lines(self) -> list[str]:
        return [line for line in self.lines() if line.startswith(("pre ", "post "))]


@pytest.fixture
def fleet(compute: FakeCompute, tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(compute, tmp_path)
    yield f
    for vm in f.vms.values():
        vm.stop()


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# ------------------------------------------------------------------------------ Pub/Sub emulator


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Pub/Sub emulator on a free port (its host:port); its whole process group (gcloud
    and the Java child) is stopped at the end of the session."""
    log = tmp_path_factory.mktemp("pubsub") / "emulator.log"
    yield from start_pubsub_emulator(log)
