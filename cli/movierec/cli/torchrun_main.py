"""torchrun's entry point: the arguments of `movierec train`, trained data-parallel on every rank.

    torchrun --nproc-per-node 2 -m movierec.cli.torchrun_main <the arguments of `movierec train`>
    movierec train --nproc 2 ...        # the same, through `python -m torch.distributed.run --standalone`

It lives in the CLI (which knows every package) so that the trainer never imports the command line.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    import torch.distributed as dist

    from movierec.cli import build_parser
    from movierec.cli import main as cli_main
    from movierec.trainer import distributed

    args_list = list(sys.argv[1:] if argv is None else argv)
    if "WORLD_SIZE" not in os.environ:
        print("movierec.cli.torchrun_main: start me with torchrun (or use `movierec train --nproc N`)",
              file=sys.stderr)  # fmt: skip
        return 2
    distributed.die_with_parent()
    args = build_parser().parse_args(["train", *args_list])
    distributed.init_from_env(args.device)
    status = 1
    try:
        status = cli_main(["train", *args_list])
    finally:
        # Every rank leaves together: a rank that tears its gloo pairs down while rank 0 still evaluates and
        # writes the artifact made the other side abort ("terminate called without an active exception").
        if status == 0:
            try:
                dist.barrier()
            except RuntimeError as exc:  # a peer already failed: it reported why; leave all the same
                print(f"movierec.cli.torchrun_main: final barrier failed: {exc}", file=sys.stderr)
        dist.destroy_process_group()
    return status


if __name__ == "__main__":
    code = main()
    # Leave without interpreter finalization: torch's gloo objects still alive then (a DDP reducer keeps its
    # process group past destroy_process_group) are destroyed with their worker threads joinable, and the rank
    # aborts ("terminate called without an active exception", SIGABRT) after its work was done and written.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
