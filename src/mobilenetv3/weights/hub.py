"""Explicit downloads of the official release tarballs, verified by sha256.

Nothing here runs unless the user asks (`mobilenetv3 download NAME`): the package never
fetches weights behind the user's back.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from mobilenetv3.atomic import atomic_output
from mobilenetv3.weights.errors import WeightsError

BASE = "https://storage.googleapis.com/mobilenet_v3/checkpoints/"

# The six checkpoints of the seed README. sha256 values are pinned once verified against the
# published files; None means no verified digest is known yet (never an invented one).
RELEASES: dict[str, tuple[str, str | None]] = {
    "v3_large_1.0": ("v3-large_224_1.0_float.tgz", None),
    "v3_large_0.75_finegrain": ("v3-large_224_0.75_float.tgz", None),
    "v3_small_1.0": ("v3-small_224_1.0_float.tgz", None),
    "v3_small_0.75_finegrain": ("v3-small_224_0.75_float.tgz", None),
    "v3_large_minimalistic_1.0": ("v3-large-minimalistic_224_1.0_float.tgz", None),
    "v3_small_minimalistic_1.0": ("v3-small-minimalistic_224_1.0_float.tgz", None),
}


def cache_dir() -> Path:
    root = os.environ.get("MOBILENETV3_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(root or Path.home() / ".cache") / "mobilenetv3"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(name: str, directory: Path | None = None, *, allow_unverified: bool = False) -> Path:
    """Fetch a release tarball into the cache (atomically) and check its sha256."""
    if name not in RELEASES:
        known = ", ".join(RELEASES)
        raise WeightsError(f"no official checkpoint named {name!r}; choose from {known}")
    filename, expected = RELEASES[name]
    if expected is None and not allow_unverified:
        raise WeightsError(
            f"no verified sha256 is pinned for {filename}; rerun with --allow-unverified to "
            "download it anyway (its sha256 is printed so you can check and pin it)"
        )
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / filename
    if not target.exists():
        with atomic_output(target) as tmp:
            _fetch(BASE + filename, tmp)
            _verify(tmp, expected)
    _verify(target, expected)
    return target


def _fetch(url: str, path: Path) -> None:
    try:
        urllib.request.urlretrieve(url, path)  # noqa: S310 - fixed https URL
    except (urllib.error.URLError, OSError) as exc:
        raise WeightsError(f"download of {url} failed ({exc}); check the network, retry") from exc


def _verify(path: Path, expected: str | None) -> None:
    if expected is not None and (actual := sha256_of(path)) != expected:
        raise WeightsError(
            f"{path.name}: sha256 {actual} does not match the pinned {expected}; the download "
            "is damaged or altered, delete it and download again"
        )
