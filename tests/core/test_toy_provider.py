"""A provider written outside the core: a tiny package that registers itself only through the
`quiesce.providers` entry point (a `*.dist-info/entry_points.txt` in a temporary folder on the
path) backs up a group with `quiesce run`, and `quiesce schema`, `validate` and `plan` know its
members. Nothing under shared/ names it (docs/providers.md#adding-a-provider)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: The whole provider: its member model, its spec, and adapters for the three ports. Its
#: "machines" are folders; a snapshot is a copy; a hook writes a line to the member's journal.
TOY_SPEC = '''
"""The `toy` provider's spec: no SDK, the adapters are imported when the factory is called."""

from typing import Literal

from pydantic import Field

from quiesce.policy.model import MemberBase
from quiesce.providers.registry import ProviderSpec


class ToyMember(MemberBase):
    """A folder standing for a machine."""

    provider: Literal["toy"] = Field(description="A folder standing for a machine.")
    folder: str = Field(description="The folder to copy.")
    journal: str = Field(description="Where the toy hooks write what they did.")


def make_provider(policy, *, scratch=False):
    from toy_quiesce.adapters import toy_provider

    return toy_provider(policy)


SPEC = ProviderSpec(
    name="toy",
    member=ToyMember,
    factory=make_provider,
    description="Folders standing for machines (a test provider).",
    extra="toy",
)
'''

TOY_ADAPTERS = '''
"""Adapters of the `toy` provider: each port's few methods, nothing else."""

import shutil
from datetime import UTC, datetime
from pathlib import Path

from quiesce.ports import HookRunner, Inventory, Machine, Provider, Snapshotter
from quiesce.providers.registry import expect_member
from quiesce.record import HookResult, HookStatus, SnapshotRef, SnapshotState

from toy_quiesce.spec import ToyMember


class ToyInventory(Inventory):
    def resolve(self, member):
        toy = expect_member(member, ToyMember)
        return [Machine("toy", toy.name, f"toy-{toy.name}", (toy.folder,), {"os": "linux"})]


class ToyHooks(HookRunner):
    def run(self, call):
        toy = expect_member(call.spec, ToyMember)  # the member comes with the call
        with open(toy.journal, "a") as journal:
            journal.write(f"{call.phase} {call.hook.name}\\n")
        now = datetime.now(UTC)
        return HookResult(status=HookStatus.SUCCEEDED, code="Succeeded", started_at=now,
                          ended_at=now)

    def check(self, call):
        return HookResult(status=HookStatus.SUCCEEDED, code="Allowed")


class ToySnapshots(Snapshotter):
    def __init__(self, store):
        self.store = Path(store)

    def take(self, call):
        toy = expect_member(call.spec, ToyMember)
        now = datetime.now(UTC)
        copy = self.store / call.run_id / call.member
        shutil.copytree(toy.folder, copy)
        tags = {"quiesce:policy": call.policy, "quiesce:group": call.group,
                "quiesce:run-id": call.run_id}
        return [SnapshotRef(id=f"toy-{call.run_id}-{call.member}", provider="toy",
                            machine_id=call.machine.machine_id, volume=toy.folder, method="copy",
                            state=SnapshotState.COMPLETED, started_at=now, fixed_at=now,
                            durable_at=now, location=str(copy), tags=tags)]

    def wait_durable(self, snapshots, timeout):
        return list(snapshots)

    def delete(self, snapshot):
        shutil.rmtree(snapshot.location, ignore_errors=True)

    def find(self, policy, group, run_id=None):
        return []


def toy_provider(policy):
    store = Path(policy.state_dir) / "toy-snapshots"
    return Provider(inventory=ToyInventory(), hooks=ToyHooks(), snapshots=ToySnapshots(store))
'''


@pytest.fixture
def toy_site(tmp_path: Path) -> Path:
    """A folder holding the toy package and the metadata that declares its entry point."""
    site = tmp_path / "site"
    package = site / "toy_quiesce"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "spec.py").write_text(textwrap.dedent(TOY_SPEC))
    (package / "adapters.py").write_text(textwrap.dedent(TOY_ADAPTERS))
    dist = site / "toy_quiesce-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-quiesce\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[quiesce.providers]\ntoy = toy_quiesce.spec:SPEC\n")
    return site


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "table.db").write_text("rows\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        textwrap.dedent(f"""\
            version: 1
            name: shop
            groups:
              orders:
                max_freeze_seconds: 30
                members:
                  - name: db
                    provider: toy
                    folder: {data}
                    journal: {tmp_path / "journal.txt"}
                    hooks:
                      pre: {{run: [/toy/pause], timeout_seconds: 5}}
                      post: {{run: [/toy/resume], timeout_seconds: 5}}
            """)
    )
    return policy


def quiesce(site: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line in a fresh interpreter, with the toy package on its path (or not)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-m", "quiesce.cli.app", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=120,
    )


def test_a_provider_installed_by_its_entry_point_backs_up_a_group(
    toy_site: Path, policy_file: Path, tmp_path: Path
) -> None:
    ran = quiesce(toy_site, "run", str(policy_file), "--group", "orders", "--json")
    assert ran.returncode == 0, ran.stderr + ran.stdout
    record = json.loads(ran.stdout)
    assert record["status"] == "succeeded"
    assert record["consistency"] == "application"
    (member,) = record["members"]
    assert member["snapshots"] == [f"toy-{record['run_id']}-db"]
    copy = tmp_path / ".quiesce" / "toy-snapshots" / record["run_id"] / "db" / "table.db"
    assert copy.read_text() == "rows\n"
    journal = (tmp_path / "journal.txt").read_text().splitlines()
    assert journal == ["pre orders.db.pre", "post orders.db.post"]


def test_schema_validate_and_plan_know_the_toy_members(toy_site: Path, policy_file: Path) -> None:
    schema = quiesce(toy_site, "schema")
    assert schema.returncode == 0, schema.stderr
    assert "ToyMember" in json.loads(schema.stdout)["$defs"]
    valid = quiesce(toy_site, "validate", str(policy_file))
    assert valid.returncode == 0, valid.stderr + valid.stdout
    plan = quiesce(toy_site, "plan", str(policy_file), "--json")
    (group,) = json.loads(plan.stdout)["groups"]
    (member,) = group["members"]
    assert (member["provider"], member["machines"]) == ("toy", ["toy-db"])
    # The toy channel reports no allowlist, so plan cannot say the machine declares the hook.
    (machine,) = member["hooks"]["pre"]["machines"]
    assert (machine["check"]["code"], machine["allowlist"]) == ("Allowed", "unknown")


def test_without_the_package_the_policy_names_the_installed_providers(policy_file: Path) -> None:
    refused = quiesce(None, "validate", str(policy_file))
    assert refused.returncode != 0
    message = refused.stderr + refused.stdout
    assert "unknown provider 'toy'" in message
    assert "known providers: local" in message
    assert "pip install 'quiesce[toy]'" in message
