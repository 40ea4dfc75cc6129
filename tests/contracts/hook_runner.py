"""The HookRunner contract: what every channel to the guest hook runner (a local child process,
SSM Run Command, Azure Run Command, the GCP agent) and the engine's scripted fake must do,
written once. A channel's test module subclasses HookRunnerContract and provides a `target`
fixture: its runner, one machine whose allowlist is `contract_allowlist(...)` (the hook scripts
run for real wherever the channel's fake delivers the request), and that machine's member.

Where a channel cannot show a behaviour, its target names it in `cannot` with the reason, and
that test is skipped saying so; nothing is left out silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from quiesce.guest.quiesce_guest import CONFIG_VERSION, entry_digest, normalize_entry
from quiesce.policy import parse_policy
from quiesce.policy.model import Hook, MemberBase
from quiesce.ports import HookCall, HookRunner, Machine
from quiesce.record import HookResult, HookStatus, utcnow

GROUP = "orders"
PRE, POST, FAIL, SLOW = (
    "contract.ok.pre",
    "contract.ok.post",
    "contract.fail.post",
    "contract.slow.post",
)
#: A name no allowlist of the contract declares.
UNDECLARED = "contract.missing.post"
MAX_FREEZE_SECONDS = 30
#: The slow hook's timeout: the runner stops it long before it would end.
SLOW_TIMEOUT = 0.5

#: What each declared hook's script is told to do: print (and journal) a word, then
#: "broken" exits 3 and "slow" sleeps far past its timeout.
WORDS = {PRE: "frozen", POST: "thawed", FAIL: "broken", SLOW: "slow"}
SCRIPT = """#!/bin/sh
echo "$1" >> {journal}
echo "$1"
case "$1" in
  broken) exit 3 ;;
  slow) exec sleep 30 ;;
esac
"""

#: What a target may be unable to show: "output" (the hook's output and exit code), "journal"
#: (the scripts really run, so runs can be counted), "undeclared" (an allowlist refuses names
#: it does not declare), "check" (the declared entries' digests).
Behaviour = str


def contract_entries(folder: Path) -> dict[str, dict[str, Any]]:
    """Writes the contract's hook script into `folder` (mode 0755) and returns the declared
    hooks, normalized as the runner reads them. The journal (`folder/journal`) records every
    script run."""
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    folder.chmod(0o755)
    script = folder / "hook.sh"
    script.write_text(SCRIPT.format(journal=folder / "journal"))
    script.chmod(0o755)
    raw: dict[str, dict[str, Any]] = {
        PRE: {
            "phase": "pre",
            "thaw": POST,
            "max_freeze_seconds": MAX_FREEZE_SECONDS,
            "timeout_seconds": 5,
        },
        POST: {"phase": "post", "timeout_seconds": 5},
        FAIL: {"phase": "post", "timeout_seconds": 5},
        SLOW: {"phase": "post", "timeout_seconds": SLOW_TIMEOUT},
    }
    return {
        name: normalize_entry({**entry, "run": [str(script), WORDS[name]]}, name)
        for name, entry in raw.items()
    }


def contract_allowlist(folder: Path, state_dir: Path) -> dict[str, Any]:
    """The machine's allowlist document (`/etc/quiesce/hooks.json`) for the contract."""
    return {
        "version": CONFIG_VERSION,
        "state_dir": str(state_dir),
        "hooks": contract_entries(folder),
    }


