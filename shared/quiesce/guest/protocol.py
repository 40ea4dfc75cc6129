"""The orchestrator's side of the guest protocol (docs/guest-protocol.md), for every channel.

A channel (a child process on this machine, a cloud's run-command service, an agent on the VM)
carries a version 2 request to the guest hook runner (quiesce_guest.py) and brings back the one
line of JSON it prints. What a request holds, how long to wait for the answer, how to read the
answer and how to report a call that got none do not depend on the channel: they are written
here once, and each HookRunner adapter keeps only its transport.
"""

from __future__ import annotations

import math
import re
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypedDict, Unpack

from pydantic import ValidationError

from quiesce.guest.quiesce_guest import (
    HOOK_NAME_RE,
    MEMBER_RE,
    PHASES,
    REQUEST_VERSION,
    RUN_ID_RE,
    WATCHDOG_READY_SECONDS,
)
from quiesce.policy.model import Hook, hook_name
from quiesce.ports import HookCall, HookRunner
from quiesce.record import HookResult, HookStatus, utcnow

#: What the runner itself may take per attempt beyond the hook's timeout: start-up, the
#: security checks, killing a process group.
PER_ATTEMPT_SLACK = 1.5
#: A verify call's restored copy: an absolute path without control characters (a channel
#: carries it as a flag or an environment variable).
RESTORE_PATH_RE = re.compile(r"/[^\x00-\x1f\x7f]{0,4095}")
#: What a channel that bounds the runner itself (a run-command timeout) adds to the answer
#: timeout, and its least value.
EXECUTION_MARGIN_SECONDS = 30
MIN_EXECUTION_SECONDS = 60
#: How much of a channel's stderr a result's message carries.
STDERR_TAIL = 1500
#: Said of every call that got no answer: the machine thaws without the orchestrator.
WATCHDOG_HINT = "a pre hook's watchdog, if armed, still thaws the member by max_freeze_seconds"


# ------------------------------------------------------------------------------ timeouts


@dataclass(frozen=True)
class Timeouts:
    """How long a channel waits for the runner's answer to one call.

    `fixed_slack` is added once per call (interpreter start, arming a pre's watchdog, writing
    state, and whatever the channel itself needs to deliver); `check_seconds` bounds a check,
    which never executes the script."""

    fixed_slack: float
    check_seconds: float
    per_attempt_slack: float = PER_ATTEMPT_SLACK

    def answer(self, hook: Hook | None, phase: str) -> float:
        """Seconds from sending a call until it counts as unanswered."""
        if phase == "check" or hook is None:
            return self.check_seconds
        attempts = hook.retries + 1
        return hook.budget_seconds + self.per_attempt_slack * attempts + self.fixed_slack

    def execution(self, hook: Hook | None, phase: str) -> int:
        """A channel's own bound on the runner (whole seconds): past all the runner bounds."""
        return max(
            MIN_EXECUTION_SECONDS, math.ceil(self.answer(hook, phase) + EXECUTION_MARGIN_SECONDS)
        )


#: A child process on this machine: only the runner's own start-up.
LOCAL = Timeouts(fixed_slack=5.0, check_seconds=30.0)
#: A remote channel: a pre's watchdog may take WATCHDOG_READY_SECONDS to report armed, and the
#: channel its own delivery.
REMOTE = Timeouts(fixed_slack=WATCHDOG_READY_SECONDS + 5.0, check_seconds=60.0)


# ------------------------------------------------------------------------------ the request


def format_number(value: float) -> str:
    """A number as a channel's string parameter: epoch seconds to the millisecond."""
    return f"{value:.3f}"


