"""Where the Function App finds its policy: a file bundled with the app.

QUIESCE_POLICY names it: an absolute path, or one relative to the app's root (the folder the
Functions host runs the app from: AzureWebJobsScriptRoot, else QUIESCE_APP_ROOT, else the
working directory). The file is read at import, because the app registers one timer function per
schedule trigger, and validated like any policy file; a bad policy fails with the field named.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from quiesce.errors import PolicyError
from quiesce.policy import Policy, parse_policy

POLICY_ENV = "QUIESCE_POLICY"
APP_ROOT_ENV = "QUIESCE_APP_ROOT"
SCRIPT_ROOT_ENV = "AzureWebJobsScriptRoot"


def app_root(env: Mapping[str, str]) -> Path:
    return Path(env.get(SCRIPT_ROOT_ENV) or env.get(APP_ROOT_ENV) or ".")


def policy_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    location = env.get(POLICY_ENV)
    if not location:
        raise PolicyError(POLICY_ENV, [f"{POLICY_ENV} is not set: name the policy file"])
    return app_root(env) / location


def load_policy(env: Mapping[str, str] | None = None) -> Policy:
    """Reads and validates the bundled policy; PolicyError names what is wrong."""
    path = policy_path(env)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(str(path), [f"{path}: no such file"]) from None
    except OSError as exc:
        raise PolicyError(str(path), [f"{path}: cannot be read: {exc}"]) from None
    # Hook paths of cloud members are absolute on the machines; nothing is resolved locally.
    return parse_policy(text, path=str(path))
