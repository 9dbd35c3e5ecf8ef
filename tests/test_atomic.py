"""Outputs: whole or nothing, no leftover temp files, only regular files replaced, umask
permissions, a full disk is one clear error."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mobilenetv3 import atomic
from mobilenetv3.atomic import OutputError, atomic_output, write_json


def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_killed_writer_temp_is_removed_by_next_write(tmp_path: Path) -> None:
    """A writer killed mid-write (SIGKILL) leaves its temp file; the next write removes it."""
    script = ("import os, signal, sys\nfrom mobilenetv3.atomic import atomic_output\n"
              "with atomic_output(sys.argv[1]) as tmp:\n    tmp.write_bytes(b'x' * 1000)\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "model.safetensors")],
                         env={**os.environ, "PYTHONPATH": str(Path(atomic.__file__).parents[1])})
    assert run.returncode == -9
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".model.")
    live = tmp_path / f".other.{os.getpid()}.abcd1234.tmp.pt2"  # a writer still running
    live.write_bytes(b"in progress")
    write_json(tmp_path / "other.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "other.json"])


def test_stale_temp_of_dead_pid_removed_user_files_kept(tmp_path: Path) -> None:
    stale = tmp_path / f".m.{_dead_pid()}.x1y2z3_4.tmp.safetensors"
    stale.write_bytes(b"old")
    kept = tmp_path / ".hidden_notes.txt"
    kept.write_text("mine")
    write_json(tmp_path / "m.json", [])
    assert not stale.exists() and kept.exists()


@pytest.mark.parametrize("kind", ["symlink", "device", "folder"])
def test_refuses_to_replace_non_regular_files(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "out.json"
    if kind == "symlink":
        (tmp_path / "real.txt").write_text("keep")
        target.symlink_to(tmp_path / "real.txt")
    elif kind == "device":
        target = Path("/dev/null")
    else:
        target.mkdir()
    with pytest.raises(OutputError, match="not a regular file"):
        write_json(target, {"a": 1})
    if kind == "symlink":
        assert target.is_symlink() and (tmp_path / "real.txt").read_text() == "keep"
    if kind == "device":
        assert Path("/dev/null").is_char_device()


def test_permissions_follow_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        assert write_json(tmp_path / "a.json", {}).stat().st_mode & 0o777 == 0o644
        os.umask(0o027)
        assert write_json(tmp_path / "b.json", {}).stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_disk_full_is_one_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    with pytest.raises(OutputError, match=r"model\.safetensors: disk full"), \
            atomic_output(target) as tmp:  # fmt: skip
        tmp.write_bytes(b"part")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_wrapped_by_a_library(tmp_path: Path) -> None:
    """safetensors reports ENOSPC as its own exception with the OS text."""
    with pytest.raises(OutputError, match="disk full"), atomic_output(tmp_path / "m.st"):
        raise RuntimeError("Error while serializing: IoError(No space left on device (os 28))")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_real_enospc_from_dev_full(tmp_path: Path) -> None:
    """A real ENOSPC: the write goes to /dev/full inside the block."""
    with pytest.raises(OutputError, match="disk full"), atomic_output(tmp_path / "x.bin"), \
            open("/dev/full", "wb") as f:  # fmt: skip
        f.write(b"x" * 10)
        f.flush()
