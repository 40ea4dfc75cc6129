"""The timer function of the Function App, end to end on the Azure adapters: the real Compute
clients against the fake ARM server, the real Event Grid client against its fake topic, and the
documented timer object (tests/azure/payloads/timer.json) decoded by azure-functions' timer
converter.

A two-VM group fired by its timer gets a restore point (or one incremental snapshot per disk)
of both VMs, with both pre hooks sent before any snapshot and both post hooks after, and the
run's CloudEvents arrive on the topic."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from azure.core.credentials import AzureKeyCredential

from quiesce.ports import Backends
from quiesce.providers.memory import MemoryStateStore
from quiesce_azure.events import EventGridPublisher
from quiesce_azure.provider import azure_provider

from .deliveries import timer
from .fake_arm import FakeArm, FakeCredential
from .policies import shop, vm_member
from .test_engine_run import phases_in_order


def policy(snapshot: str) -> dict[str, Any]:
    return shop(
        [vm_member("db", snapshot=snapshot), vm_member("app", snapshot=snapshot)],
        triggers=[{"name": "nightly", "group": "orders", "schedule": "0 4 * * *"}],
    )


def function_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arm: FakeArm, snapshot: str
) -> ModuleType:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy(snapshot)))
    monkeypatch.setenv("AzureWebJobsScriptRoot", str(tmp_path))
    monkeypatch.setenv("QUIESCE_POLICY", "policy.yaml")
    monkeypatch.delenv("WEBSITE_TIME_ZONE", raising=False)
    from quiesce_azure import function_app as module

    module = importlib.reload(module)
    loaded = module.policy()
    backends = Backends(
        providers={
            "azure": azure_provider(
                loaded, FakeCredential(), base_url=arm.base_url, polling_interval=0
            )
        },
        state=MemoryStateStore(),
        bus=EventGridPublisher(arm.events_endpoint, AzureKeyCredential(arm.event_key)),
    )
    monkeypatch.setattr(module, "backends", lambda: backends)
    return module


@pytest.fixture
def vms(arm: FakeArm) -> None:
    arm.snapshot_copy_polls = 1
    arm.add_vm("db-1", data_disks=1)
    arm.add_vm("app-1", data_disks=1)


@pytest.mark.parametrize(("snapshot", "created"), [("restore_point", 2), ("disk_snapshots", 4)])
def test_the_timer_backs_up_a_two_vm_group_and_publishes_its_cloudevents(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    arm: FakeArm,
    vms: None,
    snapshot: str,
    created: int,
) -> None:
    module = function_app(tmp_path, monkeypatch, arm, snapshot)
    nightly = module.SCHEDULES["nightly"].build().get_user_function()

    nightly(timer())  # the documented timer object, decoded by azure-functions

    assert phases_in_order(arm) == ["pre", "pre"] + ["snapshot"] * created + ["post", "post"]
    assert sorted(c.vm for c in arm.hook_calls_of("pre")) == ["app-1", "db-1"]
    if snapshot == "restore_point":
        assert len(arm.points) == 2
    else:
        assert len(arm.snapshots) == 4
    types = [e["type"] for batch in arm.event_batches for e in batch]
    assert types[0] == "quiesce.run.started"
    assert types.count("quiesce.member.quiesced") == 2
    assert types.count("quiesce.member.thawed") == 2
    assert types[-1] == "quiesce.run.completed"
    completed = [e for batch in arm.event_batches for e in batch][-1]
    assert completed["data"]["status"] == "succeeded"
    assert completed["data"]["consistency"] == "application"
