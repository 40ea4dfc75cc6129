"""The Cloud Functions source: main.py with the four entry points, the code and the policy."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
POLICY = """\
version: 1
name: shop
groups:
  g:
    consistency: crash
    members:
      - {name: r, provider: gcp, project: orders-prod, zone: europe-west1-b,
         select: {instances: [r-1]}}
"""


def test_the_function_source_has_main_py_with_every_entry_point(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    out = tmp_path / "src.zip"
    script = ROOT / "scripts" / "package_functions.py"
    built = subprocess.run(
        [sys.executable, str(script), "gcp", "--policy", str(policy), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        main = archive.read("main.py").decode()
        requirements = archive.read("requirements.txt").decode()
    entry_points = {"on_alert", "on_alert_webhook", "on_deploy", "on_schedule"}
    imported = compile(main, "main.py", "exec").co_names
    assert entry_points <= set(imported), main
    assert {"policy.yaml", "quiesce_gcp/main.py", "quiesce/engine/run.py"} <= names
    assert "host.json" not in names
    assert "google-cloud-compute" in requirements
