"""The `movierec` console entry point.

Each subcommand group lives in its own module with a `register(subparsers)` function; handlers import
their heavy dependencies (torch, the server) lazily, so `movierec score-all` and the SDK need no torch.
Errors users can act on are raised as `CliError` and printed as one line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that contribute subcommands; each has `register(subparsers) -> None`.
COMMAND_MODULES: tuple[str, ...] = (
    "movierec.cli.data_cmd",
    "movierec.cli.train_cmd",
    "movierec.cli.serve_cmd",
    "movierec.cli.client_cmd",
    "movierec.cli.demo_cmd",
    "movierec.cli.bulk_cmd",
    "movierec.cli.report_cmd",
)


class CliError(Exception):
    """An error the user can act on: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movierec", description="Autoencoder movie recommender.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # not written yet / not shipped
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except CliError as exc:
        print(f"movierec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"movierec {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
