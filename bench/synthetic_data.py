"""Realistic-shape synthetic data for the benchmarks, straight into a model artifact (no dense matrices).

    default   100,000 users x 20,000 movies, ~10M ratings
    ml-25m    162,541 users x 59,047 movies, ~25M ratings   (--shape ml-25m)
    ml-100k       943 users x  1,682 movies, ~100k ratings

Popularity is long-tailed (Zipf item weights, log-normal user activity); pairs are drawn by inverse-CDF
sampling (`searchsorted` on the cumulative weights), deduplicated once with `np.unique` on `user * n + item`
keys, which also leaves them sorted by user then movie, i.e. already in CSR order. The model has the real
architecture (the classic preset's autoencoder) with random weights: the benchmarks measure serving, not
quality. The artifact is cached by shape and seed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from movierec.core.sparse import Csr, IdMap

SHAPES: dict[str, tuple[int, int, int]] = {
    "default": (100_000, 20_000, 10_000_000),
    "ml-25m": (162_541, 59_047, 25_000_095),
    "ml-1m": (6_040, 3_706, 1_000_209),
    "ml-100k": (943, 1_682, 100_000),
    "tiny": (2_000, 500, 40_000),
}


def synthetic_csr(
    n_users: int, n_items: int, n_ratings: int, *, seed: int = 0, zipf: float = 1.0, sigma: float = 1.0
) -> Csr:
    """A users x items rating matrix with ~n_ratings unique entries (exactly, unless the matrix is too small)."""
    rng = np.random.default_rng(seed)
    target = min(n_ratings, n_users * n_items)
    item_w = 1.0 / np.arange(1, n_items + 1) ** zipf
    item_cdf = np.cumsum(item_w[rng.permutation(n_items)])
    item_cdf /= item_cdf[-1]
    user_cdf = np.cumsum(rng.lognormal(0.0, sigma, n_users))
    user_cdf /= user_cdf[-1]
    keys = np.zeros(0, dtype=np.int64)
    for _ in range(8):
        need = target - keys.size
        if need <= 0:
            break
        draw = int(need * 1.25) + 1024
        u = np.searchsorted(user_cdf, rng.random(draw), side="right").clip(0, n_users - 1)
        i = np.searchsorted(item_cdf, rng.random(draw), side="right").clip(0, n_items - 1)
        keys = np.unique(np.concatenate([keys, u.astype(np.int64) * n_items + i]))
    if keys.size > target:  # drop a random surplus, keep the sorted order
        keys = keys[np.sort(rng.choice(keys.size, target, replace=False))]
    users, items = np.divmod(keys, n_items)
    bias = rng.normal(0.0, 0.6, n_items).astype(np.float32)
    ratings = np.clip(np.rint(3.6 + bias[items] + rng.normal(0, 0.8, keys.size)), 1, 5).astype(np.float32)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    return Csr(indptr, items.astype(np.int64), ratings, n_items)


def build_artifact(out: Path, shape: str = "default", *, seed: int = 0) -> Path:
    """Write (or reuse) a random-weight classic-autoencoder artifact over synthetic data of `shape`."""
    import pandas as pd
    import torch

    from movierec.core.artifact import Artifact, ModelEntry, save_artifact
    from movierec.core.model import build_model
    from movierec.trainer.config import get_preset

    if (out / "manifest.json").exists():
        return out
    n_users, n_items, n_ratings = SHAPES[shape]
    t0 = time.perf_counter()
    history = synthetic_csr(n_users, n_items, n_ratings, seed=seed)
    torch.manual_seed(seed)
    cfg = get_preset("classic").model
    cfg = type(cfg).from_dict({**cfg.to_dict(), "n_items": n_items})
    model = build_model(cfg)
    ids = np.arange(1, n_items + 1)
    catalog = pd.DataFrame(
        {"item": ids, "title": [f"Synthetic Movie {i}" for i in ids], "year": 2000, "genres": "Drama"}
    )
    artifact = Artifact(
        models={"rating": ModelEntry(cfg, {k: v.detach().clone() for k, v in model.state_dict().items()})},
        users=IdMap(np.arange(1, n_users + 1, dtype=np.int64)),
        items=IdMap(ids.astype(np.int64)),
        history=history,
        catalog=catalog,
        meta={"dataset": f"synthetic-{shape}-seed{seed}", "training": {"seconds": 0.0}},
    )
    save_artifact(artifact, out)
    print(f"synthetic {shape}: {n_users} x {n_items}, {history.nnz} ratings -> {out} "
          f"({time.perf_counter() - t0:.1f}s)")  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    build_artifact(a.out or Path(f"bench/results/synthetic-{a.shape}-seed{a.seed}"), a.shape, seed=a.seed)


if __name__ == "__main__":
    main()
