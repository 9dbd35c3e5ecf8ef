"""`mobilenetv3 download NAME`: the only way this package fetches anything."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "download an official release tarball (verified by sha256) into the cache"


def configure(parser: argparse.ArgumentParser) -> None:
    from mobilenetv3.weights.hub import ENV_VAR, RELEASES

    parser.add_argument("name", choices=list(RELEASES), metavar="NAME",
                        help=f"one of {', '.join(RELEASES)}")  # fmt: skip
    parser.add_argument("--dir", type=Path,
                        help=f"where to put it (default: ${ENV_VAR}, else the user cache "
                             "folder; --weights NAME reads only the default)")  # fmt: skip
    parser.add_argument("--allow-unverified", action="store_true",
                        help="download even when no public record of the file's sha256 was "
                             "found to pin (the minimalistic releases)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from mobilenetv3.weights.hub import download, sha256_of

    path = download(args.name, args.dir, allow_unverified=args.allow_unverified)
    print(f"{path}  sha256 {sha256_of(path)}")
    print(f"load it with --weights {args.name} or create_model({args.name!r}, pretrained=True)"
          if args.dir is None else f"load it with --weights {path}")  # fmt: skip
    return 0
