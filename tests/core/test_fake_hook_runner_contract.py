"""The HookRunner contract against the engine tests' scripted fake (tests/fakes.py): its
outcomes mean what the real channels' mean. It scripts outcomes per member and phase, so the
target tells it what each contract hook stands for; it runs no script and keeps no allowlist."""

from __future__ import annotations

import pytest

from quiesce.ports import HookCall, Machine
from tests.contracts.hook_runner import (
    FAIL,
    SLOW,
    HookRunnerContract,
    HookTarget,
    member_spec,
)
from tests.fakes import FakeHookRunner, Log

OUTCOMES = {FAIL: "fail", SLOW: "timeout"}


class TestFakeHookRunner(HookRunnerContract):
    @pytest.fixture
    def target(self) -> HookTarget:
        fake = FakeHookRunner(Log())

        def script(call: HookCall) -> None:
            fake.behaviour[(call.member, call.phase)] = OUTCOMES.get(call.hook.name or "", "ok")

        spec = member_spec({"name": "db", "provider": "local", "volumes": ["/data/db"]})
        return HookTarget(
            fake,
            Machine(provider="local", member="db", machine_id="db-0"),
            spec,
            cannot={
                "output": "it scripts outcomes and returns no output or exit code of a script",
                "journal": "it runs no script",
                "undeclared": "it keeps no allowlist, so every name is declared",
                "check": "its check answers Allowed without the declarations' digests",
            },
            script=script,
        )