@dataclass(frozen=True)
class Request:
    """A version 2 request: the run's identifiers and a declared hook's name, nothing to run."""

    phase: str
    run_id: str
    member: str
    hook: str
    expires_at: float | None = None
    restore_path: str | None = None

    @classmethod
    def for_call(cls, call: HookCall, phase: str, *, sent_at: float | None = None) -> Request:
        """The request for `call` in `phase` (its own phase, or `check`). With `sent_at`
        (epoch seconds), a pre expires after the group's max_freeze_seconds: a pre that
        arrives later is refused `Stale` by the runner instead of freezing past its bound."""
        expires = None
        if phase == "pre" and sent_at is not None and call.max_freeze_seconds is not None:
            expires = round(sent_at + call.max_freeze_seconds, 3)
        return cls(
            phase=phase,
            run_id=call.run_id,
            member=call.member,
            hook=hook_name(call.hook, call.group, call.member, call.phase),
            expires_at=expires,
            restore_path=call.extra_args[-1] if phase == "verify" and call.extra_args else None,
        )

    def document(self) -> dict[str, Any]:
        """The request as the runner reads it (`run`, on stdin or --request)."""
        doc: dict[str, Any] = {
            "version": REQUEST_VERSION,
            "run_id": self.run_id,
            "member": self.member,
            "phase": self.phase,
            "hook": self.hook,
        }
        if self.expires_at is not None:
            doc["expires_at"] = self.expires_at
        if self.restore_path is not None:
            doc["restore_path"] = self.restore_path
        return doc

    def fields(self) -> dict[str, str]:
        """The request's fields as strings (`run-args` flags, a channel's parameters); fields
        without a value are left out."""
        out = {"phase": self.phase, "run_id": self.run_id, "member": self.member, "hook": self.hook}
        if self.expires_at is not None:
            out["expires_at"] = format_number(self.expires_at)
        if self.restore_path is not None:
            out["restore_path"] = self.restore_path
        return out

    def problems(self) -> dict[str, str]:
        """What the runner would refuse, by field: checked before anything is sent."""
        rules: dict[str, re.Pattern[str]] = {
            "run_id": RUN_ID_RE,
            "member": MEMBER_RE,
            "hook": HOOK_NAME_RE,
            "restore_path": RESTORE_PATH_RE,
        }
        out = {}
        if self.phase not in PHASES:
            out["phase"] = f"is not one of {', '.join(PHASES)}"
        for name, value in self.fields().items():
            rule = rules.get(name)
            if rule is not None and not rule.fullmatch(value):
                out[name] = f"does not match {rule.pattern}"
        return out


def argument_problem(call: HookCall, phase: str) -> str | None:
    """Arguments a request cannot carry: a hook's argv is its declaration on the machine; only
    a verify call's restored copy travels (as restore_path)."""
    extra = list(call.extra_args[:-1] if phase == "verify" else call.extra_args)
    if not extra:
        return None
    return (
        f"the call has arguments {extra!r}, but a request carries only a hook's name: declare "
        "the arguments in the hook's allowlist entry"
    )


# ------------------------------------------------------------------------------ the answer


def read_answer(output: str, *, signed: bool | None = None) -> HookResult | str:
    """The runner's result in what a channel brought back: the whole text, or else its last
    line that is a valid result (lines the channel or the shell added are passed over). When
    there is none, says what the output was instead, for the caller's message."""
    text = output.strip()
    if not text:
        return "printed nothing"
    problem = "printed no result"
    for candidate in (text, *(line.strip() for line in reversed(output.splitlines()))):
        if not candidate.startswith("{"):
            continue
        try:
            result = HookResult.model_validate_json(candidate)
        except ValidationError as exc:
            first = exc.errors()[0]["msg"]
            problem = f"printed no valid result ({exc.error_count()} problem(s), first: {first})"
            continue
        return result if signed is None else result.model_copy(update={"signed": signed})
    return problem


def parse_answer(output: str) -> HookResult | None:
    """The runner's result in `output`, or None when there is none (never a guess)."""
    found = read_answer(output)
    return found if isinstance(found, HookResult) else None


def state_word(text: object) -> str:
    """A channel's status as one lowercase word: `In Progress` is `inprogress`, and `canceled`
    is spelled `cancelled`."""
    word = re.sub(r"[^a-z]", "", str(text or "").lower())
    return "cancelled" if word == "canceled" else word


def with_stderr(message: str, error: str) -> str:
    """`message`, and the end of the channel's stderr when it has any."""
    tail = error.strip()[-STDERR_TAIL:]
    return f"{message}; its stderr ends with: {tail}" if tail else message


# ------------------------------------------------------------------------------ results


