"""Where a function finds its policy: bundled with it, in S3, or in SSM Parameter Store.

QUIESCE_POLICY names it: a path (`policy.json`, the policy scripts/package_aws.py bundles,
relative to the function's code), `s3://bucket/key`, or `ssm:/parameter/name`. The text is read
once per container and validated like any policy file (JSON when its name ends in .json, YAML
otherwise: the zip carries no YAML parser, so a YAML policy there needs PyYAML added); a bad
policy fails every invocation with the field named. A boto3 Session is made only to read S3 or
SSM.
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


def _session(session: Session | None) -> Session:
    if session is not None:
        return session
    import boto3

    return boto3.session.Session()


def read_policy_text(location: str, session: Session | None = None) -> str:
    if location.startswith("s3://"):
        bucket, _, key = location.removeprefix("s3://").partition("/")
        body = _session(session).client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return bytes(body).decode("utf-8")
    if location.startswith("ssm:"):
        name = location.removeprefix("ssm:")
        answer = _session(session).client("ssm").get_parameter(Name=name, WithDecryption=True)
        return str(answer["Parameter"]["Value"])
    return (CODE_ROOT / location).read_text(encoding="utf-8")


def load_policy_from(location: str | None, session: Session | None = None) -> Policy:
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
