"""Turns a policy's triggers into Terraform variables for infra/aws (a .tfvars.json file).

    python scripts/aws_triggers.py POLICY [-o infra/aws/quiesce.auto.tfvars.json]

What it writes:

- `policy_name`, `policy_sha256` and `policy_file`: Terraform refuses to plan when the policy
  changed after the file was generated;
- `member_regions`: every region the policy's AWS members live in;
- `groups`: each group's max_freeze_seconds and durability_timeout_seconds, which Terraform
  compares with the functions' timeout;
- `schedules`: one EventBridge Scheduler schedule per schedule trigger, named after the trigger
  (the schedule function reads the trigger's name back from the schedule's ARN), with the cron
  expression in EventBridge's six-field form and the trigger's time zone;
- `drill_schedules`: the same for drill triggers (`action: drill`), which start the drill
  function; `drill_regions`, where drills restore (each needs the run-hook document); and
  `restore_subnets` / `restore_security_groups`, the `restore:` sites' networks, the only ones
  the drill role may launch copies into;
- `event_rules`: at most one EventBridge rule per event kind (`deploy`, `alert`), whose pattern
  lets through only the events that can fire one of the policy's triggers of that kind;
- `hook_allowlists`: the hook allowlist (/etc/quiesce/hooks.json) of each member's instances
  and the State Manager targets that select them (quiesce_aws.allowlists): Terraform stores each
  in S3 and a Quiesce-InstallHooks association installs it, pinned by its SHA-256.

An event pattern is always a superset of what the triggers match: where a `match` pattern cannot
be expressed in EventBridge (`?`, `[...]`, or a pattern that also matches an empty value), the
field is left unfiltered and the function's own matching decides. The patterns follow the
core's defaults: an alert trigger whose `match` names neither `state` nor `condition` lets
through only alarms entering `ALARM` (never a recovery to `OK`); `condition` is turned into the
alarm states it stands for. Suppressed composite alarms are left to the function. CodePipeline
*stage* events are delivered only to triggers whose `match` names a `stage`, *action* events
only to those that name a `stage` and an `action`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from quiesce.errors import PolicyError
from quiesce.policy import Policy, parse_policy
from quiesce.triggers.model import Trigger
from quiesce_aws.allowlists import AllowlistError, hook_allowlists
from quiesce_aws.handler import RUN_MARGIN_SECONDS
from quiesce_aws.member import AwsMember
from quiesce_aws.triggers import CONDITIONS, to_eventbridge

ROOT = Path(__file__).resolve().parents[1]
TERRAFORM_DIR = ROOT / "infra" / "aws"
DEFAULT_OUTPUT = TERRAFORM_DIR / "quiesce.auto.tfvars.json"

#: EventBridge refuses longer event patterns.
MAX_PATTERN_LENGTH = 4096
#: The longest a Lambda function runs.
LAMBDA_MAX_TIMEOUT = 900

Path_ = tuple[str, ...]


@dataclass(frozen=True)
class EventSource:
    """One kind of AWS event a trigger kind can come from, and where the attributes that
    quiesce_aws.triggers builds from it live in the event.

    `fields` maps an attribute to its JSON path in the event, or to None when the attribute
    exists but cannot be filtered on exactly (it is then left to the function). An attribute
    that is not in `fields` never exists on this source's trigger events.
    """

    provider: str
    source: str
    detail_types: tuple[str, ...]
    fields: dict[str, Path_ | None]
    #: Attributes a trigger must match on for this source to be considered at all.
    requires: frozenset[str] = field(default_factory=frozenset)


EVENT_SOURCES: dict[str, tuple[EventSource, ...]] = {
    "deploy": (
        EventSource(
            provider="codedeploy",
            source="aws.codedeploy",
            detail_types=("CodeDeploy Deployment State-change Notification",),
            fields={
                "provider": None,
                "application": ("detail", "application"),
                "deployment_group": ("detail", "deploymentGroup"),
                "deployment_id": ("detail", "deploymentId"),
                "state": ("detail", "state"),
                "region": None,  # detail.region, else the event's region
            },
        ),
        EventSource(
            provider="codepipeline",
            source="aws.codepipeline",
            detail_types=("CodePipeline Pipeline Execution State Change",),
            fields={
                "provider": None,
                "pipeline": ("detail", "pipeline"),
                "execution_id": ("detail", "execution-id"),
                "state": ("detail", "state"),
                "region": ("region",),
            },
        ),
        EventSource(
            provider="codepipeline",
            source="aws.codepipeline",
            detail_types=("CodePipeline Stage Execution State Change",),
            fields={
                "provider": None,
                "pipeline": ("detail", "pipeline"),
                "execution_id": ("detail", "execution-id"),
                "stage": ("detail", "stage"),
                "state": ("detail", "state"),
                "region": ("region",),
            },
            requires=frozenset({"stage"}),
        ),
        EventSource(
            provider="codepipeline",
            source="aws.codepipeline",
            detail_types=("CodePipeline Action Execution State Change",),
            fields={
                "provider": None,
                "pipeline": ("detail", "pipeline"),
                "execution_id": ("detail", "execution-id"),
                "stage": ("detail", "stage"),
                "action": ("detail", "action"),
                "state": ("detail", "state"),
                "region": ("region",),
            },
            requires=frozenset({"stage", "action"}),
        ),
    ),
    "alert": (
        EventSource(
            provider="cloudwatch",
            source="aws.cloudwatch",
            detail_types=("CloudWatch Alarm State Change",),
            fields={
                "provider": None,
                "alarm": ("detail", "alarmName"),
                "state": ("detail", "state", "value"),
                "condition": None,  # filtered on detail.state.value, see alarm_states
                "previous_state": ("detail", "previousState", "value"),
                "suppressed": None,  # detail.state.actionsSuppressedBy
                "region": ("region",),
            },
        ),
    ),
}

#: Where an alarm's state is, and the states each of the core's alert conditions stands for
#: (quiesce_aws.triggers.CONDITIONS); `other` is every state but these.
ALARM_STATE: Path_ = ("detail", "state", "value")
CONDITION_STATES = {condition: state for state, condition in CONDITIONS.items()}


class Unreachable(Exception):
    """No AWS event of the trigger's kind carries every attribute its `match` names."""


