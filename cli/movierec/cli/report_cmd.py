"""`movierec report`: train every preset on ml-100k u1 (optionally all five folds and a time split) and write
reports/results.md, results.png and results.json. EASE and most-popular are computed in the same run.
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
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
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
