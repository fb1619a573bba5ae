"""The ``advscale`` command line: build the parser, dispatch, report user errors. No logic lives
here: each subcommand's arguments and handler are in :mod:`advscale.commands`.

ε is given in pixel levels (8 means 8/255).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from advscale.commands import (
    compare,
    data,
    demo,
    eval,
    export,
    finetune,
    report,
    sweep,
    train,
    transfer_matrix,
)

# The order ``advscale --help`` lists them in.
COMMANDS = (data, eval, train, finetune, compare, transfer_matrix, sweep, report, demo, export)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage block is in ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; each sets ``handler`` to the function that runs it."""
    from advscale import __version__

    parser = _Parser(
        prog="advscale",
        description="Adversarial machine learning at scale: attack, evaluate, harden and compare models.",
    )
    parser.add_argument("--version", action="version", version=f"advscale {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    _show_defaults(parser)
    return parser


class HelpWithDefaults(argparse.HelpFormatter):
    """Help that ends each option's text with its default, unless the text gives it already or
    there is none to give (a flag, an option left unset)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or "default" in text
            or default is None
            or default is False  # a flag (0 is a default to show)
            or default == argparse.SUPPRESS
            or default == []
        ):
            return text
        if isinstance(default, (list, tuple)):
            default = ",".join(map(str, default))
        return f"{text} (default: {str(default).replace('%', '%%')})"


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every subcommand's ``--help`` (nested ones included) gives each option's default."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.formatter_class = HelpWithDefaults
                _show_defaults(child)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``advscale`` console script and ``python -m advscale``."""
    args = build_parser().parse_args(argv)
    from advscale.errors import RunInterrupted, UserError

    try:
        return int(args.handler(args) or 0)
    except UserError as e:
        # One line, whatever the message: a log scanner or a CI summary shows all of it.
        message = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
        print(f"advscale {args.command}: error: {message}", file=sys.stderr)
        return 2
    except RunInterrupted as e:
        print(f"advscale {args.command}: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
