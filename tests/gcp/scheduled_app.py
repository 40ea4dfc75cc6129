"""The scheduler entry point (main.py's `on_schedule`, loaded by functions-framework as the
module `main`; the `app_main` fixture forgets it afterwards) on a policy file of a two-VM
`agent` group, for the end-to-end tests of the scheduler function."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from functions_framework import create_app

from .conftest import Fleet
from .test_engine_run import gcp_member

MAIN = Path(__file__).resolve().parents[2] / "functions" / "gcp" / "quiesce_gcp" / "main.py"


def scheduled_app(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, ModuleType, Any]:
    """The `on_schedule` app on the policy file of group `orders`: members db and app (a VM
    each, `<name>-vm` with a data disk, added to `fleet`, hooks by the fleet's agents) and a
    nightly trigger; with the function timeout Terraform sets. Returns the app, the module
    `main` and the policy it read."""
    policy_doc = {
        "version": 1,
        "name": "shop",
        "groups": {
            "orders": {
                "consistency": "application",
                "max_freeze_seconds": 20,
                "durability_timeout_seconds": 30,
                "members": [
                    gcp_member("db", fleet.hooks("db")),
                    gcp_member("app", fleet.hooks("app")),
                ],
            }
        },
        "triggers": [{"name": "nightly", "group": "orders", "schedule": "0 4 * * *"}],
    }
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy_doc))
    monkeypatch.setenv("QUIESCE_POLICY", str(tmp_path / "policy.yaml"))
    monkeypatch.setenv("QUIESCE_FUNCTION_TIMEOUT_SECONDS", "540")  # as Terraform sets it
    app = create_app("on_schedule", str(MAIN), "cloudevent")  # type: ignore[no-untyped-call]
    main = sys.modules["main"]
    policy = main.policy()
    fleet.add("db-vm", policy, data_disks=1)
    fleet.add("app-vm", policy, data_disks=1)
    return app, main, policy
