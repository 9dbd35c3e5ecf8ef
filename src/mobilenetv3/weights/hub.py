"""Official release tarballs by name: downloaded only when asked, verified by sha256, cached.

Nothing here fetches anything unless the user asks (`mobilenetv3 download NAME`); loading by
name (`create_model(NAME, pretrained=True)`, `--weights NAME`) reads the cache and, when the
file is absent, says which command downloads it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mobilenetv3.weights.errors import WeightsError

V3 = "https://storage.googleapis.com/mobilenet_v3/checkpoints/"
V2 = "https://storage.googleapis.com/mobilenet_v2/checkpoints/"

# Public records of the digests (pin only what one of them lists, never a digest we computed):
# RECIPE: renesas-rz/meta-renesas-ai, meta-benchmark/recipes-benchmark/models/
#         models-tensorflow-lite.bb, `SRC_URI[<name>.sha256sum]`, a Yocto recipe that mirrors
#         these files (its <name> is given next to each digest below).
# OMZ: openvinotoolkit/open_model_zoo, models/public/mobilenet-v3-large-1.0-224-tf/model.yml
#      (commit aca4c76: `sha256:` and `size: 184251120` of v3-large_224_1.0_float.tgz).
# No public record of the minimalistic tarballs' digests was found: they download only with
# `--allow-unverified`.


@dataclass(frozen=True)
class Release:
    url: str
    sha256: str | None  # None: no public record found; downloading needs the user's consent
    variant: str  # the `create_model` name of the architecture inside

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


RELEASES: dict[str, Release] = {
    "v3_large_1.0": Release(
        V3 + "v3-large_224_1.0_float.tgz",  # RECIPE mobilenet_v3_large_1.0_224, and OMZ
        "9be8563f92022f412c82f2811d670888d6db998e2da9af3e71415fdde2f4f504", "v3_large_1.0"),
    "v3_large_1.0_uint8": Release(
        V3 + "v3-large_224_1.0_uint8.tgz",  # RECIPE mobilenet_v3_large_1.0_224_quant
        "42cfd69fb70c48dde56dc3f2c872bdeb4fdc9beb3105e4b164dde7c49b7a2702", "v3_large_1.0"),
    "v3_large_0.75_finegrain": Release(
        V3 + "v3-large_224_0.75_float.tgz",  # RECIPE mobilenet_v3_large_0.75_224
        "4346e7893769d3f8ac79e28e7924b351bf8348a8a4d5e7a606260003e706aea5",
        "v3_large_0.75_finegrain"),
    "v3_small_1.0": Release(
        V3 + "v3-small_224_1.0_float.tgz",  # RECIPE mobilenet_v3_small_1.0_224
        "e60ad9f450f892ae56f8b9122ffc750d88940d9e6b63f6dc70649179fb3a9065", "v3_small_1.0"),
    "v3_small_1.0_uint8": Release(
        V3 + "v3-small_224_1.0_uint8.tgz",  # RECIPE mobilenet_v3_small_1.0_224_quant
        "58ecd8c4c5b0a330f1d72c0a3d7bc6073ff771e14b052da336691246ee8e178f", "v3_small_1.0"),
    "v3_small_0.75_finegrain": Release(
        V3 + "v3-small_224_0.75_float.tgz",  # RECIPE mobilenet_v3_small_0.75_224
        "fffd2e437434f319623ecf26cdbebdb933dcd753afa38e7c2f78cb59c6fc470f",
        "v3_small_0.75_finegrain"),
    "v3_large_minimalistic_1.0": Release(
        V3 + "v3-large-minimalistic_224_1.0_float.tgz", None, "v3_large_minimalistic_1.0"),
    "v3_small_minimalistic_1.0": Release(
        V3 + "v3-small-minimalistic_224_1.0_float.tgz", None, "v3_small_minimalistic_1.0"),
    "v2_1.4": Release(
        V2 + "mobilenet_v2_1.4_224.tgz",  # RECIPE mobilenet_v2_1_4_224
        "a20d0c8d698502dc6a620528871c97a588885df7737556243a3412b39fce85e0", "v2_1.4"),
    "v2_1.3": Release(
        V2 + "mobilenet_v2_1.3_224.tgz",  # RECIPE mobilenet_v2_1_3_224
        "b04129d44a46e0eb409c1a2bc255472ebdd57f9c091812e7866d79d0cc7fecaa", "v2_1.3"),
    "v2_1.0": Release(
        V2 + "mobilenet_v2_1.0_224.tgz",  # RECIPE mobilenet_v2_1_0_224
        "318084bc1b63d6d7b854553e09cdf77078b1c0168be27c59a0d44253b5ed49dc", "v2_1.0"),
    "v2_0.75": Release(
        V2 + "mobilenet_v2_0.75_224.tgz",  # RECIPE mobilenet_v2_0_75_224
        "335cd22c7e1c5e80205dedd6e2ff5d1d8af5c29074496eb047fd621349e10cc5", "v2_0.75"),
    "v2_0.5": Release(
        V2 + "mobilenet_v2_0.5_224.tgz",  # RECIPE mobilenet_v2_0_5_224
        "813febbdbe2a7a50055ee2f6b374938aed03e2f607f63f3479622aefc4e12b00", "v2_0.5"),
    "v2_0.35": Release(
        V2 + "mobilenet_v2_0.35_224.tgz",  # RECIPE mobilenet_v2_0_35_224
        "efcc34277c52f7dd4b0b26c2f52686793f4ea5fdddc899ac5aac9eb8d5861550", "v2_0.35"),
}  # fmt: skip

ENV_VAR = "MOBILENETV3_HOME"


def cache_dir() -> Path:
    """`$MOBILENETV3_HOME`, else the platform's user cache folder + `mobilenetv3`."""
    if home := os.environ.get(ENV_VAR):
        return Path(home)
    if sys.platform == "win32":
        root = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Caches"
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "mobilenetv3"


