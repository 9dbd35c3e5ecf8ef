"""`mobilenetv3 <command>`: each command is one module of `mobilenetv3.commands`.

A command module has `HELP` (one line), `configure(parser)` and `run(args) -> int`; adding a
module adds the command. Heavy imports (engines, exporters) stay inside `run`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from mobilenetv3 import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobilenetv3", description="MobileNetV3 with TF-slim numerics: models, weights, tools."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    found = sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name)
    for info in (i for i in found if not i.name.startswith("_")):  # _common: shared helpers
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        command = sub.add_parser(info.name, help=module.HELP, description=module.HELP)
        module.configure(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"mobilenetv3 {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
