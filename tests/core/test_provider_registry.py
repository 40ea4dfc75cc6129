"""The provider registry: entry points, explicit registration where no package metadata exists,
clear errors for providers that are missing or broken."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from quiesce.errors import PolicyError, ProviderError, QuiesceError
from quiesce.policy import model as policy_model
from quiesce.policy import parse_policy
from quiesce.policy.model import LocalMember
from quiesce.ports import Provider
from quiesce.providers import registry
from quiesce.providers.local.spec import SPEC as LOCAL

MIXED = """\
version: 1
name: shop
groups:
  orders:
    consistency: crash
    members:
      - {name: r, provider: gcp, project: orders-prod, zone: europe-west1-b,
         select: {instances: [r-1]}}
      - {name: w, provider: aws, region: eu-central-1, select: {tags: {app: web}}}
"""


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """A registry that starts empty and finds the entry points in the returned list (none:
    like an app built by copying sources); the real one is put back afterwards."""
    found: list[Any] = []
    registry.specs()  # the real registry, loaded, is what is put back
    saved = (dict(registry._specs), dict(registry._broken), registry._loaded)
    monkeypatch.setattr(registry, "entry_points", lambda group: list(found))
    registry._specs.clear()
    registry._broken.clear()
    registry._loaded = False
    policy_model.rebuild()  # members: local only
    registry._loaded = False  # entry points the test adds are found on the next look
    yield found
    registry._specs.clear()
    registry._specs.update(saved[0])
    registry._broken.clear()
    registry._broken.update(saved[1])
    registry._loaded = saved[2]
    policy_model.rebuild()


def test_without_metadata_only_local_is_known(bare: list[Any]) -> None:
    assert registry.names() == ["local"]
    with pytest.raises(PolicyError) as caught:
        parse_policy(MIXED)
    problems = "\n".join(caught.value.problems)
    assert "unknown provider 'gcp'; known providers: local" in problems
    assert "pip install 'quiesce[gcp]'" in problems


def test_importing_a_cloud_provider_registers_it_and_the_policy_model_follows(
    bare: list[Any],
) -> None:
    import quiesce_gcp.provider

    with pytest.raises(PolicyError):
        parse_policy(MIXED)  # the model is built before the registration
    importlib.reload(quiesce_gcp.provider)  # what the functions' entry module does first

    # The VM provider and its managed services (Cloud SQL, Filestore).
    assert registry.names() == ["local", "gcp", "gcp-filestore", "gcp-sql"]
    with pytest.raises(PolicyError) as caught:
        parse_policy(MIXED)
    (problem,) = caught.value.problems
    # The GCP functions refuse another cloud's member by name, not with KeyError: 'aws'.
    assert (
        "groups.orders.members[1]: unknown provider 'aws'; known providers: local, gcp, "
        "gcp-filestore, gcp-sql"
    ) in problem


def test_a_broken_plugin_is_named_and_does_not_hide_the_others(bare: list[Any]) -> None:
    def fails() -> None:
        raise ImportError("No module named 'quiesce_kvm'")

    from quiesce_aws.spec import SPEC as AWS

    bare += [
        SimpleNamespace(name="kvm", load=fails),
        SimpleNamespace(name="aws", load=lambda: AWS),
    ]
    assert registry.names() == ["local", "aws"]
    message = registry.unknown_message("kvm")
    assert "provider 'kvm' is installed but cannot be loaded" in message
    assert "No module named 'quiesce_kvm'" in message


def test_an_entry_point_must_give_the_spec_of_its_own_name(bare: list[Any]) -> None:
    bare.append(SimpleNamespace(name="kvm", load=lambda: LOCAL))
    assert registry.names() == ["local"]
    assert "gives the spec of provider 'local'" in registry.unknown_message("kvm")


def test_every_installed_cloud_registers_its_spec_through_its_entry_point() -> None:
    specs = registry.specs()
    assert next(iter(specs)) == "local"
    for name in ("aws", "azure", "gcp"):
        spec = specs[name]
        assert spec.name == name
        assert spec.member.__module__ == f"quiesce_{name}.member"
        assert spec.extra == name
        assert spec.member.model_fields["provider"].is_required()


def test_expect_member_refuses_another_providers_member() -> None:
    from quiesce_aws.member import AwsMember

    local = LocalMember(name="db", provider="local", volumes=["/data"])
    assert registry.expect_member(local, LocalMember) is local
    with pytest.raises(ProviderError) as caught:
        registry.expect_member(local, AwsMember)
    assert caught.value.code == "WrongProvider"
    assert "member 'db' has provider 'local', not 'aws'" in str(caught.value)


def test_a_factory_named_by_path_is_imported_when_first_built() -> None:
    from quiesce.policy.model import Policy

    missing = registry.ProviderSpec(
        name="kvm",
        member=LocalMember,
        factory="quiesce_kvm.provider:make_provider",
        description="",
        extra="kvm",
    )
    policy = Policy.model_validate(
        {
            "version": 1,
            "name": "shop",
            "groups": {
                "g": {
                    "consistency": "crash",
                    "members": [{"name": "db", "provider": "local", "volumes": ["/data"]}],
                }
            },
        }
    )
    with pytest.raises(QuiesceError) as caught:
        missing.build(policy)
    assert "provider 'kvm' cannot be loaded" in str(caught.value)
    assert "pip install 'quiesce[kvm]'" in str(caught.value)
    assert isinstance(registry.get("local").build(policy, scratch=True), Provider)
