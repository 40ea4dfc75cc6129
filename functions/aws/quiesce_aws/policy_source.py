"""Where a function finds its policy: bundled with it, in S3, or in SSM Parameter Store.

QUIESCE_POLICY names it: a path (`policy.yaml`, relative to the function's code),
`s3://bucket/key`, or `ssm:/parameter/name`. The text is read once per container and
validated like any policy file; a bad policy fails every invocation with the field named.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from quiesce.errors import PolicyError
from quiesce.policy import Policy, parse_policy

if TYPE_CHECKING:
    from boto3 import Session

POLICY_ENV = "QUIESCE_POLICY"
CODE_ROOT = Path(os.environ.get("LAMBDA_TASK_ROOT", "."))


def read_policy_text(location: str, session: Session) -> str:
    if location.startswith("s3://"):
        bucket, _, key = location.removeprefix("s3://").partition("/")
        body = session.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return bytes(body).decode("utf-8")
    if location.startswith("ssm:"):
        name = location.removeprefix("ssm:")
        answer = session.client("ssm").get_parameter(Name=name, WithDecryption=True)
        return str(answer["Parameter"]["Value"])
    return (CODE_ROOT / location).read_text(encoding="utf-8")


def load_policy_from(location: str | None, session: Session) -> Policy:
    if not location:
        raise PolicyError(POLICY_ENV, [f"{POLICY_ENV} is not set: name the policy file"])
    try:
        text = read_policy_text(location, session)
    except FileNotFoundError:
        raise PolicyError(location, [f"{location}: no such file"]) from None
    except Exception as exc:  # S3/SSM errors: name the location
        raise PolicyError(location, [f"{location}: cannot be read: {exc}"]) from None
    # Hook paths of cloud members are absolute on the machines; nothing is resolved locally.
    return parse_policy(text, path=location)
