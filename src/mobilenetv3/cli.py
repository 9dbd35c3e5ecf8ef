"""`mobilenetv3 <command>`: each command is one module of `mobilenetv3.commands`.

A command module has `HELP` (one line), `configure(parser)` and `run(args) -> int`; adding a
module adds the command. Only the chosen command's arguments are configured and heavy imports
(torch, engines, exporters) stay inside `run`, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from typing import NoReturn

from mobilenetv3 import __version__, commands


class Parser(argparse.ArgumentParser):
    """Errors are one line naming the (sub)command and where its usage is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default where it has one (not for None or off switches)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or default == [] or default == argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def command_names() -> list[str]:
    found = pkgutil.iter_modules(commands.__path__)
    return sorted(i.name for i in found if not i.name.startswith("_"))  # _common: shared helpers


def build_parser(only: str | None = None) -> Parser:
    """The parser with every command's arguments, or only those of command `only` ("" for
    none: the top-level help and --version need no command's imports)."""
    parser = Parser(prog="mobilenetv3", formatter_class=HelpFormatter,
                    description="MobileNetV3 with TF-slim numerics: models, weights, tools.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)  # fmt: skip
    for name in command_names():
        module = importlib.import_module(f"{commands.__name__}.{name}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP,
                                 formatter_class=HelpFormatter)  # fmt: skip
        if only is None or only == name:
            module.configure(command)
        command.set_defaults(run=module.run, parser=command)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    chosen = next((a for a in argv if not a.startswith("-")), "")
    only = chosen if chosen in command_names() else ""  # "": none needed (help, a bad name)
    args, extra = build_parser(only).parse_known_args(argv)
    if extra:  # reported by the subcommand, with its usage, not by the top level
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


DEBUG_ENV = "MOBILENETV3_DEBUG"  # set to 1 for the full traceback of any error


def _one_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run a command. A bad input or path (ValueError, which every reader's error type is, or
    OSError) is one line and exit 2; anything else is a bug: one line asking for a report,
    exit 1. With MOBILENETV3_DEBUG=1 both show their traceback."""
    args = parse(sys.argv[1:] if argv is None else argv)
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
