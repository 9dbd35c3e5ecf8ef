"""`mobilenetv3 <command>`: each command is one module of `mobilenetv3.commands`.

A command module has `HELP` (one line), `configure(parser)` and `run(args) -> int`; adding a
module adds the command. Heavy imports (engines, exporters) stay inside `run`.
"""

from __future__ import annotations

import argparse
import importlib
import os
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


DEBUG_ENV = "MOBILENETV3_DEBUG"  # set to 1 for the full traceback of any error


def _one_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run a command. A bad input or path (ValueError, which every reader's error type is, or
    OSError) is one line and exit 2; anything else is a bug: one line asking for a report,
    exit 1. With MOBILENETV3_DEBUG=1 both show their traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(f"mobilenetv3 {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        if isinstance(exc, ValueError | OSError):
            print(f"mobilenetv3 {args.command}: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        print(f"mobilenetv3 {args.command}: internal error: {type(exc).__name__}: "
              f"{_one_line(exc)} (a bug: rerun with {DEBUG_ENV}=1 for the traceback and "
              "report it)", file=sys.stderr)  # fmt: skip
        return 1


if __name__ == "__main__":
    sys.exit(main())
