"""The Cloud Functions bring only the gcp provider: packaging refuses a policy whose members
other providers back up (it used to package it, and the run failed with KeyError: 'aws')."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "package_functions.py"
MIXED = """\
version: 1
name: shop
groups:
  g:
    consistency: crash
    members:
      - {name: r, provider: gcp, project: orders-prod, zone: europe-west1-b,
         select: {instances: [r-1]}}
      - {name: w, provider: aws, region: eu-central-1, select: {tags: {app: web}}}
"""


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_a_policy_with_other_providers_members_is_refused(tmp_path: Path, cloud: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(MIXED)
    out = tmp_path / "src.zip"
    built = subprocess.run(
        [sys.executable, str(SCRIPT), cloud, "--policy", str(policy), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 2, built.stdout
    others = "aws" if cloud == "gcp" else "aws, gcp"
    assert f"members with provider {others} cannot be backed up by the {cloud} functions" in (
        built.stderr
    )
    assert not out.exists()
