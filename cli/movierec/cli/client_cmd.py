"""Client-side commands: `movierec query`, `movierec info`, `movierec health` (SDK only, no torch).

`add_connection_args` / `connect` are the options every command that talks to a server takes (target,
timeout, bearer token, TLS); `parse_profile` reads `--profile age=25,gender=F,...` for `query` and for the
offline `recommend`.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any

from movierec.cli import CliError

if TYPE_CHECKING:
    from movierec.client import Client

DEFAULT_TARGET = "localhost:50051"
TOKEN_ENV = "MOVIEREC_TOKEN"

# --profile keys -> the SDK's profile keys ("zip" is short for "zip_code")
PROFILE_KEYS: dict[str, str] = {"age": "age", "gender": "gender", "occupation": "occupation", "zip": "zip_code",
                                "zip_code": "zip_code"}  # fmt: skip
PROFILE_HELP = (
    "what a new user says about themselves, KEY=VALUE pairs separated by commas: age (1..120), gender (F or M), "
    "occupation (as in the data set, e.g. student), zip (postal code); every key optional, "
    "e.g. age=25,gender=F,occupation=student,zip=55105"
)
AGE_MIN, AGE_MAX = 1, 120
GENDERS = ("F", "M")


def parse_profile(text: str) -> dict[str, Any]:
    """`age=25,gender=F,occupation=student,zip=55105` as the SDK's profile mapping (keys age, gender,
    occupation, zip_code). Raises CliError naming the key for an unknown or repeated key, a pair without
    '=', an empty value, an age that is not an integer in 1..120, or a gender other than F/M."""
    profile: dict[str, Any] = {}
    for pair in (p.strip() for p in text.split(",")):
        if not pair:
            continue
        key, sep, value = (s.strip() for s in pair.partition("="))
        if not sep:
            raise CliError(f"--profile: {pair!r} is not KEY=VALUE (keys: age, gender, occupation, zip)")
        name = PROFILE_KEYS.get(key.lower())
        if name is None:
            raise CliError(f"--profile: unknown key {key!r}; expected age, gender, occupation, zip")
        if name in profile:
            raise CliError(f"--profile: {key!r} given twice")
        if not value:
            raise CliError(f"--profile: {key!r} has no value")
        if name == "age":
            try:
                age = int(value)
            except ValueError:
                raise CliError(f"--profile: age must be an integer (years), got {value!r}") from None
            if not AGE_MIN <= age <= AGE_MAX:
                raise CliError(f"--profile: age must be in {AGE_MIN}..{AGE_MAX}, got {age}")
            profile[name] = age
        elif name == "gender":
            if value.upper() not in GENDERS:
                raise CliError(f"--profile: gender must be F or M, got {value!r}")
            profile[name] = value.upper()
        else:
            profile[name] = value
    if not profile:
        raise CliError("--profile: no KEY=VALUE pairs (keys: age, gender, occupation, zip)")
    return profile


def parse_ratings_pairs(text: str, flag: str = "--ratings") -> dict[int, float]:
    """`50:5,1:4` (movie id:rating pairs) or a JSON object `{"50": 5, "1": 4}` as {movie_id: rating}."""
    text = text.strip()
    try:
        pairs: list[tuple[Any, Any]]
        if text.startswith("{"):
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ValueError("not an object")
            pairs = list(raw.items())
        else:
            pairs = []
            for item in (p.strip() for p in text.split(",")):
                movie, sep, rating = item.partition(":")
                if item and not sep:
                    raise ValueError(f"{item!r} is not MOVIE:RATING")
                if item:
                    pairs.append((movie, rating))
        ratings: dict[int, float] = {}
        for movie, rating in pairs:
            movie_id = int(str(movie).strip())
            if movie_id in ratings:
                raise ValueError(f"movie {movie_id} rated twice")
            ratings[movie_id] = float(rating) if isinstance(rating, (int, float)) else float(str(rating).strip())
    except (ValueError, TypeError) as exc:
        raise CliError(f"{flag} must be movie:rating pairs (e.g. 50:5,172:4) or a JSON object of movie id -> "
                       f"rating: {exc}") from None
    return ratings


def add_connection_args(parser: argparse.ArgumentParser, timeout: float = 10.0) -> None:
    """--target, --timeout, --token and the TLS options, as every command that talks to a server takes them."""
    parser.add_argument("--target", default=DEFAULT_TARGET, help=f"server address (default {DEFAULT_TARGET})")
    parser.add_argument("--timeout", type=float, default=timeout, help=f"seconds per call (default {timeout:g})")
    parser.add_argument("--token", default=None,
                        help=f"bearer token, when the server requires one (default: ${TOKEN_ENV})")
    parser.add_argument("--tls", action="store_true", help="connect with TLS, trusting the system's CAs")
    parser.add_argument("--ca", help="PEM CA bundle to trust (implies --tls)")
    parser.add_argument("--cert", help="PEM client certificate chain, for mutual TLS (with --key)")
    parser.add_argument("--key", help="PEM private key of --cert")


def connect(args: argparse.Namespace) -> Client:
    """A Client from the options of `add_connection_args`; unreadable TLS files are a CliError."""
    from movierec.client import Client

    if (args.cert is None) != (args.key is None):
        raise CliError("--cert and --key go together (mutual TLS)")
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    try:
        return Client(args.target, timeout=args.timeout, tls=args.tls, root_certificates=args.ca,
                      client_cert=args.cert, client_key=args.key, token=token)
    except OSError as exc:
        raise CliError(f"{exc.filename}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise CliError(str(exc)) from None


def register(subparsers: Any) -> None:
    query = subparsers.add_parser(
        "query", help="ask a running server for recommendations",
        description="Top-K for known users (--user), or for a new user given by ratings (--ratings) and/or a "
        "profile (--profile); with a profile alone the model recommends from the profile.",
    )  # fmt: skip
    add_connection_args(query)
    query.add_argument("--user", type=int, action="append", help="known user id (repeatable)")
    query.add_argument(
        "--ratings",
        help='rating vector of a new user: movie:rating pairs (50:5,172:4) or JSON (\'{"50": 5, "172": 4}\'); '
        "ratings must lie on the model's rating scale, which `info` shows",
    )
    query.add_argument("--profile", help=PROFILE_HELP + " (with or without --ratings)")
    query.add_argument("-k", "--k", type=int, default=10, help="recommendations per user (default 10)")
    query.add_argument("--exclude", type=int, nargs="*", default=[], help="movie ids never to recommend")
    query.add_argument("--include", type=int, nargs="*", default=[], help="only these movie ids are candidates")
    query.add_argument("--json", action="store_true", help="print JSON instead of a table")
    query.set_defaults(handler=_query)

    info = subparsers.add_parser("info", help="model info of a running server")
    add_connection_args(info)
    info.set_defaults(handler=_info)

    health = subparsers.add_parser(
        "health", help="grpc.health.v1 status of a running server (exit 1 unless SERVING)"
    )
    add_connection_args(health, timeout=5.0)
    health.set_defaults(handler=_health)


def _query(args: argparse.Namespace) -> int:
    from movierec.client import MovieRecError

    if args.user and (args.ratings is not None or args.profile is not None):
        raise CliError("--user asks for known users; --ratings/--profile describe a new one: give one or the other")
    if not args.user and args.ratings is None and args.profile is None:
        raise CliError("give --user ID, or --ratings and/or --profile for a new user")
    profile = parse_profile(args.profile) if args.profile is not None else None
    ratings = parse_ratings_pairs(args.ratings) if args.ratings is not None else {}
    try:
        with connect(args) as client:
            if args.user:
                recs = client.recommend(args.user, args.k, exclude=args.exclude, include=args.include, titles=True)
            else:
                recs = client.recommend_for_ratings(ratings, args.k, profile=profile, exclude=args.exclude,
                                                    include=args.include, titles=True)
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

    from movierec.client import MovieRecError

    try:
        with connect(args) as client:
            info = client.model_info()
    except MovieRecError as exc:
        raise CliError(str(exc)) from None
    print(json.dumps(dataclasses.asdict(info), indent=2, default=str))
    return 0


def _health(args: argparse.Namespace) -> int:
    from movierec.client import MovieRecError

    try:
        with connect(args) as client:
            status = client.health()
    except MovieRecError as exc:
        raise CliError(str(exc)) from None
    print(status)
    return 0 if status == "SERVING" else 1