def value_filter(pattern: str) -> str | dict[str, str] | None:
    """The EventBridge filter for one shell-style `match` pattern, or None when the pattern
    must be left to the function (the field is then not filtered)."""
    if fnmatchcase("", pattern):
        # Missing fields become "" in a trigger event; EventBridge would not match them.
        return None
    if "?" in pattern or "[" in pattern or "\\" in pattern:
        return None
    if "*" in pattern:
        return {"wildcard": pattern}
    return pattern


def _put(pattern: dict[str, Any], path: Path_, value: Any) -> None:
    node = pattern
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value if isinstance(value, list) else [value]


def alarm_states(trigger: Trigger) -> list[Any] | None:
    """The filter on an alarm's state that a trigger's `state` and `condition` allow (the
    core fires an alert trigger that names neither only while the alarm fires), or None when
    the state is not filtered; [] when no alarm state can fire the trigger."""
    if "state" in trigger.match:
        return None  # the state's own filter, if it has one, is set like any field
    wanted = trigger.match.get("condition")
    if wanted is None:
        return [CONDITION_STATES["firing"]]
    if not fnmatchcase("other", wanted):
        return [CONDITION_STATES[c] for c in sorted(CONDITION_STATES) if fnmatchcase(c, wanted)]
    excluded = [CONDITION_STATES[c] for c in sorted(CONDITION_STATES) if not fnmatchcase(c, wanted)]
    return [{"anything-but": excluded}] if excluded else None


def source_pattern(trigger: Trigger, source: EventSource) -> dict[str, Any] | None:
    """The pattern of the events of `source` that can fire `trigger`, or None if none can."""
    if not source.requires <= set(trigger.match):
        return None
    pattern: dict[str, Any] = {
        "source": [source.source],
        "detail-type": list(source.detail_types),
    }
    for attribute, wanted in sorted(trigger.match.items()):
        if attribute not in source.fields:
            return None
        if attribute == "provider":
            if not fnmatchcase(source.provider, wanted):
                return None
            continue
        path = source.fields[attribute]
        value = value_filter(wanted)
        if path is not None and value is not None:
            _put(pattern, path, value)
    if source.provider == "cloudwatch":
        states = alarm_states(trigger)
        if states == []:
            return None
        if states is not None:
            _put(pattern, ALARM_STATE, states)
    return pattern


