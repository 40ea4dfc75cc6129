"""`quiesce hooks list | show | install`: the hook library as a user meets it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from typer.testing import CliRunner

from quiesce.cli.app import app
from quiesce.guest.quiesce_guest import normalize_entry

runner = CliRunner()


def test_list_names_every_workload_and_its_phases() -> None:
    result = runner.invoke(app, ["hooks", "list"])

    assert result.exit_code == 0, result.output
    assert "fsfreeze" in result.output
    assert "postgresql" in result.output
    assert "pre, post, verify" in result.output


def test_show_prints_allowlist_entries_the_runner_accepts() -> None:
    result = runner.invoke(
        app, ["hooks", "show", "postgresql", "--path", "/opt/q/quiesce_hooks.py"]
    )

    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    assert set(entries) == {f"<group>.<member>.{p}" for p in ("pre", "post", "verify")}
    for name, entry in entries.items():
        phase = name.rsplit(".", 1)[1]
        extra = {"thaw": "g.m.post", "max_freeze_seconds": 30} if phase == "pre" else {}
        normalized = normalize_entry({**entry, **extra}, name)
        assert normalized["run"][:3] == ["/opt/q/quiesce_hooks.py", "postgresql", phase]


def test_show_names_the_known_workloads_for_an_unknown_one() -> None:
    result = runner.invoke(app, ["hooks", "show", "oracle"])

    assert result.exit_code == 2
    assert "fsfreeze, postgresql, mysql, redis" in result.output


def test_install_writes_executables_only_their_owner_can_change(tmp_path: Path) -> None:
    target = tmp_path / "lib"

    result = runner.invoke(app, ["hooks", "install", "--to", str(target)])

    assert result.exit_code == 0, result.output
    for name in ("quiesce_hooks.py", "quiesce_guest.py"):
        st = (target / name).stat()
        assert stat.S_IMODE(st.st_mode) == 0o755
        assert st.st_uid == os.geteuid()


def test_install_refuses_a_folder_others_can_write(tmp_path: Path) -> None:
    target = tmp_path / "shared"
    target.mkdir()
    target.chmod(0o777)

    result = runner.invoke(app, ["hooks", "install", "--to", str(target)])

    assert result.exit_code != 0
    assert "chmod 755" in result.output
    assert list(target.iterdir()) == []
