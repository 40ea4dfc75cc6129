"""The hook allowlists of a policy's EC2 instances, and which instances each one goes to.

Every instance that runs hooks keeps a root-owned allowlist, /etc/quiesce/hooks.json
(docs/guest-protocol.md); the Quiesce-RunHook document only names a hook in it. This module
turns a policy into one allowlist per *target*, the instances one State Manager association
(Quiesce-InstallHooks) writes the file on:

- a member selected by tags is targeted by those tags (`tag:<key>` targets, which State Manager
  combines with AND; Terraform adds the Quiesce instance tag as one more), a member selected
  by instance ids by those ids;
- members with the very same selection in the same region share one target, whose allowlist
  declares the hooks of all of them;
- an instance can hold one allowlist only, so selections that are known to overlap (instance
  ids in two lists, or one member's tags a subset of another's) are refused with an error that
  names both members. Tag selections with different keys can still overlap on an instance
  that carries both: keep members' tags disjoint (docs/aws-deploy.md).

scripts/aws_triggers.py writes the result into infra/aws's tfvars (`hook_allowlists`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from quiesce.allowlist import allowlist, policy_hooks, render
from quiesce.errors import PolicyError, QuiesceError
from quiesce.guest.quiesce_guest import CONFIG_VERSION
from quiesce.policy.model import Policy
from quiesce_aws.member import AwsMember

#: State Manager takes at most 5 targets per association; Terraform adds the Quiesce tag.
MAX_SELECT_TAGS = 4
#: A target key takes at most 50 values (instance ids).
MAX_TARGET_VALUES = 50
#: SSM association names: ^[a-zA-Z0-9_\-.]{3,128}$, of which the deployment's name takes 48.
MAX_TARGET_NAME = 70


class AllowlistError(ValueError):
    """The policy's allowlists cannot be deployed; the message names the members and why."""


def member_entries(policy: Policy, group_name: str, member: AwsMember) -> dict[str, dict[str, Any]]:
    """The allowlist entries a member's hooks stand for, keyed by the hooks' names (the core's
    `quiesce.allowlist`, as `quiesce hooks allowlist` prints them). A hook the policy gives only
    by name is declared on the machines by other means and gets no entry here."""
    try:
        hooks = policy_hooks(policy, group=group_name, member=member.name)
        return dict(allowlist(hooks)["hooks"])
    except (PolicyError, QuiesceError) as exc:
        raise AllowlistError(f"{group_name}.{member.name}: {exc}") from None


@dataclass
class Target:
    """One association: the instances it targets and the allowlist it writes on them."""

    name: str
    region: str
    targets: list[dict[str, Any]]
    members: list[str] = field(default_factory=list)
    hooks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def content(self) -> str:
        """The allowlist file, as it is installed."""
        return render({"version": CONFIG_VERSION, "hooks": dict(sorted(self.hooks.items()))})

    def tfvar(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "targets": self.targets,
            "members": self.members,
            "content": self.content,
        }


def _selection(member: AwsMember) -> tuple[str, list[dict[str, Any]]]:
    select = member.select
    if select.instance_ids is not None:
        ids = sorted(set(select.instance_ids))
        return json.dumps({"ids": ids}), [{"key": "InstanceIds", "values": ids}]
    tags = dict(sorted((select.tags or {}).items()))
    targets = [{"key": f"tag:{k}", "values": [v]} for k, v in tags.items()]
    return json.dumps({"tags": tags}), targets


def _overlap(a: Target, b: Target) -> str | None:
    """Why the instances of two targets in one region are known to overlap, or None."""
    by_ids = [x.targets[0]["key"] == "InstanceIds" for x in (a, b)]
    if all(by_ids):
        shared = sorted(set(a.targets[0]["values"]) & set(b.targets[0]["values"]))
        return f"both select {', '.join(shared)}" if shared else None
    if any(by_ids):
        return None
    tags_a = {t["key"]: t["values"][0] for t in a.targets}
    tags_b = {t["key"]: t["values"][0] for t in b.targets}
    if tags_a.items() <= tags_b.items() or tags_b.items() <= tags_a.items():
        return "every instance one of them selects by tags also carries the other's tags"
    return None


def hook_allowlists(policy: Policy) -> dict[str, Target]:
    """The policy's allowlist targets, by name (`<group>.<member>` of their first member).

    Members without hooks (and Windows members, quiesced by VSS) need no allowlist."""
    by_selection: dict[tuple[str, str], Target] = {}
    for group_name, group in sorted(policy.groups.items()):
        for member in group.members:
            if not isinstance(member, AwsMember):
                continue
            entries = member_entries(policy, group_name, member)
            if not entries:
                continue
            key, targets = _selection(member)
            label = f"{group_name}.{member.name}"
            if len(targets) > MAX_SELECT_TAGS and targets[0]["key"] != "InstanceIds":
                raise AllowlistError(
                    f"{label}: selected by {len(targets)} tags; its allowlist association can "
                    f"target at most {MAX_SELECT_TAGS} (State Manager takes 5 targets, one is "
                    "the Quiesce instance tag)"
                )
            if len(targets[0]["values"]) > MAX_TARGET_VALUES:
                raise AllowlistError(
                    f"{label}: selects {len(targets[0]['values'])} instance ids; an association "
                    f"targets at most {MAX_TARGET_VALUES}: select its instances by tags"
                )
            target = by_selection.get((member.region, key))
            if target is None:
                name = label
                if len(name) > MAX_TARGET_NAME:
                    digest = hashlib.sha256(label.encode()).hexdigest()[:12]
                    name = f"{label[: MAX_TARGET_NAME - 13]}-{digest}"
                target = Target(name=name, region=member.region, targets=targets)
                by_selection[(member.region, key)] = target
            target.members.append(label)
            target.hooks.update(entries)
    found = list(by_selection.values())
    for i, a in enumerate(found):
        for b in found[i + 1 :]:
            why = _overlap(a, b) if a.region == b.region else None
            if why:
                raise AllowlistError(
                    f"{', '.join(a.members)} and {', '.join(b.members)}: {why}, but an instance "
                    "holds one hook allowlist: give members that share instances the same "
                    "selection (they then share one allowlist), or disjoint ones"
                )
    return {t.name: t for t in found}
