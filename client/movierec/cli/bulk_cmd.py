"""`movierec score-all`: bulk top-K of every user (or a shard) from a running server into Parquet or CSV."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from movierec.cli import CliError

DEFAULT_TARGET = "localhost:50051"


def _range(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LO:HI (raw user ids, HI excluded)") from None
    return lo, hi


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "score-all",
        help="bulk top-K of every user (or a shard) from a running server into Parquet or CSV",
        description="Stream the top-K lists of all users (or shard i of n, or a user-id range) from a running "
        "server and write them as user_id, rank, movie_id, score. The file appears when complete; "
        "--resume continues an interrupted run after its last complete chunk.",
    )
    p.add_argument("--target", default=DEFAULT_TARGET, help=f"server address (default {DEFAULT_TARGET})")
    p.add_argument("-k", "--k", type=int, default=10, help="recommendations per user (default 10)")
    p.add_argument("--out", required=True, help="output file: .parquet (default) or .csv")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--shard", help="shard i/n of the users (e.g. 0/4); default: all users")
    who.add_argument("--user-range", type=_range, help="raw user ids LO:HI (HI excluded)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of the same command")
    p.add_argument("--format", choices=("parquet", "csv"), help="default: from the --out suffix")
    p.add_argument("--chunk-users", type=int, default=0, help="users per chunk (default: the server's, 1024)")
    p.add_argument("--timeout", type=float, default=None, help="seconds for the whole run (default: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_score_all)


def _score_all(args: argparse.Namespace) -> int:
    import math

    from movierec.client import Client, MovieRecError

    try:
        with Client(args.target) as client:
            res = client.score_all(
                args.k,
                out=args.out,
                shard=args.shard,
                user_range=args.user_range,
                resume=args.resume,
                format=args.format,
                chunk_users=args.chunk_users,
                progress=not args.no_progress,
                timeout=math.inf if args.timeout is None else args.timeout,
            )
    except MovieRecError as exc:
        hint = " (rerun with --resume to continue)" if exc.code.name != "FAILED_PRECONDITION" else ""
        raise CliError(f"{exc}{hint}") from None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(
        f"{res.out}: {res.rows} rows, {res.users} users in {res.seconds:.1f}s "
        f"({res.users_per_second:.0f} users/s)"
        + (f", after {res.resumed_users} users of an earlier run" if res.resumed_users else "")
        + f", model {res.model_version}",
        file=sys.stderr,
    )
    return 0