def release(name: str) -> Release:
    if name not in RELEASES:
        raise WeightsError(f"no official release named {name!r}; choose from {', '.join(RELEASES)}")
    return RELEASES[name]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached(name: str, directory: Path | None = None) -> Path:
    """The verified cached tarball of release `name`; never downloads."""
    path = (directory or cache_dir()) / release(name).filename
    if not path.is_file():
        raise FileNotFoundError(
            f"{name} is not downloaded ({path} is missing): run `mobilenetv3 download {name}`"
        )
    _verify(path, name)
    return path


def download(name: str, directory: Path | None = None, *, allow_unverified: bool = False) -> Path:
    """Fetch release `name` into the cache, resuming a `.part` left by an interrupted run; the
    file appears under its own name only once complete and verified."""
    entry = release(name)
    if entry.sha256 is None and not allow_unverified:
        raise WeightsError(
            f"no public record of the sha256 of {entry.filename} was found to pin; rerun with "
            "--allow-unverified to download it anyway (its sha256 is printed so you can check it)"
        )
    target = (directory or cache_dir()) / entry.filename
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        _fetch(entry.url, part)
        if actual := _mismatch(part, entry):
            part.unlink()
            raise WeightsError(
                f"{entry.url} gave a file of sha256 {actual}, not the pinned {entry.sha256}; "
                "it was discarded (run the command again)"
            )
        os.replace(part, target)
    _verify(target, name)
    return target


def _fetch(url: str, part: Path) -> None:
    """Download `url` into `part`, asking only for the missing bytes (HTTP Range) if it exists."""
    from tqdm import tqdm

    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)  # noqa: S310 - fixed https URLs
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # range not satisfiable: the .part is already complete
            return
        raise OSError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OSError(
            f"could not download {url}: {reason} (offline? the URL must be reachable, or put "
            f"the file into {part.parent} by hand)"
        ) from None
    with response:
        resumed = response.status == 206  # else the server sent the whole file again
        size = int(response.headers.get("Content-Length") or 0) or None
        with part.open("ab" if resumed else "wb") as out, tqdm(
            total=size, initial=0, unit="B", unit_scale=True, desc=part.name[:-5], leave=False
        ) as bar:  # fmt: skip
            try:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
            except OSError as exc:
                raise OSError(f"download of {url} broke off ({exc}); run the command again "
                              "to resume it") from None  # fmt: skip


def _mismatch(path: Path, entry: Release) -> str | None:
    """The file's sha256 when it differs from the pinned one, else None."""
    if entry.sha256 is None or (actual := sha256_of(path)) == entry.sha256:
        return None
    return actual


def _verify(path: Path, name: str) -> None:
    if actual := _mismatch(path, release(name)):
        raise WeightsError(
            f"{path}: sha256 {actual} does not match the pinned {release(name).sha256} of "
            f"{name}; delete the file and run `mobilenetv3 download {name}` again"
        )
