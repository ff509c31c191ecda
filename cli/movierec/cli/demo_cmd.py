"""`movierec demo`: the README's main job, end to end over gRPC.

Starts `movierec serve` on the given artifact in the background, waits until it reports SERVING, asks it
through the SDK for the top-10 movies of a few known users, for a new user described only by a handful of
ratings, and for brand-new users described only by a profile (age, gender, occupation); then adds a movie
the model has never seen while it serves (UpsertMovies) and shows where it lands for two different users.
Prints the answers and stops the server (SIGTERM, graceful). The added movie goes into a temporary catalog
overlay, so the demo leaves nothing behind.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from movierec.cli import CliError

# A new user who loves Star Wars and Toy Story (looked up by title, so any MovieLens flavour works).
NEW_USER_LIKES = {"Star Wars": 5.0, "Toy Story": 5.0, "Empire Strikes Back": 4.0, "Aladdin": 4.0}
NEW_USER_DISLIKES = {"Sleepless in Seattle": 1.0}
# Brand-new users who say who they are and have rated nothing.
PROFILES: dict[str, dict[str, Any]] = {
    "a 17-year-old student (F)": {"age": 17, "gender": "F", "occupation": "student"},
    "a 60-year-old retired man": {"age": 60, "gender": "M", "occupation": "retired"},
}
# A movie the model has never seen, added while serving.
NEW_MOVIE: dict[str, Any] = {"title": "Toy Story 4 (2019)", "year": 2019,
                             "genres": ["Animation", "Children's", "Comedy"]}  # fmt: skip


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
    overlay_dir = tempfile.TemporaryDirectory(prefix="movierec-demo-")
    overlay = Path(overlay_dir.name) / "added-movies.json"
    cmd = [sys.executable, "-m", "movierec.cli", "serve", "--artifact", str(args.artifact), "--host", "127.0.0.1",
           "--port", str(port), "--device", args.device, "--catalog-overlay", str(overlay)]
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
            _cold_start(client, args.k, ratings, info)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            code = server.wait()
        print(f"\nserver stopped (exit status {code})", file=sys.stderr)
        overlay_dir.cleanup()
    return 0


def _cold_start(client: Any, k: int, fan_ratings: dict[int, float], info: Any) -> None:
    """Profile-only users, then a movie added live and where it ranks for two users."""
    side = info.side_information
    if side is None or not side.profile_aware:
        print("\n(this model has no cold-start models: profiles are ignored and new movies rank last; "
              "train the default preset for them)")
    for who, said in PROFILES.items():
        rec = client.recommend_for_ratings({}, k=k, profile=said, titles=True)[0]
        _print_list(f"top {k} for a brand-new user who only says: {who}", rec.movie_ids.tolist(),
                    rec.scores.tolist(), list(rec.titles or ()))
    new_id = int(client.movies().movie_ids.max()) + 1
    result = client.upsert_movies([{"movie_id": new_id, **NEW_MOVIE}])
    print(f"\nadded movie {new_id} \"{NEW_MOVIE['title']}\" ({', '.join(NEW_MOVIE['genres'])}) while serving: "
          f"{result.added} added, catalog now {result.n_movies} movies")
    n = min(int(result.n_movies), int(info.limits.max_k))
    users: dict[str, tuple[dict[int, float], dict[str, Any] | None]] = {
        "the Star Wars / Toy Story fan above": (fan_ratings, None),
        "a brand-new 10-year-old student": ({}, {"age": 10, "occupation": "student"}),
        "a 10-year-old who loves animated films": (_animation(client), {"age": 10, "occupation": "student"}),
        "a 60-year-old retired man who loves film noir": (_noir(client), {"age": 60, "gender": "M",
                                                                          "occupation": "retired"}),
    }  # fmt: skip
    for who, (ratings, profile) in users.items():
        ranked = client.recommend_for_ratings(ratings, k=n, profile=profile)[0]
        ids = ranked.movie_ids.tolist()
        place = ids.index(new_id) + 1 if new_id in ids else None
        pred = client.predict(ratings, [new_id], profile=profile)
        where = f"ranked {place}" if place is not None else f"not in the top {len(ids)}"
        print(f"  for {who}: {where} of {int(result.n_movies) - len(ratings)} candidates, "
              f"predicted {pred.ratings[0]:.2f} stars")
        if place is not None and place <= k:
            top = client.recommend_for_ratings(ratings, k=k, profile=profile, titles=True)[0]
            _print_list(f"  top {k} for {who}, with the new movie", top.movie_ids.tolist(), top.scores.tolist(),
                        list(top.titles or ()))
    # A shelf of the new movie's genre (include list): the added movie competes with the trained ones.
    catalog = client.movies()
    genre = NEW_MOVIE["genres"][0]
    shelf = [m for m, g in zip(catalog.movie_ids.tolist(), catalog.genres, strict=True) if genre in g]
    ratings, profile = users["a 10-year-old who loves animated films"]
    top = client.recommend_for_ratings(ratings, k=k, profile=profile, include=shelf, titles=True)[0]
    _print_list(f"top {k} of the {len(shelf)} {genre} movies (the new one included) for a 10-year-old who loves "
                "animated films", top.movie_ids.tolist(), top.scores.tolist(), list(top.titles or ()))


def _animation(client: Any) -> dict[int, float]:
    catalog = client.movies()
    ids = catalog.movie_ids.tolist()
    return _find(catalog.titles, ids, {"Toy Story": 5.0, "Aladdin": 5.0, "Lion King": 5.0, "Beauty and the Beast": 5.0,
                                       "Little Mermaid": 4.0, "Snow White": 4.0, "Pinocchio": 4.0,
                                       "Jungle Book": 4.0, "Fargo": 1.0, "Pulp Fiction": 1.0})  # fmt: skip


def _noir(client: Any) -> dict[int, float]:
    catalog = client.movies()
    ids = catalog.movie_ids.tolist()
    return _find(catalog.titles, ids, {"Maltese Falcon": 5.0, "Casablanca": 5.0, "Big Sleep": 5.0,
                                       "Toy Story": 1.0, "Aladdin": 1.0})  # fmt: skip
