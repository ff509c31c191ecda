"""Bulk scoring on the client: ScoreAll chunks as numpy, and a resumable Parquet/CSV writer.

`Client.iter_score_all(...)` yields `BulkChunk`s (numpy arrays decoded with `np.frombuffer`, no loop per
user); `Client.score_all(k, out=...)` writes them to Parquet (one row group per chunk), CSV or TSV, long
format `user_id, rank, movie_id, score` (int64, int32, int64, float32; rank from 1; padding dropped), with a
progress bar. Ray scoring and `movierec recommend --all` write the same columns (`SCHEMA`, equal to
`movierec.core.recommendations.SCHEMA`: the SDK imports nothing but the stubs, so it declares them itself).

Crash consistency and resume. While a run is in progress the output lives next to `out`:
  - `<out>.progress.json`: the run (k, shard/range), chunks kept, bytes kept (CSV) and the cursor after the
    last kept chunk; replaced atomically (temp file + fsync + rename) only after that chunk is durable.
  - Parquet: `<out>.parts/part-NNNNNN.parquet`, one file per chunk, each written to a temp name, fsynced and
    renamed; at the end they are streamed into `out` (one row group per chunk) and removed.
  - CSV/TSV: `<out>.partial`, appended and fsynced per chunk; renamed to `out` at the end.
A crash at any point leaves the progress file describing a prefix of complete chunks; `resume=True` drops
whatever was written after it (a part file with no progress entry, a CSV tail past the recorded size) and
asks the server to continue from the cursor, so no user is lost or duplicated.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from movierec.v1 import bulk_pb2 as bulk

ShardLike = tuple[int, int] | str | None
RangeLike = tuple[int, int] | None
PROGRESS_FORMAT = "movierec-score-all-progress"
FORMATS = ("parquet", "csv", "tsv")
# The bulk output schema of every writer (tests/unit/test_bulk_schema.py checks it equals the core's).
SCHEMA = pa.schema(
    [("user_id", pa.int64()), ("rank", pa.int32()), ("movie_id", pa.int64()), ("score", pa.float32())]
)


@dataclass(frozen=True)
class BulkChunk:
    """Top-k lists of consecutive users. Row r: `movie_ids[r]`/`scores[r]`, best first; -1/-inf = padding."""

    user_ids: npt.NDArray[np.int64]  # [n]
    movie_ids: npt.NDArray[np.int64]  # [n, k]
    scores: npt.NDArray[np.float32]  # [n, k]
    cursor: bytes  # serialized ScoreAllCursor: pass as `resume_from=` to continue after this chunk
    users_done: int  # users of the run scored so far, this chunk included
    users_total: int  # users in the run
    model_version: str

    def __len__(self) -> int:
        return int(self.user_ids.shape[0])

    def columns(self) -> dict[str, np.ndarray]:
        """Long format (one row per recommendation, padding dropped), as numpy columns."""
        n, k = self.movie_ids.shape
        valid = self.movie_ids >= 0
        return {
            "user_id": np.broadcast_to(self.user_ids[:, None], (n, k))[valid],
            "rank": np.broadcast_to(np.arange(1, k + 1, dtype=np.int32), (n, k))[valid],
            "movie_id": self.movie_ids[valid],
            "score": self.scores[valid],
        }

    def to_arrow(self) -> pa.Table:
        cols = self.columns()
        return pa.Table.from_arrays([pa.array(cols[f.name], f.type) for f in SCHEMA], schema=SCHEMA)

    def to_pandas(self) -> pd.DataFrame:
        """Long format: user_id, rank (from 1), movie_id, score."""
        return pd.DataFrame(self.columns())


@dataclass(frozen=True)
class ScoreAllResult:
    """What `score_all` did: `users` scored in this call (after `resumed_users` from an earlier one)."""

    out: Path
    users: int
    resumed_users: int
    users_total: int
    rows: int
    chunks: int
    seconds: float
    model_version: str

    @property
    def users_per_second(self) -> float:
        return self.users / self.seconds if self.seconds > 0 else 0.0


def parse_shard(shard: ShardLike) -> tuple[int, int] | None:
    """`(i, n)` or `"i/n"` -> (i, n); None -> None."""
    if shard is None:
        return None
    if isinstance(shard, str):
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise ValueError(f"shard {shard!r}: expected 'i/n' with integers, e.g. '0/4'") from None
        return i, n
    i, n = shard
    return int(i), int(n)


def score_all_request(
    k: int, shard: ShardLike, user_range: RangeLike, resume_from: bytes | None, chunk_users: int
) -> bulk.ScoreAllRequest:
    req = bulk.ScoreAllRequest(k=k, chunk_users=chunk_users)
    spec = parse_shard(shard)
    if spec is not None and user_range is not None:
        raise ValueError("give shard or user_range, not both")
    if spec is not None:
        req.shard.index, req.shard.count = spec
    if user_range is not None:
        req.user_range.start_user_id, req.user_range.end_user_id = (int(x) for x in user_range)
    if resume_from:
        req.resume_from.ParseFromString(resume_from)
    return req


def decode_chunk(msg: bulk.ScoreAllChunk) -> BulkChunk:
    n, k = msg.n_users, msg.k
    return BulkChunk(
        user_ids=np.frombuffer(msg.user_ids, dtype="<i8").astype(np.int64, copy=False),
        movie_ids=np.frombuffer(msg.movie_ids, dtype="<i8").astype(np.int64, copy=False).reshape(n, k),
        scores=np.frombuffer(msg.scores, dtype="<f4").astype(np.float32, copy=False).reshape(n, k),
        cursor=msg.cursor.SerializeToString(),
        users_done=int(msg.users_done),
        users_total=int(msg.users_total),
        model_version=msg.model_version,
    )


def _fsync_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fmt(out: Path, fmt: str | None) -> str:
    if fmt is None:
        fmt = {".csv": "csv", ".tsv": "tsv"}.get(out.suffix.lower(), "parquet")
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return fmt


def _text_options(fmt: str, header: bool) -> Any:
    """pyarrow CSV options of the text formats (csv: comma, tsv: tab), as `movierec recommend --all` writes."""
    import pyarrow.csv as pacsv

    return pacsv.WriteOptions(
        include_header=header, delimiter="\t" if fmt == "tsv" else ",", quoting_style="none"
    )


class BulkWriter:
    """Writes chunks to `out` durably, one complete chunk at a time; see the module docstring."""

    def __init__(self, out: str | Path, run: dict[str, Any], *, fmt: str | None = None, resume: bool = False):
        self.out = Path(out)
        self.fmt = _fmt(self.out, fmt)
        self.run = run
        self.progress_path = self.out.with_name(self.out.name + ".progress.json")
        self.parts = self.out.with_name(self.out.name + ".parts")
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.chunks = self.rows = self.csv_bytes = self.users_done = self.users_total = 0
        self.cursor: bytes | None = None
        self.model_version = ""
        self.complete = False
        self.resumed_users = 0
        self._csv: io.BufferedWriter | None = None
        self.out.parent.mkdir(parents=True, exist_ok=True)
        state = self._read_state() if resume else None
        if state is None:
            if resume and self.out.exists():
                self.complete = True  # a finished run: nothing to do
                return
            self._clear()
        else:
            if state.get("run") != run:
                raise ValueError(
                    f"{self.progress_path}: the interrupted run was {state.get('run')}, this one is {run}; "
                    "resume with the same k and shard/range, or start over without resume"
                )
            self.chunks, self.rows = int(state["chunks"]), int(state["rows"])
            self.csv_bytes = int(state["csv_bytes"])
            self.users_done, self.users_total = int(state["users_done"]), int(state["users_total"])
            self.cursor = base64.b64decode(state["cursor"]) if state["cursor"] else None
            self.model_version = str(state["model_version"])
            self._drop_uncommitted()
            self.resumed_users = self.users_done

    # -- state ---------------------------------------------------------------------------------------------
    def _read_state(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.progress_path.read_text())
        except FileNotFoundError:
            return None
        if state.get("format") != PROGRESS_FORMAT:
            raise ValueError(f"{self.progress_path}: not a movierec score-all progress file")
        return dict(state)

    def _save_state(self) -> None:
        state = {
            "format": PROGRESS_FORMAT,
            "run": self.run,
            "chunks": self.chunks,
            "rows": self.rows,
            "csv_bytes": self.csv_bytes,
            "users_done": self.users_done,
            "users_total": self.users_total,
            "model_version": self.model_version,
            "cursor": base64.b64encode(self.cursor).decode() if self.cursor else "",
        }
        _fsync_write(self.progress_path, json.dumps(state).encode())

    def _clear(self) -> None:
        shutil.rmtree(self.parts, ignore_errors=True)
        self.partial.unlink(missing_ok=True)
        self.progress_path.unlink(missing_ok=True)

    def _part(self, i: int) -> Path:
        return self.parts / f"part-{i:06d}.parquet"

    def _drop_uncommitted(self) -> None:
        """Remove what a crash left after the last recorded chunk."""
        if self.fmt == "parquet":
            if self.parts.is_dir():
                for p in self.parts.iterdir():
                    stem = p.name.removeprefix("part-").removesuffix(".parquet")
                    if not (stem.isdigit() and int(stem) < self.chunks and p.name.startswith("part-")):
                        p.unlink()
        elif self.partial.exists():
            with self.partial.open("r+b") as f:
                f.truncate(self.csv_bytes)

    # -- writing -------------------------------------------------------------------------------------------
    def write(self, chunk: BulkChunk) -> None:
        if self.model_version and chunk.model_version != self.model_version:
            raise ValueError(
                f"chunk from model {chunk.model_version}, the file holds model {self.model_version}"
            )
        table = chunk.to_arrow()
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            self.parts.mkdir(exist_ok=True)
            part = self._part(self.chunks)
            tmp = part.with_name(f".{part.name}.tmp")
            with tmp.open("wb") as f:
                pq.write_table(table, f, row_group_size=max(table.num_rows, 1))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, part)
        else:
            import pyarrow.csv as pacsv

            buf = io.BytesIO()
            pacsv.write_csv(table, buf, _text_options(self.fmt, header=self.csv_bytes == 0))
            if self._csv is None:
                self._csv = self.partial.open("ab")
            self._csv.write(buf.getvalue())
            self._csv.flush()
            os.fsync(self._csv.fileno())
            self.csv_bytes += buf.tell()
        self.chunks += 1
        self.rows += table.num_rows
        self.users_done, self.users_total = chunk.users_done, chunk.users_total
        self.cursor, self.model_version = chunk.cursor, chunk.model_version
        self._save_state()

    def finish(self) -> None:
        """Assemble the final file atomically and remove the in-progress state."""
        if self.complete:
            return
        meta = {"movierec.model_version": self.model_version, "movierec.run": json.dumps(self.run)}
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            tmp = self.out.with_name(f".{self.out.name}.tmp")
            schema = SCHEMA.with_metadata(meta)
            with pq.ParquetWriter(tmp, schema) as w:
                for i in range(self.chunks):
                    t = pq.read_table(self._part(i))
                    w.write_table(t.replace_schema_metadata(meta), row_group_size=max(t.num_rows, 1))
            os.replace(tmp, self.out)
        else:
            if self._csv is not None:
                self._csv.close()
                self._csv = None
            if not self.partial.exists():  # no chunk at all (an empty shard): header only
                buf = io.BytesIO()
                import pyarrow.csv as pacsv

                pacsv.write_csv(SCHEMA.empty_table(), buf, _text_options(self.fmt, header=True))
                _fsync_write(self.partial, buf.getvalue())
            os.replace(self.partial, self.out)
        self._clear()
        self.complete = True

    def close(self) -> None:
        if self._csv is not None:
            self._csv.close()
            self._csv = None


def run_key(k: int, shard: ShardLike, user_range: RangeLike) -> dict[str, Any]:
    spec = parse_shard(shard)
    return {
        "k": int(k),
        "shard": list(spec) if spec else None,
        "user_range": [int(x) for x in user_range] if user_range else None,
    }


def write_chunks(chunks: Iterator[BulkChunk], writer: BulkWriter, *, progress: bool) -> ScoreAllResult:
    """Drain `chunks` into `writer` with a progress bar (users done / total, users per second)."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    bar: Any = None
    try:
        for chunk in chunks:
            writer.write(chunk)
            if bar is None:
                bar = tqdm(
                    total=chunk.users_total,
                    initial=writer.resumed_users,
                    unit="user",
                    unit_scale=True,
                    desc="score-all",
                    disable=not progress,
                    file=sys.stderr,
                )
            bar.update(chunk.users_done - bar.n)
        writer.finish()
    finally:
        writer.close()
        if bar is not None:
            bar.close()
    return ScoreAllResult(
        out=writer.out,
        users=writer.users_done - writer.resumed_users,
        resumed_users=writer.resumed_users,
        users_total=writer.users_total,
        rows=writer.rows,
        chunks=writer.chunks,
        seconds=time.perf_counter() - t0,
        model_version=writer.model_version,
    )


