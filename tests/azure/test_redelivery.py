"""A redelivery after a transient failure backs the group up exactly once, through the real
`deploy_events` function: the catalog is a real Table (Azurite, through the real
azure-data-tables client), the VMs and the Event Grid topic are the wire-level fake ARM, the
event is Microsoft's documented Resource Manager event decoded by azure-functions.

The first delivery claims the event and then meets a throttled storage account: the Table
service answers the group lock's write with 503 ServerBusy (at the wire, between the client and
Azurite). The function raises, as it must for Event Grid to deliver the event again; nothing was
frozen and the run is recorded as failed. The redelivery of the same event takes the trigger
over and runs: one recovery point, one succeeded run, each VM's hooks once."""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableServiceClient

from quiesce.ports import Backends
from quiesce_azure.events import EventGridPublisher
from quiesce_azure.provider import azure_provider
from quiesce_azure.state import TableStateStore

from .azurite import FaultyTables, azurite
from .deliveries import event, event_grid
from .fake_arm import FakeArm, FakeCredential
from .policies import shop, vm_member

__all__ = ["azurite"]

_tables = itertools.count()


def policy() -> dict[str, Any]:
    return shop(
        [vm_member("db"), vm_member("app")],
        triggers=[
            {
                "name": "pre-deploy",
                "group": "orders",
                "on": "deploy",
                "match": {"provider": "arm", "deployment": "orders-*", "state": "Succeeded"},
            }
        ],
    )


@pytest.fixture
def tables(azurite: str) -> Iterator[FaultyTables]:
    proxy = FaultyTables(azurite)
    proxy.start()
    yield proxy
    proxy.stop()


def function_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arm: FakeArm, tables: FaultyTables
) -> tuple[ModuleType, TableStateStore]:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy()))
    monkeypatch.setenv("AzureWebJobsScriptRoot", str(tmp_path))
    monkeypatch.setenv("QUIESCE_POLICY", "policy.yaml")
    monkeypatch.delenv("WEBSITE_TIME_ZONE", raising=False)
    from quiesce_azure import function_app as module

    module.policy.cache_clear()
    module = importlib.reload(module)
    loaded = module.policy()
    # The client's own retries would absorb a single 503; without them the one 503 reaches the
    # run, as a longer throttle does once they are spent.
    service = TableServiceClient.from_connection_string(tables.start(), retry_total=0)
    state = TableStateStore(service, f"redelivery{next(_tables)}")
    state.create_table()
    backends = Backends(
        providers={
            "azure": azure_provider(
                loaded, FakeCredential(), base_url=arm.base_url, polling_interval=0
            )
        },
        state=state,
        bus=EventGridPublisher(arm.events_endpoint, AzureKeyCredential(arm.event_key)),
    )
    monkeypatch.setattr(module, "backends", lambda: backends)
    return module, state


@pytest.mark.parametrize(
    "name",
    ["arm_deployment_write_success_eventgrid.json", "arm_deployment_write_success_cloudevent.json"],
)
def test_a_redelivery_after_a_throttled_lock_write_backs_up_the_group_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    arm: FakeArm,
    tables: FaultyTables,
    name: str,
) -> None:
    arm.add_vm("db-1", data_disks=1)
    arm.add_vm("app-1", data_disks=1)
    module, state = function_app(tmp_path, monkeypatch, arm, tables)
    deploy = module.deploy_events.build().get_user_function()
    tables.fail_writes("lock", times=1)

    with pytest.raises(HttpResponseError, match="ServerBusy"):
        deploy(event_grid(name))  # raised: Event Grid delivers the event again

    assert len(tables.failed) == 1  # the lock's write, after the trigger was claimed
    assert arm.hook_calls_of("pre") == []
    (failed,) = state.list_runs("shop")
    assert (failed.status, failed.began_quiesce) == ("failed", False)
    assert "the run could not start" in failed.errors[0]

    deploy(event_grid(name))  # Event Grid's redelivery: the same event, the same id

    runs = {run.run_id: run for run in state.list_runs("shop")}
    assert sorted(run.status for run in runs.values()) == ["failed", "succeeded"]
    (ran,) = [run for run in runs.values() if run.status == "succeeded"]
    assert ran.replaces == failed.run_id
    assert ran.trigger_id == failed.trigger_id == f"azure.resources:{event(name)['id']}:pre-deploy"
    (point,) = state.list_points("shop")
    assert point.run_id == ran.run_id
    assert sorted(c.vm for c in arm.hook_calls_of("pre")) == ["app-1", "db-1"]
    assert sorted(c.vm for c in arm.hook_calls_of("post")) == ["app-1", "db-1"]
    assert len(arm.points) == 2  # one restore point per VM, taken once

    deploy(event_grid(name))  # a third delivery reports the run that did it

    assert len(state.list_runs("shop")) == 2
    assert len(arm.hook_calls_of("pre")) == 2
