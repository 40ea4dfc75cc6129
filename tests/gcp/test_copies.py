"""GCP copies (images stored in another region) against the fake Compute API: what is refused
before anything is made, a repeated copy, delete / find on copies, and the exact tags a copy's
description gives back only where its labels agree."""

from __future__ import annotations

import pytest

from quiesce.errors import ProviderError
from quiesce.ports import Machine, SnapshotCall
from quiesce.record import SnapshotRef, SnapshotState
from quiesce.tags import COPY_OF_TAG, POINT_TAG, REGION_TAG, RUN_TAG
from quiesce_gcp.clients import GcpClients
from quiesce_gcp.copies import GceSnapshotterWithCopies, is_copy
from quiesce_gcp.member import GcpMember

from .conftest import PROJECT, ZONE
from .fake_compute import FakeCompute

TAGS = {"quiesce:copy-of": "x", "quiesce:region": "europe-west4"}


def snapper(clients: GcpClients) -> GceSnapshotterWithCopies:
    return GceSnapshotterWithCopies(
        clients, projects={"orders": [PROJECT]}, poll_interval=0.0, fixed_when={"READY"}
    )


def taken(compute: FakeCompute, clients: GcpClients) -> list[SnapshotRef]:
    inst = compute.add_instance(PROJECT, ZONE, "db-vm", machine_type="n2-highmem-4")
    machine = Machine("gcp", "db", "db-vm", tuple(d["source"] for d in inst["disks"]))
    spec = GcpMember.model_validate(
        {"name": "db", "provider": "gcp", "project": PROJECT, "zone": ZONE,
         "select": {"instances": ["db-vm"]}}
    )  # fmt: skip
    call = SnapshotCall("RUN-1", "shop", "orders", "db", machine, "rp-1", "crash", spec=spec)
    return snapper(clients).take(call)


def test_a_copy_is_a_pending_image_in_the_region_that_becomes_completed(
    compute: FakeCompute, clients: GcpClients
) -> None:
    ref = taken(compute, clients)[0]
    s = snapper(clients)
    copy = s.copy_to_region(ref, "europe-west4", None, {**ref.tags, **TAGS})
    assert is_copy(copy)
    assert copy.state is SnapshotState.PENDING
    assert (copy.machine_id, copy.volume, copy.fixed_at) == (
        ref.machine_id, ref.volume, ref.fixed_at
    )  # fmt: skip
    image = compute.images[(PROJECT, copy.id)]
    assert image["storageLocations"] == ["europe-west4"]
    assert image["labels"]["quiesce-machine-type"] == "n2-highmem-4"
    assert image["labels"]["quiesce-copy-of"] == ref.id
    assert "imageEncryptionKey" not in image or not image["imageEncryptionKey"]
    again = s.copy_to_region(ref, "europe-west4", None, {**ref.tags, **TAGS})
    assert again.id == copy.id  # a repeated copy follows the image there
    assert len(compute.images) == 1
    (done,) = s.wait_durable([copy], timeout=5)
    assert done.state is SnapshotState.COMPLETED
    assert done.size_bytes == 1048576
    assert [r.id for r in s.find("shop", "orders") if is_copy(r)] == [copy.id]
    s.delete(done)
    assert compute.images == {}
    s.delete(done)  # gone already: not an error


@pytest.mark.parametrize(
    ("region", "key", "message"),
    [
        ("europe-west4", "projects/p/locations/us-east1/keyRings/r/cryptoKeys/k", "is in us-east1"),
        ("europe-west4", "not-a-key", "not a Cloud KMS key"),
        ("eu", None, "not a Compute Engine region"),
    ],
)
def test_a_copy_that_cannot_be_right_is_refused_before_anything_is_made(
    compute: FakeCompute, clients: GcpClients, region: str, key: str | None, message: str
) -> None:
    ref = taken(compute, clients)[0]
    with pytest.raises(ProviderError, match=message):
        snapper(clients).copy_to_region(ref, region, key, TAGS)
    assert compute.images == {}


def test_only_completed_snapshots_are_copied_and_never_a_copy(
    compute: FakeCompute, clients: GcpClients
) -> None:
    ref = taken(compute, clients)[0]
    s = snapper(clients)
    pending = ref.model_copy(update={"state": SnapshotState.PENDING})
    with pytest.raises(ProviderError, match="only a completed snapshot is copied"):
        s.copy_to_region(pending, "europe-west4", None, TAGS)
    copy = s.copy_to_region(ref, "europe-west4", None, TAGS)
    with pytest.raises(ProviderError, match="is a copy already"):
        s.copy_to_region(copy, "europe-west3", None, TAGS)


def test_an_image_that_is_not_a_quiesce_copy_is_never_deleted(
    compute: FakeCompute, clients: GcpClients
) -> None:
    ref = taken(compute, clients)[0]
    s = snapper(clients)
    copy = s.copy_to_region(ref, "europe-west4", None, TAGS)
    compute.images[(PROJECT, copy.id)]["labels"] = {"team": "ops"}
    with pytest.raises(ProviderError, match="not a copy Quiesce made"):
        s.delete(copy)
    assert (PROJECT, copy.id) in compute.images


def test_a_vanished_copy_is_failed(compute: FakeCompute, clients: GcpClients) -> None:
    ref = taken(compute, clients)[0]
    s = snapper(clients)
    copy = s.copy_to_region(ref, "europe-west4", None, TAGS)
    del compute.images[(PROJECT, copy.id)]
    (seen,) = s.wait_durable([copy], timeout=0)
    assert seen.state is SnapshotState.FAILED


def test_find_gives_a_copy_s_exact_tags_only_where_its_labels_agree(
    compute: FakeCompute, clients: GcpClients
) -> None:
    ref = taken(compute, clients)[0]
    s = snapper(clients)
    tags = {**ref.tags, COPY_OF_TAG: ref.id, REGION_TAG: "europe-west4"}
    copy = s.copy_to_region(ref, "europe-west4", None, tags)

    (found,) = [r for r in s.find("shop", "orders") if is_copy(r)]
    assert found.tags[RUN_TAG] == "RUN-1"
    assert found.tags[POINT_TAG] == "rp-1"
    assert found.tags[COPY_OF_TAG] == ref.id
    assert found.tags[REGION_TAG] == "europe-west4"
    assert found.machine_id == "db-vm"
    # A run whose id differs only in case is another run: its copies are not this one's.
    assert [r.id for r in s.find("shop", "orders", "run-1") if is_copy(r)] == []
    assert [r.id for r in s.find("shop", "orders", "RUN-1") if is_copy(r)] == [copy.id]

    image = compute.images[(PROJECT, copy.id)]
    image["labels"]["quiesce-run"] = "run-2"  # relabelled by hand
    image["description"] = image["description"].replace('"rp-1"', '"true"')  # edited by hand
    (edited,) = [r for r in s.find("shop", "orders") if is_copy(r)]
    assert RUN_TAG not in edited.tags, "the label no longer agrees: the exact value is not believed"
    assert POINT_TAG not in edited.tags, "another label's value (managed=true) proves nothing"
    assert edited.tags[COPY_OF_TAG] == ref.id

    image["description"] = "made by hand"
    (plain,) = [r for r in s.find("shop", "orders") if is_copy(r)]
    assert not any(k.startswith("quiesce:") for k in plain.tags)
