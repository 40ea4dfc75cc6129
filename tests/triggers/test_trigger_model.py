"""The policy's triggers: what they accept, and the cron expressions they take."""

from __future__ import annotations

import pytest

from quiesce.errors import PolicyError
from quiesce.policy import parse_policy
from quiesce.triggers.cron import validate_cron

BASE = """\
version: 1
name: shop
groups:
  orders:
    consistency: crash
    members: [{name: db, provider: local, volumes: [/srv/db]}]
triggers:
"""


def problems(triggers: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(BASE + triggers, path="p.yaml")
    return caught.value.problems


def test_the_documented_triggers_are_valid() -> None:
    policy = parse_policy(
        BASE
        + """\
  - {name: nightly, group: orders, schedule: "0 4 * * *", timezone: Europe/Berlin}
  - {name: pre-deploy, group: orders, on: deploy, match: {application: orders-app}}
  - {name: disk-alarm, group: orders, on: alert, cooldown_minutes: 60,
     match: {alarm: "orders-db-*", state: ALARM}}
"""
    )
    assert [t.kind for t in policy.triggers] == ["schedule", "deploy", "alert"]


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        ("{name: t, group: orders}", "exactly one of schedule or on"),
        ('{name: t, group: orders, schedule: "0 4 * * *", on: deploy}', "exactly one"),
        ('{name: t, group: orders, schedule: "0 25 * * *"}', "hour: 25 is outside 0-23"),
        ('{name: t, group: orders, schedule: "0 4 * *"}', "needs 5 fields"),
        ('{name: t, group: orders, schedule: "0 4 * * *", timezone: Mars/Olympus}', "IANA"),
        ("{name: t, group: orders, on: reboot}", "'deploy' or 'alert'"),
        ('{name: t, group: orders, schedule: "0 4 * * *", match: {a: b}}', "match is for event"),
        ("{name: t, group: orders, on: alert, cooldown_minutes: -1}", "greater than or equal to 0"),
    ],
)
def test_a_bad_trigger_is_named_with_the_reason(trigger: str, message: str) -> None:
    (problem,) = problems(f"  - {trigger}\n")
    assert "triggers[0]" in problem
    assert message in problem


def test_a_trigger_must_name_a_group_of_the_policy() -> None:
    (problem,) = problems('  - {name: t, group: billing, schedule: "0 4 * * *"}\n')
    assert "line 8: triggers[0]" in problem
    assert "known groups: orders" in problem


def test_trigger_names_are_unique() -> None:
    (problem,) = problems(
        '  - {name: t, group: orders, schedule: "0 4 * * *"}\n'
        '  - {name: t, group: orders, schedule: "0 5 * * *"}\n'
    )
    assert "repeated: t" in problem


@pytest.mark.parametrize(
    "cron", ["*/15 * * * *", "0 4 * * MON-FRI", "30 2 1,15 * *", "0 0 * JAN,JUL SUN", "5 4 * * 7"]
)
def test_common_cron_forms_are_accepted(cron: str) -> None:
    assert validate_cron(cron) == cron
