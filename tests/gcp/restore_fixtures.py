"""What the GCP restore and drill tests share: a fake Compute API whose restored instances
"boot" a real guest agent from the disk copy of their original (its allowlist and signing key,
as the restored boot disk holds them), and a listing of every resource a restore may leave."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import Fleet, Vm
from .fake_compute import FakeCompute
from .fake_metadata import FakeMetadata

RESTORE_LABEL = "quiesce-restore"
RESTORE_OF_LABEL = "quiesce-restore-of"


class Booter:
    """Boots a restored copy when the fake API first shows it RUNNING: a metadata server for
    the copy (its own name and zone) and the real agent, run with the files of the instance it
    was restored from (the boot disk is a copy of that instance's: same allowlist, same key)."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.booted: dict[str, Vm] = {}
        #: Original names whose copies boot without an agent (one that never answers).
        self.silent: set[str] = set()
        #: Replaces the key file on copies of these originals (a copy holding another key).
        self.other_key: dict[str, str] = {}

    def __call__(self, project: str, zone: str, name: str) -> None:
        inst = self.fleet.compute.instances[(project, zone, name)]
        original = inst["labels"].get(RESTORE_OF_LABEL)
        if original is None or original not in self.fleet.vms or name in self.booted:
            return
        source = self.fleet.vms[original]
        folder = self.fleet.root / "copies" / name
        folder.mkdir(parents=True, mode=0o700)
        key_path = folder / "agent.key"
        shutil.copy(source.key_path, key_path)
        if original in self.other_key:
            key_path.write_text(self.other_key[original])
        key_path.chmod(0o600)
        config = json.loads(source.config_path.read_text())
        config["state_dir"] = str(folder / "state")
        config["agent"]["signing_key_file"] = str(key_path)
        config_path = folder / "hooks.json"
        config_path.write_text(json.dumps(config))
        config_path.chmod(0o600)
        metadata = FakeMetadata(self.fleet.compute, project, zone, name).start()
        vm = Vm(name, metadata, config_path, folder / "state", key_path)
        self.booted[name] = vm
        if original not in self.silent:
            vm.start_agent()


@pytest.fixture
def booter(fleet: Fleet) -> Iterator[Booter]:
    boot = Booter(fleet)
    fleet.compute.on_running = boot
    yield boot
    fleet.compute.on_running = None
    for vm in boot.booted.values():
        vm.stop()


def restore_resources(compute: FakeCompute, label: str | None = None) -> list[str]:
    """Every instance and disk carrying the restore label (any value when None)."""
    out = []
    with compute.lock:
        for kind, table in (("instances", compute.instances), ("disks", compute.disks)):
            for key, item in sorted(table.items()):
                value = item.get("labels", {}).get(RESTORE_LABEL)
                if value is not None and (label is None or value == label):
                    out.append(f"{kind}/{key[-1]}")
    return out


def everything(compute: FakeCompute) -> dict[str, list[Any]]:
    """The names of all instances, disks, images and snapshots the fake holds."""
    with compute.lock:
        return {
            "instances": sorted(k[-1] for k in compute.instances),
            "disks": sorted(k[-1] for k in compute.disks),
            "images": sorted(k[-1] for k in compute.images),
            "snapshots": sorted(k[-1] for k in compute.snapshots),
        }