def iter_call(stub: Any, request: bulk.ScoreAllRequest, timeout: float | None) -> Iterator[BulkChunk]:
    """Blocking ScoreAll: decode chunks as the caller pulls them (gRPC flow control paces the server)."""
    from movierec.client._errors import translate_errors

    call = stub.ScoreAll(request, timeout=timeout)
    try:
        with translate_errors():
            for msg in call:
                yield decode_chunk(msg)
    finally:
        call.cancel()


async def aiter_call(
    stub: Any, request: bulk.ScoreAllRequest, timeout: float | None
) -> AsyncIterator[BulkChunk]:
    """asyncio ScoreAll (grpc.aio stub)."""
    from movierec.client._errors import translate_errors

    call = stub.ScoreAll(request, timeout=timeout)
    try:
        with translate_errors():
            async for msg in call:
                yield decode_chunk(msg)
    finally:
        call.cancel()


def score_all_sync(
    stub: Any,
    timeout: float | None,
    k: int,
    out: str | Path,
    *,
    shard: ShardLike = None,
    user_range: RangeLike = None,
    resume: bool = False,
    fmt: str | None = None,
    chunk_users: int = 0,
    progress: bool = True,
) -> ScoreAllResult:
    writer = BulkWriter(out, run_key(k, shard, user_range), fmt=fmt, resume=resume)
    chunks: Iterator[BulkChunk] = iter(())
    if not writer.complete:
        chunks = iter_call(stub, score_all_request(k, shard, user_range, writer.cursor, chunk_users), timeout)
    return write_chunks(chunks, writer, progress=progress)


