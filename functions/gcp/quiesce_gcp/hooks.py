"""Hooks on Compute Engine instances: through Quiesce's guest agent, or the guest flush.

`agent` channel: each call writes one command, naming the declared hook
(`<group>.<member>.<phase>` unless the policy names it) and signed with the VM's own key, into
the instance's metadata (`quiesce-command`, instances.setMetadata with the current fingerprint;
see quiesce_gcp.agent and quiesce_gcp.signing), then reads the agent's answer from the
instance's guest attributes until the hook's budget plus slack has passed; no answer by then is
timed_out/NoAnswer, and a pre hook's watchdog on the VM thaws by itself.

Reading answers (`AnswerPacing`): one getGuestAttributes per round, with queryPath `quiesce/`,
which returns every key of the namespace at once. No round comes right after the command is
written (an agent needs the metadata server's notice and a hook run first), and the waits
between rounds grow. A pre hook's first round comes at 0.4 poll intervals and its waits grow by
half up to one poll interval: every moment its answer waits unread, the application stays
frozen. A post hook's or a check's (the machine runs on meanwhile) comes at one poll interval
and its waits double up to four. A command's rounds stop at the answer.

An answer must carry the command's nonce (a result of an earlier command is never taken for
this one) and the VM's signature: any process on the VM can write guest attributes, so an
unsigned or mis-signed answer is recorded as failed/BadSignature, never as what it claims.

A restored copy (quiesce_gcp.restorer) is addressed like any instance, by its own name and
zone; its Machine's `key_of` attribute names the machine it was restored from, whose key it
boots with: commands to it are signed, and its answers verified, with that machine's key, while
the command still names the copy (its agent refuses commands for any other instance).

`guest_flush` channel: Quiesce runs no hook; the snapshots are created with guestFlush and the
Google guest agent runs /etc/google/snapshots/pre.sh and post.sh around them. `run` answers at
once, saying so; what the snapshot operation reports is recorded on each snapshot.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar, Unpack

from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from quiesce.errors import ProviderError
from quiesce.guest.protocol import (
    REMOTE,
    RemoteHookRunner,
    Request,
    Stopwatch,
    Timing,
    read_answer,
)
from quiesce.policy.model import Hook
from quiesce.ports import HookCall
from quiesce.providers.registry import expect_member
from quiesce.record import HookResult, HookStatus
from quiesce_gcp.agent import GUEST_NAMESPACE, METADATA_KEY, Command
from quiesce_gcp.clients import GcpClients, wait_zone_operation
from quiesce_gcp.member import GcpMember
from quiesce_gcp.permissions import AGENT_INSTANCES, INSTANCE, ZONE_OPERATION, Permission
from quiesce_gcp.retry import MUTATION_RETRYABLE, Backoff, error_message
from quiesce_gcp.signing import KEY_OF, AgentKeys, instance_path

log = logging.getLogger(__name__)

#: A command the agent sees later than this after it was written is refused as stale.
COMMAND_TTL_SECONDS = 30.0
#: setMetadata attempts when another writer changed the fingerprint meanwhile (HTTP 412).
FINGERPRINT_ATTEMPTS = 5


@dataclass(frozen=True)
class AnswerPacing:
    """When the answer to a command is read, in poll intervals (see the module docstring):
    the first read `first` after the command is written, each later wait `factor` times the
    one before, up to `cap`; `pre` for pre hooks, `after` for post hooks and checks."""

    first: float
    factor: float
    cap: float

    def waits(self, interval: float) -> Iterator[float]:
        """The waits before each read, in seconds: the first, then growing to the cap."""
        wait, cap = self.first * interval, self.cap * interval
        while True:
            yield min(wait, cap)
            wait = min(wait * self.factor, cap)


#: A pre hook's answer: read soon, and never more than a poll interval after it arrived.
PRE_PACING = AnswerPacing(first=0.4, factor=1.5, cap=1.0)
#: A post hook's or a check's answer: the machine runs on, so the reads back off further.
AFTER_PACING = AnswerPacing(first=1.0, factor=2.0, cap=4.0)


class AgentHookRunner(RemoteHookRunner):
    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "run": [
            Permission("compute.instances.get", INSTANCE),
            Permission("compute.instances.setMetadata", INSTANCE, scope=AGENT_INSTANCES),
            Permission("compute.instances.getGuestAttributes", INSTANCE),
            Permission("compute.zoneOperations.get", ZONE_OPERATION),
        ],
        "check": [
            Permission("compute.instances.get", INSTANCE),
            Permission("compute.instances.setMetadata", INSTANCE, scope=AGENT_INSTANCES),
            Permission("compute.instances.getGuestAttributes", INSTANCE),
            Permission("compute.zoneOperations.get", ZONE_OPERATION),
        ],
    }

    def __init__(
        self,
        clients: GcpClients,
        *,
        keys: AgentKeys | None = None,
        command_ttl: float = COMMAND_TTL_SECONDS,
        answer_timeout: Callable[[Hook | None, str], float] = REMOTE.answer,
        backoff: Backoff | None = None,
        pacing: tuple[AnswerPacing, AnswerPacing] = (PRE_PACING, AFTER_PACING),
        **timing: Unpack[Timing],
    ) -> None:
        super().__init__(**timing)
        self.clients = clients
        self.keys = keys
        self.command_ttl = command_ttl
        self.answer_timeout = answer_timeout
        self.backoff = backoff or Backoff()
        self.pacing = pacing  # (pre hooks, post hooks and checks)

    # ------------------------------------------------------------------------- the channel

    def send(self, call: HookCall, phase: str) -> HookResult:
        watch = Stopwatch(self.clock)
        member = expect_member(call.spec, GcpMember)
        if member.hook_channel == "guest_flush" and phase == "verify":
            return watch.failed(
                "NoHookChannel",
                f"a verify hook of member {call.member!r} cannot run: it uses hook_channel: "
                "guest_flush, which runs no Quiesce hook (use the agent channel to verify)",
            )
        if member.hook_channel == "guest_flush":
            message = (
                "guest flush: the Google guest agent checks"
                if phase == "check"
                else f"{phase}: no hook is sent; the snapshots are created with guestFlush and "
                "the Google guest agent runs /etc/google/snapshots/pre.sh and post.sh around "
                "them (each snapshot records what the operation reported)"
            )
            return watch.result(HookStatus.SUCCEEDED, "GuestFlush", message)
        project = call.machine.attributes.get("project") or member.project
        zone = call.machine.attributes.get("zone") or member.zone
        instance = call.machine.machine_id
        if self.keys is None:
            return watch.failed(
                "NoSigningKey",
                f"cannot send a signed command to {instance}: no agent master key is configured "
                "(set QUIESCE_AGENT_MASTER_KEY or QUIESCE_AGENT_MASTER_KEY_FILE; docs/gcp.md)",
            )
        request = Request.for_call(call, phase)
        command = Command.new(
            request.phase,
            request.run_id,
            request.member,
            request.hook,
            self.wall_clock() + self.command_ttl,
            instance_path(project, zone, instance),
            signer=call.machine.attributes.get(KEY_OF, ""),
        )
        try:
            self.write_command(project, zone, instance, command)
        except (ProviderError, gexc.GoogleAPICallError) as exc:
            return watch.failed(
                "Undeliverable",
                f"cannot write the command to {project}/{zone}/{instance}: {error_message(exc)}",
            )
        budget = self.answer_timeout(call.hook, phase)
        deadline = self.clock() + budget
        pacing = self.pacing[0] if phase == "pre" else self.pacing[1]
        for wait in pacing.waits(self.poll_interval):
            self.sleep(max(0.0, min(wait, deadline - self.clock())))
            try:
                answer = self.read_answer(project, zone, instance, command, watch)
            except (ProviderError, gexc.GoogleAPICallError) as exc:
                log.warning("getGuestAttributes %s: %s", instance, error_message(exc))
                answer = None
            if answer is not None:
                return answer
            if self.clock() >= deadline:
                break
        return watch.no_answer(
            f"no answer from the agent on {instance} within {budget:g}s of writing the command"
        )

    def write_command(self, project: str, zone: str, instance: str, command: Command) -> None:
        """Sets `quiesce-command` in the instance's metadata, keeping every other item."""
        instances = self.clients.instances()
        for attempt in range(FINGERPRINT_ATTEMPTS):
            current = self.backoff.call(
                lambda: instances.get(project=project, zone=zone, instance=instance, retry=None),
                what=f"instances.get {instance}",
            )
            items = [i for i in current.metadata.items if i.key != METADATA_KEY]
            value = command.signed(self.keys) if self.keys else ""
            items.append(compute_v1.Items(key=METADATA_KEY, value=value))
            metadata = compute_v1.Metadata(fingerprint=current.metadata.fingerprint, items=items)
            try:
                op = self.backoff.call(
                    lambda m=metadata: instances.set_metadata_unary(  # type: ignore[misc]
                        project=project,
                        zone=zone,
                        instance=instance,
                        metadata_resource=m,
                        retry=None,
                    ),
                    retry_on=MUTATION_RETRYABLE,
                    what=f"instances.setMetadata {instance}",
                )
            except gexc.PreconditionFailed:
                log.info("setMetadata %s: fingerprint changed (attempt %d)", instance, attempt + 1)
                continue
            wait_zone_operation(
                self.clients,
                project,
                zone,
                op,
                timeout=30.0,
                interval=min(self.poll_interval, 0.5),
                sleep=self.sleep,
                clock=self.clock,
            )
            return
        raise ProviderError(
            f"setMetadata {instance}: the fingerprint kept changing", code="FingerprintConflict"
        )

    def read_answer(
        self, project: str, zone: str, instance: str, command: Command, watch: Stopwatch
    ) -> HookResult | None:
        """The agent's answer to `command`, or None when there is none (yet)."""
        request = compute_v1.GetGuestAttributesInstanceRequest(
            project=project, zone=zone, instance=instance, query_path=f"{GUEST_NAMESPACE}/"
        )
        try:
            attrs = self.backoff.call(
                lambda: self.clients.instances().get_guest_attributes(request=request, retry=None),
                what=f"instances.getGuestAttributes {instance}",
            )
        except gexc.NotFound:
            return None  # no attribute under the namespace yet
        for entry in attrs.query_value.items:
            if entry.namespace != GUEST_NAMESPACE or entry.key != command.key:
                continue
            try:
                wrapped = json.loads(entry.value)
            except ValueError:
                return watch.failed("BadAnswer", f"unparseable answer: {entry.value[:200]!r}")
            if not isinstance(wrapped, dict) or wrapped.get("nonce") != command.nonce:
                return None  # an answer to an earlier command with the same key
            result = wrapped.get("result")
            if not (
                self.keys is not None
                and isinstance(result, str)
                and self.keys.answer_is_signed(
                    command.key_of, command.nonce, command.key, result, wrapped.get("sig")
                )
            ):
                return watch.failed(
                    "BadSignature",
                    f"the answer in guest attribute {GUEST_NAMESPACE}/{command.key} on "
                    f"{instance} is unsigned or its signature does not verify with this VM's "
                    "key: something other than Quiesce's agent wrote it (any process on the VM "
                    "can write guest attributes), so it is not trusted and the member is "
                    "recorded failed; look for who writes guest attributes on that VM",
                )
            answer = read_answer(result, signed=True)
            if isinstance(answer, str):
                return watch.failed("BadAnswer", f"the agent's signed answer {answer}")
            return answer
        return None
