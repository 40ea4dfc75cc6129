"""The Inventory contract: what every provider's inventory (this host, EC2, Azure VMs, Compute
Engine instances) and the engine's fake must do, written once.

A provider's test module subclasses InventoryContract and provides a `harness` fixture: an
InventoryHarness that makes machines and the members that select them. Where a backend cannot
express a case, its harness says so (`cannot`), and the case is skipped with that reason.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import pytest
import yaml

from quiesce.errors import ProviderError
from quiesce.policy import parse_policy
from quiesce.policy.model import MemberBase
from quiesce.ports import Inventory


def member(spec: dict[str, Any]) -> MemberBase:
    """A member as a policy declares it (read by the policy loader, so it is the provider's own
    model, whatever module holds it)."""
    policy = parse_policy(
        yaml.safe_dump(
            {
                "version": 1,
                "name": "shop",
                "groups": {"orders": {"consistency": "crash", "members": [spec]}},
            },
            sort_keys=False,
        )
    )
    (found,) = policy.groups["orders"].members
    return found


class InventoryHarness(ABC):
    """One provider's inventory, and what a test needs around it."""

    inventory: Inventory
    #: The cases this backend cannot express, each with the reason: "tags", "volumes".
    cannot: dict[str, str] = {}

    @abstractmethod
    def by_names(self) -> tuple[MemberBase, set[str]]:
        """Makes machines, and returns a member that names two of them (by id or name) and
        the ids those two must resolve to."""

    def by_tags(self) -> tuple[MemberBase, set[str]]:
        """Makes machines with various tags (labels), and returns a member selecting some of
        them by tags and the ids those must resolve to."""
        raise NotImplementedError

    @abstractmethod
    def unknown(self) -> tuple[MemberBase, str]:
        """A member naming a machine that does not exist, and the name it gives it."""


def _skip_unless(harness: InventoryHarness, case: str) -> None:
    if case in harness.cannot:
        pytest.skip(harness.cannot[case])


class InventoryContract:
    """Subclass it (as Test...) next to a `harness` fixture."""

    def test_a_member_naming_machines_resolves_to_exactly_those(
        self, harness: InventoryHarness
    ) -> None:
        selected, ids = harness.by_names()

        machines = harness.inventory.resolve(selected)

        assert {m.machine_id for m in machines} == ids
        assert len(machines) == len(ids)
        for machine in machines:
            assert machine.member == selected.name
            assert machine.provider == selected.provider
            if "volumes" not in harness.cannot:
                assert machine.volumes

    def test_a_member_selecting_by_tags_resolves_to_the_machines_carrying_them(
        self, harness: InventoryHarness
    ) -> None:
        _skip_unless(harness, "tags")
        selected, ids = harness.by_tags()

        machines = harness.inventory.resolve(selected)

        assert {m.machine_id for m in machines} == ids
        assert all(m.member == selected.name for m in machines)

    def test_an_unknown_machine_is_a_provider_error_that_names_it(
        self, harness: InventoryHarness
    ) -> None:
        missing, name = harness.unknown()

        with pytest.raises(ProviderError) as raised:
            harness.inventory.resolve(missing)

        assert name in str(raised.value)
