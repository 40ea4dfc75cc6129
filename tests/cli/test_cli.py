"""The command line as a user meets it: real policies, real hooks, real snapshots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from quiesce.cli.app import app
from tests.workspace import Workspace, logging_hook, two_member_workspace

runner = CliRunner()


def quiesce(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return two_member_workspace(tmp_path)


def test_validate_accepts_a_good_policy(ws: Workspace) -> None:
    code, out = quiesce("validate", str(ws.policy))
    assert code == 0
    assert "is valid (1 group(s), 2 member(s))" in out


def test_validate_names_the_field_and_line_of_a_bad_policy_and_exits_2(ws: Workspace) -> None:
    ws.policy.write_text(ws.policy.read_text().replace("max_freeze_seconds", "max_freeze_secs"))
    code, out = quiesce("validate", str(ws.policy))
    assert code == 2
    assert "groups.orders.max_freeze_secs" in out
    assert "line 7" in out


def test_validate_json_lists_the_problems(ws: Workspace) -> None:
    ws.policy.write_text("version: 1\nname: x\n")
    code, out = quiesce("validate", str(ws.policy), "--json")
    assert code == 2
    report = json.loads(out)
    assert report["valid"] is False
    assert any("groups" in p for p in report["problems"])


def test_a_missing_policy_file_is_named_and_exits_2(tmp_path: Path) -> None:
    code, out = quiesce("run", str(tmp_path / "none.yaml"), "--group", "g")
    assert code == 2
    assert "none.yaml: no such file" in out


def test_run_json_prints_the_documented_result_and_exits_0(ws: Workspace) -> None:
    code, out = quiesce("run", str(ws.policy), "--group", "orders", "--json")
    assert code == 0, out
    result = json.loads(out)
    assert {
        "run_id",
        "policy",
        "group",
        "status",
        "consistency",
        "recovery_point",
        "freeze_window_ms",
        "skew_ms",
        "members",
    } <= set(result)
    assert result["status"] == "succeeded"
    assert result["consistency"] == "application"
    db, journal = result["members"]
    assert {"name", "consistency", "snapshots", "pre", "post", "error"} <= set(db)
    assert (db["pre"], db["post"], journal["pre"]) == ("succeeded", "succeeded", None)
    assert [line.split()[:2] for line in ws.log_lines()] == [["pause", "db"], ["resume", "db"]]


def test_run_snapshots_every_volume_into_the_state_dir(ws: Workspace) -> None:
    code, _ = quiesce("run", str(ws.policy), "--group", "orders", "--json")
    assert code == 0
    copies = sorted((ws.root / "state").rglob("file.txt"))
    assert [p.read_text() for p in copies] == ["db data\n", "journal data\n"]


def test_a_failing_pre_hook_falls_back_to_crash_consistency_and_exits_3(ws: Workspace) -> None:
    logging_hook(ws, "pause", extra="exit 4")
    code, out = quiesce("run", str(ws.policy), "--group", "orders", "--json")
    assert code == 3
    result = json.loads(out)
    # the fallback on the local provider is a file-by-file copy, unheld: no point in time
    assert (result["status"], result["consistency"]) == ("degraded", "none")
    assert result["recovery_point"]
    assert "resume db" in ws.log.read_text(), "the failed member is thawed too"


def test_with_abort_a_failing_pre_hook_records_no_point_and_exits_1(tmp_path: Path) -> None:
    ws = two_member_workspace(tmp_path, on_quiesce_failure="abort")
    logging_hook(ws, "pause", extra="exit 4")
    code, out = quiesce("run", str(ws.policy), "--group", "orders", "--json")
    assert code == 1
    assert json.loads(out)["recovery_point"] is None
    assert not list((ws.root / "state").rglob("file.txt"))
    assert "resume db" in ws.log.read_text()


def test_an_unknown_group_exits_2_and_names_the_known_ones(ws: Workspace) -> None:
    code, out = quiesce("run", str(ws.policy), "--group", "nope")
    assert code == 2
    assert "known groups: orders" in out


def test_a_trigger_id_starts_one_run_only(ws: Workspace) -> None:
    _, first = quiesce("run", str(ws.policy), "-g", "orders", "--trigger-id", "t1", "--json")
    code, second = quiesce("run", str(ws.policy), "-g", "orders", "--trigger-id", "t1", "--json")
    assert code == 0
    second_json = json.loads(second[second.index("{") :])
    assert second_json["run_id"] == json.loads(first)["run_id"]
    assert len(ws.log_lines()) == 2, "the hooks ran once"


def test_points_lists_recovery_points_with_their_measurements(ws: Workspace) -> None:
    quiesce("run", str(ws.policy), "-g", "orders")
    code, out = quiesce("points", str(ws.policy), "--json")
    assert code == 0
    (point,) = json.loads(out)
    assert point["consistency"] == "application"
    assert point["freeze_window_ms"] is not None
    assert point["size_bytes"] == len("db data\n") + len("journal data\n")
    code, table = quiesce("points", str(ws.policy))
    assert point["id"] in table


def test_events_prints_one_cloudevent_per_line(ws: Workspace) -> None:
    quiesce("run", str(ws.policy), "-g", "orders")
    code, out = quiesce("events", str(ws.policy), "--json")
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["type"] == "quiesce.run.started"
    assert events[-1]["type"] == "quiesce.run.completed"
    assert all(e["specversion"] == "1.0" for e in events)
    code, out = quiesce("events", str(ws.policy), "--json", "--type", "quiesce.member.thawed")
    assert [json.loads(line)["subject"] for line in out.splitlines()] == ["db"]


def test_plan_shows_each_hook_with_its_security_check_and_changes_nothing(ws: Workspace) -> None:
    code, out = quiesce("plan", str(ws.policy), "--json")
    assert code == 0, out
    (group,) = json.loads(out)["groups"]
    db = group["members"][0]
    assert db["hooks"]["pre"]["check"]["code"] == "Allowed"
    assert db["volumes"][0]["method"] in {"reflink", "copy"}
    assert ws.log_lines() == []
    assert not (ws.root / "state").exists(), "plan created nothing"


def test_a_world_writable_hook_is_refused_by_plan_and_never_executed_by_run(
    ws: Workspace,
) -> None:
    pause = ws.root / "hooks" / "pause"
    pause.chmod(0o777)
    code, out = quiesce("plan", str(ws.policy))
    assert code == 2
    assert "InsufficientPermission" in out
    code, out = quiesce("run", str(ws.policy), "-g", "orders", "--json")
    assert code == 3
    assert json.loads(out)["members"][0]["pre"] == "refused"
    assert not any(line.startswith("pause") for line in ws.log_lines())


def test_schema_prints_the_policy_json_schema() -> None:
    code, out = quiesce("schema")
    assert code == 0
    assert json.loads(out)["title"] == "Policy"
    code, out = quiesce("schema", "--events")
    assert "quiesce.run.completed" in json.loads(out)


def test_read_only_commands_on_a_new_policy_create_nothing(ws: Workspace) -> None:
    assert quiesce("points", str(ws.policy)) == (0, "no recovery points yet\n")
    assert quiesce("events", str(ws.policy), "--json") == (0, "")
    assert not (ws.root / "state").exists()


def test_recover_with_nothing_abandoned_says_so(ws: Workspace) -> None:
    quiesce("run", str(ws.policy), "-g", "orders")
    code, out = quiesce("recover", str(ws.policy))
    assert code == 0
    assert "no abandoned runs" in out


def test_recover_deletes_the_snapshots_of_a_point_the_catalog_lost_and_says_so(
    ws: Workspace,
) -> None:
    from quiesce.policy import load_policy
    from quiesce.wiring import backends_for

    assert quiesce("run", str(ws.policy), "-g", "orders")[0] == 0
    backends = backends_for(load_policy(ws.policy))
    (point,) = backends.state.list_points("ws", "orders")
    held = sorted(s.id for m in point.members for s in m.snapshots)
    backends.state.delete_point(point.id)  # unlisted; its snapshots were never deleted

    code, out = quiesce("recover", str(ws.policy))

    assert code == 0
    assert f"deleted {len(held)} orphaned snapshot(s): " in out
    assert all(snapshot in out for snapshot in held)
    assert quiesce("recover", str(ws.policy)) == (0, "no abandoned runs\n")  # nothing left


@pytest.mark.parametrize(
    "command",
    ["validate", "plan", "run", "events", "points", "restore", "recover", "demo", "schema"],
)
def test_every_command_explains_itself_in_help(command: str) -> None:
    code, out = quiesce(command, "--help")
    assert code == 0
    assert "Usage" in out
    assert len(out) > 200


def test_the_installed_console_script_runs_and_never_prints_a_traceback(ws: Workspace) -> None:
    ws.policy.write_text(yaml.safe_dump({"version": 1, "name": "x", "groups": {"g": 3}}))
    result = subprocess.run(
        [sys.executable, "-m", "quiesce.cli.app", "run", str(ws.policy), "-g", "g"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert "groups.g" in result.stderr
