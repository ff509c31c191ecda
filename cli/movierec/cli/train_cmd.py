"""`movierec train | evaluate | predict | recommend`: the trainer's command line.

Heavy imports (torch, pandas) happen inside the handlers. Anything the user can fix (missing file, bad format,
unknown preset, corrupt artifact) becomes a one-line `CliError`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from movierec.cli import CliError
from movierec.cli.client_cmd import PROFILE_HELP, parse_profile, parse_ratings_pairs

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_DATA_DIR = "data"


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors users can act on into CliError (one line, no traceback)."""
    from movierec.core.artifact import ArtifactError
    from movierec.trainer.data import DataError

    try:
        yield
    except (DataError, ArtifactError) as exc:
        raise CliError(str(exc)) from None
    except FileNotFoundError as exc:
        raise CliError(f"{exc.filename}: no such file") from None
    except (ValueError, FloatingPointError) as exc:  # incl. MemoryBudgetError: a stage that would not fit
        raise CliError(str(exc)) from None
    except MemoryError:
        raise CliError("out of memory (the estimate before the stage was too low); "
                       "set a lower --memory-limit or train a smaller preset") from None
    except RuntimeError as exc:
        if "can't allocate memory" not in str(exc) and "out of memory" not in str(exc):
            raise
        raise CliError(f"out of memory: {str(exc).splitlines()[0][:200]}; "
                       "set a lower --memory-limit or train a smaller preset") from None


def _handler(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        with user_errors():
            return fn(args)

    return run


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("train", help="train a model and write an artifact")
    src = p.add_argument_group("data (either files or --dataset/--split)")
    src.add_argument("--train", type=Path, help="training ratings (u.data, ratings.dat, ratings.csv or .inter)")
    src.add_argument("--test", type=Path, help="held-out ratings, used only to report metrics")
    src.add_argument("--catalog", type=Path, help="movie titles/genres (u.item, movies.dat, movies.csv, .item)")
    src.add_argument("--users", type=Path,
                     help="user profiles (u.user, users.dat, .user or a CSV with userId[,age,gender,occupation,zip]); "
                          "default with --dataset: its users file (ml-100k, ml-1m)")
    src.add_argument("--dataset", help="a known data set, e.g. ml-100k (fetched into --data-dir if missing)")
    src.add_argument("--split", default="u1", help="split of --dataset (ml-100k: u1..u5; any: holdout, time)")
    src.add_argument("--data-dir", type=Path, default=Path(DEFAULT_DATA_DIR))
    p.add_argument("--out", type=Path, required=True, help="artifact directory (written atomically)")
    p.add_argument("--preset", default=None, help="model preset (default: the best configuration we have)")
    p.add_argument("--config", type=Path, help='JSON overrides: {"model": {...}, "train": {...}}')
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--faithful", action="store_true",
                   help="run the classic notebook's one-user-at-a-time loop instead (reproduction/timing only)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: half the CPUs; ranks of --nproc: OMP_NUM_THREADS, 1)")
    p.add_argument("--jobs", type=_jobs, default=None, metavar="N|auto",
                   help="train up to N of the preset's models (rating, ranking, cold-start) at once, each in its own "
                        "process (default auto: one per --threads CPUs on CPU, 1 on CUDA; a model starts only "
                        "while the estimated memory of those running fits in half of what is available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print metrics as JSON")
    p.add_argument("--nproc", type=int, default=1,
                   help="train data-parallel on N processes (torchrun, DDP: gloo on CPU, nccl on CUDA): the "
                        "gradient-trained models and ensemble members; closed-form stages (EASE, kNN-baseline, "
                        "most-popular), BPMF's sampler and the cold-start hybrids stay single-node, run whole on "
                        "every rank (each rank needs their memory)")
    p.add_argument("--checkpoint-dir", type=Path,
                   help="checkpoint every epoch here (default: <out>.ckpt/; removed once the artifact is written)")
    p.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")
    p.add_argument("--memory-limit", metavar="SIZE",
                   help="memory the run may use, e.g. 16G (default: what the machine or cgroup has free); a stage "
                        "estimated above it is refused up front with one line naming the option that reduces it")
    p.set_defaults(handler=_handler(cmd_train))

    p = sub.add_parser("evaluate", help="evaluate an artifact on held-out ratings")
    p.add_argument("--artifact", type=Path, required=True)
    p.add_argument("--test", type=Path, required=True,
                   help="held-out ratings in any format train reads (u.data, ratings.dat, ratings.csv or .inter)")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_handler(cmd_evaluate))

    p = sub.add_parser("predict", help="predict ratings for user/movie pairs")
    p.add_argument("--artifact", type=Path, required=True)
    p.add_argument("--pairs", type=Path, required=True,
                   help="user/movie pairs in any format train reads (user<TAB>movie rows, userId,movieId[,rating,"
                        "timestamp] CSV, user::movie, .inter); rating and timestamp columns are optional")
    p.add_argument("--out", type=Path, required=True, help="user<TAB>movie<TAB>prediction rows")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.set_defaults(handler=_handler(cmd_predict))

    p = sub.add_parser("recommend", help="top-K movies for a known user, every user (--all), or a new user "
                       "(--profile and/or --ratings)")
    p.add_argument("--artifact", type=Path, required=True)
    who = p.add_mutually_exclusive_group()
    who.add_argument("--user", type=int, action="append", help="raw user id (repeatable)")
    who.add_argument("--all", action="store_true", help="every known user, to --out")
    p.add_argument("--profile", help="a new user: " + PROFILE_HELP + " (with or without --ratings; an artifact "
                   "without cold-start models ignores it)")
    p.add_argument("--ratings", help="a new user's ratings: movie:rating pairs, e.g. 50:5,1:4 (on the "
                   "artifact's rating scale)")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--out", type=Path, help="with --all: user_id, rank, movie_id, score as .parquet, .csv or TSV "
                   "(any other suffix), the columns of `score-all`")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.set_defaults(handler=_handler(cmd_recommend))