async def score_all_async(
    stub: Any,
    timeout: float | None,
    k: int,
    out: str | Path,
    *,
    shard: ShardLike = None,
    user_range: RangeLike = None,
    resume: bool = False,
    fmt: str | None = None,
    chunk_users: int = 0,
) -> ScoreAllResult:
    """As score_all_sync (no progress bar); file writes run in a worker thread so the event loop stays free."""
    import asyncio

    writer = BulkWriter(out, run_key(k, shard, user_range), fmt=fmt, resume=resume)
    if writer.complete:
        return write_chunks(iter(()), writer, progress=False)
    req = score_all_request(k, shard, user_range, writer.cursor, chunk_users)
    t0 = time.perf_counter()
    try:
        async for chunk in aiter_call(stub, req, timeout):
            await asyncio.to_thread(writer.write, chunk)
        await asyncio.to_thread(writer.finish)
    finally:
        writer.close()
    return ScoreAllResult(
        writer.out, writer.users_done - writer.resumed_users, writer.resumed_users, writer.users_total,
        writer.rows, writer.chunks, time.perf_counter() - t0, writer.model_version,
    )  # fmt: skip


# Stream failures that another server (or the same one, restarted) can recover from by resuming the shard.
RESUMABLE_CODES = ("UNAVAILABLE", "CANCELLED", "ABORTED")


