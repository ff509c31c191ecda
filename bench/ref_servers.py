"""Reference servers for the online benchmark, same .proto as movierec serve:

naive  the same model, one forward pass per Recommend request, in the handler: no batching, no thread;
       the same torch thread count as `movierec serve` (--torch-threads, default 1)
echo   no model: Recommend answers a canned list of the same size (k movie ids + scores) for the user id
       asked; what Python grpc.aio itself allows on this machine (the ceiling)
echo-batched  echo's answers, each after a model step that does nothing: movierec's DynamicBatcher with
       `movierec serve`'s defaults (window, batch and queue sizes; steps in the model thread). What the
       batching structure costs on its own: between it and `movierec serve` is movierec's own work per
       call (validation, the model step, the reply)

python -m bench.ref_servers naive --artifact A [--device cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import grpc
import numpy as np

from movierec.v1 import recommender_service_pb2 as pb
from movierec.v1 import recommender_service_pb2_grpc as pb_grpc
from movierec.v1 import types_pb2 as types


class Naive(pb_grpc.RecommenderServiceServicer):
    def __init__(self, artifact: Path, device: str, torch_threads: int = 1) -> None:
        from movierec.core.device import configure_threads
        from movierec.core.scoring import Scorer

        # The same torch threads as `movierec serve` (default 1), so the comparison isolates batching: with
        # torch's default (one OpenMP thread per core) a lone forward pass on a shared 2-core machine is
        # several times slower, which would flatter movierec.
        configure_threads(torch_threads)
        self.scorer = Scorer.load(artifact, device=device)
        self.scorer.warmup()

    async def Recommend(
        self, request: pb.RecommendRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecommendResponse:
        s = self.scorer
        ids = np.asarray(request.user_ids, dtype=np.int64)
        idx = s.users.to_index(ids)
        if (idx < 0).any():
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown user")
        items, scores = s.recommend_users(idx, request.k)  # one forward pass per request
        movie_ids = s.items.raw[np.maximum(items, 0)].tolist()
        lists = [types.RecommendationList(user_id=int(u), movie_ids=m, scores=sc)
                 for u, m, sc in zip(ids.tolist(), movie_ids, scores.tolist(), strict=True)]  # fmt: skip
        return pb.RecommendResponse(model_version=s.info.version, recommendations=lists)


class Echo(pb_grpc.RecommenderServiceServicer):
    def __init__(self, k: int = 10) -> None:
        self.movies = list(range(1001, 1001 + k))
        self.scores = [float(x) for x in np.linspace(5, 4, k, dtype=np.float32)]

    async def Recommend(
        self, request: pb.RecommendRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecommendResponse:
        return self.answer(request)

    def answer(self, request: pb.RecommendRequest) -> pb.RecommendResponse:
        lists = [types.RecommendationList(user_id=u, movie_ids=self.movies[: request.k], scores=self.scores[: request.k])
                 for u in request.user_ids]  # fmt: skip
        return pb.RecommendResponse(model_version="echo", recommendations=lists)


class BatchedEcho(Echo):
    """Echo's answers, each after a model step that does nothing, batched as `movierec serve` batches."""

    def __init__(self) -> None:
        from movierec.server.batcher import DynamicBatcher
        from movierec.server.config import ServerSettings
        from movierec.server.engine import INLINE_MAX_S

        super().__init__()
        s = ServerSettings()
        self.batcher: DynamicBatcher[int, None] = DynamicBatcher(
            lambda jobs: [None] * len(jobs),
            max_batch_size=s.max_batch_size,
            max_delay_s=s.max_delay_ms / 1000.0,
            max_queue_size=s.max_queue_size,
            rows_of=lambda rows: rows,
            inline_max_s=INLINE_MAX_S,  # as for a CPU model: a lone caller's step may run on the loop
        )

    async def Recommend(
        self, request: pb.RecommendRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecommendResponse:
        await self.batcher.submit(len(request.user_ids))
        return self.answer(request)


async def serve(kind: str, artifact: Path | None, device: str, torch_threads: int = 1, port: int = 0,
                workers: int = 1) -> None:  # fmt: skip
    servicer: pb_grpc.RecommenderServiceServicer
    if kind == "naive" and artifact:
        servicer = Naive(artifact, device, torch_threads)
    else:
        servicer = BatchedEcho() if kind == "echo-batched" else Echo()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1 if workers > 1 else 0)])
    pb_grpc.add_RecommenderServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    if isinstance(servicer, BatchedEcho):
        servicer.batcher.start()
    if workers == 1:
        print(f"{kind} serving on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    await server.wait_for_termination()


def serve_workers(kind: str, artifact: Path | None, device: str, torch_threads: int, workers: int) -> None:
    """`workers` processes on one port (SO_REUSEPORT, forked before any gRPC state), as `serve --workers`."""
    import os
    import signal
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            asyncio.run(serve(kind, artifact, device, torch_threads, port, workers))
            os._exit(0)
        pids.append(pid)

    def stop(*_: object) -> None:
        for p in pids:
            os.kill(p, signal.SIGTERM)
        for p in pids:
            os.waitpid(p, 0)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    import time

    time.sleep(1.0)  # let every worker bind (a benchmark helper: the first calls are warm-up anyway)
    print(f"{kind} serving on 127.0.0.1:{port} ({workers} workers)", file=sys.stderr, flush=True)
    while True:
        signal.pause()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=("naive", "echo", "echo-batched"))
    p.add_argument("--artifact", type=Path)
    p.add_argument("--device", default="cpu")
    p.add_argument("--torch-threads", type=int, default=1, help="as `movierec serve --torch-threads` (default 1)")
    p.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    p.add_argument("--event-loop", default="asyncio", choices=("asyncio", "uvloop"),
                   help="the event loop (default asyncio: bare grpc.aio; `movierec serve` runs uvloop when installed)")
    a = p.parse_args()
    if a.workers > 1:
        if a.event_loop != "asyncio":
            p.error("--event-loop uvloop is for one process")
        serve_workers(a.kind, a.artifact, a.device, a.torch_threads, a.workers)
    else:
        from movierec.server import event_loop

        event_loop.run(serve(a.kind, a.artifact, a.device, a.torch_threads), a.event_loop)


if __name__ == "__main__":
    main()