def write_allowlist(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    return path


def member_spec(member: dict[str, Any]) -> MemberBase:
    """A member as the policy declares it, parsed by the policy loader (its provider's model)."""
    policy = parse_policy(
        json.dumps(
            {
                "version": 1,
                "name": "shop",
                "groups": {GROUP: {"consistency": "crash", "members": [member]}},
            }
        )
    )
    (spec,) = policy.groups[GROUP].members
    return spec


@dataclass
class HookTarget:
    """A HookRunner and one machine whose allowlist declares the contract's hooks."""

    runner: HookRunner
    machine: Machine
    spec: MemberBase
    #: Where the hook scripts journal their runs (contract_entries' folder); None for a fake.
    journal: Path | None = None
    #: Behaviours this channel cannot show, with the reason.
    cannot: dict[Behaviour, str] = field(default_factory=dict)
    #: For a scripted fake: tells it what the call's hook stands for, before the call.
    script: Callable[[HookCall], None] | None = None

    def call(self, name: str, phase: str, run_id: str = "contract-run-1") -> HookCall:
        timeout = SLOW_TIMEOUT if name == SLOW else 5
        hook = Hook(name=name, timeout_seconds=timeout)
        call = HookCall(
            run_id=run_id,
            policy="shop",
            group=GROUP,
            member=self.spec.name,
            machine=self.machine,
            phase=phase,  # type: ignore[arg-type]
            hook=hook,
            thaw=Hook(name=POST, timeout_seconds=5) if phase == "pre" else None,
            max_freeze_seconds=MAX_FREEZE_SECONDS if phase == "pre" else None,
            spec=self.spec,
        )
        if self.script is not None:
            self.script(call)
        return call

    def run(self, name: str, phase: str, run_id: str = "contract-run-1") -> HookResult:
        return self.runner.run(self.call(name, phase, run_id))

    def needs(self, behaviour: Behaviour) -> None:
        if behaviour in self.cannot:
            pytest.skip(
                f"{type(self.runner).__name__} cannot show {behaviour}: {self.cannot[behaviour]}"
            )

    def runs(self) -> list[str]:
        """The words of the scripts that ran, in order."""
        assert self.journal is not None
        return self.journal.read_text().split() if self.journal.exists() else []


def assert_real_times(result: HookResult, before: Any, after: Any) -> None:
    assert result.started_at is not None, result
    assert result.ended_at is not None, result
    slack = timedelta(seconds=1)  # the machine's clock writes the runner's times, in ms
    assert before - slack <= result.started_at <= result.ended_at <= after + slack, result
    assert result.duration_ms is None or result.duration_ms >= 0, result


class HookRunnerContract:
    @pytest.fixture
    def target(self) -> HookTarget:
        raise NotImplementedError("a HookRunner's test module provides its target")

    def test_a_pre_post_cycle_succeeds_with_real_timestamps(self, target: HookTarget) -> None:
        before = utcnow()
        pre = target.run(PRE, "pre")
        post = target.run(POST, "post")
        after = utcnow()

        assert (pre.status, pre.code) == (HookStatus.SUCCEEDED, "Succeeded"), pre
        assert (post.status, post.code) == (HookStatus.SUCCEEDED, "Succeeded"), post
        assert post.by == "orchestrator"
        assert_real_times(pre, before, after)
        assert_real_times(post, before, after)
        assert pre.ended_at is not None
        assert post.started_at is not None
        assert pre.ended_at <= post.started_at + timedelta(seconds=1)

    def test_the_hooks_run_once_each_and_their_output_comes_back(self, target: HookTarget) -> None:
        target.needs("output")
        target.needs("journal")
        pre = target.run(PRE, "pre")
        post = target.run(POST, "post")

        assert pre.output.split() == ["frozen"], pre
        assert post.output.split() == ["thawed"], post
        assert target.runs() == ["frozen", "thawed"]

    def test_a_failing_hook_is_failed(self, target: HookTarget) -> None:
        result = target.run(FAIL, "post")

        assert (result.status, result.code) == (HookStatus.FAILED, "ExecutionFailed"), result
        assert not result.ok

    def test_a_failing_hooks_exit_code_and_output_come_back(self, target: HookTarget) -> None:
        target.needs("output")
        result = target.run(FAIL, "post")

        assert result.status is HookStatus.FAILED, result
        assert result.exit_code == 3, result
        assert "broken" in result.output, result

    def test_a_hook_past_its_timeout_is_timed_out(self, target: HookTarget) -> None:
        before = utcnow()
        result = target.run(SLOW, "post")

        assert (result.status, result.code) == (HookStatus.TIMED_OUT, "Timeout"), result
        assert_real_times(result, before, utcnow())

    def test_an_undeclared_hook_is_refused_and_nothing_runs(self, target: HookTarget) -> None:
        target.needs("undeclared")
        target.needs("journal")
        result = target.run(UNDECLARED, "post")

        assert (result.status, result.code) == (HookStatus.REFUSED, "HookNotDeclared"), result
        assert target.runs() == []

    def test_check_returns_the_declared_digests_and_runs_nothing(self, target: HookTarget) -> None:
        target.needs("check")
        target.needs("journal")
        assert target.journal is not None
        entries = contract_entries(target.journal.parent)  # the same declarations, rewritten

        result = target.runner.check(target.call(PRE, "pre"))

        assert (result.status, result.code) == (HookStatus.SUCCEEDED, "Allowed"), result
        assert result.declared == entry_digest(entries[PRE])
        assert result.thaw_declared == entry_digest(entries[POST])
        assert target.runs() == []

    def test_a_post_without_a_pre_is_safe(self, target: HookTarget) -> None:
        first = target.run(POST, "post", run_id="contract-lone-post")
        again = target.run(POST, "post", run_id="contract-lone-post")

        assert (first.status, first.code) == (HookStatus.SUCCEEDED, "Succeeded"), first
        assert again.ok, again

    def test_a_repeated_post_reports_and_never_thaws_twice(self, target: HookTarget) -> None:
        target.needs("journal")
        target.run(POST, "post", run_id="contract-lone-post")
        target.run(POST, "post", run_id="contract-lone-post")

        assert target.runs() == ["thawed"]

    # run_many: the engine hands a phase's calls over at once, one call per machine (a channel
    # may carry one command per machine at a time, like GCP's agent), so with the contract's
    # one machine each batch holds one call; that call must come back as `run` answers it.

    def many(self, target: HookTarget, name: str, phase: str, run_id: str) -> HookResult:
        results = target.runner.run_many([target.call(name, phase, run_id)])
        assert len(results) == 1, results
        (result,) = results
        assert isinstance(result, HookResult), result
        return result

    def test_run_many_of_no_calls_answers_nothing(self, target: HookTarget) -> None:
        assert list(target.runner.run_many([])) == []

    def test_run_many_carries_a_pre_post_cycle(self, target: HookTarget) -> None:
        before = utcnow()
        pre = self.many(target, PRE, "pre", "contract-many-1")
        post = self.many(target, POST, "post", "contract-many-1")
        after = utcnow()

        assert (pre.status, pre.code) == (HookStatus.SUCCEEDED, "Succeeded"), pre
        assert (post.status, post.code) == (HookStatus.SUCCEEDED, "Succeeded"), post
        assert_real_times(pre, before, after)
        assert_real_times(post, before, after)
        if "journal" not in target.cannot:
            assert target.runs() == ["frozen", "thawed"]

    def test_run_many_answers_a_failing_hook_as_run_does(self, target: HookTarget) -> None:
        batched = self.many(target, FAIL, "post", "contract-many-1")
        alone = target.run(FAIL, "post", run_id="contract-many-2")

        assert (batched.status, batched.code) == (HookStatus.FAILED, "ExecutionFailed"), batched
        assert (batched.status, batched.code, batched.exit_code) == (
            alone.status,
            alone.code,
            alone.exit_code,
        )
        if "output" not in target.cannot:
            assert batched.output.split() == ["broken"], batched

    def test_run_many_answers_a_hook_past_its_timeout_as_timed_out(
        self, target: HookTarget
    ) -> None:
        result = self.many(target, SLOW, "post", "contract-many-1")

        assert (result.status, result.code) == (HookStatus.TIMED_OUT, "Timeout"), result

    def test_run_many_refuses_an_undeclared_hook(self, target: HookTarget) -> None:
        target.needs("undeclared")
        target.needs("journal")
        result = self.many(target, UNDECLARED, "post", "contract-many-1")

        assert (result.status, result.code) == (HookStatus.REFUSED, "HookNotDeclared"), result
        assert target.runs() == []
