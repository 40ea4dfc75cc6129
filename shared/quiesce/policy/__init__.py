"""The policy file: the user's contract (models) and how it is read (loader)."""

from quiesce.policy.loader import load_policy, parse_policy
from quiesce.policy.model import (
    Group,
    Hook,
    Hooks,
    LocalMember,
    Member,
    Policy,
    Retention,
)

__all__ = [
    "Group",
    "Hook",
    "Hooks",
    "LocalMember",
    "Member",
    "Policy",
    "Retention",
    "load_policy",
    "parse_policy",
]