def _join_parts(parts: list[Path], out: Path, fmt: str) -> None:
    """Concatenate finished shard files into `out` atomically (row groups copied one at a time)."""
    tmp = out.with_name(f".{out.name}.tmp")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        schema = pq.read_schema(parts[0])
        with pq.ParquetWriter(tmp, schema) as w:
            for part in parts:
                f = pq.ParquetFile(part)
                for g in range(f.num_row_groups):
                    w.write_table(f.read_row_group(g).replace_schema_metadata(schema.metadata))
    else:
        with tmp.open("wb") as dst:
            for i, part in enumerate(parts):
                with part.open("rb") as src:
                    header = src.readline()
                    if i == 0:
                        dst.write(header)
                    shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
    os.replace(tmp, out)


def spread_score_all(
    client: Any,
    k: int,
    out: str | Path,
    *,
    shards: int,
    fmt: str | None = None,
    chunk_users: int = 0,
    progress: bool = True,
    attempts: int = 6,
    connections: Sequence[Any] = (),
) -> ScoreAllResult:
    """Score all users as `shards` concurrent ScoreAll streams on `client` (whose channel balances over
    several servers with round_robin). A shard whose stream breaks (server stopped, restarted) resumes from
    its last complete chunk on the next attempt, so no user is lost or duplicated; then the shards are
    joined into `out` in shard order (= user order).

    `connections`: clients on separate connections to one `serve --workers N` server (the kernel spreads
    connections, not calls, over the workers). Then one stream runs per connection, each taking the next
    shard when its last one is done, so a connection that landed on a less busy worker does more shards; use
    more shards than connections (e.g. 4x)."""
    if connections:
        return _pooled_score_all(list(connections), k, out, shards=shards, fmt=fmt, chunk_users=chunk_users,
                                 progress=progress, attempts=attempts)  # fmt: skip
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    out = Path(out)
    kind = _fmt(out, fmt)
    parts = [out.with_name(f"{out.name}.shard-{i}-of-{shards}") for i in range(shards)]
    t0 = time.perf_counter()

    def one(i: int) -> ScoreAllResult:
        return _score_shard(client, k, parts[i], i, shards, kind, chunk_users, attempts)

    with ThreadPoolExecutor(max_workers=shards) as pool, tqdm(
        total=shards, unit="shard", desc="score-all", disable=not progress, file=sys.stderr
    ) as bar:
        futures = [pool.submit(one, i) for i in range(shards)]
        results = []
        for f in futures:
            results.append(f.result())
            bar.update(1)
    return _joined(results, parts, out, kind, t0)


