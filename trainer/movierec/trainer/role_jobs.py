"""Train a preset's roles (rating, ranking, cold-rating, cold-ranking) one after another or side by side.

The roles of a preset are independent fits: each seeds itself, reads only the training ratings (and the side
data) and writes only its own model. So on a machine with idle cores they can run at once, each in its own
process (`spawn`: a fresh interpreter, no OpenMP or CUDA state inherited from the parent). On the 2-core
machine, `best` at the ml-1m shape trains its rating blend on one core and EASE plus the two cold-start
hybrids on the other: 306 s one at a time, 184 s side by side (README, "Training time and memory").

`auto_jobs` picks how many at once: one per `threads` CPUs, never more than the roles; one on CUDA (the
device is the shared resource there), under torchrun, and on tiny data. `run_role_jobs` starts a role only
while the memory the running roles are estimated to need stays under `MEMORY_SHARE` of what was available at
the start, each estimate doubled and a process's fixed cost added: the estimates count the large arrays only
(`memory.stage_bytes`), so the margin keeps side by side from costing an OOM kill. A role that does not fit
beside the running ones waits, and the next role in order that fits starts before it. When no two roles fit
beside each other (the ml-25m shape on 24 GiB), they train one at a time in this process, as before: no
worker processes and no copies of the data.

A fit is the same function in both modes (`fit_role`), and a role's model does not depend on the mode except
through wall-clock time budgets (`max_seconds`), which each role then meets on its own core.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import connection as mp_connection
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from movierec.core.artifact import ModelEntry
from movierec.core.models import build_model
from movierec.core.sparse import Csr
from movierec.trainer import distributed, memory
from movierec.trainer.checkpoint import CheckpointSpec
from movierec.trainer.config import ModelConfig, TrainConfig
from movierec.trainer.fit.side import SideData
from movierec.trainer.train import FitResult, finalize, fit

MEMORY_SHARE = 0.5  # of the memory available at the start, what roles running at once may be estimated to need
MIN_PARALLEL_RATINGS = 50_000  # auto trains smaller data one role at a time: each role takes seconds
PROCESS_BYTES = 512 * 1024**2  # a worker's fixed cost besides its copy of the inputs: the interpreter and torch


@dataclass(frozen=True)
class RoleJob:
    """One role's fit and everything it reads (picklable: it crosses to a worker process)."""

    role: str
    model_config: ModelConfig
    train_config: TrainConfig
    train: Csr  # the fitting part of the training ratings
    valid: Csr  # the validation users' held-out ratings
    full: Csr  # every training rating (finalize refits the closed-form models on it)
    side: SideData | None
    progress: bool
    checkpoint: CheckpointSpec | None
    threads: int  # torch CPU threads of the process that fits it
    write: bool = True  # finalize (rank 0 only: the rank that writes the artifact)


@dataclass
class RoleResult:
    role: str
    entry: ModelEntry  # the config with the hyperparameters chosen on validation, and the trained state
    fit: FitResult
    training: dict[str, Any]  # what the artifact records of this role's training


