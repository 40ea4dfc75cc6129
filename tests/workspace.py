"""Builds real policy workspaces (folders, hook scripts, a policy file) for CLI and
integration tests."""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass
class Workspace:
    root: Path

    @property
    def policy(self) -> Path:
        return self.root / "policy.yaml"

    @property
    def log(self) -> Path:
        return self.root / "hooks.log"

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def hook(self, name: str, body: str) -> str:
        """Writes an executable hook script (sh) and returns its path."""
        path = self.root / "hooks" / name
        path.parent.mkdir(exist_ok=True, mode=0o755)
        path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
        path.chmod(0o755)
        return str(path)

    def write_policy(self, groups: dict[str, Any], **top: Any) -> Path:
        doc = {"version": 1, "name": "ws", "state_dir": str(self.root / "state"), **top}
        doc["groups"] = groups
        self.policy.write_text(yaml.safe_dump(doc, sort_keys=False))
        return self.policy


def logging_hook(ws: Workspace, name: str, extra: str = "") -> str:
    """A hook that appends '<name> <member> <epoch>' to the workspace log."""
    return ws.hook(
        name,
        f"""\
        {extra}
        echo "{name} $1 $(date +%s.%N)" >> {ws.log}
        """,
    )


def two_member_workspace(root: Path, **group: Any) -> Workspace:
    """db (with pause/resume hooks) and journal (no hooks), each with a data folder."""
    ws = Workspace(root)
    for member in ("db", "journal"):
        (root / "data" / member).mkdir(parents=True)
        (root / "data" / member / "file.txt").write_text(f"{member} data\n")
    pre = logging_hook(ws, "pause")
    post = logging_hook(ws, "resume")
    ws.write_policy(
        {
            "orders": {
                "consistency": "application",
                "max_freeze_seconds": 20,
                **group,
                "members": [
                    {
                        "name": "db",
                        "provider": "local",
                        "volumes": [str(root / "data" / "db")],
                        # the hooks only log: they freeze nothing, so state may share the disk
                        "pre_freezes_volumes": False,
                        "hooks": {
                            "pre": {"run": [pre, "db"], "timeout_seconds": 5},
                            "post": {"run": [post, "db"], "timeout_seconds": 5},
                        },
                    },
                    {
                        "name": "journal",
                        "provider": "local",
                        "volumes": [str(root / "data" / "journal")],
                    },
                ],
            }
        }
    )
    os.chmod(root, 0o755)
    return ws
