"""A folder copied file by file is not one point in time: with a writer running and no
application hold, it is recorded `none` (an inconsistent copy), never `crash`, and its skew is
the copy's whole span. Real `quiesce run` processes on the local provider."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests.integration.support import cli, copy_workspace, points_of

pytestmark = pytest.mark.integration

WRITER = """
import os, sys, time
top = sys.argv[1]
names = sorted(os.path.join(d, f) for d, _, fs in os.walk(top) for f in fs)
n = 0
while True:
    for name in names:
        with open(name, "ab") as f:
            f.write(b"%d\\n" % n)
        n += 1
"""


def ms(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() * 1000


def test_a_folder_copied_file_by_file_under_a_writer_is_recorded_as_an_inconsistent_copy(
    tmp_path: Path,
) -> None:
    ws = copy_workspace(tmp_path, files=600)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "data" / "m")])
    try:
        done = cli("run", str(ws.policy), "-g", "g", "--json")
    finally:
        writer.kill()
        writer.wait()

    assert done.returncode == 3, done.stderr
    result = json.loads(done.stdout)
    (member,) = result["members"]
    assert member["consistency"] == "none"
    assert result["consistency"] == "none"
    assert result["status"] == "degraded", "a point, below the requested level"
    assert any("file by file" in w and "not one point in time" in w for w in result["warnings"])
    (point,) = points_of(ws)
    assert point["consistency"] == "none"
    (snap,) = point["members"][0]["snapshots"]
    assert snap["method"] in ("copy", "reflink")
    assert result["skew_ms"] == pytest.approx(ms(snap["started_at"], snap["fixed_at"]), abs=0.01)
