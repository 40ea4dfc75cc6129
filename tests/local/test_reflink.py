"""Cloning files and trees: reflink where the filesystem can, an honest copy where it cannot."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

import pytest

from quiesce.providers.local import reflink
from quiesce.providers.local.reflink import can_clone, clone_file, clone_tree

from .support import fill_volume, free_bytes, tree_signature


def refuse_clones(monkeypatch: pytest.MonkeyPatch, code: int = errno.EOPNOTSUPP) -> None:
    def ioctl(fd: int, request: int, arg: int) -> int:
        assert request == reflink.FICLONE
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("fcntl.ioctl", ioctl)


# ------------------------------------------------------------------------------ copy fallback


@pytest.mark.parametrize(
    "code", [errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.ENOSYS]
)
def test_a_file_the_filesystem_refuses_to_clone_is_copied_and_reported_as_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    refuse_clones(monkeypatch, code)
    src = tmp_path / "src"
    src.write_bytes(b"payload" * 100)
    os.chmod(src, 0o604)
    assert clone_file(src, tmp_path / "dst") == "copy"
    assert (tmp_path / "dst").read_bytes() == b"payload" * 100
    assert stat.S_IMODE((tmp_path / "dst").stat().st_mode) == 0o604


def test_a_real_io_error_while_cloning_is_raised_not_hidden_by_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_clones(monkeypatch, errno.EIO)
    (tmp_path / "src").write_bytes(b"x")
    with pytest.raises(OSError, match="Input/output error"):
        clone_file(tmp_path / "src", tmp_path / "dst")


def test_clone_file_never_overwrites_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "src").write_bytes(b"new")
    (tmp_path / "dst").write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        clone_file(tmp_path / "src", tmp_path / "dst")
    assert (tmp_path / "dst").read_bytes() == b"precious"


def test_a_tree_is_recreated_with_contents_modes_mtimes_and_symlinks(
    tmp_path: Path, volume: Path
) -> None:
    method, size = clone_tree(volume, tmp_path / "copy")
    assert tree_signature(tmp_path / "copy") == tree_signature(volume)
    assert size == sum(
        p.stat().st_size for p in volume.rglob("*") if p.is_file() and not p.is_symlink()
    )
    assert method in ("reflink", "copy")
    assert (tmp_path / "copy" / "dangling").is_symlink()  # links are copied, never followed
    assert stat.S_IMODE((tmp_path / "copy").stat().st_mode) == stat.S_IMODE(volume.stat().st_mode)


def test_a_tree_on_a_filesystem_without_reflink_is_reported_as_copy(
    tmp_path: Path, volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_clones(monkeypatch)
    assert clone_tree(volume, tmp_path / "copy")[0] == "copy"
    assert tree_signature(tmp_path / "copy") == tree_signature(volume)


def test_a_tree_is_copy_as_soon_as_one_file_could_not_be_cloned(
    tmp_path: Path, volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    def ioctl(fd: int, request: int, arg: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(errno.EXDEV, "cross-device")
        return 0  # pretend the others were cloned (the copy below fills nothing in)

    monkeypatch.setattr("fcntl.ioctl", ioctl)
    assert clone_tree(volume, tmp_path / "copy")[0] == "copy"


def test_a_tree_is_reflink_only_when_every_file_was_cloned(
    tmp_path: Path, volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fcntl.ioctl", lambda fd, request, arg: 0)
    assert clone_tree(volume, tmp_path / "copy")[0] == "reflink"


def test_an_empty_tree_where_a_probe_clone_fails_is_copy_and_leaves_no_probe_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_clones(monkeypatch)
    (tmp_path / "src" / "only-folders").mkdir(parents=True)
    assert clone_tree(tmp_path / "src", tmp_path / "dst") == ("copy", 0)
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == ["only-folders"]


def test_clone_tree_refuses_a_destination_that_is_not_an_empty_folder(
    tmp_path: Path, volume: Path
) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep").write_text("mine")
    with pytest.raises(FileExistsError):
        clone_tree(volume, tmp_path / "busy")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(FileExistsError):
        clone_tree(volume, tmp_path / "a-file")
    (tmp_path / "empty").mkdir()
    clone_tree(volume, tmp_path / "empty")
    assert tree_signature(tmp_path / "empty") == tree_signature(volume)


def test_clone_tree_refuses_a_source_that_is_not_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        clone_tree(tmp_path / "file", tmp_path / "dst")
    (tmp_path / "link").symlink_to(tmp_path)
    with pytest.raises(NotADirectoryError):
        clone_tree(tmp_path / "link", tmp_path / "dst")


def test_a_file_deleted_while_the_tree_is_walked_is_left_out(
    tmp_path: Path, volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_clone_file = reflink.clone_file

    def vanishing(src: str, dst: str) -> str:
        if src.endswith("wal.log"):
            os.unlink(src)  # the application deleted it just now
        return real_clone_file(src, dst)

    monkeypatch.setattr(reflink, "clone_file", vanishing)
    clone_tree(volume, tmp_path / "copy")
    assert not (tmp_path / "copy" / "sub" / "wal.log").exists()
    assert (tmp_path / "copy" / "sub" / "deeper" / "run.sh").exists()


def test_fifos_are_recreated_and_sockets_skipped(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "pipe")
    os.chmod(src / "pipe", 0o620)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(src / "sock"))
        clone_tree(src, tmp_path / "dst")
    assert stat.S_ISFIFO((tmp_path / "dst" / "pipe").lstat().st_mode)
    assert stat.S_IMODE((tmp_path / "dst" / "pipe").lstat().st_mode) == 0o620
    assert not (tmp_path / "dst" / "sock").exists()


# ------------------------------------------------------------------------------ real reflinks


def test_on_xfs_with_reflink_a_file_is_cloned_and_shares_its_blocks(xfs_dir: Path) -> None:
    work = xfs_dir / "file-clone"
    work.mkdir()
    data = os.urandom(1024 * 1024) * 40  # 40 MiB
    (work / "big").write_bytes(data)
    before = free_bytes(xfs_dir)
    assert clone_file(work / "big", work / "clone") == "reflink"
    after = free_bytes(xfs_dir)
    assert (work / "clone").read_bytes() == data
    assert before - after < 4 * 1024 * 1024, "a reflink must not copy the 40 MiB"


def test_on_xfs_with_reflink_a_tree_is_reflink_and_faithful(xfs_dir: Path) -> None:
    src = fill_volume(xfs_dir / "tree-src")
    method, size = clone_tree(src, xfs_dir / "tree-dst")
    assert method == "reflink"
    assert size > 0
    assert tree_signature(xfs_dir / "tree-dst") == tree_signature(src)


def test_on_xfs_an_empty_tree_is_reflink_because_the_probe_clone_works(xfs_dir: Path) -> None:
    (xfs_dir / "empty-src" / "nothing-here").mkdir(parents=True)
    assert clone_tree(xfs_dir / "empty-src", xfs_dir / "empty-dst") == ("reflink", 0)
    assert [p.name for p in (xfs_dir / "empty-dst").iterdir()] == ["nothing-here"]


def test_an_empty_tree_cloned_onto_another_filesystem_is_copy(
    xfs_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "empty-src" / "folder").mkdir(parents=True)
    assert clone_tree(tmp_path / "empty-src", xfs_dir / "from-elsewhere") == ("copy", 0)


def test_can_clone_probes_without_leaving_anything_behind(xfs_dir: Path, tmp_path: Path) -> None:
    src = fill_volume(xfs_dir / "probe-src")
    (xfs_dir / "probe-dst").mkdir()
    (xfs_dir / "probe-empty").mkdir()
    assert can_clone(src, xfs_dir / "probe-dst")
    assert can_clone(xfs_dir / "probe-empty", xfs_dir / "probe-dst")
    assert list((xfs_dir / "probe-dst").iterdir()) == []
    assert not can_clone(src, tmp_path)  # another filesystem
    assert not can_clone(tmp_path, xfs_dir / "probe-dst")  # tmp_path holds no regular file
    assert list(tmp_path.iterdir()) == []


def test_from_xfs_to_another_filesystem_a_tree_is_copied(xfs_dir: Path, tmp_path: Path) -> None:
    src = fill_volume(xfs_dir / "cross-src")
    assert clone_tree(src, tmp_path / "elsewhere")[0] == "copy"
    assert tree_signature(tmp_path / "elsewhere") == tree_signature(src)
