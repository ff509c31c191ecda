"""`movierec train --nproc N` re-executes itself through torchrun: every other flag must reach the ranks."""

from __future__ import annotations

import argparse

from movierec.cli import build_parser
from movierec.cli.train_cmd import _forwarded_args

EVERY_FLAG = [
    "--train", "tr.data", "--test", "te.data", "--catalog", "movies.csv", "--users", "u.user", "--dataset", "ml-100k",
    "--split", "u2", "--data-dir", "somewhere", "--out", "art", "--preset", "dae", "--config", "c.json",
    "--epochs", "7", "--batch-size", "9", "--lr", "0.0003", "--seed", "4", "--device", "cpu",
    "--checkpoint-dir", "ck", "--threads", "1", "--memory-limit", "16G", "--jobs", "2", "--quiet", "--json", "--resume",
]
NOT_FORWARDED = {"nproc", "handler", "command", "faithful", "extra"}  # --faithful is refused with --nproc; extra: not a flag


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(["train", *argv])


def test_every_train_flag_reaches_the_ranks() -> None:
    args = _parse([*EVERY_FLAG, "--nproc", "3"])
    defaults = _parse(["--out", "x"])
    # a flag added to `movierec train` but not to EVERY_FLAG (and so maybe not to _forwarded_args) fails here
    untested = {k for k in vars(args) if getattr(args, k) == getattr(defaults, k)} - NOT_FORWARDED
    assert not untested, f"add these to EVERY_FLAG and _forwarded_args: {sorted(untested)}"
    again = _parse(_forwarded_args(args))
    for key, value in vars(args).items():
        if key not in NOT_FORWARDED:
            assert getattr(again, key) == value, key
    assert again.nproc == 1  # the ranks do not spawn again
