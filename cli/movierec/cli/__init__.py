"""The `movierec` console entry point.

Each subcommand group lives in its own module with a `register(subparsers)` function; handlers import
their heavy dependencies (torch, the server) when they run, so `movierec score-all` and the SDK need no torch.
Errors users can act on are raised as `CliError` and printed as one line, never a traceback; a command whose
optional extra is not installed says which one to install (`missing_extra`), exit status 2.
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
    "movierec.cli.catalog_cmd",
    "movierec.cli.demo_cmd",
    "movierec.cli.bulk_cmd",
    "movierec.cli.report_cmd",
)


# The optional extras (pyproject [project.optional-dependencies]) and the top-level modules each provides.
EXTRA_MODULES: dict[str, frozenset[str]] = {
    "train": frozenset({"torch", "matplotlib"}),
    "server": frozenset({"torch", "grpc_reflection"}),
    "ray": frozenset({"ray", "torch"}),
}


class CliError(Exception):
    """An error the user can act on: printed as one line, exit status 2."""


def missing_extra(exc: ModuleNotFoundError, command_extra: str | None) -> str | None:
    """The extra to install for the missing module of `exc`, or None when no extra provides it. A command
    names its own extra (`set_defaults(extra=...)`: serve -> server, score-all -> ray); torch, which several
    extras bring, is attributed to it, else to `train`."""
    top = (exc.name or "").partition(".")[0]
    if command_extra is not None and top in EXTRA_MODULES[command_extra]:
        return command_extra
    return next((extra for extra, modules in EXTRA_MODULES.items() if top in modules), None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movierec", description="Autoencoder movie recommender.")
    parser.set_defaults(extra=None)  # a command's optional extra, see `missing_extra`
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except CliError as exc:
        print(f"movierec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        extra = missing_extra(exc, args.extra)
        if extra is None:
            raise
        print(f"movierec {args.command}: error: needs the '{extra}' extra ({exc.name} is not installed): "
              f"pip install 'movierec[{extra}]'", file=sys.stderr)
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