def _jobs(text: str) -> int | None:
    """--jobs: a count >= 1, or auto (None)."""
    if text == "auto":
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--jobs takes a number >= 1 or auto, got {text!r}")
    return n


def _training_files(args: argparse.Namespace) -> tuple[Path, Path | None, Path | None, str]:
    if args.train is not None:
        return args.train, args.test, args.catalog, args.dataset or args.train.stem
    if args.dataset is None:
        raise CliError("give --train FILE (and --test FILE) or --dataset NAME --split SPLIT")
    from movierec.trainer.data import DATASETS, dataset_split_files, fetch_dataset, materialize_split

    if args.dataset not in DATASETS:
        raise CliError(f"unknown dataset {args.dataset!r}; choose one of: {', '.join(sorted(DATASETS))}")
    if not (args.data_dir / args.dataset).is_dir():
        fetch_dataset(args.dataset, args.data_dir, progress=not args.quiet)
    try:
        files = dataset_split_files(args.dataset, args.data_dir, args.split)
    except Exception:
        files = materialize_split(args.dataset, args.data_dir, args.split)
    return files.train, files.test, files.catalog, f"{args.dataset}/{args.split}"


def _users_file(args: argparse.Namespace) -> Path | None:
    """The user profiles to train with: --users, else the users file of --dataset when the data comes from it
    (ml-100k u.user, ml-1m users.dat), else none."""
    if args.users is not None:
        return Path(args.users)
    if args.train is None and args.dataset is not None:
        from movierec.trainer.data import DATASETS, dataset_users_file

        if args.dataset in DATASETS:
            return dataset_users_file(args.dataset, args.data_dir)
    return None


def training_profiles(args: argparse.Namespace) -> pd.DataFrame | None:
    """The profiles frame `run_training(profiles=)` gets (`load_users` of `_users_file`), or None."""
    from movierec.trainer.data import load_users

    path = _users_file(args)
    return load_users(path) if path is not None else None


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.config is not None:
        try:
            overrides = json.loads(args.config.read_text())
        except json.JSONDecodeError as exc:
            raise CliError(f"{args.config}: not valid JSON ({exc})") from None
        if not isinstance(overrides, dict):
            raise CliError(f"{args.config}: expected a JSON object with 'model' and/or 'train'")
    train = dict(overrides.get("train", {}))
    for flag, key in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"), ("seed", "seed"),
                      ("device", "device")):
        value = getattr(args, flag)
        if value is not None:
            train[key] = value
    if train:
        overrides["train"] = train
    return overrides


