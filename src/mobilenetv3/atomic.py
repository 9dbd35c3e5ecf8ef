"""Atomic writes: every file this package writes appears whole or not at all.

The data goes to a hidden temp file beside the destination (`.{stem}.{pid}.{random}.tmp{suffix}`)
that is renamed onto it at the end. A process killed mid-write leaves its temp file behind;
the next write to that folder removes the temp files of processes that no longer run. Only
regular files are replaced (never a symlink, device node or folder), files get the usual
umask permissions (0644 by default), and a full disk is one `OutputError` naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_TEMP_NAME = re.compile(r"\.(?P<stem>.*)\.(?P<pid>\d+)\.[a-z0-9_]{8}\.tmp(\.[^/]*)?")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class OutputError(OSError):
    """An output this package will not or cannot write (not a regular file, disk full)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temp files that writers which no longer run left in `folder`."""
    removed = []
    for entry in os.scandir(folder):
        match = _TEMP_NAME.fullmatch(entry.name)
        if match and entry.is_file(follow_symlinks=False) and not _alive(int(match["pid"])):
            with contextlib.suppress(OSError):  # gone already, or another user's
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _check_replaceable(target: Path) -> None:
    """Only a regular file (or nothing) may be replaced: renaming onto a symlink or a device
    node would silently turn it into a plain file."""
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        kind = "special file"
        kind = "symlink" if stat.S_ISLNK(mode) else "folder" if stat.S_ISDIR(mode) else kind
        raise OutputError(f"{target}: is a {kind}, not a regular file; will not replace it "
                          "(choose another output path)")  # fmt: skip


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (threads may be
    creating files); elsewhere set and restored at once."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _disk_full(exc: BaseException) -> bool:
    """ENOSPC as an OSError, or wrapped in a library's own exception text."""
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return True
    return "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds, so a
    failure never leaves a half-written (or any) file behind."""
    target = Path(path)
    _check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target.parent)
    # The suffix stays last: torch.export.save insists on ".pt2".
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.{os.getpid()}.",
                               suffix=f".tmp{target.suffix}", dir=target.parent)  # fmt: skip
    os.close(fd)
    try:
        try:
            yield Path(tmp)
        except Exception as exc:
            if _disk_full(exc):
                raise OutputError(f"{target}: disk full while writing it; free some space "
                                  "or choose another output folder") from exc
            raise
        os.chmod(tmp, 0o666 & ~_umask())
        _check_replaceable(target)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_json(path: str | os.PathLike, document: Any) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(document, indent=2))
    return Path(path)
