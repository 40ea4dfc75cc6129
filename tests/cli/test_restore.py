"""`quiesce restore` round-trips a recovery point and records the verify hook's verdict."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from quiesce.cli.app import app
from tests.workspace import Workspace, two_member_workspace

runner = CliRunner()


def quiesce(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def with_verify(ws: Workspace, body: str) -> None:
    script = ws.hook("verify", body)
    doc = yaml.safe_load(ws.policy.read_text())
    doc["groups"]["orders"]["members"][0]["hooks"]["verify"] = {"run": [script, "--strict"]}
    ws.policy.write_text(yaml.safe_dump(doc))


@pytest.fixture
def backed_up(tmp_path: Path) -> tuple[Workspace, str]:
    ws = two_member_workspace(tmp_path / "ws")
    with_verify(
        ws, f'echo "verify $*" >> {ws.log}\ntest -f "$2/db/file.txt" && echo restarts clean\n'
    )
    code, out = quiesce("run", str(ws.policy), "-g", "orders", "--json")
    assert code == 0, out
    return ws, json.loads(out)["recovery_point"]


def test_restore_brings_every_volume_back_and_the_verify_hook_passes(
    backed_up: tuple[Workspace, str], tmp_path: Path
) -> None:
    ws, point = backed_up
    (ws.root / "data" / "db" / "file.txt").write_text("changed after the backup\n")
    code, out = quiesce("restore", str(ws.policy), point, "--to", str(tmp_path / "r"), "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["verified"] is True
    assert (tmp_path / "r" / "db" / "db" / "file.txt").read_text() == "db data\n"
    assert (tmp_path / "r" / "journal" / "journal" / "file.txt").read_text() == "journal data\n"
    assert f"verify --strict {tmp_path / 'r' / 'db'}" in ws.log.read_text()
    assert "restarts clean" in result["members"][0]["verify"]["output"]
    _, points = quiesce("points", str(ws.policy), "--json")
    assert json.loads(points)[0]["verified"] is True


def test_a_failing_verify_hook_exits_1_and_marks_the_point_unverified(
    backed_up: tuple[Workspace, str], tmp_path: Path
) -> None:
    ws, point = backed_up
    with_verify(ws, "echo 'needs clean-up: 3 transactions differ'\nexit 1\n")
    code, out = quiesce("restore", str(ws.policy), point, "--to", str(tmp_path / "r"))
    assert code == 1
    assert "needs clean-up: 3 transactions differ" in out
    _, points = quiesce("points", str(ws.policy), "--json")
    assert json.loads(points)[0]["verified"] is False


def test_restore_of_one_member_leaves_the_others_alone(
    backed_up: tuple[Workspace, str], tmp_path: Path
) -> None:
    ws, point = backed_up
    code, out = quiesce(
        "restore", str(ws.policy), point, "--to", str(tmp_path / "r"), "--member", "journal"
    )
    assert code == 0, out
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["journal"]


def test_restore_refuses_a_folder_that_is_not_empty(
    backed_up: tuple[Workspace, str], tmp_path: Path
) -> None:
    ws, point = backed_up
    (tmp_path / "r" / "db").mkdir(parents=True)
    (tmp_path / "r" / "db" / "precious").write_text("keep me")
    code, out = quiesce("restore", str(ws.policy), point, "--to", str(tmp_path / "r"))
    assert code == 1
    assert "not empty" in out
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["db"]
    assert (tmp_path / "r" / "db" / "precious").read_text() == "keep me"


def test_an_unknown_recovery_point_is_named(
    backed_up: tuple[Workspace, str], tmp_path: Path
) -> None:
    ws, _ = backed_up
    code, out = quiesce("restore", str(ws.policy), "rp-nope", "--to", str(tmp_path / "r"))
    assert code == 1
    assert "rp-nope" in out


def test_verify_hooks_run_once_every_member_is_restored(tmp_path: Path) -> None:
    ws = two_member_workspace(tmp_path / "ws")
    # db's verify needs the journal member's copy too, and journal is restored after db
    with_verify(ws, 'test -f "$2/../journal/journal/file.txt" && echo both copies present\n')
    code, out = quiesce("run", str(ws.policy), "-g", "orders", "--json")
    assert code == 0, out
    point = json.loads(out)["recovery_point"]

    code, out = quiesce("restore", str(ws.policy), point, "--to", str(tmp_path / "r"), "--json")

    assert code == 0, out
    result = json.loads(out)
    assert result["verified"] is True
    assert result["members"][0]["verify"]["output"] == "both copies present\n"


def test_a_link_into_another_restored_volume_is_pointed_at_its_copy(tmp_path: Path) -> None:
    ws = two_member_workspace(tmp_path / "ws")
    journal = ws.root / "data" / "journal"
    (ws.root / "data" / "db" / "journal-link").symlink_to(journal)  # like pg_wal -> /pg_wal
    (ws.root / "data" / "db" / "elsewhere").symlink_to("/etc")
    code, out = quiesce("run", str(ws.policy), "-g", "orders", "--json")
    assert code == 0, out
    point = json.loads(out)["recovery_point"]

    code, out = quiesce("restore", str(ws.policy), point, "--to", str(tmp_path / "r"), "--json")

    assert code == 0, out
    restored_link = tmp_path / "r" / "db" / "db" / "journal-link"
    assert os.readlink(restored_link) == str(tmp_path / "r" / "journal" / "journal")
    assert os.readlink(tmp_path / "r" / "db" / "db" / "elsewhere") == "/etc"
    assert json.loads(out)["links"] == [
        {
            "path": str(restored_link),
            "was": str(journal),
            "now": str(tmp_path / "r" / "journal" / "journal"),
        }
    ]


def test_restore_needs_either_a_folder_or_in_cloud(backed_up: tuple[Workspace, str]) -> None:
    ws, point = backed_up
    code, out = quiesce("restore", str(ws.policy), point)
    assert code == 2
    assert "give either --to DIR" in out
    code, out = quiesce("restore", str(ws.policy), point, "--execute", "--to", "/tmp/x")
    assert code == 2
    assert "--execute, --zone, --name-prefix and --launch go with --in-cloud" in out


def test_restore_in_cloud_of_local_volumes_is_refused_before_anything_is_made(
    backed_up: tuple[Workspace, str],
) -> None:
    ws, point = backed_up
    code, out = quiesce("restore", str(ws.policy), point, "--in-cloud", "--execute")
    assert code == 1
    assert "cannot be restored in its cloud" in out
    assert "the local provider cannot restore" in out


def test_launch_options_need_in_cloud_launch(backed_up: tuple[Workspace, str]) -> None:
    ws, point = backed_up
    code, out = quiesce("restore", str(ws.policy), point, "--in-cloud", "--region", "eu-west-1")
    assert code == 2
    assert "--region and --cleanup go with --in-cloud --launch" in out


def test_launch_without_a_restore_site_is_refused_with_the_setting_to_add(
    backed_up: tuple[Workspace, str],
) -> None:
    ws, point = backed_up
    code, out = quiesce("restore", str(ws.policy), point, "--in-cloud", "--launch")
    assert code == 1
    assert "has no `restore:` site" in out


def test_a_drill_of_a_group_without_a_site_is_refused(backed_up: tuple[Workspace, str]) -> None:
    ws, _ = backed_up
    code, out = quiesce("drill", str(ws.policy), "orders")
    assert code == 1
    assert "has no `restore:` site" in out


def test_restore_cleanup_of_a_label_nothing_carries_deletes_nothing(
    backed_up: tuple[Workspace, str],
) -> None:
    ws, _ = backed_up
    code, out = quiesce("restore-cleanup", str(ws.policy), "restore-none-000000", "--json")
    assert code == 0, out
    assert json.loads(out) == {"label": "restore-none-000000", "deleted": [], "left": []}
