"""`movierec report`: train every preset on ml-100k u1 (optionally all five folds and a time split) and write
reports/results.md, results.png and results.json. EASE and most-popular are computed in the same run.

`movierec report --cold-start`: the cold-start report instead (users and movies held out of training, scored
through the serving path, with baselines): cold-start.json and cold-start.png in --out, the markdown in --doc.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from movierec.cli import CliError

FOLDS = ("u1", "u2", "u3", "u4", "u5")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("report", help="train every preset on ml-100k and write a results table + plot")
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="data folder (fetched if needed)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="output folder (default: reports)")
    parser.add_argument("--presets", nargs="+", metavar="NAME", help="presets to run (default: all)")
    parser.add_argument("--all-folds", action="store_true", help="run the five GroupLens folds u1..u5")
    parser.add_argument("--time-split", action="store_true", help="also run a time split (latest 20%% as test)")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--cold-start", action="store_true",
        help="the cold-start report instead: held-out users (profile + 0..10 ratings) and movies (added by "
        "metadata), with baselines; writes cold-start.json/.png to --out and the markdown to --doc",
    )  # fmt: skip
    parser.add_argument(
        "--train-seeds", type=int, default=None, metavar="K",
        help="with --cold-start: train every split with K training seeds and report the mean and spread "
        "(default 3)",
    )  # fmt: skip
    parser.add_argument(
        "--doc", type=Path, default=None,
        help="with --cold-start: where the markdown goes (default: <out>/cold-start.md)",
    )  # fmt: skip
    parser.set_defaults(handler=_report)


def _cold_start(args: argparse.Namespace) -> int:
    from movierec.trainer.coldstart_report import TRAIN_SEEDS, run_coldstart_report
    from movierec.trainer.config import PRESETS, get_preset

    if args.all_folds or args.time_split:
        raise CliError("--cold-start runs its own splits; drop --all-folds / --time-split")
    presets = list(args.presets or ["best"])
    if len(presets) != 1 or presets[0] not in PRESETS:
        raise CliError(f"--cold-start takes one preset with side models (default best); choose from: {', '.join(PRESETS)}")
    if not get_preset(presets[0]).side_models:
        raise CliError(f"preset {presets[0]!r} trains no cold-start models; use best")
    seeds = TRAIN_SEEDS if args.train_seeds is None else args.train_seeds
    if seeds < 1:
        raise CliError(f"--train-seeds must be at least 1, got {seeds}")
    doc = args.doc or args.out / "cold-start.md"
    command = f"movierec report --cold-start --data-dir {args.data_dir} --out {args.out} --doc {doc}"
    if args.threads:
        command += f" --threads {args.threads}"
    if args.train_seeds is not None:
        command += f" --train-seeds {seeds}"
    try:
        run_coldstart_report(args.data_dir, args.out, doc=doc, preset=presets[0], device=args.device,
                             threads=args.threads, train_seeds=seeds, command=command)  # fmt: skip
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(doc)
    return 0


def _report(args: argparse.Namespace) -> int:
    if args.cold_start:
        return _cold_start(args)
    if args.doc is not None:
        raise CliError("--doc goes with --cold-start")
    if args.train_seeds is not None:
        raise CliError("--train-seeds goes with --cold-start")
    from movierec.trainer.config import PRESETS
    from movierec.trainer.report import TIME_SPLIT, run_report

    unknown = sorted(set(args.presets or ()) - set(PRESETS))
    if unknown:
        raise CliError(f"unknown preset(s) {', '.join(unknown)}; choose from: {', '.join(PRESETS)}")
    splits = list(FOLDS if args.all_folds else ("u1",))
    if args.time_split:
        splits.append(TIME_SPLIT)
    try:
        run_report(args.data_dir, args.out, presets=args.presets, splits=splits, device=args.device,
                   threads=args.threads)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(args.out / "results.md")
    return 0
