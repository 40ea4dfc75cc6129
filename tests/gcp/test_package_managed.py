"""The Cloud Functions source carries the GCP managed-service members too: a policy with a
Cloud SQL and a Filestore member packages, its requirements bring their clients, and the
function's main registers their specs (the source has no package metadata)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "package_functions.py"
POLICY = """\
version: 1
name: shop
groups:
  g:
    consistency: crash
    members:
      - {name: r, provider: gcp, project: orders-prod, zone: europe-west1-b,
         select: {instances: [r-1]}}
      - {name: db, provider: gcp-sql, project: orders-prod, instance: orders-db}
      - {name: files, provider: gcp-filestore, project: orders-prod,
         location: europe-west1-b, instance: files}
"""


def test_a_policy_with_cloud_sql_and_filestore_members_is_packaged(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    out = tmp_path / "src.zip"
    built = subprocess.run(
        [sys.executable, str(SCRIPT), "gcp", "--policy", str(policy), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        requirements = archive.read("requirements.txt").decode().split()
    assert {"quiesce_gcp/cloudsql.py", "quiesce_gcp/filestore.py"} <= names
    assert any(r.startswith("google-cloud-sql") for r in requirements)
    assert any(r.startswith("google-cloud-filestore") for r in requirements)


def test_the_functions_main_validates_a_policy_with_managed_members(tmp_path: Path) -> None:
    """Run without the package's entry points: only what main registers is known."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    code = (
        "import importlib.metadata as md\n"
        "md.entry_points = lambda **kw: []\n"
        "import quiesce_gcp.main as main\n"
        "p = main.policy()\n"
        "print(sorted(m.provider for g in p.groups.values() for m in g.members))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={"QUIESCE_POLICY": str(policy), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == "['gcp', 'gcp-filestore', 'gcp-sql']"
