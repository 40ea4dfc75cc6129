"""The Function App's functions, called directly (`.build().get_user_function()`) with real
event payloads (tests/events/azure) and in-memory backends: a timer backs up its group, a
duplicate Event Grid delivery runs once, a malformed alert gets 400 and runs nothing, an alert
inside its cooldown runs nothing."""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
import pytest
import yaml
from azure.functions.timer import TimerRequest

from quiesce.ports import Backends, Provider
from quiesce.providers.memory import MemoryEventBus, MemoryStateStore
from tests.fakes import FakeHookRunner, FakeInventory, FakeSnapshotter, Log

EVENTS = Path(__file__).resolve().parents[1] / "events" / "azure"
SUBSCRIPTION = "8a2c1b4e-5f6d-4e3a-9b7c-1d2e3f4a5b6c"

POLICY = {
    "version": 1,
    "name": "shop",
    "groups": {
        "orders": {
            "consistency": "application",
            "on_quiesce_failure": "abort",
            "max_freeze_seconds": 30,
            "durability_timeout_seconds": 60,
            "members": [
                {
                    "name": name,
                    "provider": "azure",
                    "subscription": SUBSCRIPTION,
                    "resource_group": "shop-rg",
                    "select": {"vm_names": [f"orders-{name}-1"]},
                    "hooks": {
                        "pre": {"run": [f"/etc/quiesce/{name}-pause.sh"], "timeout_seconds": 5},
                        "post": {"run": [f"/etc/quiesce/{name}-resume.sh"], "timeout_seconds": 5},
                    },
                }
                for name in ("db", "app")
            ],
        }
    },
    "triggers": [
        {"name": "nightly", "group": "orders", "schedule": "0 4 * * *"},
        {
            "name": "hourly-berlin",
            "group": "orders",
            "schedule": "0 * * * *",
            "timezone": "Europe/Berlin",
        },
        {
            "name": "pre-deploy",
            "group": "orders",
            "on": "deploy",
            "match": {"provider": "arm", "deployment": "orders-*", "state": "Succeeded"},
        },
        {
            "name": "disk-alarm",
            "group": "orders",
            "on": "alert",
            "match": {"alarm": "orders-db-*", "state": "Fired", "provider": "azure-monitor"},
            "cooldown_minutes": 60,
        },
    ],
}


