"""Where a function finds its policy: bundled with it (a path) or in Cloud Storage.

QUIESCE_POLICY names it: a path (`policy.yaml`, relative to the function's source folder, or
absolute) or `gs://bucket/object`. Reading Cloud Storage needs google-cloud-storage, which the
function does not ship by default: add it to requirements.txt to use gs://, otherwise a gs://
location fails with that advice. The text is read once per instance and validated like any
policy file; a bad policy fails every invocation with the field named.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from quiesce.errors import PolicyError
from quiesce.policy import Policy, parse_policy

POLICY_ENV = "QUIESCE_POLICY"
#: Where Cloud Functions (2nd gen) puts the function's source; the working directory too.
CODE_ROOT = Path(os.environ.get("QUIESCE_CODE_ROOT", "."))


def _read_gcs(location: str) -> str:
    bucket, _, name = location.removeprefix("gs://").partition("/")
    if not bucket or not name:
        raise PolicyError(location, [f"{location}: expected gs://bucket/object"])
    try:
        storage: Any = importlib.import_module("google.cloud.storage")
    except ImportError:
        raise PolicyError(
            location,
            [
                f"{location}: reading a policy from Cloud Storage needs google-cloud-storage; "
                "add it to the function's requirements.txt, or bundle the policy with the "
                f"function and set {POLICY_ENV} to its path"
            ],
        ) from None
    return str(storage.Client().bucket(bucket).blob(name).download_as_text(encoding="utf-8"))


def read_policy_text(location: str) -> str:
    if location.startswith("gs://"):
        return _read_gcs(location)
    return (CODE_ROOT / location).read_text(encoding="utf-8")


def load_policy_from(location: str | None) -> Policy:
    if not location:
        raise PolicyError(POLICY_ENV, [f"{POLICY_ENV} is not set: name the policy file"])
    try:
        text = read_policy_text(location)
    except PolicyError:
        raise
    except FileNotFoundError:
        raise PolicyError(location, [f"{location}: no such file"]) from None
    except Exception as exc:  # Cloud Storage errors: name the location
        raise PolicyError(location, [f"{location}: cannot be read: {exc}"]) from None
    # Hook paths of cloud members are absolute on the machines; nothing is resolved locally.
    return parse_policy(text, path=location)
