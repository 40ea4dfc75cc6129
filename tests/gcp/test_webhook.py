"""The Cloud Monitoring webhook function (`on_alert_webhook`), driven through
functions-framework's HTTP test client with Monitoring's documented schema 1.2 incident
(tests/gcp/payloads): only the holder of the channel's secret (basic auth password or
`?token=`) gets past the door, a refused body gets 400 with the reason, and the answer is the
front door's JSON."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from functions_framework import create_app

from quiesce.ports import Backends, Provider
from quiesce.providers.memory import MemoryEventBus, MemoryStateStore
from quiesce_gcp.webhook import MIN_TOKEN_LENGTH, TOKEN_ENV, authenticate
from tests.fakes import FakeHookRunner, FakeInventory, FakeSnapshotter, Log

from . import pubsub
from .test_main import POLICY as MAIN_POLICY

MAIN = Path(__file__).resolve().parents[2] / "functions" / "gcp" / "quiesce_gcp" / "main.py"
SECRET = "s3cr3t-" + "x" * 40
#: test_main's policy, its alert triggers without a cooldown (a resend is then a duplicate).
TRIGGERS: list[dict[str, Any]] = MAIN_POLICY["triggers"]  # type: ignore[assignment]
POLICY = {
    **MAIN_POLICY,
    "triggers": [{**t, "cooldown_minutes": 0} if t.get("on") == "alert" else t for t in TRIGGERS],
}


class Webhook:
    def __init__(self) -> None:
        log = Log()
        self.hooks = FakeHookRunner(log)
        self.state = MemoryStateStore()
        provider = Provider(FakeInventory(), self.hooks, FakeSnapshotter(log))
        backends = Backends(
            providers={"gcp": provider, "local": provider}, state=self.state, bus=MemoryEventBus()
        )
        app = create_app("on_alert_webhook", str(MAIN), "http")  # type: ignore[no-untyped-call]
        self.client = app.test_client()
        sys.modules["main"].backends = lambda: backends  # type: ignore[attr-defined]

    def post(
        self,
        body: bytes,
        *,
        password: str | None = SECRET,
        query: str = "",
        headers: dict[str, str] | None = None,
    ) -> Any:
        sent = {"Content-Type": "application/json", **(headers or {})}
        if password is not None:
            sent["Authorization"] = "Basic " + base64.b64encode(
                f"quiesce:{password}".encode()
            ).decode("ascii")
        return self.client.post(f"/{query}", data=body, headers=sent)

    def runs(self) -> list[str]:
        return [r.run_id for r in self.state.list_runs("shop")]


@pytest.fixture
def hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY))
    monkeypatch.setenv("QUIESCE_POLICY", str(policy_file))
    monkeypatch.setenv("QUIESCE_FUNCTION_TIMEOUT_SECONDS", "540")
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    yield Webhook()
    sys.modules.pop("main", None)


def incident(state: str) -> bytes:
    return (pubsub.PAYLOADS / f"monitoring_incident_1_2_{state}.json").read_bytes()


def test_an_open_incident_with_the_secret_backs_up_and_answers_json(hook: Webhook) -> None:
    response = hook.post(incident("open"))

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    answer = response.get_json()
    assert answer["status"] == "fired"
    (outcome,) = answer["outcomes"]
    assert (outcome["trigger"], outcome["action"]) == ("cpu-alarm", "ran")
    assert outcome["result"]["status"] == "succeeded"
    (run_id,) = hook.runs()
    record = hook.state.get_run(run_id)
    assert record is not None
    assert record.trigger_id == "gcp.monitoring:0.opqiw61fsv7p:open:cpu-alarm"


def test_the_secret_may_come_as_a_token_in_the_url(hook: Webhook) -> None:
    response = hook.post(incident("open"), password=None, query=f"?token={SECRET}")
    assert response.status_code == 200
    assert response.get_json()["status"] == "fired"


def test_the_same_notification_sent_again_runs_once(hook: Webhook) -> None:
    hook.post(incident("open"))
    executed = len(hook.hooks.executed)

    again = hook.post(incident("open"))

    assert again.status_code == 200
    (outcome,) = again.get_json()["outcomes"]
    assert outcome["action"] == "duplicate"
    assert len(hook.runs()) == 1
    assert len(hook.hooks.executed) == executed


def test_a_closed_incident_fires_only_the_trigger_that_asks_for_recovery(hook: Webhook) -> None:
    response = hook.post(incident("closed"))
    assert response.status_code == 200
    (outcome,) = response.get_json()["outcomes"]
    assert outcome["trigger"] == "cpu-recovered"


def test_without_credentials_the_answer_is_401_and_nothing_runs(
    hook: Webhook, capsys: pytest.CaptureFixture[str]
) -> None:
    response = hook.post(incident("open"), password=None)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert response.get_json() == {"error": "unauthorized"}
    assert hook.runs() == []
    assert "webhook request denied" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("password", "query"),
    [
        ("wrong", ""),
        (SECRET[:-1], ""),
        (None, "?token=wrong"),
        (SECRET + "x", ""),
    ],
)
def test_a_wrong_secret_is_403_and_nothing_runs(
    hook: Webhook, password: str | None, query: str
) -> None:
    response = hook.post(incident("open"), password=password, query=query)
    assert response.status_code == 403
    assert response.get_json() == {"error": "forbidden"}
    assert hook.runs() == []


def test_a_garbled_authorization_header_is_no_credential(hook: Webhook) -> None:
    response = hook.post(
        incident("open"), password=None, headers={"Authorization": "Basic not*base64"}
    )
    assert response.status_code == 401
    bearer = hook.post(incident("open"), password=None, headers={"Authorization": SECRET})
    assert bearer.status_code == 401


@pytest.mark.parametrize("configured", [None, "", "short"])
def test_without_a_configured_secret_every_request_is_403_and_the_log_names_the_setting(
    hook: Webhook,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    configured: str | None,
) -> None:
    if configured is None:
        monkeypatch.delenv(TOKEN_ENV)
    else:
        monkeypatch.setenv(TOKEN_ENV, configured)
    # even the right secret: a short or empty one could be guessed or matched by nothing
    response = hook.post(incident("open"), password=configured or "")
    assert response.status_code == 403
    assert hook.runs() == []
    (denied,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if "denied" in x]
    assert denied["severity"] == "ERROR"
    assert TOKEN_ENV in denied["reason"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "the body is not JSON"),
        (b'{"version": "1.2"}', "no `incident` object"),
        (b'{"incident": {"incident_id": "0.x", "state": "open"}}', "names no alert policy"),
    ],
)
def test_a_malformed_body_is_400_with_the_reason(
    hook: Webhook, capsys: pytest.CaptureFixture[str], body: bytes, reason: str
) -> None:
    response = hook.post(body)

    assert response.status_code == 400
    answer = response.get_json()
    assert reason in answer["error"]
    assert answer["status"] == "refused"
    assert hook.runs() == []
    assert any(
        e.get("severity") == "ERROR" and reason in e.get("reason", "")
        for e in (json.loads(x) for x in capsys.readouterr().out.splitlines() if x[:1] == "{")
    )


def test_a_body_of_another_kind_is_refused_too(hook: Webhook) -> None:
    """A Pub/Sub CloudEvent posted to the webhook is not an incident body."""
    response = hook.post(json.dumps(pubsub.incident("open")).encode())
    assert response.status_code == 400
    assert "incident" in response.get_json()["error"]


def test_a_secret_shorter_than_the_minimum_is_treated_as_unset() -> None:
    short = "a" * (MIN_TOKEN_LENGTH - 1)
    denied = authenticate(None, short, short)
    assert denied is not None
    assert denied.status == 403
    assert authenticate(None, SECRET, SECRET) is None