def cmd_train(args: argparse.Namespace) -> int:
    from movierec.trainer import distributed
    from movierec.trainer.checkpoint import default_checkpoint_dir
    from movierec.trainer.config import DEFAULT_PRESET, get_preset
    from movierec.trainer.data import load_catalog, load_ratings

    if args.nproc < 1:
        raise CliError(f"--nproc must be >= 1, got {args.nproc}")
    if args.memory_limit is not None:
        import os

        from movierec.trainer.memory import ENV_LIMIT, parse_size

        parse_size(args.memory_limit)  # a bad size is one line (ValueError)
        os.environ[ENV_LIMIT] = args.memory_limit  # read before every stage (and by --nproc's ranks)
    if args.nproc > 1 and not distributed.is_distributed():
        return _train_data_parallel(args)
    if args.threads is not None or not distributed.is_distributed():
        from movierec.core.device import configure_threads

        configure_threads(args.threads)
    train_path, test_path, catalog_path, dataset = _training_files(args)
    train_df = load_ratings(train_path)
    test_df = load_ratings(test_path) if test_path is not None else None
    catalog = load_catalog(catalog_path) if catalog_path is not None else None
    if args.faithful:
        return _train_faithful(args, train_df, test_df)
    profiles = training_profiles(args)
    preset = get_preset(args.preset or DEFAULT_PRESET)
    from movierec.trainer.pipeline import run_training

    outcome = run_training(train_df, test_df, catalog, preset, args.out, overrides=_overrides(args),
                           dataset=dataset, progress=not args.quiet,
                           checkpoint_dir=args.checkpoint_dir or default_checkpoint_dir(args.out), resume=args.resume,
                           profiles=profiles, jobs=args.jobs)
    if distributed.rank() != 0:
        return 0
    _print_metrics(outcome.metrics, args.json, header=f"artifact {outcome.version} -> {outcome.path}")
    return 0


def _train_data_parallel(args: argparse.Namespace) -> int:
    """Re-run this command on `--nproc` processes through torchrun (`torch.distributed.run --standalone`)."""
    import os
    import subprocess

    from movierec.trainer.config import DEFAULT_PRESET, get_preset
    from movierec.trainer.pipeline import resolve_roles

    if args.faithful:
        raise CliError("--faithful runs the notebook's loop on one process; drop --nproc")
    resolve_roles(get_preset(args.preset or DEFAULT_PRESET), _overrides(args))  # a bad preset or config: one line
    _training_files(args)  # fetch / materialize the data once, before the ranks start
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
           "-m", "movierec.cli.torchrun_main", *_forwarded_args(args)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    rc = subprocess.call(cmd, env=env)
    if rc != 0:
        raise CliError(f"data-parallel training failed (torchrun exit status {rc}); see the ranks' output above")
    return 0


def _forwarded_args(args: argparse.Namespace) -> list[str]:
    """The `movierec train` arguments for every rank (all but --nproc). Keep in step with `register`."""
    out: list[str] = []
    for flag, value in (("--train", args.train), ("--test", args.test), ("--catalog", args.catalog),
                        ("--users", args.users),
                        ("--dataset", args.dataset), ("--split", args.split), ("--data-dir", args.data_dir),
                        ("--out", args.out), ("--preset", args.preset), ("--config", args.config),
                        ("--epochs", args.epochs), ("--batch-size", args.batch_size), ("--lr", args.lr),
                        ("--seed", args.seed), ("--device", args.device), ("--checkpoint-dir", args.checkpoint_dir),
                        ("--threads", args.threads), ("--memory-limit", args.memory_limit),
                        ("--jobs", args.jobs)):  # (a rank trains its roles one at a time whatever --jobs says)
        if value is not None:
            out += [flag, str(value)]
    out += [flag for flag, on in (("--quiet", args.quiet), ("--json", args.json), ("--resume", args.resume)) if on]
    return out


def _train_faithful(args: argparse.Namespace, train_df: Any, test_df: Any) -> int:
    from movierec.trainer.faithful import train_faithful

    if test_df is None:
        raise CliError("--faithful needs --test (the notebook reports its test loss)")
    res = train_faithful(train_df, test_df, epochs=args.epochs or 200, seed=args.seed or 0, progress=not args.quiet)
    metrics = {"notebook_test_loss": res.test_loss, "final_train_loss": res.train_loss[-1], "seconds": res.seconds,
               "epochs": len(res.train_loss)}
    _print_metrics(metrics, args.json, header="faithful notebook loop (no artifact written)")
    return 0


