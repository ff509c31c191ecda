"""Device selection and moving sparse batches onto a device: shared by training and serving."""

from __future__ import annotations

import os
import threading
import warnings

import numpy as np
import torch

from movierec.core.sparse import Csr


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an error the user can act on."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but no CUDA GPU is available; use --device cpu or auto")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {name!r}; choose auto, cpu or cuda")


def coo_tensors(matrix: Csr, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r, c, v = matrix.to_coo()
    return (torch.from_numpy(r).to(device), torch.from_numpy(c).to(device), torch.from_numpy(v).to(device))


def csr_tensor(matrix: Csr, device: torch.device) -> torch.Tensor:
    """The matrix as a torch sparse CSR tensor (float32 values) on `device`."""
    values = matrix.values.astype(np.float32, copy=False)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": matmul with a dense matrix is all we use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr).to(device),
            torch.from_numpy(matrix.indices).to(device),
            torch.from_numpy(values).to(device),
            size=(matrix.n_rows, matrix.n_cols),
        )


def dense_rows(matrix: Csr, device: torch.device) -> torch.Tensor:
    """The whole (small) matrix as a dense float32 tensor on `device`: one scatter, no Python loop."""
    out = torch.zeros((matrix.n_rows, matrix.n_cols), dtype=torch.float32, device=device)
    if matrix.nnz:
        r, c, v = coo_tensors(matrix, device)
        out[r, c] = v
    return out


def dense_batch(matrix: Csr, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """Densify only the given rows of `matrix`, straight into a tensor on `device`."""
    return dense_rows(matrix.rows(rows), device)


class _ThreadPolicy(threading.local):
    applied: int | None = None


_policy: dict[str, int] = {}  # the process-wide choice of configure_threads, if any
_this_thread = _ThreadPolicy()


def configure_threads(threads: int | None) -> int:
    """Set torch's intra-op CPU threads for this process: `threads`, or by default half the CPUs (>= 1).

    Small autoencoder steps gain little from many OpenMP threads and lose a lot when a thread shares its core
    with another process (every parallel region waits for the slowest thread). Measured on a 2-core machine
    with one other busy process: `movierec train --preset deep-ae --epochs 3` on ml-100k u1 (load, 3 epochs,
    evaluation) took 16.7 s with 1 thread and 68.8 s with 2.
    """
    n = threads if threads and threads > 0 else max(1, (os.cpu_count() or 2) // 2)
    _policy["threads"] = n
    apply_thread_policy()
    return n


def apply_thread_policy() -> None:
    """Apply configure_threads' choice in the calling OS thread (cheap after the first call per thread).

    OpenMP keeps the thread count per OS thread: a worker thread (the server's model thread, a bulk thread)
    starts with the library default whatever the main thread set. Measured: one user's top-k with EASE on
    ml-100k took 0.74 ms in the main thread after set_num_threads(1) and 7.4 ms in a fresh worker thread.
    """
    n = _policy.get("threads")
    if n is not None and _this_thread.applied != n:
        torch.set_num_threads(n)
        _this_thread.applied = n
