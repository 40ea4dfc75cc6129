"""Who may call the Cloud Monitoring webhook function: the holder of one shared secret.

A Cloud Monitoring webhook notification channel authenticates with HTTP basic auth
(`webhook_basicauth`: the secret is the password, the user name is not checked) or with a token
in the URL (`webhook_tokenauth`: `?token=<secret>`). The function reads the secret from
QUIESCE_WEBHOOK_TOKEN (Terraform fills it from Secret Manager) and compares in constant time.

    no secret configured            403, nothing else is read (logged: which setting is missing)
    no credentials in the request   401 with WWW-Authenticate: Basic
    credentials that do not match   403
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

#: The shared secret of the webhook notification channel.
TOKEN_ENV = "QUIESCE_WEBHOOK_TOKEN"  # noqa: S105 (the setting's name)
#: A secret shorter than this is refused as unset (it could be guessed).
MIN_TOKEN_LENGTH = 32
#: The query parameter of a token-in-URL channel.
TOKEN_PARAMETER = "token"  # noqa: S105 (a parameter name)
CHALLENGE = 'Basic realm="quiesce", charset="UTF-8"'


@dataclass(frozen=True)
class Denied:
    """Why a request is turned away: HTTP status, the answer's error and the log's detail."""

    status: int
    error: str
    detail: str


def _basic_password(authorization: str | None) -> str | None:
    """The password of a basic auth header, or None when there is none or it is garbled."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, colon, password = decoded.partition(":")
    return password if colon else None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def authenticate(
    authorization: str | None, token: str | None, expected: str | None
) -> Denied | None:
    """None when the request carries the secret (as the basic auth password or the `token`
    parameter); otherwise why not."""
    if not expected or len(expected) < MIN_TOKEN_LENGTH:
        return Denied(
            403,
            "forbidden",
            f"{TOKEN_ENV} is not set (or shorter than {MIN_TOKEN_LENGTH} characters): the "
            "webhook refuses every request until it is",
        )
    offered = [c for c in (_basic_password(authorization), token) if c is not None]
    if not offered:
        return Denied(401, "unauthorized", "the request carries no credentials")
    # Both are compared, always, so the time taken does not tell which one was offered.
    matched = [_same(c, expected) for c in offered]
    if not any(matched):
        return Denied(403, "forbidden", "the request's credentials do not match")
    return None