def trigger_patterns(trigger: Trigger) -> list[dict[str, Any]]:
    assert trigger.on is not None
    patterns = [
        p for s in EVENT_SOURCES[trigger.on] if (p := source_pattern(trigger, s)) is not None
    ]
    if not patterns:
        named = set(trigger.match)
        lacking = sorted(
            {a for s in EVENT_SOURCES[trigger.on] if set(s.fields) >= named for a in s.requires}
            - named
        )
        hint = f" unless it also names {' and '.join(lacking)}" if lacking else ""
        raise Unreachable(
            f"trigger {trigger.name!r} matches on {', '.join(sorted(named))}, which no "
            f"AWS {trigger.on} event delivered by EventBridge carries{hint}"
        )
    return patterns


def _key(pattern: dict[str, Any]) -> str:
    return json.dumps(pattern, sort_keys=True, separators=(",", ":"))


def combine(patterns: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One pattern matching any of `patterns` (with `$or` when there are several); a pattern
    that only names source and detail-type makes narrower ones of the same source redundant."""
    unique = {_key(p): p for p in patterns}
    bare = {
        (p["source"][0], tuple(p["detail-type"]))
        for p in unique.values()
        if set(p) == {"source", "detail-type"}
    }
    kept = [
        p
        for p in unique.values()
        if set(p) == {"source", "detail-type"}
        or (p["source"][0], tuple(p["detail-type"])) not in bare
    ]
    kept.sort(key=_key)
    if len(kept) == 1:
        return kept[0]
    return {"$or": kept}


def unfiltered(patterns: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The same sources and detail-types, without any field filter."""
    return combine([{"source": p["source"], "detail-type": p["detail-type"]} for p in patterns])


def event_rules(policy: Policy, warn: Any = None) -> dict[str, dict[str, Any]]:
    rules: dict[str, dict[str, Any]] = {}
    for kind in ("deploy", "alert"):
        triggers = [t for t in policy.triggers if t.on == kind]
        patterns: list[dict[str, Any]] = []
        names: list[str] = []
        for trigger in triggers:
            try:
                patterns.extend(trigger_patterns(trigger))
            except Unreachable as exc:
                if warn is not None:
                    warn(f"warning: {exc}: the {kind} rule leaves it out")
                continue
            names.append(trigger.name)
        if not patterns:
            continue
        pattern = combine(patterns)
        text = json.dumps(pattern, sort_keys=True, separators=(",", ":"))
        if len(text) > MAX_PATTERN_LENGTH:
            if warn is not None:
                warn(
                    f"warning: the {kind} event pattern would be {len(text)} characters "
                    f"(EventBridge allows {MAX_PATTERN_LENGTH}); the rule filters by event type "
                    "only and the function matches the triggers"
                )
            text = json.dumps(unfiltered(patterns), sort_keys=True, separators=(",", ":"))
        rules[kind] = {"pattern": text, "triggers": sorted(names)}
    return rules


def schedules(policy: Policy) -> dict[str, dict[str, str]]:
    return {
        t.name: {
            "group": t.group,
            "expression": to_eventbridge(t.schedule),
            "timezone": t.timezone,
            "description": f"Quiesce {policy.name}: trigger {t.name} backs up group {t.group}",
        }
        for t in sorted(policy.triggers, key=lambda t: t.name)
        if t.schedule is not None and t.action == "backup"
    }


def drill_schedules(policy: Policy) -> dict[str, dict[str, str]]:
    """The drill triggers' schedules: they start the drill function, not the schedule one."""
    return {
        t.name: {
            "group": t.group,
            "region": t.region or "",
            "expression": to_eventbridge(t.schedule),
            "timezone": t.timezone,
            "description": (
                f"Quiesce {policy.name}: trigger {t.name} drills group {t.group}"
                + (f" in {t.region}" if t.region else "")
            ),
        }
        for t in sorted(policy.triggers, key=lambda t: t.name)
        if t.schedule is not None and t.action == "drill"
    }


def drill_regions(policy: Policy) -> list[str]:
    """Where the drills restore: a drill trigger's region, or its group's members' regions."""
    regions: set[str] = set()
    for t in policy.triggers:
        if t.action != "drill":
            continue
        if t.region:
            regions.add(t.region)
        else:
            group = policy.groups[t.group]
            regions |= {m.region for m in group.members if isinstance(m, AwsMember)}
    return sorted(regions)


def restore_sites(policy: Policy) -> tuple[list[str], list[str]]:
    """The subnets and security groups of every `restore:` site (the group's and its copies')."""
    subnets: set[str] = set()
    groups: set[str] = set()
    for group in policy.groups.values():
        sites = [group.restore, *(c.restore for c in group.copies)]
        for site in sites:
            if site is not None:
                subnets.add(site.network)
                groups.update(site.security_groups)
    return sorted(subnets), sorted(groups)


def groups(policy: Policy) -> dict[str, dict[str, float]]:
    return {
        name: {
            "max_freeze_seconds": group.max_freeze_seconds,
            "durability_timeout_seconds": group.durability_timeout_seconds,
        }
        for name, group in sorted(policy.groups.items())
    }


def long_runs(policy: Policy, timeout: float = LAMBDA_MAX_TIMEOUT) -> list[str]:
    """Warnings for groups whose runs may outlast a function of the given timeout."""
    out = []
    for name, group in sorted(policy.groups.items()):
        longest = group.max_freeze_seconds + group.durability_timeout_seconds + RUN_MARGIN_SECONDS
        if longest > timeout:
            out.append(
                f"warning: group {name!r}: a run may take up to {longest:g}s (max_freeze_seconds "
                f"+ durability_timeout_seconds + {RUN_MARGIN_SECONDS}s), longer than a Lambda "
                f"function runs ({timeout:g}s); lower durability_timeout_seconds to at most "
                f"{max(0, timeout - group.max_freeze_seconds - RUN_MARGIN_SECONDS):g} "
                "(docs/aws-deploy.md, Long runs)"
            )
    return out


def member_regions(policy: Policy) -> list[str]:
    return sorted(
        {m.region for g in policy.groups.values() for m in g.members if isinstance(m, AwsMember)}
    )


def tfvars(policy: Policy, raw: bytes, policy_file: str, warn: Any = None) -> dict[str, Any]:
    """The Terraform variables of a parsed policy (`raw`: the policy file's exact bytes, so
    that Terraform's filesha256 of the same file agrees)."""
    return {
        "policy_name": policy.name,
        "policy_file": policy_file,
        "policy_sha256": hashlib.sha256(raw).hexdigest(),
        "member_regions": member_regions(policy),
        "groups": groups(policy),
        "schedules": schedules(policy),
        "drill_schedules": drill_schedules(policy),
        "drill_regions": drill_regions(policy),
        "restore_subnets": restore_sites(policy)[0],
        "restore_security_groups": restore_sites(policy)[1],
        "event_rules": event_rules(policy, warn),
        "hook_allowlists": {
            name: target.tfvar() for name, target in sorted(hook_allowlists(policy).items())
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="aws_triggers.py",
        description=(
            "Writes the Terraform variables of infra/aws that come from a policy: its name and "
            "hash, its members' regions, one EventBridge Scheduler schedule per schedule "
            "trigger, and the event patterns of the deploy and alert rules."
        ),
    )
    parser.add_argument("policy", type=Path, help="the policy file (YAML)")
    parser.add_argument(
        "-o",
        "--output",
        default=str(DEFAULT_OUTPUT),
        help="where to write the .tfvars.json; '-' for standard output (default: %(default)s)",
    )
    parser.add_argument(
        "--terraform-dir",
        type=Path,
        default=TERRAFORM_DIR,
        help="the folder Terraform runs in; policy_file is written relative to it "
        "(default: %(default)s)",
    )
    args = parser.parse_args(argv)

    def warn(message: str) -> None:
        print(message, file=sys.stderr)

    try:
        raw = args.policy.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        warn(f"{args.policy}: cannot be read: {exc}")
        return 2
    try:
        policy = parse_policy(text, path=str(args.policy))
    except PolicyError as exc:
        for problem in exc.problems:
            warn(problem)
        return 2
    others = sorted({m.provider for g in policy.groups.values() for m in g.members} - {"aws"})
    if others:
        warn(
            f"{args.policy}: members with provider {', '.join(others)} cannot be backed up by "
            "the AWS functions"
        )
        return 2
    for message in long_runs(policy):
        warn(message)
    relative = os.path.relpath(args.policy.resolve(), args.terraform_dir.resolve())
    try:
        data = tfvars(policy, raw, Path(relative).as_posix(), warn)
    except AllowlistError as exc:
        warn(f"{args.policy}: {exc}")
        return 2
    out = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if args.output == "-":
        sys.stdout.write(out)
    else:
        target = Path(args.output)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(out, encoding="utf-8")
        print(
            f"{target}: {len(data['schedules'])} schedule(s), "
            f"{len(data['drill_schedules'])} drill schedule(s), "
            f"{len(data['event_rules'])} event rule(s), "
            f"{len(data['hook_allowlists'])} hook allowlist(s)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
