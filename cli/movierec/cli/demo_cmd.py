"""`movierec demo`: the README's main job, end to end over gRPC.

Starts `movierec serve` on the given artifact in the background, waits until it reports SERVING, asks it
through the SDK for the top-10 movies of a few known users and for a new user described only by a handful
of ratings, prints the answers, and stops the server (SIGTERM, graceful).
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
from pathlib import Path

from movierec.cli import CliError

# A new user who loves Star Wars and Toy Story (looked up by title, so any MovieLens flavour works).
NEW_USER_LIKES = {"Star Wars": 5.0, "Toy Story": 5.0, "Empire Strikes Back": 4.0, "Aladdin": 4.0}
NEW_USER_DISLIKES = {"Sleepless in Seattle": 1.0}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("demo", help="serve an artifact in the background and query it through the SDK")
    p.add_argument("--artifact", type=Path, required=True)
    p.add_argument("--users", type=int, nargs="*", default=[1, 42, 500])
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--port", type=int, default=0, help="0 = a free port")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(handler=cmd_demo)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _find(movies_titles: list[str], movie_ids: list[int], wanted: dict[str, float]) -> dict[int, float]:
    found: dict[int, float] = {}
    for needle, rating in wanted.items():
        match = next((mid for mid, t in zip(movie_ids, movies_titles, strict=True) if t.startswith(needle)), None)
        if match is not None:
            found[match] = rating
    return found


def _print_list(title: str, movie_ids: list[int], scores: list[float], titles: list[str]) -> None:
    print(f"\n{title}")
    for rank, (mid, score, t) in enumerate(zip(movie_ids, scores, titles, strict=True), start=1):
        print(f"  {rank:2d}. {t}  (movie {mid}, score {score:.3f})")


def cmd_demo(args: argparse.Namespace) -> int:
    from movierec.client import Client, MovieRecError

    if not (args.artifact / "manifest.json").is_file():
        raise CliError(f"{args.artifact}: no artifact (run `make demo` or `movierec train ... --out {args.artifact}`)")
    port = args.port or _free_port()
    target = f"127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "movierec.cli", "serve", "--artifact", str(args.artifact), "--host", "127.0.0.1",
           "--port", str(port), "--device", args.device]
    print(f"starting: {' '.join(cmd[2:])}", file=sys.stderr)
    server = subprocess.Popen(cmd)
    try:
        with Client(target, timeout=30.0) as client:
            try:
                client.wait_until_serving(timeout=120.0)
            except MovieRecError as err:
                if server.poll() is not None:
                    raise CliError(f"the server exited with status {server.returncode}") from None
                raise CliError(str(err)) from None
            info = client.model_info()
            print(f"\nserving model {info.version} trained on {info.dataset}: {info.n_users} users, "
                  f"{info.n_items} movies")
            recs = client.recommend(args.users, k=args.k, titles=True)
            for rec in recs:
                _print_list(f"top {args.k} for user {rec.user_id}", rec.movie_ids.tolist(), rec.scores.tolist(),
                            list(rec.titles or ()))
            catalog = client.movies()
            ids = catalog.movie_ids.tolist()
            ratings = _find(catalog.titles, ids, NEW_USER_LIKES) | _find(catalog.titles, ids, NEW_USER_DISLIKES)
            described = ", ".join(f"{catalog.titles[ids.index(m)]}={r:g}" for m, r in ratings.items())
            new = client.recommend_for_ratings(ratings, k=args.k, titles=True)[0]
            _print_list(f"top {args.k} for a new user who rated {described}", new.movie_ids.tolist(),
                        new.scores.tolist(), list(new.titles or ()))
            pred = client.predict(ratings, new.movie_ids[:3])
            print("\npredicted ratings for that user: "
                  + ", ".join(f"movie {m}: {r:.2f}" for m, r in zip(pred.movie_ids, pred.ratings, strict=True)))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            code = server.wait()
        print(f"\nserver stopped (exit status {code})", file=sys.stderr)
    return 0
