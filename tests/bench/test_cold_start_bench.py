"""The cold-start benchmark runs end to end for every entry point and reports the documented
fields, with the task root laid out as the packages are (its times are measured by running it,
not asserted here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import cold_start


def test_each_entry_point_is_imported_from_its_task_root_with_and_without_bytecode(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cold_start.main(["--runs", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["runs"] == 1
    assert set(report["entries"]) == {"aws", "azure", "gcp"}
    for cloud, row in report["entries"].items():
        assert row["module"] == cold_start.ENTRIES[cloud].module
        for mode in ("pyc", "no_pyc"):
            figures = row[mode]
            assert set(figures["import_ms"]) == {"min", "median", "max"}
            assert figures["ready_ms"]["min"] >= figures["import_ms"]["min"]
            # Only the function's own provider, never another cloud's.
            others = {f"quiesce_{c}" for c in ("aws", "azure", "gcp")} - {f"quiesce_{cloud}"}
            assert not others & set(figures["loaded"])
    aws = report["entries"]["aws"]["no_pyc"]["loaded"]
    assert not {"yaml", "aws_xray_sdk", "wrapt", "boto3"} & set(aws)
    assert "package" not in report  # only with --package


def test_unknown_entry_points_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cold_start.main(["--entries", "aws,kvm"])
    assert "unknown entry points: kvm" in capsys.readouterr().err
