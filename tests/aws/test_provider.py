"""provider.py: the `aws` entry point, aws_backends from the environment, the declared
permissions of every adapter operation, and retry.py's backoff."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import pytest
from botocore.exceptions import ClientError

from quiesce.errors import ProviderError, QuiesceError
from quiesce.policy.model import Policy
from quiesce.ports import EventPublisher, HookRunner, Inventory, Snapshotter, StateStore
from quiesce.providers import registry
from quiesce_aws.clients import SessionClients
from quiesce_aws.events import EventBridgePublisher
from quiesce_aws.hooks import RUN_HOOK_DOCUMENT, SsmHookRunner
from quiesce_aws.inventory import Ec2Inventory
from quiesce_aws.member import AwsMember
from quiesce_aws.provider import aws_backends, make_provider
from quiesce_aws.retry import Backoff
from quiesce_aws.snapshots import EbsSnapshotter
from quiesce_aws.spec import SPEC
from quiesce_aws.state import DynamoDbStateStore

from .conftest import REGION

POLICY = Policy.model_validate(
    {
        "version": 1,
        "name": "shop",
        "groups": {
            "orders": {
                "consistency": "crash",
                "members": [
                    {
                        "name": "db",
                        "provider": "aws",
                        "region": "eu-west-1",
                        "select": {"tags": {"role": "db"}},
                    }
                ],
            }
        },
    }
)


def test_the_aws_entry_point_of_quiesce_providers_is_its_spec() -> None:
    (ep,) = [e for e in entry_points(group="quiesce.providers") if e.name == "aws"]

    assert ep.load() is SPEC
    assert SPEC.member is AwsMember
    assert registry.get("aws") is SPEC


def test_make_provider_builds_inventory_hooks_and_snapshots_for_the_policy(
    clients: SessionClients,
) -> None:
    provider = make_provider(POLICY, clients=clients)

    assert isinstance(provider.inventory, Ec2Inventory)
    assert isinstance(provider.hooks, SsmHookRunner)
    assert isinstance(provider.snapshots, EbsSnapshotter)
    assert provider.hooks.document == RUN_HOOK_DOCUMENT
    assert provider.snapshots.regions == {"orders": ["eu-west-1"]}


def test_aws_backends_take_names_from_the_environment(clients: SessionClients) -> None:
    env = {
        "QUIESCE_TABLE": "quiesce-catalog",
        "QUIESCE_EVENT_BUS": "quiesce-bus",
        "QUIESCE_EVENT_SOURCE": "acme.quiesce",
        "QUIESCE_SSM_DOCUMENT": "Acme-Quiesce-RunHook",
        "QUIESCE_SSM_DOCUMENT_VERSION": "3",
        "QUIESCE_REGION": "us-east-2",
    }

    backends = aws_backends(POLICY, clients=clients, env=env)

    assert isinstance(backends.state, DynamoDbStateStore)
    assert (backends.state.table, backends.state.region) == ("quiesce-catalog", "us-east-2")
    assert isinstance(backends.bus, EventBridgePublisher)
    assert (backends.bus.bus, backends.bus.source) == ("quiesce-bus", "acme.quiesce")
    hooks = backends.providers["aws"].hooks
    assert isinstance(hooks, SsmHookRunner)
    assert (hooks.document, hooks.document_version) == ("Acme-Quiesce-RunHook", "3")


def test_aws_backends_need_the_table_name(clients: SessionClients) -> None:
    with pytest.raises(QuiesceError, match="QUIESCE_TABLE"):
        aws_backends(POLICY, clients=clients, env={"QUIESCE_REGION": REGION})


@pytest.mark.parametrize(
    ("cls", "port"),
    [
        (Ec2Inventory, Inventory),
        (SsmHookRunner, HookRunner),
        (EbsSnapshotter, Snapshotter),
        (EventBridgePublisher, EventPublisher),
        (DynamoDbStateStore, StateStore),
    ],
)
def test_every_adapter_declares_the_permissions_of_each_port_operation(
    cls: type[Any], port: type[Any]
) -> None:
    operations = {
        name for name in getattr(port, "__abstractmethods__", set()) if not name.startswith("_")
    }
    if port is HookRunner:
        operations.add("run_many")

    declared = cls.PERMISSIONS

    assert operations <= set(declared), operations - set(declared)
    for operation, permissions in declared.items():
        assert permissions, operation
        for permission in permissions:
            assert ":" in permission.action
            assert permission.resource == "*" or permission.resource.startswith("arn:aws:")


def test_deleting_snapshots_and_sending_commands_are_scoped_by_tags() -> None:
    delete = {p.action: p for p in EbsSnapshotter.PERMISSIONS["delete"]}["ec2:DeleteSnapshot"]
    sends = [p for p in SsmHookRunner.PERMISSIONS["run"] if p.action == "ssm:SendCommand"]

    assert delete.conditions == {"aws:ResourceTag/quiesce:managed": "true"}
    assert any(p.conditions == {"ssm:resourceTag/quiesce:enabled": "true"} for p in sends)
    assert any(p.resource.endswith(f"document/{RUN_HOOK_DOCUMENT}") for p in sends)


# ------------------------------------------------------------------------------ backoff


def throttled(code: str = "ThrottlingException") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "slow down"}}, "SendCommand")


def test_backoff_delays_are_full_jitter_under_an_exponential_capped_bound() -> None:
    top = Backoff(base=0.1, cap=1.0, random=lambda: 1.0)
    bottom = Backoff(base=0.1, cap=1.0, random=lambda: 0.0)

    assert [top.delay(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert [bottom.delay(n) for n in range(6)] == [0.0] * 6


def test_backoff_retries_only_the_codes_it_is_given() -> None:
    waits: list[float] = []
    backoff = Backoff(attempts=3, sleep=waits.append, random=lambda: 0.5)
    calls: list[int] = []

    def fails() -> None:
        calls.append(1)
        raise throttled("ValidationException")

    with pytest.raises(ClientError):
        backoff.call(fails, retry_on={"ThrottlingException"}, what="x")
    assert (len(calls), waits) == (1, [])


def test_backoff_gives_up_with_a_provider_error_naming_the_code() -> None:
    backoff = Backoff(attempts=3, sleep=lambda _s: None)

    def always() -> None:
        raise throttled()

    with pytest.raises(ProviderError) as caught:
        backoff.call(always, retry_on={"ThrottlingException"}, what="SendCommand")

    assert caught.value.code == "ThrottlingException"
    assert "after 3 attempts" in str(caught.value)


def test_docs_name_every_declared_action_and_every_environment_variable() -> None:
    from pathlib import Path

    from quiesce_aws import provider
    from quiesce_aws.permissions import declared

    text = (Path(__file__).resolve().parents[2] / "docs" / "aws.md").read_text()
    adapters = (Ec2Inventory, SsmHookRunner, EbsSnapshotter, EventBridgePublisher)
    actions = {
        p.action for perms in declared(*adapters, DynamoDbStateStore).values() for p in perms
    }
    variables = {v for k, v in vars(provider).items() if k.endswith("_ENV")}

    assert sorted(a for a in actions if a not in text) == []
    assert sorted(v for v in variables if v not in text) == []
