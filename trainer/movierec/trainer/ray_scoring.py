"""Bulk scoring of every user on Ray Data, with the same `Scorer` as the gRPC server.

Users are cut into fixed blocks (block b = dense users [b*block_users, (b+1)*block_users)); a pool of actors,
each loading the artifact once (on a GPU when the cluster has GPUs), scores whole blocks with
`Scorer.recommend_users` and writes one Parquet file per block, atomically (temp file + rename). A re-run
skips the blocks whose files already exist, so an interrupted job continues where it stopped.

Without an address a local Ray sized to this machine is started; with one, the job joins that cluster.
`ray` is the optional extra `movierec[ray]`, imported when a job starts: without it `import ray` raises
ModuleNotFoundError, which the CLI turns into one line naming the extra. The files hold the one bulk output
schema (`movierec.core.recommendations`: user_id, rank, movie_id, score), as the gRPC bulk path writes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from movierec.core.artifact import read_manifest
from movierec.core.recommendations import long_format

PART_PATTERN = "part-{block:06d}.parquet"
MANIFEST_NAME = "_movierec_scoring.json"


class BlockScorer:
    """A Ray actor: loads the artifact once, then scores and writes whole blocks."""

    def __init__(self, artifact: str, k: int, out_dir: str, block_users: int, device: str) -> None:
        from movierec.core.scoring import Scorer

        self.scorer = Scorer.load(artifact, device=device)
        self.scorer.warmup()
        self.k, self.out_dir, self.block_users = k, Path(out_dir), block_users

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import resource

        n_users = len(self.scorer.users)
        done, spent = [], []
        for block in batch["block"].tolist():  # a handful of blocks per call, each thousands of users
            t0 = time.perf_counter()
            users = np.arange(block * self.block_users, min((block + 1) * self.block_users, n_users))
            items, scores = self.scorer.recommend_users(users, self.k)
            movies = np.where(items >= 0, self.scorer.items.to_raw(np.maximum(items, 0)), -1)
            table = long_format(self.scorer.users.to_raw(users), movies, scores)
            final = self.out_dir / PART_PATTERN.format(block=block)
            tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
            pq.write_table(table, tmp)
            os.replace(tmp, final)
            done.append(users.size)
            spent.append(time.perf_counter() - t0)
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
        return {
            "block": batch["block"],
            "users": np.asarray(done, dtype=np.int64),
            "pid": np.full(len(done), os.getpid(), dtype=np.int64),
            "peak_rss_kib": np.full(len(done), peak_kib, dtype=np.int64),
            "seconds": np.asarray(spent, dtype=np.float64),
        }


@dataclass
class RayScoringSummary:
    users: int
    blocks_total: int
    blocks_scored: int
    blocks_skipped: int
    seconds: float
    users_per_second: float
    workers: int
    out_dir: str
    actor_peak_rss_mib: float = 0.0  # the largest peak RSS of one scoring actor
    users_per_second_per_actor: float = 0.0  # while scoring and writing, actor start-up excluded


def score_all_ray(
    artifact: str | Path,
    out_dir: str | Path,
    *,
    k: int = 10,
    address: str | None = None,
    workers: int | None = None,
    block_users: int = 4096,
    device: str = "auto",
) -> RayScoringSummary:
    """Score every known user of `artifact` into `out_dir/part-*.parquet` on Ray Data."""
    import ray
    import ray.data
    manifest = read_manifest(artifact)
    n_users, n_items = manifest.n_users, manifest.n_items
    if not 1 <= k <= n_items:
        raise ValueError(f"k must be in [1, {n_items}] (the catalog size), got {k}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / MANIFEST_NAME
    job = {"artifact_version": manifest.version, "k": k, "block_users": block_users, "n_users": n_users}
    if meta_path.exists():
        previous = json.loads(meta_path.read_text())
        if previous != job:
            raise ValueError(f"{out} holds results of another job ({previous}); use an empty --out directory")
    else:
        meta_path.write_text(json.dumps(job, indent=2))
    n_blocks = (n_users + block_users - 1) // block_users
    todo = [b for b in range(n_blocks) if not (out / PART_PATTERN.format(block=b)).exists()]
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
    try:
        gpus = float(ray.cluster_resources().get("GPU", 0))
        cpus = int(ray.cluster_resources().get("CPU", 1))
        # GPU actors when the cluster has GPUs (unless --device cpu); CPU actors otherwise
        if device.startswith("cuda") and gpus == 0:
            raise ValueError("device 'cuda' requested but the Ray cluster has no GPU; use --device cpu or auto")
        use_gpu = gpus > 0 and device != "cpu"
        actor_device = "cuda" if use_gpu else "cpu"
        pool = workers or max(1, min(len(todo) or 1, int(gpus) if use_gpu else cpus))
        t0 = time.perf_counter()
        if todo:
            blocks = ray.data.from_items([{"block": b} for b in todo], override_num_blocks=min(len(todo), pool * 4))
            ds = blocks.map_batches(
                BlockScorer,
                fn_constructor_kwargs={"artifact": str(Path(artifact).resolve()), "k": k, "out_dir": str(out.resolve()),
                                       "block_users": block_users,
                                       "device": actor_device},
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=pool),
                num_gpus=1 if use_gpu else 0,
                num_cpus=1,
                batch_format="numpy",
            )
            rows = list(ds.iter_rows())  # one small row per block
            scored = int(sum(row["users"] for row in rows))
            peak_mib = max(int(row["peak_rss_kib"]) for row in rows) / 1024
            busy = sum(float(row["seconds"]) for row in rows)
            per_actor = scored / busy if busy > 0 else 0.0
        else:
            scored, peak_mib, per_actor = 0, 0.0, 0.0
        seconds = time.perf_counter() - t0
    finally:
        if started_here:
            ray.shutdown()
    return RayScoringSummary(
        users=scored, blocks_total=n_blocks, blocks_scored=len(todo), blocks_skipped=n_blocks - len(todo),
        seconds=round(seconds, 3), users_per_second=round(scored / seconds, 1) if seconds > 0 else 0.0,
        workers=pool, out_dir=str(out), actor_peak_rss_mib=round(peak_mib, 1),
        users_per_second_per_actor=round(per_actor, 1),
    )
