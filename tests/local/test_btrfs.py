"""btrfs snapshots of subvolumes on real loop-mounted btrfs filesystems: one point in time per
volume, with and without hooks, restored byte for byte; retention and deletes touch only
Quiesce's own snapshots; a volume a pre hook may freeze is copied, never btrfs-snapshotted."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from quiesce.cli.app import app
from quiesce.errors import ProviderError
from quiesce.ports import Machine
from quiesce.providers.local import btrfs
from quiesce.providers.local.snapshots import LocalSnapshotter
from quiesce.record import SnapshotState

from .btrfs_fs import (
    btrfs_mount,
    consistent_volume,
    is_subvolume,
    pause_hooks,
    read_only,
    records_in,
    running_writer,
    sh,
    subvolume,
)
from .support import fill_volume, snapshot_call, tree_signature

runner = CliRunner()


@pytest.fixture(scope="module")
def fs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with btrfs_mount(tmp_path_factory.mktemp("btrfs") / "mnt") as mount:
        yield mount


@pytest.fixture
def here(fs: Path, tmp_path: Path) -> Path:
    """A folder of this test's own on the btrfs filesystem."""
    folder = fs / tmp_path.name
    folder.mkdir()
    return folder


def write_policy(path: Path, state: Path, members: list[dict[str, Any]], **group: Any) -> Path:
    doc = {
        "version": 1,
        "name": "bt",
        "state_dir": str(state),
        "groups": {"g": {"max_freeze_seconds": 60, "members": members, **group}},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def run(policy: Path) -> dict[str, Any]:
    ran = runner.invoke(app, ["run", str(policy), "-g", "g", "--json"])
    assert ran.exit_code in (0, 3), ran.output
    record: dict[str, Any] = json.loads(ran.output)
    return record


def restore(policy: Path, point: str, target: Path) -> dict[str, Any]:
    done = runner.invoke(app, ["restore", str(policy), point, "--to", str(target), "--json"])
    assert done.exit_code == 0, done.output
    result: dict[str, Any] = json.loads(done.output)
    return result


def snapshots_of(policy: Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The recovery point's snapshots (SnapshotRefs, from `quiesce points`)."""
    listed = runner.invoke(app, ["points", str(policy), "--json"])
    assert listed.exit_code == 0, listed.output
    [point] = [p for p in json.loads(listed.output) if p["id"] == record["recovery_point"]]
    return [s for m in point["members"] for s in m["snapshots"]]


def restored_volume(result: dict[str, Any], volume: Path) -> Path:
    [path] = [
        v["path"] for m in result["members"] for v in m["volumes"] if v["volume"] == str(volume)
    ]
    return Path(path)


# ------------------------------------------------------------------------------ the port


def test_a_subvolume_is_snapshotted_read_only_on_its_own_filesystem(
    here: Path, fs: Path, tmp_path: Path
) -> None:
    volume = fill_volume(subvolume(here / "db"))
    snapper = LocalSnapshotter(tmp_path / "state")

    [ref] = snapper.take(snapshot_call(volume))

    location = fs / ".quiesce-snapshots" / "rp-1" / "db" / "0-db"
    assert ref.method == "btrfs"
    assert ref.location == str(location)
    assert ref.state is SnapshotState.PENDING
    assert ref.started_at <= ref.fixed_at
    assert is_subvolume(location)
    assert read_only(location)
    assert tree_signature(location) == tree_signature(volume)
    assert (tmp_path / "state" / "snapshots" / "rp-1" / "db" / "0-db" / "manifest.json").exists()
    assert not (tmp_path / "state" / "snapshots" / "rp-1" / "db" / "0-db" / "data").exists()

    (volume / "table.db").write_bytes(b"changed after the snapshot")
    assert (location / "table.db").read_bytes() == b"rows\x00" * 1000
    with pytest.raises(OSError, match="Read-only file system"):
        (location / "new-file").write_text("a read-only snapshot refuses writes")

    [done] = snapper.wait_durable([ref], timeout=60)
    assert done.state is SnapshotState.COMPLETED
    assert done.file_count == 4
    assert done.size_bytes == 5000 + 16 + 18
    snapper.check(done)
    assert snapper.find("shop", "orders") == [done]

    snapper.delete(done)
    assert not location.exists()
    assert not (fs / ".quiesce-snapshots" / "rp-1").exists()  # its empty folders pruned
    assert snapper.find("shop", "orders") == []


def test_describe_says_btrfs_for_a_subvolume_and_why_not_for_other_btrfs_folders(
    here: Path, fs: Path, tmp_path: Path
) -> None:
    sub = subvolume(here / "sub")
    plain = here / "plain"
    plain.mkdir()
    nested = subvolume(here / "outer")
    subvolume(nested / "inner")
    snapper = LocalSnapshotter(tmp_path / "state", freezing_members={"frozen"})

    methods = snapper.describe(
        Machine("local", "m", "host", (str(sub), str(plain), str(nested), str(fs)))
    )
    assert methods[str(sub)] == "btrfs"
    assert methods[str(plain)] == "copy"  # a folder (state_dir is on another filesystem)
    assert methods[str(nested)].startswith("copy (not btrfs: it holds nested subvolumes")
    assert methods[str(fs)].startswith("copy (not btrfs: the root of its mount")

    frozen = snapper.describe(Machine("local", "frozen", "host", (str(sub),)))
    assert frozen[str(sub)].startswith("copy (not btrfs: a pre hook in its group may freeze it")


def test_a_snapshot_of_a_frozen_filesystem_is_reported_blocked_and_removed_after_the_thaw(
    here: Path, fs: Path
) -> None:
    volume = subvolume(here / "v")
    (volume / "f").write_text("x")
    late = fs / ".quiesce-snapshots" / "blocked" / "m" / "0-v"
    assert sh("fsfreeze", "--freeze", str(fs)).returncode == 0
    try:
        with pytest.raises(btrfs.BtrfsError, match="probably frozen"):
            btrfs.snapshot(volume, late, timeout=1)
    finally:
        assert sh("fsfreeze", "--unfreeze", str(fs)).returncode == 0
    deadline = time.monotonic() + 60
    while late.exists() and time.monotonic() < deadline:  # made after the thaw, then deleted
        time.sleep(0.1)
    assert not late.exists()


def test_delete_refuses_what_is_not_a_quiesce_snapshot(
    here: Path, fs: Path, tmp_path: Path
) -> None:
    volume = subvolume(here / "precious")
    (volume / "data").write_text("the user's")
    snapper = LocalSnapshotter(tmp_path / "state")
    [ref] = snapper.take(snapshot_call(volume, recovery_point="rp-own"))

    forged = ref.model_copy(update={"location": str(volume)})
    snapper_folder = tmp_path / "state" / "snapshots" / ref.id
    (snapper_folder / "manifest.json").write_text(forged.model_dump_json())
    with pytest.raises(ProviderError, match="not where Quiesce keeps that snapshot"):
        snapper.delete(forged)
    assert (volume / "data").read_text() == "the user's"

    # A writable subvolume where a snapshot would be is not one of Quiesce's either.
    imposter = subvolume(fs / ".quiesce-snapshots" / "rp-own" / "db" / "1-imposter")
    with pytest.raises(btrfs.BtrfsError, match="not a read-only snapshot"):
        btrfs.delete(imposter)
    assert imposter.exists()
    with pytest.raises(btrfs.BtrfsError, match=r"not in a \.quiesce-snapshots folder"):
        btrfs.delete(volume)
    sh("btrfs", "subvolume", "delete", str(imposter))
    btrfs.delete(Path(ref.location))


# ------------------------------------------------------------------------------ with a writer


def test_two_subvolumes_without_hooks_are_each_one_point_in_time_and_restore_byte_exact(
    here: Path, tmp_path: Path
) -> None:
    a, b = subvolume(here / "va"), subvolume(here / "vb")
    policy = write_policy(
        tmp_path / "policy.yaml",
        tmp_path / "state",
        [{"name": "app", "provider": "local", "volumes": [str(a), str(b)]}],
        consistency="crash",
    )
    with running_writer(tmp_path, a, b):
        time.sleep(0.3)
        record = run(policy)

    assert record["status"] == "succeeded", record
    assert record["consistency"] == "crash"
    snaps = snapshots_of(policy, record)
    assert [s["method"] for s in snaps] == ["btrfs", "btrfs"]
    assert record["skew_ms"] is not None
    assert record["skew_ms"] >= 0

    # Each snapshot is one point in time of its volume, and restores byte for byte.
    result = restore(policy, record["recovery_point"], tmp_path / "restored")
    for snap, volume in zip(snaps, (a, b), strict=True):
        copy = restored_volume(result, volume)
        assert consistent_volume(Path(snap["location"]), volume.name) > 0
        assert tree_signature(copy) == tree_signature(Path(snap["location"]))
        consistent_volume(copy, volume.name)


def test_two_subvolumes_held_by_hooks_restore_exactly_the_state_at_the_point_in_time(
    here: Path, tmp_path: Path
) -> None:
    a, b = subvolume(here / "ha"), subvolume(here / "hb")
    reference = tmp_path / "reference"
    reference.mkdir()
    with running_writer(tmp_path, a, b) as writer:
        policy = write_policy(
            tmp_path / "policy.yaml",
            tmp_path / "state",
            [
                {
                    "name": "app",
                    "provider": "local",
                    "volumes": [str(a), str(b)],
                    "pre_freezes_volumes": False,  # the hooks stop the writer, nothing is frozen
                    "hooks": pause_hooks(tmp_path, writer.pid, reference, a, b),
                }
            ],
            consistency="application",
            on_quiesce_failure="abort",
        )
        time.sleep(0.3)
        record = run(policy)
        time.sleep(0.3)  # the writer goes on after the thaw: the volumes move past the point

    assert record["status"] == "succeeded", record
    assert record["consistency"] == "application"
    assert [s["method"] for s in snapshots_of(policy, record)] == ["btrfs", "btrfs"]
    assert record["freeze_window_ms"] is not None

    result = restore(policy, record["recovery_point"], tmp_path / "restored")
    counts = []
    for volume in (a, b):
        copy = restored_volume(result, volume)
        assert tree_signature(copy) == tree_signature(reference / volume.name)
        assert tree_signature(copy) != tree_signature(volume)  # the live volume went on
        counts += [records_in(copy, name, volume.name) for name in ("a.log", "b.log")]
    # The writer appends record n to ha/a.log, ha/b.log, hb/a.log, hb/b.log in that order: at
    # one moment the counts never grow along that order and differ by one at most.
    assert counts == sorted(counts, reverse=True), counts
    assert counts[0] - counts[-1] <= 1, counts


def test_a_group_whose_pre_hook_freezes_is_copied_not_btrfs_snapshotted(
    here: Path, fs: Path, tmp_path: Path
) -> None:
    volume = fill_volume(subvolume(here / "frozen"))
    policy = write_policy(
        tmp_path / "policy.yaml",
        tmp_path / "state",
        [
            {
                "name": "files",
                "provider": "local",
                "volumes": [str(volume)],
                "hooks": {
                    "use": "fsfreeze",
                    "with": {"mount": [str(fs)]},
                    "timeout_seconds": 10,
                },
            }
        ],
        consistency="application",
        on_quiesce_failure="abort",
        max_freeze_seconds=30,
    )
    planned = runner.invoke(app, ["plan", str(policy), "--json"])
    assert planned.exit_code == 0, planned.output
    [shown] = json.loads(planned.output)["groups"][0]["members"][0]["volumes"]
    assert shown["method"].startswith("copy (not btrfs: a pre hook in its group may freeze it")

    record = run(policy)

    assert record["status"] == "succeeded", record
    assert record["consistency"] == "application"
    assert [s["method"] for s in snapshots_of(policy, record)] == ["copy"]
    assert not (fs / ".quiesce-snapshots" / record["recovery_point"]).exists()


def test_restore_is_a_writable_snapshot_on_the_same_filesystem_and_a_copy_elsewhere(
    here: Path, tmp_path: Path
) -> None:
    volume = fill_volume(subvolume(here / "src"))
    snapper = LocalSnapshotter(tmp_path / "state")
    [ref] = snapper.wait_durable(snapper.take(snapshot_call(volume, recovery_point="rp-r")), 60)

    same = snapper.restore(ref, here / "restored-here")
    elsewhere = snapper.restore(ref, tmp_path / "restored-elsewhere")

    assert is_subvolume(same)
    assert not read_only(same)
    (same / "writable").write_text("a restored copy is the user's to change")
    assert not is_subvolume(elsewhere)
    assert tree_signature(elsewhere) == tree_signature(Path(ref.location))
    assert tree_signature(same) == {
        **tree_signature(Path(ref.location)),
        "writable": tree_signature(same)["writable"],
    }
    snapper.delete(ref)


def test_retention_deletes_the_old_points_btrfs_snapshots_and_only_those(
    here: Path, fs: Path, tmp_path: Path
) -> None:
    volume = fill_volume(subvolume(here / "kept"))
    policy = write_policy(
        tmp_path / "policy.yaml",
        tmp_path / "state",
        [{"name": "m", "provider": "local", "volumes": [str(volume)]}],
        consistency="crash",
        retention={"keep_last": 1},
    )
    first = run(policy)
    [old] = snapshots_of(policy, first)
    assert Path(old["location"]).exists()

    second = run(policy)

    [new] = snapshots_of(policy, second)
    assert not Path(old["location"]).exists()
    assert not (fs / ".quiesce-snapshots" / first["recovery_point"]).exists()
    assert is_subvolume(Path(new["location"]))
    assert read_only(Path(new["location"]))
    assert is_subvolume(volume)
    listed = sh("btrfs", "subvolume", "list", "-o", str(fs)).stdout
    assert first["recovery_point"] not in listed
    assert second["recovery_point"] in listed
    subprocess.run(["btrfs", "subvolume", "delete", new["location"]], check=False)
    os.sync()