class Stopwatch:
    """When a call started, by the wall clock, and how long it has taken, by a monotonic clock
    (injectable): every result a channel makes itself carries the real start, end and
    duration, so a call that got no answer shows the whole time it was waited for."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = utcnow()
        self._t0 = clock()

    def elapsed(self) -> float:
        return max(0.0, self.clock() - self._t0)

    def result(self, status: HookStatus, code: str, message: str, **fields: Any) -> HookResult:
        elapsed = self.elapsed()
        return HookResult(
            status=status,
            code=code,
            message=message,
            started_at=self.started,
            ended_at=self.started + timedelta(seconds=elapsed),
            duration_ms=round(elapsed * 1000, 3),
            **fields,
        )

    def failed(self, code: str, message: str, **fields: Any) -> HookResult:
        return self.result(HookStatus.FAILED, code, message, **fields)

    def refused(self, code: str, message: str) -> HookResult:
        return self.result(HookStatus.REFUSED, code, message)

    def no_answer(self, what: str) -> HookResult:
        """timed_out/NoAnswer: `what` says who did not answer within which time."""
        return self.result(HookStatus.TIMED_OUT, "NoAnswer", f"{what}; {WATCHDOG_HINT}")

    def bad_parameters(self, problems: list[str], carried: str) -> HookResult:
        """refused/BadParameter: nothing was sent; `carried` says what the channel carries."""
        return self.refused("BadParameter", "not sent: " + "; ".join(problems) + f" ({carried})")


def ended(
    watch: Stopwatch,
    *,
    succeeded: bool,
    output: str,
    error: str,
    exit_code: int | None,
    where: str,
    script: str,
) -> HookResult:
    """What a channel call that ended succeeded or failed came to: the runner's result in its
    output; without one, RunnerError (the runner ran and printed no result) or ExecutionFailed
    (the channel's `script` failed before the runner could answer)."""
    parsed = parse_answer(output)
    if parsed is not None:
        return parsed
    if succeeded:
        code, message = "RunnerError", f"the hook runner printed no result {where}"
    else:
        code, message = "ExecutionFailed", f"{script} failed {where} with exit code {exit_code}"
    return watch.failed(code, with_stderr(message, error), exit_code=exit_code)


def machine_os(call: HookCall) -> str | None:
    """The machine's operating system: `windows` when the inventory found it or the member
    declares it, else whichever of the two is known."""
    found = call.machine.attributes.get("os")
    declared = getattr(call.spec, "os", None)
    return "windows" if "windows" in (found, declared) else found or declared


def windows_refusal(call: HookCall, *, machine: str, quiesced_by: str) -> HookResult | None:
    """refused/InvalidPlatform for a Windows machine (no hooks run there), else None."""
    if machine_os(call) != "windows":
        return None
    return Stopwatch().refused(
        "InvalidPlatform",
        f"{call.machine.machine_id} is a Windows {machine}: Windows members are quiesced by "
        f"{quiesced_by}, not by hooks",
    )


# ------------------------------------------------------------------------------ remote channels


class Timing(TypedDict, total=False):
    """How a remote channel waits: `poll_interval` between polls, `clock` (monotonic) bounds
    the waits, `sleep` paces the polls, `wall_clock` (epoch seconds) dates what the machine
    checks. All injectable, so tests need not wait."""

    poll_interval: float
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    wall_clock: Callable[[], float]


class RemoteHookRunner(HookRunner):
    """A HookRunner whose channel reaches the guest runner on another machine and is polled
    for the answer (a run-command service, an agent). A run sends the call in its own phase, a
    check in `check`; subclasses implement `send` and nothing else of the port."""

    #: The channel's own pace between polls, unless the caller gives one.
    POLL_INTERVAL = 1.0

    def __init__(self, **timing: Unpack[Timing]) -> None:
        self.poll_interval = timing.get("poll_interval", self.POLL_INTERVAL)
        self.clock = timing.get("clock", time.monotonic)
        self.sleep = timing.get("sleep", time.sleep)
        self.wall_clock = timing.get("wall_clock", time.time)

    def run(self, call: HookCall) -> HookResult:
        return self.send(call, call.phase)

    def check(self, call: HookCall) -> HookResult:
        return self.send(call, "check")

    @abstractmethod
    def send(self, call: HookCall, phase: str) -> HookResult:
        """Carries `call` to its machine as a request in `phase` and returns the answer, or
        the result the channel makes itself (refused before sending, no answer, ...)."""
