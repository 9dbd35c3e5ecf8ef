"""`mobilenetv3 download NAME`: the only way this package fetches anything."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "download an official release tarball (verified by sha256) into the cache"


def configure(parser: argparse.ArgumentParser) -> None:
    from mobilenetv3.weights.hub import RELEASES

    parser.add_argument("name", choices=sorted(RELEASES))
    parser.add_argument("--dir", type=Path, help="where to put it (default: the user cache)")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="download even when no sha256 is pinned for the file")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from mobilenetv3.weights.hub import download, sha256_of

    path = download(args.name, args.dir, allow_unverified=args.allow_unverified)
    print(f"{path}  sha256 {sha256_of(path)}")
    return 0
