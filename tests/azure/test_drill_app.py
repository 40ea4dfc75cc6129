"""The drill app: the same package deployed a second time with QUIESCE_APP=drill (and the drill
identity) registers only the drill schedules, the backup app only the others; the drill timer
goes through the front door to the drill engine with the drill app's own functionTimeout, and a
timeout too short for a drill is refused before anything is launched."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from quiesce.engine import run_group
from quiesce.policy.model import Policy
from quiesce.ports import Backends
from quiesce.providers.memory import MemoryEventBus, MemoryStateStore
from quiesce.record import RunStatus
from quiesce_azure.provider import azure_provider
from quiesce_azure.restorer import RESTORE_TAG

from .deliveries import timer
from .fake_arm import RG, SUB, FakeArm, FakeCredential
from .test_drill_end_to_end import DR, copies_finish
from .test_drill_end_to_end import policy as drill_policy

TRIGGERS = [
    {"name": "nightly", "group": "orders", "schedule": "0 4 * * *"},
    {
        "name": "monthly-drill",
        "group": "orders",
        "schedule": "0 3 1 * *",
        "action": "drill",
        "region": DR,
    },
]


def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app: str | None) -> ModuleType:
    document = drill_policy().model_dump(mode="json", exclude_none=True, by_alias=True)
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump({**document, "triggers": TRIGGERS}))
    monkeypatch.setenv("AzureWebJobsScriptRoot", str(tmp_path))
    monkeypatch.setenv("QUIESCE_POLICY", "policy.yaml")
    monkeypatch.delenv("WEBSITE_TIME_ZONE", raising=False)
    monkeypatch.delenv("AzureFunctionsJobHost__functionTimeout", raising=False)
    if app is None:
        monkeypatch.delenv("QUIESCE_APP", raising=False)
    else:
        monkeypatch.setenv("QUIESCE_APP", app)
    from quiesce_azure import function_app

    function_app.policy.cache_clear()
    return importlib.reload(function_app)


@pytest.fixture
def restore_app() -> Iterator[None]:
    yield
    from quiesce_azure import function_app

    function_app.policy.cache_clear()


@pytest.mark.usefixtures("restore_app")
def test_the_backup_app_registers_no_drill_and_the_drill_app_only_drills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert set(load(tmp_path, monkeypatch, None).SCHEDULES) == {"nightly"}
    assert set(load(tmp_path, monkeypatch, "backup").SCHEDULES) == {"nightly"}
    assert set(load(tmp_path, monkeypatch, "drill").SCHEDULES) == {"monthly-drill"}


def test_the_app_setting_overrides_host_json_for_the_function_timeout(tmp_path: Path) -> None:
    from quiesce_azure.function_app import TIMEOUT_ENV, function_timeout

    (tmp_path / "host.json").write_text('{"version": "2.0", "functionTimeout": "00:30:00"}')
    env = {"AzureWebJobsScriptRoot": str(tmp_path)}
    assert function_timeout(env)[0] == 1800
    seconds, source = function_timeout({**env, TIMEOUT_ENV: "02:00:00"})
    assert seconds == 7200
    assert TIMEOUT_ENV in source


def backed_up(arm: FakeArm, pol: Policy) -> Backends:
    arm.add_vm("db-1", data_disks=1)
    arm.add_vm("app-1", data_disks=0)
    arm.region_copy_polls = 1000
    provider = azure_provider(pol, FakeCredential(), base_url=arm.base_url, polling_interval=0)
    provider.restorer.poll_interval = 0  # type: ignore[union-attr]
    be = Backends(providers={"azure": provider}, state=MemoryStateStore(), bus=MemoryEventBus())
    assert run_group(pol, "orders", be).status is RunStatus.SUCCEEDED
    copies_finish(arm)
    return be


def fire(module: ModuleType, be: Backends, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(module, "backends", lambda: be)
    answer: dict[str, Any] = module.run_schedule("monthly-drill", timer())
    return answer


@pytest.mark.usefixtures("restore_app")
def test_the_drill_timer_drills_the_copy_and_leaves_nothing(
    arm: FakeArm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load(tmp_path, monkeypatch, "drill")
    be = backed_up(arm, module.policy())
    before = arm.resources()

    answer = fire(module, be, monkeypatch)

    assert answer["status"] == "fired", answer
    (outcome,) = answer["outcomes"]
    assert outcome["action"] == "drilled"
    assert outcome["drill"]["verdict"] == "passed", outcome
    assert outcome["drill"]["region"] == DR
    assert arm.resources(RESTORE_TAG) == []
    assert arm.resources() == before
    assert len(arm.hook_calls_of("verify")) == 2


@pytest.mark.usefixtures("restore_app")
def test_a_drill_app_whose_timeout_cannot_fit_a_drill_refuses_it_before_launching(
    arm: FakeArm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load(tmp_path, monkeypatch, "drill")
    be = backed_up(arm, module.policy())
    before = arm.resources()
    monkeypatch.setenv("AzureFunctionsJobHost__functionTimeout", "00:05:00")

    answer = fire(module, be, monkeypatch)

    assert answer["status"] == "refused"
    assert "raise the drill function's timeout" in answer["reason"]
    assert "AzureFunctionsJobHost__functionTimeout" in answer["reason"]
    assert arm.resources() == before
    assert (SUB.lower(), RG.lower(), "db-1") in arm.vms
