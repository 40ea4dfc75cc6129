"""The hook allowlists of a policy's Azure VMs, as infra/azure installs them.

Every VM that runs hooks keeps a root-owned allowlist, /etc/quiesce/hooks.json
(docs/guest-protocol.md); a hook's run command only names a hook in it. This module turns a
policy into one allowlist per member selection (members with the very same selection share
one), which infra/azure writes onto the selected VMs with a managed run command
(infra/azure/install-hooks.sh), pinned by its SHA-256:

    python -m quiesce_azure.allowlists POLICY [-o infra/azure/hooks.auto.tfvars.json]

A VM holds one allowlist only: selections known to overlap (a VM name in two lists, or one
member's tags a subset of another's, in one resource group) are refused with an error naming
both members.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quiesce.allowlist import allowlist, policy_hooks, render
from quiesce.errors import PolicyError, QuiesceError
from quiesce.policy import parse_policy
from quiesce.policy.model import Policy
from quiesce_azure.member import AzureMember

DEFAULT_OUTPUT = Path(__file__).resolve().parents[3] / "infra" / "azure" / "hooks.auto.tfvars.json"


class AllowlistError(ValueError):
    """The policy's allowlists cannot be deployed; the message names the members and why."""


def _selection(member: AzureMember) -> dict[str, Any]:
    if member.select.vm_names is not None:
        return {"vm_names": sorted({n.lower() for n in member.select.vm_names}), "tags": None}
    return {"vm_names": None, "tags": dict(sorted((member.select.tags or {}).items()))}


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    if (a["subscription_id"], a["resource_group"].lower()) != (
        b["subscription_id"],
        b["resource_group"].lower(),
    ):
        return None
    if a["vm_names"] is not None and b["vm_names"] is not None:
        shared = sorted(set(a["vm_names"]) & set(b["vm_names"]))
        return f"both select {', '.join(shared)}" if shared else None
    tags_a, tags_b = a["tags"], b["tags"]
    if (tags_a is not None and tags_b is not None) and (
        tags_a.items() <= tags_b.items() or tags_b.items() <= tags_a.items()
    ):
        return "every VM one of them selects by tags also carries the other's tags"
    return None


def _same(target: dict[str, Any], where: dict[str, Any]) -> bool:
    return all(target[k] == v for k, v in where.items())


def hook_allowlists(policy: Policy) -> dict[str, dict[str, Any]]:
    """infra/azure's `hook_allowlists`: by name (`<group>.<member>` of the first member), the
    subscription, resource group, VM names or tags, members and the allowlist's content."""
    found: dict[str, dict[str, Any]] = {}
    entries: dict[str, dict[str, Any]] = {}
    for group_name, group in sorted(policy.groups.items()):
        for member in group.members:
            if not isinstance(member, AzureMember):
                continue
            try:
                hooks = allowlist(policy_hooks(policy, group=group_name, member=member.name))
            except (PolicyError, QuiesceError) as exc:
                raise AllowlistError(f"{group_name}.{member.name}: {exc}") from None
            if not hooks["hooks"]:
                continue
            where = {
                "subscription_id": member.subscription.lower(),
                "resource_group": member.resource_group,
                **_selection(member),
            }
            label = f"{group_name}.{member.name}"
            same = next((n for n, t in found.items() if _same(t, where)), None)
            if same is None:
                found[label] = {**where, "members": [label]}
                entries[label] = {}
                same = label
            else:
                found[same]["members"].append(label)
            entries[same].update(hooks["hooks"])
    names = list(found)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            why = _overlap(found[a], found[b])
            if why:
                raise AllowlistError(
                    f"{', '.join(found[a]['members'])} and {', '.join(found[b]['members'])}: "
                    f"{why}, but a VM holds one hook allowlist: give members that share VMs the "
                    "same selection (they then share one allowlist), or disjoint ones"
                )
    for name, target in found.items():
        target["content"] = render({"version": 1, "hooks": dict(sorted(entries[name].items()))})
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m quiesce_azure.allowlists",
        description="Writes infra/azure's hook_allowlists: the hook allowlist of each member's "
        "VMs, generated from the policy.",
    )
    parser.add_argument("policy", type=Path, help="the policy file (YAML)")
    parser.add_argument(
        "-o", "--output", default=str(DEFAULT_OUTPUT), help="the .tfvars.json ('-': stdout)"
    )
    args = parser.parse_args(argv)
    try:
        policy = parse_policy(args.policy.read_text(encoding="utf-8"), path=str(args.policy))
        data = {"hook_allowlists": hook_allowlists(policy)}
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{args.policy}: cannot be read: {exc}", file=sys.stderr)
        return 2
    except PolicyError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    except AllowlistError as exc:
        print(f"{args.policy}: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"{args.output}: {len(data['hook_allowlists'])} hook allowlist(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
