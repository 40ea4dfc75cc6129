"""One base error for the package; every error a user can meet derives from it."""

from __future__ import annotations


class QuiesceError(Exception):
    """Base class of every error Quiesce raises on purpose."""


class PolicyError(QuiesceError):
    """The policy file cannot be read or does not validate.

    ``problems`` holds one human-readable line per problem, each naming the file, the field path
    and, where known, the line.
    """

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: invalid policy\n" + "\n".join(f"  - {p}" for p in problems))


class GroupBusyError(QuiesceError):
    """Another run holds the group's lock."""

    def __init__(self, group: str, holder_run_id: str, expires_at: str) -> None:
        self.group = group
        self.holder_run_id = holder_run_id
        self.expires_at = expires_at
        super().__init__(
            f"group {group!r} is busy: run {holder_run_id} holds its lock until {expires_at}; "
            "wait for it, or run `quiesce recover` if that run's orchestrator died"
        )


class UnknownGroupError(QuiesceError):
    def __init__(self, group: str, known: list[str]) -> None:
        self.group = group
        super().__init__(f"group {group!r} is not in the policy; known groups: {', '.join(known)}")


class ProviderError(QuiesceError):
    """A provider could not do what the engine asked (the message says what and where)."""

    def __init__(self, message: str, *, code: str = "ProviderError"):
        self.code = code
        super().__init__(message)


class NotFoundError(QuiesceError):
    """A run, recovery point or member that was asked for does not exist."""


class DuplicateTriggerError(QuiesceError):
    """The trigger id already started a run: triggers are idempotent."""

    def __init__(self, trigger_id: str, run_id: str, record: object | None) -> None:
        self.trigger_id = trigger_id
        self.run_id = run_id
        self.record = record
        super().__init__(
            f"trigger {trigger_id!r} already started run {run_id}; not starting another"
        )


class TriggerPendingError(QuiesceError):
    """The trigger id was claimed moments ago by a run that has not been recorded yet: it may
    still be starting. Raised so the platform delivers the event again later; by then the run
    is recorded (and reported) or its claim is stale (and the redelivery takes it over)."""

    def __init__(self, trigger_id: str, run_id: str, retry_after_seconds: float) -> None:
        self.trigger_id = trigger_id
        self.run_id = run_id
        self.retry_after_seconds = retry_after_seconds
        super().__init__(
            f"trigger {trigger_id!r} was claimed by run {run_id}, which is not recorded yet; "
            f"deliver the event again in {retry_after_seconds:.0f}s or later"
        )


class CooldownError(QuiesceError):
    """Another run of the group, started by an event of the same kind, claimed the cooldown
    first; this run stopped before it froze anything. Carries the closed record."""

    def __init__(self, key: str, record: object) -> None:
        self.key = key
        self.record = record
        super().__init__(f"cooldown {key!r} was claimed by another run; nothing was frozen")
