"""LocalSnapshotter: take, wait_durable, find, delete and restore folders on this host."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from quiesce.errors import ProviderError
from quiesce.providers.local import methods as methods_module
from quiesce.providers.local.reflink import clone_tree as real_clone
from quiesce.providers.local.snapshots import LocalSnapshotter
from quiesce.record import SnapshotRef, SnapshotState

from .support import fill_volume, snapshot_call, tree_signature


@pytest.fixture
def snapper(state_dir: Path) -> LocalSnapshotter:
    return LocalSnapshotter(state_dir)


@pytest.fixture
def two_volumes(tmp_path: Path, volume: Path) -> tuple[Path, Path]:
    logs = tmp_path / "volumes" / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("started\n")
    return volume, logs


def test_take_clones_every_volume_into_its_own_folder_with_a_pending_manifest(
    snapper: LocalSnapshotter, state_dir: Path, two_volumes: tuple[Path, Path]
) -> None:
    db, logs = two_volumes
    refs = snapper.take(snapshot_call(db, logs))

    assert [r.id for r in refs] == ["rp-1/db/0-db", "rp-1/db/1-logs"]
    for ref, vol in zip(refs, (db, logs), strict=True):
        folder = state_dir / "snapshots" / ref.id
        assert ref.location == str(folder)
        assert ref.provider == "local"
        assert ref.volume == str(vol)
        assert ref.state is SnapshotState.PENDING
        assert ref.durable_at is None
        assert ref.method in ("reflink", "copy")
        assert ref.started_at <= ref.fixed_at
        assert ref.fixed_at.utcoffset() == timedelta(0)
        assert tree_signature(folder / "data") == tree_signature(vol)
        assert SnapshotRef.model_validate_json((folder / "manifest.json").read_text()) == ref
    assert refs[1].size_bytes == len("started\n")
    assert refs[0].tags == {
        "quiesce:managed": "true",
        "quiesce:policy": "shop",
        "quiesce:group": "orders",
        "quiesce:run-id": "r-1",
        "quiesce:recovery-point": "rp-1",
        "quiesce:member": "db",
        "quiesce:machine": "vm",
        "quiesce:consistency": "application",
    }


def test_a_snapshot_is_a_point_in_time_later_writes_to_the_volume_do_not_reach_it(
    snapper: LocalSnapshotter, volume: Path
) -> None:
    (ref,) = snapper.take(snapshot_call(volume))
    (volume / "table.db").write_bytes(b"changed after the snapshot")
    (volume / "new-file").write_text("late")
    data = Path(ref.location) / "data"
    assert (data / "table.db").read_bytes() == b"rows\x00" * 1000
    assert not (data / "new-file").exists()


def test_a_missing_volume_is_a_provider_error_and_nothing_is_left_behind(
    snapper: LocalSnapshotter, state_dir: Path, volume: Path, tmp_path: Path
) -> None:
    with pytest.raises(ProviderError, match=r"member 'db'.*gone.*does not exist") as info:
        snapper.take(snapshot_call(volume, tmp_path / "gone"))
    assert info.value.code == "VolumeNotFound"
    assert not list((state_dir / "snapshots").glob("**/manifest.json"))


def test_a_volume_that_is_a_file_is_a_provider_error(
    snapper: LocalSnapshotter, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ProviderError, match="is not a folder"):
        snapper.take(snapshot_call(tmp_path / "file"))


def test_a_take_that_fails_half_way_removes_what_it_had_written(
    snapper: LocalSnapshotter,
    state_dir: Path,
    two_volumes: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0

    def failing_second(src: Path, dst: Path, stop: object = None) -> tuple[str, int]:
        nonlocal calls
        calls += 1
        if calls == 2:
            dst.mkdir()
            (dst / "half-written").write_text("...")
            raise OSError(28, "No space left on device")
        return real_clone(src, dst)

    monkeypatch.setattr(methods_module, "clone_tree", failing_second)
    with pytest.raises(ProviderError, match="No space left") as info:
        snapper.take(snapshot_call(*two_volumes))
    assert info.value.code == "SnapshotFailed"
    assert list((state_dir / "snapshots").iterdir()) == []
    assert snapper.find("shop", "orders") == []


def test_a_snapshot_being_taken_is_listed_as_failed_until_its_data_is_complete(
    snapper: LocalSnapshotter, volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[SnapshotRef]] = []

    def spy(src: Path, dst: Path, stop: object = None) -> tuple[str, int]:
        seen.append(snapper.find("shop", "orders"))  # what a crash at this instant leaves
        return real_clone(src, dst)

    monkeypatch.setattr(methods_module, "clone_tree", spy)
    snapper.take(snapshot_call(volume))
    assert [r.state for r in seen[0]] == [SnapshotState.FAILED]
    assert [r.state for r in snapper.find("shop", "orders")] == [SnapshotState.PENDING]


def test_taking_the_same_recovery_point_twice_is_refused_and_keeps_the_first(
    snapper: LocalSnapshotter, volume: Path
) -> None:
    (first,) = snapper.take(snapshot_call(volume))
    with pytest.raises(ProviderError, match="already exists") as info:
        snapper.take(snapshot_call(volume))
    assert info.value.code == "SnapshotExists"
    assert snapper.find("shop", "orders") == [first]
    assert (Path(first.location) / "data" / "table.db").exists()


def test_a_volume_holding_the_state_folder_is_refused(tmp_path: Path) -> None:
    fill_volume(tmp_path / "app")
    snapper = LocalSnapshotter(tmp_path / "app" / ".quiesce")
    with pytest.raises(ProviderError, match="state folder") as info:
        snapper.take(snapshot_call(tmp_path / "app"))
    assert info.value.code == "StateInsideVolume"


@pytest.mark.parametrize("bad", ["", "..", "a/b"])
def test_a_recovery_point_that_cannot_name_a_folder_is_refused(
    snapper: LocalSnapshotter, volume: Path, bad: str
) -> None:
    with pytest.raises(ProviderError, match="cannot name a folder"):
        snapper.take(snapshot_call(volume, recovery_point=bad))


def test_wait_durable_completes_the_snapshots_and_rewrites_their_manifests(
    snapper: LocalSnapshotter, two_volumes: tuple[Path, Path]
) -> None:
    refs = snapper.take(snapshot_call(*two_volumes))
    done = snapper.wait_durable(refs, timeout=30)
    assert [d.id for d in done] == [r.id for r in refs]
    for ref, d in zip(refs, done, strict=True):
        assert d.state is SnapshotState.COMPLETED
        assert d.durable_at is not None
        assert d.durable_at >= ref.fixed_at
        assert d.file_count == sum(
            1 for p in Path(d.volume).rglob("*") if p.is_file() and not p.is_symlink()
        )
        assert d.digest is not None
        assert d.digest.startswith("sha256:")
        unchanged = {"state": ref.state, "durable_at": None, "file_count": None, "digest": None}
        assert d.model_copy(update=unchanged) == ref
        manifest = json.loads((Path(d.location) / "manifest.json").read_text())
        assert manifest["state"] == "completed"
    assert snapper.find("shop", "orders") == done


def test_wait_durable_with_no_time_left_returns_the_snapshots_still_pending(
    snapper: LocalSnapshotter, volume: Path
) -> None:
    refs = snapper.take(snapshot_call(volume))
    assert snapper.wait_durable(refs, timeout=0) == refs


def test_wait_durable_reports_a_snapshot_whose_data_is_gone_as_failed(
    snapper: LocalSnapshotter, volume: Path
) -> None:
    refs = snapper.take(snapshot_call(volume))
    snapper.delete(refs[0])
    (gone,) = snapper.wait_durable(refs, timeout=30)
    assert gone.state is SnapshotState.FAILED


def test_find_lists_only_managed_snapshots_of_the_group_and_of_the_run_when_given(
    snapper: LocalSnapshotter, state_dir: Path, volume: Path
) -> None:
    a = snapper.take(snapshot_call(volume, run_id="r-1", recovery_point="rp-1"))
    b = snapper.take(snapshot_call(volume, run_id="r-2", recovery_point="rp-2"))
    other_group = snapper.take(snapshot_call(volume, group="billing", recovery_point="rp-3"))
    other_policy = snapper.take(snapshot_call(volume, policy="other", recovery_point="rp-4"))
    # Not ours: a manifest without the managed tag, and one that is not a manifest at all.
    stray = state_dir / "snapshots" / "rp-9" / "db" / "0-db"
    stray.mkdir(parents=True)
    unmanaged = a[0].model_copy(update={"id": "rp-9/db/0-db", "tags": {"quiesce:group": "orders"}})
    (stray / "manifest.json").write_text(unmanaged.model_dump_json())
    junk = state_dir / "snapshots" / "rp-8" / "db" / "0-db"
    junk.mkdir(parents=True)
    (junk / "manifest.json").write_text("{not json")

    assert snapper.find("shop", "orders") == a + b
    assert snapper.find("shop", "orders", run_id="r-2") == b
    assert snapper.find("shop", "billing") == other_group
    assert snapper.find("other", "orders") == other_policy
    assert snapper.find("shop", "nothing") == []


def test_find_on_a_state_folder_without_snapshots_is_empty(tmp_path: Path) -> None:
    assert LocalSnapshotter(tmp_path / "never-used").find("shop", "orders") == []


def test_delete_removes_the_snapshot_and_its_empty_parents_but_not_other_members(
    snapper: LocalSnapshotter, state_dir: Path, volume: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "volumes" / "cache"
    cache.mkdir()
    (db,) = snapper.take(snapshot_call(volume, member="db"))
    (ca,) = snapper.take(snapshot_call(cache, member="cache"))
    snapper.delete(db)
    assert not (state_dir / "snapshots" / "rp-1" / "db").exists()
    assert snapper.find("shop", "orders") == [ca]
    snapper.delete(ca)
    assert list((state_dir / "snapshots").iterdir()) == []
    assert (state_dir / "snapshots").is_dir()


def test_deleting_a_snapshot_that_is_gone_is_not_an_error(
    snapper: LocalSnapshotter, volume: Path
) -> None:
    (ref,) = snapper.take(snapshot_call(volume))
    snapper.delete(ref)
    snapper.delete(ref)


def test_delete_removes_a_snapshot_of_read_only_folders(
    snapper: LocalSnapshotter, volume: Path
) -> None:
    os.chmod(volume / "sub", 0o500)
    try:
        (ref,) = snapper.take(snapshot_call(volume))
        assert stat.S_IMODE((Path(ref.location) / "data" / "sub").stat().st_mode) == 0o500
        snapper.delete(ref)
        assert not Path(ref.location).exists()
    finally:
        os.chmod(volume / "sub", 0o755)


def test_delete_refuses_an_id_that_is_not_a_local_snapshot(snapper: LocalSnapshotter) -> None:
    ref = SnapshotRef.model_validate(
        {
            "id": "../../etc",
            "provider": "local",
            "machine_id": "h",
            "volume": "/x",
            "method": "copy",
            "started_at": "2026-01-01T00:00:00Z",
            "fixed_at": "2026-01-01T00:00:00Z",
        }
    )
    with pytest.raises(ProviderError, match="not a local snapshot id"):
        snapper.delete(ref)


def test_restore_recreates_the_volume_as_it_was_at_the_snapshot(
    snapper: LocalSnapshotter, volume: Path, tmp_path: Path
) -> None:
    expected = tree_signature(volume)
    (ref,) = snapper.wait_durable(snapper.take(snapshot_call(volume)), timeout=30)
    (volume / "table.db").write_bytes(b"corrupted")
    (volume / "link-to-log").unlink()

    restored = snapper.restore(ref, tmp_path / "restored" / "db")
    assert restored == tmp_path / "restored" / "db"
    assert tree_signature(restored) == expected
    assert (restored / "link-to-log").readlink() == Path("sub/wal.log")
    assert stat.S_IMODE((restored / "table.db").stat().st_mode) == 0o640
    assert stat.S_IMODE(restored.stat().st_mode) == stat.S_IMODE(volume.stat().st_mode)


def test_restore_into_an_empty_folder_works_and_into_a_non_empty_one_is_refused(
    snapper: LocalSnapshotter, volume: Path, tmp_path: Path
) -> None:
    (ref,) = snapper.take(snapshot_call(volume))
    (tmp_path / "empty").mkdir()
    assert tree_signature(snapper.restore(ref, tmp_path / "empty")) == tree_signature(volume)

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep-me").write_text("mine")
    with pytest.raises(ProviderError, match="not an empty folder") as info:
        snapper.restore(ref, tmp_path / "busy")
    assert info.value.code == "TargetNotEmpty"
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep-me"]

    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ProviderError, match="not an empty folder"):
        snapper.restore(ref, tmp_path / "a-file")


def test_restore_of_a_deleted_snapshot_is_a_provider_error(
    snapper: LocalSnapshotter, volume: Path, tmp_path: Path
) -> None:
    (ref,) = snapper.take(snapshot_call(volume))
    snapper.delete(ref)
    with pytest.raises(ProviderError, match="has no data") as info:
        snapper.restore(ref, tmp_path / "restored")
    assert info.value.code == "SnapshotNotFound"
    assert not (tmp_path / "restored").exists()


def test_a_failed_restore_leaves_the_target_as_it_found_it(
    snapper: LocalSnapshotter, volume: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (ref,) = snapper.take(snapshot_call(volume))

    def half(src: Path, dst: Path) -> tuple[str, int]:
        dst.mkdir(exist_ok=True)
        (dst / "partial").write_text("...")
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(methods_module, "clone_tree", half)
    with pytest.raises(ProviderError, match="could not restore"):
        snapper.restore(ref, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProviderError, match="could not restore"):
        snapper.restore(ref, tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []


def test_manifest_reads_back_one_snapshot_by_id(snapper: LocalSnapshotter, volume: Path) -> None:
    (ref,) = snapper.take(snapshot_call(volume))
    assert snapper.manifest(ref.id) == ref
    assert snapper.manifest("rp-0/db/0-db") is None


def test_on_xfs_with_reflink_snapshots_and_restores_are_reflinks(xfs_dir: Path) -> None:
    vol = fill_volume(xfs_dir / "snap-volume")
    snapper = LocalSnapshotter(xfs_dir / "snap-state")
    (ref,) = snapper.wait_durable(snapper.take(snapshot_call(vol)), timeout=30)
    assert ref.method == "reflink"
    assert ref.state is SnapshotState.COMPLETED
    restored = snapper.restore(ref, xfs_dir / "snap-restored")
    assert tree_signature(restored) == tree_signature(vol)


def test_describe_tells_how_each_volume_would_be_snapshotted_without_writing_anything(
    tmp_path: Path, volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(fd: int, request: int, arg: int) -> int:
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr("fcntl.ioctl", refuse)
    state_dir = tmp_path / "not-yet" / "state"
    machine = snapshot_call(volume, tmp_path / "gone").machine
    assert LocalSnapshotter(state_dir).describe(machine) == {
        str(volume): "copy",
        str(tmp_path / "gone"): "missing",
    }
    assert not (tmp_path / "not-yet").exists()


def test_on_xfs_describe_says_reflink_for_volumes_on_the_state_folders_filesystem(
    xfs_dir: Path, tmp_path: Path
) -> None:
    on_xfs = fill_volume(xfs_dir / "describe-volume")
    (xfs_dir / "describe-empty").mkdir()
    elsewhere = fill_volume(tmp_path / "elsewhere")
    machine = snapshot_call(on_xfs, xfs_dir / "describe-empty", elsewhere).machine
    state = xfs_dir / "describe-state"
    assert LocalSnapshotter(state).describe(machine) == {
        str(on_xfs): "reflink",
        str(xfs_dir / "describe-empty"): "reflink",
        str(elsewhere): "copy",
    }
    assert not state.exists()


def test_check_accepts_a_durable_snapshot_and_names_what_is_missing_from_a_damaged_one(
    snapper: LocalSnapshotter, volume: Path
) -> None:
    (ref,) = snapper.wait_durable(snapper.take(snapshot_call(volume)), timeout=30)
    snapper.check(ref)

    (Path(ref.location) / "data" / "table.db").unlink()

    with pytest.raises(ProviderError, match="incomplete or damaged: files") as info:
        snapper.check(ref)
    assert info.value.code == "SnapshotIncomplete"
    assert ref.location in str(info.value)


def test_a_take_whose_snapshot_is_deleted_while_it_copies_stops_and_leaves_nothing(
    snapper: LocalSnapshotter, state_dir: Path, volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def delete_then_clone(src: Path, dst: Path, stop: Callable[[], bool]) -> tuple[str, int]:
        (being_taken,) = snapper.find("shop", "orders")
        snapper.delete(being_taken)  # the run discards it while the copy runs
        return real_clone(src, dst, stop=stop)

    monkeypatch.setattr(methods_module, "clone_tree", delete_then_clone)
    with pytest.raises(ProviderError) as info:
        snapper.take(snapshot_call(volume))
    assert info.value.code == "SnapshotDiscarded"
    assert list((state_dir / "snapshots").iterdir()) == []
