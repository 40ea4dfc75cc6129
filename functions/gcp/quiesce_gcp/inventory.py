"""Finds the Compute Engine instances a member stands for: by name, or by labels.

Each instance becomes a Machine whose `machine_id` is the instance's name (unique in the
member's project and zone, which the policy names), whose volumes are the full URLs of its
attached disks (boot first, as the API lists them), and whose attributes carry project, zone,
os, hook_channel and self_link, so the other adapters need no lookup of their own.
"""

from __future__ import annotations

from typing import ClassVar

from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from quiesce.errors import ProviderError
from quiesce.policy.model import MemberBase
from quiesce.ports import Inventory, Machine
from quiesce.providers.registry import expect_member
from quiesce_gcp.clients import GcpClients, carries, label_filter
from quiesce_gcp.member import GcpMember
from quiesce_gcp.permissions import INSTANCE, Permission
from quiesce_gcp.retry import Backoff, error_message


class GceInventory(Inventory):
    PERMISSIONS: ClassVar[dict[str, list[Permission]]] = {
        "resolve": [
            Permission("compute.instances.get", INSTANCE),
            Permission("compute.instances.list", "projects/*/zones/*"),
        ],
    }

    def __init__(self, clients: GcpClients, *, backoff: Backoff | None = None) -> None:
        self.clients = clients
        self.backoff = backoff or Backoff()

    def resolve(self, spec: MemberBase) -> list[Machine]:
        member = expect_member(spec, GcpMember)
        instances = self.clients.instances()
        found: list[compute_v1.Instance] = []
        try:
            if member.select.instances:
                for name in member.select.instances:
                    found.append(
                        self.backoff.call(
                            lambda n=name: instances.get(  # type: ignore[misc]
                                project=member.project, zone=member.zone, instance=n, retry=None
                            ),
                            what=f"instances.get {name}",
                        )
                    )
            else:
                labels = member.select.labels or {}
                request = compute_v1.ListInstancesRequest(
                    project=member.project, zone=member.zone, filter=label_filter(labels)
                )
                pages = self.backoff.call(
                    lambda: list(instances.list(request=request, retry=None)),
                    what="instances.list",
                )
                found = [i for i in pages if carries(i.labels, labels)]
        except gexc.NotFound as exc:
            raise ProviderError(
                f"member {member.name!r}: instance not found in {member.project}/{member.zone}: "
                f"{error_message(exc)}",
                code="InstanceNotFound",
            ) from exc
        except gexc.GoogleAPICallError as exc:
            raise ProviderError(
                f"member {member.name!r}: cannot list instances in {member.project}/"
                f"{member.zone}: {error_message(exc)}",
                code=type(exc).__name__,
            ) from exc
        return [self._machine(member, i) for i in sorted(found, key=lambda i: i.name)]

    @staticmethod
    def _machine(member: GcpMember, instance: compute_v1.Instance) -> Machine:
        return Machine(
            provider="gcp",
            member=member.name,
            machine_id=instance.name,
            volumes=tuple(d.source for d in instance.disks if d.source),
            attributes={
                "project": member.project,
                "zone": member.zone,
                "os": member.os,
                "hook_channel": member.hook_channel,
                "self_link": instance.self_link,
                "status": instance.status,
            },
        )
