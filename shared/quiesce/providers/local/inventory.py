"""A local member is this host: one machine whose volumes are the member's folders."""

from __future__ import annotations

import socket
from pathlib import Path

from quiesce.errors import ProviderError
from quiesce.policy.model import Member
from quiesce.ports import Inventory, Machine


class LocalInventory(Inventory):
    """Resolves a local member to this host, after checking that each volume is a folder."""

    def resolve(self, member: Member) -> list[Machine]:
        if member.provider != "local":
            raise ProviderError(
                f"member {member.name!r} has provider {member.provider!r}, not 'local'",
                code="WrongProvider",
            )
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