def fit_role(job: RoleJob) -> RoleResult:
    """Fit one role, refit it on every training rating, and say how long it took and how much memory."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    memory.reset_peak()  # the role's own peak RSS
    result = fit(job.train, job.valid, job.model_config, job.train_config, progress=job.progress,
                 checkpoint=job.checkpoint, side=job.side)  # fmt: skip
    t_final = time.perf_counter()
    if job.write:
        finalize(result.model, job.full, job.train_config)  # codes / closed-form weights from every rating
    t_final = time.perf_counter() - t_final
    model_config = job.model_config
    if result.chosen:
        model_config = dataclasses.replace(model_config, extra={**model_config.extra, **result.chosen})
    state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
    training = {
        "kind": model_config.kind,
        "config": job.train_config.to_dict(),
        "seconds": round(time.perf_counter() - t0, 3),
        "cpu_seconds": round(time.process_time() - cpu0, 3),  # this process's user + system time
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "best_valid_rmse": result.best_valid_rmse,
        "best_valid_ndcg@10": result.best_valid_ndcg,
        "chosen": result.chosen,
        "device": result.device,
        "train_ratings": int(job.train.nnz),
        "valid_ratings": int(job.valid.nnz),
        "resumed_from": result.resumed_from,
        "world_size": result.world_size,
        "peak_rss_bytes": memory.peak_rss(),
        "stopped_by_time_budget": result.time_budget_hit,
        "parts_seconds": {**result.parts, "finalize on all training ratings": round(t_final, 3)},
    }
    return RoleResult(job.role, ModelEntry(model_config, state), result, training)


def _fit_role_in_worker(
    job: RoleJob,
) -> tuple[str, ModelConfig, dict[str, np.ndarray], FitResult, dict[str, Any]]:
    """`fit_role` in a worker process: the state crosses back as numpy arrays (plain pickled bytes, no shared
    memory handles), the fit result without its model (the parent rebuilds it from the state)."""
    from movierec.core.device import configure_threads

    configure_threads(job.threads)
    out = fit_role(job)
    state = {k: v.numpy() for k, v in out.entry.state.items()}
    fit_summary = dataclasses.replace(out.fit, model=None)  # type: ignore[arg-type]  # rebuilt by the parent
    return out.role, out.entry.config, state, fit_summary, out.training


def _from_worker(
    payload: tuple[str, ModelConfig, dict[str, np.ndarray], FitResult, dict[str, Any]],
) -> RoleResult:
    role, config, arrays, summary, training = payload
    state = {k: torch.from_numpy(v) for k, v in arrays.items()}
    model = build_model(config)
    model.load_state_dict(state)
    return RoleResult(
        role, ModelEntry(config, state), dataclasses.replace(summary, model=model.eval()), training
    )


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_jobs(n_roles: int, threads: int, cpus: int, on_cuda: bool, world_size: int, n_ratings: int) -> int:
    """How many roles to train at once when the user does not say: one per `threads` CPUs, at most the roles;
    one on CUDA, under torchrun, and below `MIN_PARALLEL_RATINGS` (starting a worker costs about 2 s)."""
    if on_cuda or world_size > 1 or n_ratings < MIN_PARALLEL_RATINGS:
        return 1
    return max(1, min(n_roles, cpus // max(threads, 1)))


def role_need(stages: list[memory.Stage], inputs: int = 0) -> int:
    """The memory one role's process is budgeted at when it runs beside others: its largest stage's estimate,
    doubled (the estimates count the large arrays only), a process's fixed cost and its copy of the inputs
    (`input_bytes`)."""
    return 2 * max((s.need for s in stages), default=0) + PROCESS_BYTES + inputs


def _csr_bytes(m: Csr) -> int:
    return m.indptr.nbytes + m.indices.nbytes + m.values.nbytes


def input_bytes(full: Csr, side: SideData | None) -> int:
    """What a worker receives for a role, bounded from above: its fitting and validation parts of the ratings
    (their ratings are `full`'s, split, each with its own row pointers), `full` itself (finalize refits on it),
    and with side data the feature rows and the time order of the fitting part (at most `full`'s size)."""
    extra = 0 if side is None else side.user_features.nbytes + side.item_features.nbytes + _csr_bytes(full)
    return 2 * _csr_bytes(full) + full.indptr.nbytes + extra


def fits_beside(running: list[int], need: int, available: int) -> bool:
    """Whether a role needing `need` may start while roles needing `running` run (one always may run alone)."""
    return not running or sum(running) + need <= MEMORY_SHARE * available


def any_pair_fits(needs: list[int], available: int) -> bool:
    return any(fits_beside([a], b, available) for i, a in enumerate(needs) for b in needs[i + 1 :])


def _next_fitting(pending: list[RoleJob], running: list[int], needs: dict[str, int], available: int) -> RoleJob | None:
    return next((j for j in pending if fits_beside(running, needs[j.role], available)), None)


def _worker_main(conn: Connection) -> None:
    """A worker process's body: receive the job, fit it, send back ("ok", payload) or ("error", the exception).

    The job comes through the connection, not the process arguments: `spawn` writes its arguments into a pipe
    whose read end the parent keeps open until the write ends, so a child that died while starting would
    leave the parent blocked forever on a large job; a send on the connection fails instead."""
    try:
        job: RoleJob = conn.recv()
        payload: tuple[str, Any] = ("ok", _fit_role_in_worker(job))
    except BaseException as exc:  # noqa: BLE001 (every failure goes back to the parent, which re-raises it)
        payload = ("error", exc)
    try:
        conn.send(payload)
    except Exception as exc:  # noqa: BLE001 (an exception that does not pickle: its text goes back instead)
        conn.send(("error", RuntimeError(f"{type(payload[1]).__name__}: {payload[1]} ({exc})")))
    conn.close()


def _died(worker: _Worker) -> RuntimeError:
    worker.process.join()
    return RuntimeError(
        f"training the {worker.job.role} model: its worker process died (exit status {worker.process.exitcode}; "
        f"killed, out of memory, or it could not start); train the roles one at a time with --jobs 1"
    )


@dataclass
class _Worker:
    job: RoleJob
    process: BaseProcess
    conn: Connection
    started: float


def run_role_jobs(
    jobs: list[RoleJob],
    parallel: int,
    needs: dict[str, int],
    available: int,
    note: Callable[[str], None] | None = None,
) -> dict[str, RoleResult]:
    """Fit every job: in this process when `parallel` is 1 (or when no two jobs fit beside each other in
    memory), else in up to `parallel` worker processes at once: whenever a slot is free, the first job in order
    that `fits_beside` the running ones starts. A failure in one role stops the others (their processes are
    terminated) and is raised here; a worker that dies is named."""
    if parallel <= 1 or not any_pair_fits([needs[j.role] for j in jobs], available):
        return {job.role: fit_role(job) for job in jobs}  # no worker processes, no copies of the data
    note = note or (lambda line: print(line, file=sys.stderr))
    ctx = multiprocessing.get_context("spawn")
    pending = list(jobs)
    running: list[_Worker] = []
    results: dict[str, RoleResult] = {}
    try:
        while pending or running:
            while len(running) < parallel:
                job = _next_fitting(pending, [needs[w.job.role] for w in running], needs, available)
                if job is None:
                    break
                pending.remove(job)
                here, there = ctx.Pipe()
                process = ctx.Process(target=_worker_main, args=(there,), name=f"movierec-train-{job.role}")
                process.start()
                there.close()
                worker = _Worker(job, process, here, time.perf_counter())
                running.append(worker)
                try:
                    here.send(job)
                except OSError:  # it died starting (e.g. a script without `if __name__ == "__main__":`)
                    raise _died(worker) from None
                note(f"training the {job.role} model ({job.model_config.kind}) in a worker process "
                     f"({len(results) + len(running)} of {len(jobs)} started)")  # fmt: skip
            ready = mp_connection.wait([w.conn for w in running])
            for worker in [w for w in running if w.conn in ready]:
                running.remove(worker)
                try:
                    status, payload = worker.conn.recv()
                except (EOFError, OSError):  # the process ended without an answer: killed (OOM) or crashed
                    raise _died(worker) from None
                worker.process.join()
                if status == "error":
                    raise payload
                results[worker.job.role] = _from_worker(payload)
                note(f"the {worker.job.role} model is trained ({time.perf_counter() - worker.started:.0f} s)")
    finally:
        for worker in running:  # a failure or an interrupt: nothing keeps training behind the caller's back
            worker.process.terminate()
            worker.process.join()
            worker.conn.close()
    return {job.role: results[job.role] for job in jobs}


def plan_parallel(jobs: int | None, n_roles: int, threads: int, on_cuda: bool, n_ratings: int) -> int:
    """`jobs` as asked (None: `auto_jobs`), never more than the roles."""
    if jobs is None:
        return auto_jobs(n_roles, threads, available_cpus(), on_cuda, distributed.world_size(), n_ratings)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1 (or auto), got {jobs}")
    if distributed.world_size() > 1:
        return 1  # under torchrun every rank trains the roles in turn, data-parallel
    return min(jobs, n_roles)


def checkpoint_spec(checkpoint_dir: str | Path | None, role: str, resume: bool) -> CheckpointSpec | None:
    return CheckpointSpec(Path(checkpoint_dir) / f"{role}.pt", resume) if checkpoint_dir is not None else None