def golden(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return payload


class World:
    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.log = Log()
        self.hooks = FakeHookRunner(self.log)
        self.snapshots = FakeSnapshotter(self.log)
        self.state = MemoryStateStore()
        self.bus = MemoryEventBus()
        provider = Provider(inventory=FakeInventory(), hooks=self.hooks, snapshots=self.snapshots)
        self.backends = Backends(
            providers={"azure": provider, "local": provider}, state=self.state, bus=self.bus
        )

    def function(self, name: str) -> Any:
        builder = self.module.SCHEDULES.get(name) or getattr(self.module, name)
        return builder.build().get_user_function()

    def runs(self) -> int:
        return len(self.state.runs)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    monkeypatch.setenv("AzureWebJobsScriptRoot", str(tmp_path))
    monkeypatch.setenv("QUIESCE_POLICY", "policy.yaml")
    monkeypatch.delenv("WEBSITE_TIME_ZONE", raising=False)
    from quiesce_azure import function_app

    module = importlib.reload(function_app)  # re-reads the policy: a new app, new timers
    built = World(module)
    monkeypatch.setattr(module, "backends", lambda: built.backends)
    yield built
    module.policy.cache_clear()


def timer() -> TimerRequest:
    status = golden("timer.json")
    return TimerRequest(
        past_due=status["IsPastDue"],
        schedule_status=status["ScheduleStatus"],
        schedule=status["Schedule"],
    )


def event_grid(name: str, event_type: str | None = None) -> func.EventGridEvent:
    payload = golden(name)
    return func.EventGridEvent(
        id=payload["id"],
        data=payload["data"],
        topic=payload["topic"],
        subject=payload["subject"],
        event_type=event_type or payload["eventType"],
        event_time=datetime.fromisoformat(payload["eventTime"][:26]).replace(tzinfo=UTC),
        data_version=payload["dataVersion"],
    )


def alert_request(body: bytes) -> func.HttpRequest:
    return func.HttpRequest(
        "POST", "https://quiesce.azurewebsites.net/api/alerts", headers={}, body=body
    )


def test_one_timer_function_is_registered_per_schedule_trigger_in_utc(world: World) -> None:
    functions = {f.get_function_name(): f for f in world.module.app.get_functions()}
    assert set(world.module.SCHEDULES) == {"nightly"}  # Europe/Berlin is not the app's zone
    assert set(functions) == {"schedule-nightly", "deploy_events", "monitor_alerts"}
    (binding,) = functions["schedule-nightly"].get_bindings()
    assert (binding.type, binding.schedule) == ("timerTrigger", "0 0 4 * * *")
    trigger = functions["monitor_alerts"].get_trigger()
    assert (trigger.auth_level.value, trigger.methods[0].value) == ("function", "POST")


def test_a_timer_backs_up_its_group(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="quiesce.azure")

    world.function("nightly")(timer())

    (record,) = world.state.runs.values()
    run = json.loads(record)
    assert (run["group"], run["status"]) == ("orders", "succeeded")
    assert run["trigger_id"].startswith("azure.timer:nightly@")
    assert sorted(world.hooks.executed) == [
        ("app", "post"),
        ("app", "pre"),
        ("db", "post"),
        ("db", "pre"),
    ]
    assert world.bus.types()[0] == "quiesce.run.started"
    fired = [r for r in caplog.records if '"trigger fired"' in r.getMessage()]
    assert json.loads(fired[0].getMessage())["action"] == "ran"
    assert getattr(fired[0], "quiesce.trigger") == "nightly"  # a custom dimension


def test_a_duplicate_event_grid_delivery_runs_once(world: World) -> None:
    deploy = world.function("deploy_events")

    deploy(event_grid("arm_deployment_eventgrid.json"))
    hooks = len(world.hooks.executed)
    deploy(event_grid("arm_deployment_eventgrid.json"))

    assert world.runs() == 1
    assert len(world.hooks.executed) == hooks == 4


def test_a_malformed_alert_is_answered_400_and_runs_nothing(world: World) -> None:
    alerts = world.function("monitor_alerts")
    broken = golden("monitor_alert_fired.json")
    del broken["data"]["essentials"]["alertRule"]

    for body in (json.dumps(broken).encode(), b"{not json", json.dumps({"run": "sh"}).encode()):
        response = alerts(alert_request(body))
        assert response.status_code == 400
        assert response.mimetype == "application/json"
        assert json.loads(response.get_body())["error"]

    deploy_to_alerts = alerts(
        alert_request(json.dumps(golden("arm_deployment_eventgrid.json")).encode())
    )
    assert deploy_to_alerts.status_code == 400
    body = json.loads(deploy_to_alerts.get_body())
    assert (body["status"], body["outcomes"]) == ("refused", [])
    assert "a deploy event (azure.resources) reached the alert function" in body["error"]
    assert body["error"] == body["reason"]
    assert world.runs() == 0
    assert world.hooks.executed == []


def test_an_alert_inside_its_cooldown_runs_nothing(world: World) -> None:
    alerts = world.function("monitor_alerts")
    first = golden("monitor_alert_fired.json")
    response = alerts(alert_request(json.dumps(first).encode()))
    (ran,) = json.loads(response.get_body())["outcomes"]
    assert (response.status_code, ran["action"]) == (200, "ran")

    second = golden("monitor_alert_fired.json")
    second["data"]["essentials"]["alertId"] += "-again"  # another alert of the same rule
    response = alerts(alert_request(json.dumps(second).encode()))

    (held,) = json.loads(response.get_body())["outcomes"]
    assert (response.status_code, held["action"], held["trigger"]) == (
        200,
        "cooldown",
        "disk-alarm",
    )
    assert world.runs() == 1


def test_a_resolved_alert_matches_no_fired_trigger(world: World) -> None:
    response = world.function("monitor_alerts")(
        alert_request(json.dumps(golden("monitor_alert_resolved.json")).encode())
    )
    assert (response.status_code, json.loads(response.get_body())["outcomes"]) == (200, [])
    assert world.runs() == 0


def answers(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        json.loads(r.getMessage())["answer"] for r in caplog.records if '"answer"' in r.getMessage()
    ]


def host_json(root: Path, function_timeout: str) -> None:
    """host.json in the app's root (the world's AzureWebJobsScriptRoot is tmp_path)."""
    (root / "host.json").write_text(
        json.dumps({"version": "2.0", "functionTimeout": function_timeout})
    )


def test_a_timer_whose_run_cannot_fit_the_function_timeout_is_refused(
    world: World, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """max_freeze_seconds 30 + the 60 s margin does not fit a one-minute functionTimeout."""
    caplog.set_level(logging.INFO, logger="quiesce.azure")
    host_json(tmp_path, "00:01:00")

    world.function("nightly")(timer())

    assert world.runs() == 0
    assert world.hooks.executed == []
    (refusal,) = [
        r for r in caplog.records if r.levelno == logging.ERROR and "refused" in r.getMessage()
    ]
    reason = getattr(refusal, "quiesce.reason")
    assert "group 'orders' needs at least 90s" in reason
    assert "functionTimeout 00:01:00" in reason
    assert answers(caplog) == ["refused"]


def test_an_alert_whose_run_cannot_fit_the_function_timeout_gets_400(
    world: World, tmp_path: Path
) -> None:
    host_json(tmp_path, "00:01:00")
    response = world.function("monitor_alerts")(
        alert_request(json.dumps(golden("monitor_alert_fired.json")).encode())
    )
    assert response.status_code == 400
    assert "raise the function's timeout" in json.loads(response.get_body())["error"]
    assert world.runs() == 0


def test_a_run_that_fits_the_function_timeout_starts(world: World, tmp_path: Path) -> None:
    host_json(tmp_path, "00:02:00")
    world.function("nightly")(timer())
    assert world.runs() == 1


def test_an_unsupported_event_grid_event_is_refused_and_acknowledged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="quiesce.azure")
    event = event_grid("arm_deployment_eventgrid.json", "Microsoft.Storage.BlobCreated")

    world.function("deploy_events")(event)  # returns: Event Grid does not redeliver it

    assert world.runs() == 0
    assert answers(caplog) == ["refused"]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("00:30:00", 1800.0), ("1.02:00:30", 93630.0), ("-1", None), (None, 1800.0)],
)
def test_the_function_timeout_is_read_from_host_json(
    tmp_path: Path, value: str | None, seconds: float | None
) -> None:
    from quiesce_azure.function_app import function_timeout

    if value is not None:
        (tmp_path / "host.json").write_text(json.dumps({"functionTimeout": value}))
    assert function_timeout({"AzureWebJobsScriptRoot": str(tmp_path)})[0] == seconds


def test_a_function_timeout_that_is_no_timespan_fails_naming_host_json(tmp_path: Path) -> None:
    from quiesce.errors import QuiesceError
    from quiesce_azure.function_app import function_timeout

    (tmp_path / "host.json").write_text(json.dumps({"functionTimeout": "half an hour"}))
    with pytest.raises(QuiesceError, match=r"host.json: functionTimeout 'half an hour'"):
        function_timeout({"AzureWebJobsScriptRoot": str(tmp_path)})
