"""A local member is this host: one machine whose volumes are the member's folders."""

from __future__ import annotations

import socket
from pathlib import Path

from quiesce.errors import ProviderError
from quiesce.policy.model import LocalMember, MemberBase
from quiesce.ports import Inventory, Machine
from quiesce.providers.registry import expect_member


class LocalInventory(Inventory):
    """Resolves a local member to this host, after checking that each volume is a folder."""

    def resolve(self, spec: MemberBase) -> list[Machine]:
        member = expect_member(spec, LocalMember)
        for volume in member.volumes:
            path = Path(volume)
            if not path.exists():
                raise ProviderError(
                    f"member {member.name!r}: volume {volume} does not exist",
                    code="VolumeNotFound",
                )
            if not path.is_dir():
                raise ProviderError(
                    f"member {member.name!r}: volume {volume} is not a folder",
                    code="VolumeNotAFolder",
                )
        return [
            Machine(
                provider="local",
                member=member.name,
                machine_id=socket.gethostname(),
                volumes=tuple(member.volumes),
            )
        ]
