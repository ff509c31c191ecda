"""Client-side commands: `movierec query`, `movierec info`, `movierec health` (SDK only, no torch)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from movierec.cli import CliError

DEFAULT_TARGET = "localhost:50051"


def register(subparsers: Any) -> None:
    query = subparsers.add_parser("query", help="ask a running server for recommendations")
    query.add_argument("--target", default=DEFAULT_TARGET, help=f"server address (default {DEFAULT_TARGET})")
    who = query.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", type=int, action="append", help="known user id (repeatable)")
    who.add_argument(
        "--ratings",
        help='rating vector as JSON, e.g. \'{"50": 5, "172": 4}\' (an anonymous user; ratings must lie on '
        "the model's rating scale, which `info` shows)",
    )
    query.add_argument("-k", "--k", type=int, default=10, help="recommendations per user (default 10)")
    query.add_argument("--exclude", type=int, nargs="*", default=[], help="movie ids never to recommend")
    query.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    query.add_argument("--json", action="store_true", help="print JSON instead of a table")
    query.set_defaults(handler=_query)

    info = subparsers.add_parser("info", help="model info of a running server")
    info.add_argument("--target", default=DEFAULT_TARGET)
    info.add_argument("--timeout", type=float, default=10.0)
    info.set_defaults(handler=_info)

    health = subparsers.add_parser(
        "health", help="grpc.health.v1 status of a running server (exit 1 unless SERVING)"
    )
    health.add_argument("--target", default=DEFAULT_TARGET)
    health.add_argument("--timeout", type=float, default=5.0)
    health.set_defaults(handler=_health)


def _query(args: argparse.Namespace) -> int:
    from movierec.client import Client, MovieRecError

    try:
        with Client(args.target, timeout=args.timeout) as client:
            if args.user:
                recs = client.recommend(args.user, args.k, exclude=args.exclude, titles=True)
            else:
                try:
                    ratings = {int(m): float(r) for m, r in json.loads(args.ratings).items()}
                except (ValueError, AttributeError) as exc:
                    raise CliError(f"--ratings must be a JSON object of movie id -> rating: {exc}") from None
                recs = client.recommend_for_ratings(ratings, args.k, exclude=args.exclude, titles=True)
    except MovieRecError as exc:
        raise CliError(str(exc)) from None
    df = recs.to_pandas()
    if args.json:
        print(df.to_json(orient="records"))
    else:
        print(f"model {recs.model_version}")
        print(df.to_string(index=False))
    return 0


def _info(args: argparse.Namespace) -> int:
    import dataclasses

    from movierec.client import Client, MovieRecError

    try:
        with Client(args.target, timeout=args.timeout) as client:
            info = client.model_info()
    except MovieRecError as exc:
        raise CliError(str(exc)) from None
    print(json.dumps(dataclasses.asdict(info), indent=2, default=str))
    return 0


def _health(args: argparse.Namespace) -> int:
    from movierec.client import Client, MovieRecError

    try:
        with Client(args.target, timeout=args.timeout) as client:
            status = client.health()
    except MovieRecError as exc:
        raise CliError(str(exc)) from None
    print(status)
    return 0 if status == "SERVING" else 1