def _score_shard(client: Any, k: int, part: Path, i: int, shards: int, kind: str, chunk_users: int,
                 attempts: int) -> ScoreAllResult:  # fmt: skip
    from movierec.client._errors import MovieRecError

    for attempt in range(attempts):
        try:
            return client.score_all(k, out=part, shard=(i, shards), resume=True, format=kind,
                                    chunk_users=chunk_users, progress=False)  # fmt: skip
        except MovieRecError as err:
            if err.code.name not in RESUMABLE_CODES or attempt == attempts - 1:
                raise
            time.sleep(min(2.0, 0.1 * 2**attempt))
    raise AssertionError("unreachable")


def _pooled_score_all(clients: list[Any], k: int, out: str | Path, *, shards: int, fmt: str | None,
                      chunk_users: int, progress: bool, attempts: int) -> ScoreAllResult:  # fmt: skip
    """spread_score_all over separate connections: one thread per connection pulls shard numbers in order."""
    import queue
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    out = Path(out)
    kind = _fmt(out, fmt)
    parts = [out.with_name(f"{out.name}.shard-{i}-of-{shards}") for i in range(shards)]
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(shards):
        todo.put(i)
    results: dict[int, ScoreAllResult] = {}
    t0 = time.perf_counter()
    with tqdm(total=shards, unit="shard", desc="score-all", disable=not progress, file=sys.stderr) as bar:

        def drain(client: Any) -> None:
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                results[i] = _score_shard(client, k, parts[i], i, shards, kind, chunk_users, attempts)
                bar.update(1)

        with ThreadPoolExecutor(max_workers=len(clients)) as pool:
            for f in [pool.submit(drain, c) for c in clients]:
                f.result()
    return _joined([results[i] for i in range(shards)], parts, out, kind, t0)


def _joined(results: list[ScoreAllResult], parts: list[Path], out: Path, kind: str, t0: float) -> ScoreAllResult:
    versions = {r.model_version for r in results if r.model_version}
    if len(versions) > 1:
        raise ValueError(f"the servers answered with different models {sorted(versions)}; serve one version")
    _join_parts(parts, out, kind)
    for p in parts:
        p.unlink(missing_ok=True)
    return ScoreAllResult(
        out=out,
        users=sum(r.users + r.resumed_users for r in results),
        resumed_users=0,
        users_total=sum(r.users_total for r in results),
        rows=sum(r.rows for r in results),
        chunks=sum(r.chunks for r in results),
        seconds=time.perf_counter() - t0,
        model_version=versions.pop() if versions else "",
    )
