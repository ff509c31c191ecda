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
    p.add_argument(
        "--target",
        default=DEFAULT_TARGET,
        help=f"server address (default {DEFAULT_TARGET}); several as h1:p1,h2:p2: the users are split into "
        "shards spread over them, and a shard whose server fails resumes on another",
    )
    p.add_argument("--engine", choices=("grpc", "ray"), default="grpc",
                   help="grpc: stream from running servers (default); ray: score in a Ray Data job from --artifact")
    p.add_argument("--artifact", help="with --engine ray: the artifact to score")
    p.add_argument("--ray-address", help="with --engine ray: join this Ray cluster (default: a local Ray)")
    p.add_argument("--workers", type=int, help="with --engine ray: scoring actors (default: one per CPU/GPU)")
    p.add_argument("--shards", type=int, help="with several targets: number of shards (default: one per target; "
                   "with --connections: 4 per connection)")
    p.add_argument("--connections", type=int, default=1,
                   help="streams on this many separate connections to one target, each taking the next shard "
                   "when done: spreads the work over the workers of `serve --workers N` (default 1)")
    p.add_argument("-k", "--k", type=int, default=10, help="recommendations per user (default 10)")
    p.add_argument("--out", required=True, help="output file: .parquet (default), .csv or .tsv")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--shard", help="shard i/n of the users (e.g. 0/4); default: all users")
    who.add_argument("--user-range", type=_range, help="raw user ids LO:HI (HI excluded)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of the same command")
    p.add_argument("--format", choices=("parquet", "csv", "tsv"), help="default: from the --out suffix")
    p.add_argument("--chunk-users", type=int, default=0, help="users per chunk (default: the server's, 1024)")
    p.add_argument("--timeout", type=float, default=None, help="seconds for the whole run (default: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_score_all, extra="ray")  # only --engine ray needs an extra


def _score_all(args: argparse.Namespace) -> int:
    import math

    from movierec.client import Client, MovieRecError

    if args.engine == "ray":
        return _score_all_ray(args)
    targets = [t.strip() for t in args.target.split(",") if t.strip()]
    if len(targets) > 1 or args.shards or args.connections > 1:
        return _score_all_spread(args, targets)
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


def _score_all_ray(args: argparse.Namespace) -> int:
    if not args.artifact:
        raise CliError("--engine ray needs --artifact DIR (the Ray workers load it themselves)")
    if args.shard or args.user_range:
        raise CliError("--engine ray scores every user; --shard/--user-range are for --engine grpc")
    from movierec.core.artifact import ArtifactError
    from movierec.trainer.ray_scoring import score_all_ray

    try:
        res = score_all_ray(args.artifact, args.out, k=args.k, address=args.ray_address, workers=args.workers)
    except (ArtifactError, ValueError) as exc:
        raise CliError(str(exc)) from None
    print(
        f"{res.out_dir}: {res.users} users in {res.blocks_scored} blocks ({res.blocks_skipped} already done) "
        f"in {res.seconds:.1f}s ({res.users_per_second:.0f} users/s) on {res.workers} Ray workers",
        file=sys.stderr,
    )
    return 0


def _score_all_spread(args: argparse.Namespace, targets: list[str]) -> int:
    """Split the users into shards, stream them concurrently over every target (gRPC round_robin spreads the
    streams), resume a shard from its cursor when its server fails, then join the shards into --out."""
    from movierec.client import Client, spread_score_all

    if args.shard or args.user_range:
        raise CliError("with several targets the users are sharded for you; drop --shard/--user-range")
    if args.connections < 1:
        raise CliError(f"--connections must be >= 1, got {args.connections}")
    n = args.shards or (4 * args.connections if args.connections > 1 else len(targets))
    # separate connections (no shared subchannel): the kernel may hand each to a different worker
    pool = [Client(targets, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(args.connections if args.connections > 1 else 0)]  # fmt: skip
    try:
        with Client(targets) as client:
            res = spread_score_all(client, args.k, args.out, shards=n, fmt=args.format,
                                   chunk_users=args.chunk_users, progress=not args.no_progress, connections=pool)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    finally:
        for c in pool:
            c.close()
    over = f"{args.connections} connections" if args.connections > 1 else f"{len(targets)} targets"
    print(f"{res.out}: {res.rows} rows, {res.users} users from {n} shards over {over} "
          f"in {res.seconds:.1f}s ({res.users_per_second:.0f} users/s)", file=sys.stderr)
    return 0
