"""The Function App's functions, called directly (`.build().get_user_function()`) with
Microsoft's documented payloads (tests/azure/payloads) delivered as the host delivers them
(Event Grid events and timer firings decoded by azure-functions' own converters, alerts as the
request body) and in-memory backends: a timer backs up its group; a deployment event runs once
in either Event Grid schema; an alert runs while it fires and not when it recovers, unless a
trigger asks for recovery; whatever is refused is logged and answered, never raised."""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from quiesce.ports import Backends, Provider
from quiesce.providers.memory import MemoryEventBus, MemoryStateStore
from tests.fakes import FakeHookRunner, FakeInventory, FakeSnapshotter, Log

from .deliveries import alert_request, event, event_grid, load, timer

SUBSCRIPTION = "8a2c1b4e-5f6d-4e3a-9b7c-1d2e3f4a5b6c"
GRID = "arm_deployment_write_success_eventgrid.json"
CLOUD = "arm_deployment_write_success_cloudevent.json"

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
        # alert triggers that name only their rule: they fire while the alert fires
        {"name": "transactions", "group": "orders", "on": "alert", "match": {"alarm": "test-m*"}},
        {"name": "heartbeat", "group": "orders", "on": "alert", "match": {"alarm": "test-log*"}},
        {"name": "restarts", "group": "orders", "on": "alert", "match": {"alarm": "test-act*"}},
        {"name": "cpu", "group": "orders", "on": "alert", "match": {"alarm": "WCUS-R2-Gen2"}},
    ],
}


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

    def runs(self) -> list[dict[str, Any]]:
        return [json.loads(record) for record in self.state.runs.values()]

    def alert(self, body: Any) -> tuple[int, dict[str, Any]]:
        response = self.function("monitor_alerts")(alert_request(body))
        assert response.mimetype == "application/json"
        answer: dict[str, Any] = json.loads(response.get_body())
        return response.status_code, answer


def with_triggers(tmp_path: Path, triggers: list[dict[str, Any]]) -> None:
    """The world's policy with other triggers (the module re-reads it when reloaded)."""
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump({**POLICY, "triggers": triggers}))


def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("AzureWebJobsScriptRoot", str(tmp_path))
    monkeypatch.setenv("QUIESCE_POLICY", "policy.yaml")
    monkeypatch.delenv("WEBSITE_TIME_ZONE", raising=False)
    from quiesce_azure import function_app

    function_app.policy.cache_clear()
    module = importlib.reload(function_app)  # re-reads the policy: a new app, new timers
    built = World(module)
    monkeypatch.setattr(module, "backends", lambda: built.backends)
    return built


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    built = start(tmp_path, monkeypatch)
    yield built
    built.module.policy.cache_clear()


def test_one_timer_function_is_registered_per_schedule_trigger_in_utc(world: World) -> None:
    functions = {f.get_function_name(): f for f in world.module.app.get_functions()}
    assert set(world.module.SCHEDULES) == {"nightly"}  # Europe/Berlin is not the app's zone
    assert set(functions) == {"schedule-nightly", "deploy_events", "monitor_alerts"}
    (binding,) = functions["schedule-nightly"].get_bindings()
    assert (binding.type, binding.schedule) == ("timerTrigger", "0 0 4 * * *")
    trigger = functions["monitor_alerts"].get_trigger()
    assert (trigger.auth_level.value, trigger.methods[0].value) == ("function", "POST")


def test_a_documented_timer_firing_backs_up_its_group(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="quiesce.azure")

    world.function("nightly")(timer())

    (run,) = world.runs()
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


# ------------------------------------------------------------------------------ Event Grid


@pytest.mark.parametrize("name", [GRID, CLOUD])
def test_a_deployment_event_in_either_schema_backs_up_its_group_once(
    world: World, name: str
) -> None:
    deploy = world.function("deploy_events")

    deploy(event_grid(name))
    hooks = len(world.hooks.executed)
    deploy(event_grid(name))  # Event Grid delivers at least once

    (run,) = world.runs()
    assert (run["status"], run["trigger_id"]) == (
        "succeeded",
        "azure.resources:4db48cba-50a2-455a-93b4-de41a3b5b7f6:pre-deploy",
    )
    assert len(world.hooks.executed) == hooks == 4


