"""Realistic-shape synthetic data for the benchmarks, straight into a model artifact (no dense matrices).

    default   100,000 users x 20,000 movies, ~10M ratings
    ml-25m    162,541 users x 59,047 movies, ~25M ratings   (--shape ml-25m)
    ml-100k       943 users x  1,682 movies, ~100k ratings

The data come from the project's one generator (`movierec.trainer.synthetic.synthetic_csr`: long-tailed
popularity, low-rank tastes, CSR order, no dense matrix). The model has the real
architecture (the classic preset's autoencoder) with random weights: the benchmarks measure serving, not
quality. The artifact is cached by shape and seed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from movierec.core.sparse import IdMap
from movierec.trainer.synthetic import synthetic_csr

SHAPES: dict[str, tuple[int, int, int]] = {
    "default": (100_000, 20_000, 10_000_000),
    "ml-25m": (162_541, 59_047, 25_000_095),
    "ml-1m": (6_040, 3_706, 1_000_209),
    "ml-100k": (943, 1_682, 100_000),
    "tiny": (2_000, 500, 40_000),
}


def build_artifact(out: Path, shape: str = "default", *, seed: int = 0) -> Path:
    """Write (or reuse) a random-weight classic-autoencoder artifact over synthetic data of `shape`."""
    import pandas as pd
    import torch

    from movierec.core.artifact import Artifact, ModelEntry, RatingScale, save_artifact
    from movierec.core.models import build_model
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
        rating_scale=RatingScale.infer(history.values),
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