def _print_metrics(metrics: dict[str, Any], as_json: bool, header: str = "") -> None:
    if as_json:
        print(json.dumps(metrics, indent=2, sort_keys=True))
        return
    if header:
        print(header)
    for key in sorted(metrics):
        value = metrics[key]
        print(f"  {key:28s} {value:.4f}" if isinstance(value, float) else f"  {key:28s} {value}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from movierec.core.scoring import Scorer
    from movierec.trainer.data import load_ratings
    from movierec.trainer.evaluate import evaluate

    scorer = Scorer.load(args.artifact, device=args.device)
    metrics = evaluate(scorer, load_ratings(args.test), k=args.k)
    _print_metrics(metrics, args.json, header=f"artifact {scorer.info.version} on {args.test}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from movierec.core.scoring import Scorer
    from movierec.trainer.data import load_pairs
    from movierec.trainer.evaluate import predict_frame

    pairs = load_pairs(args.pairs)[["user", "item"]]  # the readers of `train`; a bad file names its line
    scorer = Scorer.load(args.artifact, device=args.device)
    pred, counts = predict_frame(scorer, pairs["user"].to_numpy(), pairs["item"].to_numpy())
    pairs["prediction"] = np.round(pred, 4)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pairs.to_csv(args.out, sep="\t", header=False, index=False)
    print(f"{len(pairs)} predictions -> {args.out} (unknown users: {counts['cold_users_ratings']}, "
          f"unknown movies: {counts['cold_items_ratings']}; fallbacks as documented)", file=sys.stderr)
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    import numpy as np

    from movierec.core.scoring import Scorer

    if args.k <= 0:
        raise CliError(f"-k must be > 0, got {args.k}")
    new_user = args.profile is not None or args.ratings is not None
    if new_user and (args.user or args.all):
        raise CliError("--user/--all are known users; --profile/--ratings describe a new one: give one or the other")
    if not new_user and not args.user and not args.all:
        raise CliError("give --user ID, --all, or --profile and/or --ratings for a new user")
    if new_user:
        profile = parse_profile(args.profile) if args.profile is not None else None
        ratings = parse_ratings_pairs(args.ratings) if args.ratings is not None else {}
        return _recommend_new_user(Scorer.load(args.artifact, device=args.device), args.k, ratings, profile)
    scorer = Scorer.load(args.artifact, device=args.device)
    if args.all:
        from movierec.trainer.offline import write_all_recommendations

        if args.out is None:
            raise CliError("--all needs --out FILE")
        rows = write_all_recommendations(scorer, args.k, args.out, batch_size=args.batch_size)
        print(f"{rows} recommendations for {len(scorer.users)} users -> {args.out}", file=sys.stderr)
        return 0
    idx = scorer.users.to_index(np.asarray(args.user))
    if (idx < 0).any():
        unknown = [u for u, i in zip(args.user, idx, strict=True) if i < 0]
        raise CliError(f"unknown user id(s) {unknown}; the artifact knows {len(scorer.users)} users "
                       f"(ids {scorer.users.raw[0]}..{scorer.users.raw[-1]})")
    items, scores = scorer.recommend_users(idx, args.k)
    for user, row_items, row_scores in zip(args.user, items, scores, strict=True):
        _print_list(scorer, f"user {user}: top {args.k}", row_items, row_scores)
    return 0


def _print_list(scorer: Any, header: str, items: Any, scores: Any) -> None:
    cat = scorer.catalog
    print(header)
    for rank, (i, s) in enumerate(zip(items, scores, strict=True), start=1):
        if i < 0:
            break
        genres = ", ".join(cat.genres[i])
        print(f"  {rank:2d}. {cat.titles[i]}  [{genres}]  (movie {cat.item_ids[i]}, score {s:.3f})")


def _recommend_new_user(scorer: Any, k: int, ratings: dict[int, float], profile: dict[str, Any] | None) -> int:
    """Top-k for one new user from a profile and/or ratings, scored in-process: rows with a profile go to the
    artifact's cold-start models (when it has them), ratings alone to the main models."""
    import numpy as np
    import pandas as pd

    from movierec.core.features import Profiles
    from movierec.core.sparse import Csr

    movie_ids = np.fromiter(ratings, dtype=np.int64, count=len(ratings))
    values = np.fromiter(ratings.values(), dtype=np.float32, count=len(ratings))
    idx = scorer.items.to_index(movie_ids)
    if (idx < 0).any():
        unknown = movie_ids[idx < 0].tolist()
        raise CliError(f"--ratings: movie id(s) {unknown} are not in the artifact's catalog")
    off = ~scorer.rating_scale.contains(values)
    if off.any():
        raise CliError(f"--ratings: {values[off][0]:g} (movie {movie_ids[off][0]}) is not on the model's rating "
                       f"scale {scorer.rating_scale}")
    inputs = Csr.from_coo(np.zeros(len(idx), np.int64), idx, values, 1, scorer.n_items)
    profiles = None
    if profile is not None:
        row = {"age": profile.get("age", 0), "gender": profile.get("gender", ""),
               "occupation": profile.get("occupation", ""), "zip": profile.get("zip_code", "")}
        profiles = Profiles.from_frame(pd.DataFrame([row]))
        if not scorer.info.profile_aware:
            print("note: this artifact has no cold-start models: the profile is ignored"
                  + (", only the ratings count" if ratings else "; the most popular movies follow"), file=sys.stderr)
    items, scores = scorer.topk(inputs, k, profiles=profiles)
    parts = [", ".join(f"{key}={value}" for key, value in profile.items())] if profile else []
    parts += [f"{len(ratings)} rating{'s' if len(ratings) != 1 else ''}"] if ratings else []
    _print_list(scorer, f"new user ({'; '.join(parts)}): top {k}", items[0], scores[0])
    return 0