@pytest.mark.parametrize(
    "name",
    [
        "arm_write_success_eventgrid.json",
        "arm_write_success_cloudevent.json",
        "storage_blob_created_cloudevent.json",
    ],
)
def test_a_documented_event_that_is_no_deployment_is_refused_and_acknowledged(
    world: World, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    caplog.set_level(logging.INFO, logger="quiesce.azure")

    world.function("deploy_events")(event_grid(name))  # returns: Event Grid does not redeliver

    assert world.runs() == []
    assert answers(caplog) == ["refused"]
    (refusal,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert getattr(refusal, "quiesce.event_id") == event(name)["id"]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e.update({"data": None}), "lacks data"),
        (lambda e: e.pop("time"), "lacks time"),
        (lambda e: e.update({"type": "Microsoft.Resources.ResourceDeleteSuccess"}), "no conv"),
    ],
)
def test_a_malformed_cloudevent_is_refused_with_the_reason_not_raised(
    world: World, caplog: pytest.LogCaptureFixture, mutate: Any, reason: str
) -> None:
    caplog.set_level(logging.INFO, logger="quiesce.azure")
    broken = event(CLOUD)
    mutate(broken)

    world.function("deploy_events")(event_grid(broken))

    assert world.runs() == []
    (refusal,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert reason in getattr(refusal, "quiesce.reason")


def test_a_failed_deployment_fires_no_trigger_that_asks_for_succeeded(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="quiesce.azure")
    failed = event(CLOUD)
    failed["type"] = "Microsoft.Resources.ResourceWriteFailure"
    failed["data"]["status"] = "Failed"

    world.function("deploy_events")(event_grid(failed))

    assert world.runs() == []
    assert answers(caplog) == ["ignored"]


# ------------------------------------------------------------------------------ alerts


@pytest.mark.parametrize(
    ("name", "trigger"),
    [
        ("alert_metric_fired.json", "transactions"),
        ("alert_log_fired.json", "heartbeat"),
        ("alert_activity_log_fired.json", "restarts"),
    ],
)
def test_a_firing_alert_backs_up_the_group_of_the_trigger_naming_its_rule(
    world: World, name: str, trigger: str
) -> None:
    status, answer = world.alert(name)

    (ran,) = answer["outcomes"]
    assert (status, answer["status"], ran["trigger"], ran["action"]) == (
        200,
        "fired",
        trigger,
        "ran",
    )
    (run,) = world.runs()
    assert run["status"] == "succeeded"


@pytest.mark.parametrize("name", ["alert_metric_resolved.json", "alert_log_resolved.json"])
def test_a_resolved_alert_fires_no_trigger_that_names_only_its_rule(
    world: World, name: str
) -> None:
    status, answer = world.alert(name)

    assert (status, answer["status"], answer["outcomes"]) == (200, "ignored", [])
    assert world.runs() == []
    assert world.hooks.executed == []


def test_a_recovery_fires_the_trigger_that_asks_for_it_and_spares_the_next_alarm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_triggers(
        tmp_path,
        [
            {"name": "heartbeat", "group": "orders", "on": "alert", "match": {"alarm": "test-l*"}},
            {
                "name": "after-recovery",
                "group": "orders",
                "on": "alert",
                "match": {"alarm": "test-l*", "condition": "resolved"},
                "cooldown_minutes": 0,
            },
        ],
    )
    world = start(tmp_path, monkeypatch)

    _, resolved = world.alert("alert_log_resolved.json")
    _, fired = world.alert("alert_log_fired.json")

    assert [(o["trigger"], o["action"]) for o in resolved["outcomes"]] == [
        ("after-recovery", "ran")
    ]
    assert [(o["trigger"], o["action"]) for o in fired["outcomes"]] == [("heartbeat", "ran")]
    assert len(world.runs()) == 2


def test_a_second_alert_of_a_burst_is_held_by_the_default_cooldown(world: World) -> None:
    first = load("alert_metric_fired.json")
    second = load("alert_metric_fired.json")
    second["data"]["essentials"]["alertId"] += "-again"  # another alert of the same rule

    _, ran = world.alert(first)
    status, held = world.alert(second)

    assert ran["outcomes"][0]["action"] == "ran"
    (outcome,) = held["outcomes"]
    assert (status, outcome["action"], outcome["trigger"]) == (200, "cooldown", "transactions")
    assert len(world.runs()) == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("alert_budget_fired.json", "lacks alertRule"),
        (b"{not json", "the body is not JSON"),
        (b"\xff\xfe not utf-8", "the body is not JSON"),
        (b"null", "not a JSON object"),
        ([load("alert_metric_fired.json"), {"schemaId": "x"}], "alert schema 'x'"),
        (json.dumps({"run": "sh"}).encode(), "no converter for event type ''"),
        (event(GRID), "a deploy event (azure.resources) reached the alert function"),
    ],
)
def test_a_refused_alert_is_answered_400_with_the_reason_and_runs_nothing(
    world: World, body: Any, reason: str
) -> None:
    status, answer = world.alert(body)

    assert (status, answer["status"], answer["outcomes"]) == (400, "refused", [])
    assert reason in answer["error"]
    assert answer["error"] == answer["reason"]
    assert world.runs() == []
    assert world.hooks.executed == []


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

    assert world.runs() == []
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
    status, answer = world.alert("alert_metric_fired.json")
    assert status == 400
    assert "raise the function's timeout" in answer["error"]
    assert world.runs() == []


def test_a_run_that_fits_the_function_timeout_starts(world: World, tmp_path: Path) -> None:
    host_json(tmp_path, "00:02:00")
    world.function("nightly")(timer())
    assert len(world.runs()) == 1


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
