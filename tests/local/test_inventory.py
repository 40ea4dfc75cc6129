"""LocalInventory: a local member is this host, and its volumes must be folders."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from quiesce.errors import ProviderError
from quiesce.policy.model import LocalMember
from quiesce.ports import Machine
from quiesce.providers.local.inventory import LocalInventory


def member(*volumes: Path) -> LocalMember:
    return LocalMember(name="db", provider="local", volumes=[str(v) for v in volumes])


def test_a_local_member_is_one_machine_this_host_with_the_members_volumes(
    tmp_path: Path,
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    machines = LocalInventory().resolve(member(tmp_path / "a", tmp_path / "b"))
    assert machines == [
        Machine(
            provider="local",
            member="db",
            machine_id=socket.gethostname(),
            volumes=(str(tmp_path / "a"), str(tmp_path / "b")),
        )
    ]


def test_a_volume_that_does_not_exist_is_a_provider_error_naming_member_and_path(
    tmp_path: Path,
) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(ProviderError) as info:
        LocalInventory().resolve(member(tmp_path / "a", tmp_path / "missing"))
    assert "'db'" in str(info.value)
    assert str(tmp_path / "missing") in str(info.value)
    assert "does not exist" in str(info.value)
    assert info.value.code == "VolumeNotFound"


def test_a_volume_that_is_a_file_is_a_provider_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ProviderError, match="is not a folder") as info:
        LocalInventory().resolve(member(tmp_path / "file"))
    assert str(tmp_path / "file") in str(info.value)
