"""Data-parallel training: process-group helpers for `fit` (torchrun starts `movierec.cli.torchrun_main`).

    torchrun --nproc-per-node 2 -m movierec.cli.torchrun_main <the arguments of `movierec train`>
    movierec train --nproc 2 ...        # the same, through `python -m torch.distributed.run --standalone`

Each rank loads the (sparse) ratings, trains the same model wrapped in DistributedDataParallel on its share
of every mini-batch of users (gloo on CPU, nccl on CUDA), and takes part in validation on its share of the
validation users; only rank 0 writes checkpoints and the artifact. Models (and ensemble members) not trained
by gradient steps -- EASE, the kNN-baseline, most-popular, BPMF's sampler, the cold-start hybrids -- stay
single-node: every rank runs them whole (`replicated_stages`). Without an initialized process group
every helper here answers as a single process (rank 0 of 1), so `fit` has one code path.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from movierec.core.models import model_class


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum of `values` over all ranks (float64); the values themselves on a single process."""
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.cpu().tolist()]


def all_gather_object(obj: Any) -> list[Any]:
    """`obj` of every rank, by rank; `[obj]` on a single process."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` wrapped in DDP when a process group is up (its weights are broadcast from rank 0), else itself.

    The wrapper only runs forward passes (it synchronizes the gradients); the trainer keeps the model itself
    for everything else (the losses read its `extra_loss`, validation calls its `scores`)."""
    if not is_distributed():
        return model
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    # No buffer of these models changes during training, so there is nothing to broadcast every step.
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def replicated_stages(kinds: Iterable[str]) -> list[str]:
    """The model kinds among `kinds` (an ensemble's members included) that do not train data-parallel: they
    are not trained by gradient steps in `GradientTrainer` (closed-form solves, the Gibbs sampler, the
    side-information trainer), so every rank runs them whole on one node (same seed, same result) and only
    rank 0's is kept. Nothing is refused: the gradient-trained models and members train data-parallel."""
    out: list[str] = []
    for kind in kinds:
        trained_by = model_class(kind).trained_by
        if trained_by not in ("gradient", "ensemble") and kind not in out:
            out.append(kind)
    return out


def stage_kinds(configs: Iterable[Any]) -> list[str]:
    """The kinds of `configs` (ModelConfigs), an ensemble's members in its place."""
    kinds: list[str] = []
    for cfg in configs:
        if cfg.kind == "ensemble":
            kinds += [m["model"].get("kind", "autoencoder") for m in cfg.extra.get("members", [])]
        else:
            kinds.append(cfg.kind)
    return kinds


def backend_for(device: str | None) -> str:
    """nccl when the run will use CUDA, gloo otherwise."""
    wants_cuda = device in (None, "auto", "cuda") and torch.cuda.is_available()
    return "nccl" if wants_cuda and dist.is_nccl_available() else "gloo"


def init_from_env(device: str | None) -> None:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, ...)."""
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)


def die_with_parent() -> None:
    """torchrun starts every rank in a session of its own, so a SIGKILLed torchrun would leave its ranks
    training on (and racing a resumed run for the checkpoint and the artifact). On Linux, have the kernel
    SIGKILL this process when its parent dies; elsewhere do nothing."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
