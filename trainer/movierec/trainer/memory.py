"""Memory up front: what a training stage will need, what the machine has, and a one-line refusal.

Before a stage allocates its large arrays, `check(stage, need, option)` compares the stage's estimate with the
memory available (the smaller of /proc/meminfo's MemAvailable and the cgroup limit minus its usage; psutil
when /proc is not there) and raises `MemoryBudgetError` -- one line naming the stage, the memory it needs, what
is available and the option that reduces it -- instead of letting the allocator fail with a traceback or the
kernel kill the process. The CLI prints it as one line with exit status 2.

`MOVIEREC_MEMORY_LIMIT` (bytes, or with a K/M/G/T suffix, e.g. "16G") caps what counts as available: a budget
for the run (`movierec train --memory-limit 16G` sets it), and the fake limit the tests use.

The estimates (`stage_bytes`) count the large arrays each family allocates (dense matrices, weights with their
gradients and optimizer state, Gram matrices and their inverses), not Python overhead; they are meant to be
right within a small factor, and a stage is refused only when it needs more than is available.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from movierec.trainer.config import ModelConfig, TrainConfig

ENV_LIMIT = "MOVIEREC_MEMORY_LIMIT"
GIB = 1024**3
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class MemoryBudgetError(ValueError):
    """A stage would not fit in the memory available; the message is one line with what to change."""


def parse_size(text: str) -> int:
    """'16G', '512M', '1.5g', '1000000' -> bytes (binary units)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if m is None:
        raise ValueError(f"not a memory size: {text!r} (e.g. 16G, 512M or a number of bytes)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def format_size(n: float) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB / 10 else f"{n / 1024**2:.0f} MiB"


def _meminfo_available() -> int | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    m = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) * 1024 if m else None


def _read_int(path: str) -> int | None:
    try:
        raw = Path(path).read_text().strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None  # cgroup v2 writes "max" for no limit


def _cgroup_available() -> int | None:
    """Limit minus usage of this process's cgroup (v2, then v1); None without a limit."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit = _read_int(limit_file)
        if limit is not None and limit < 2**60:  # v1 writes a huge number for no limit
            return max(limit - (_read_int(usage_file) or 0), 0)
    return None


def _rss() -> int:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) * 1024 if m else 0


def peak_rss() -> int:
    """This process's peak RSS since it started or since the last `reset_peak` (VmHWM; 0 off Linux)."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    m = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) * 1024 if m else 0


def reset_peak() -> None:
    """Start a new peak-RSS window (Linux: "5" into /proc/self/clear_refs); a no-op where not allowed."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def available_bytes() -> int:
    """Memory this process can still allocate: min(MemAvailable, cgroup limit - usage, the env budget - RSS)."""
    candidates: list[int] = []
    meminfo = _meminfo_available()
    if meminfo is None:
        try:
            import psutil

            meminfo = int(psutil.virtual_memory().available)
        except ImportError:
            meminfo = None
    if meminfo is not None:
        candidates.append(meminfo)
    cgroup = _cgroup_available()
    if cgroup is not None:
        candidates.append(cgroup)
    budget = os.environ.get(ENV_LIMIT)
    if budget:
        candidates.append(max(parse_size(budget) - _rss(), 0))
    return min(candidates) if candidates else 2**62


def check(stage: str, need: int, option: str, have: int | None = None) -> None:
    """Raise `MemoryBudgetError` when `stage` needs more than is available."""
    have = available_bytes() if have is None else have
    if need > have:
        raise MemoryBudgetError(
            f"not enough memory for {stage}: it needs about {format_size(need)}, {format_size(have)} is available; "
            f"{option}"
        )


@dataclass(frozen=True)
class Shape:
    """The training data's size: users, movies, ratings."""

    n_users: int
    n_items: int
    nnz: int


F32, F64, I64 = 4, 8, 8


def stage_bytes(model: ModelConfig, train: TrainConfig, shape: Shape) -> tuple[int, str]:
    """(bytes the fit of `model` needs at its peak, the option that reduces it)."""
    kind = model.kind
    u, n, nnz = shape.n_users, shape.n_items, shape.nnz
    data = nnz * (F32 + I64) * 4  # train/valid/full copies of the sparse matrix and their transposes
    extra = model.extra
    if kind == "ease":
        from movierec.core.models.ease import EASESettings

        s = EASESettings.parse(extra, "ease")
        k = min(n, s.max_items) if s.max_items > 0 else n
        # cached X'X and X'Y, a copy, the inverse, C (float64) and B; a column chunk; the scores of a batch;
        # with several like thresholds, the inverse of every l2 candidate is cached too
        cached_inverses = len(s.l2_grid) if len(s.like_threshold_grid) > 1 else 0
        need = (6 + cached_inverses) * k * k * F64 + _gram_bytes(k, nnz) + 1024 * n * F32 * 3
        return data + need, "lower the ranking model's max_items (--config '{\"ranking_model\": {\"extra\": {\"max_items\": N}}}')"
    if kind == "knn-baseline":
        from movierec.core.models.knn_baseline import KNNBaselineSettings
        from movierec.trainer.fit.closed_form import KNN_DENSE_CELLS

        ks = KNNBaselineSettings.parse(extra, "knn-baseline")
        option = "lower the kNN-baseline member's max_items or train a preset without it (e.g. --preset iautorec or bpmf)"
        if ks.max_items > 0 and (n > ks.max_items or u * n > KNN_DENSE_CELLS):
            k = min(n, ks.max_items)  # sparse products over k movies: ~7 k x k float64 matrices and a column chunk
            return data + 7 * k * k * F64 + _gram_bytes(k, nnz), option
        # dense residual and mask matrices (users x movies, float64) and ~7 movies x movies float64 matrices
        return data + 2 * u * n * F64 + 7 * n * n * F64, option
    train = train.for_shape(u, n)
    if kind == "iautorec":
        d = model.hidden[0] if model.hidden else 500
        params = 2 * u * d * F32 * 4  # weights, gradients, two optimizer moments
        if _full_batch(train, n):
            # full batch: the item x user input, output, error and gradient, and the hidden layer
            return data + params + 4 * n * u * F32 + 3 * n * d * F32, "train it in mini-batches (a smaller --batch-size)"
        rows = min(train.batch_size, n)
        return data + params + 4 * rows * u * F32 + 1024 * u * F32 * 2, "lower --batch-size"
    if kind == "ensemble":
        best, option = 0, ""
        for _name, mcfg, mtrain in _members(model):
            need, opt = stage_bytes(mcfg, mtrain, shape)
            if need > best:
                best, option = need, opt
        return best, option
    if kind in ("hybrid-rating", "hybrid-ranking"):
        dim = int(extra.get("dim", 64))
        nf = int(extra.get("n_item_features", 0))
        params = (2 * n * dim + nf * dim * 3) * F32 * 4
        # a dense batch and its corruption, the cold validation users' dense rows in batches
        return data + params + 10 * train.batch_size * n * F32 + 3 * 1024 * n * F32, "lower --batch-size"
    if kind == "bpmf":
        dim = int(extra.get("dim", 10))
        samples = int(extra.get("samples", 100))
        # the implicit part: A'A from a dense users x movies product, and its eigendecomposition (movies^2, x3)
        implicit = (u * n + 3 * n * n) * F64 if extra.get("implicit", False) else 0
        return data + samples * (n * dim + dim * dim + dim) * F32 + nnz * F64 * 6 + (u + n) * dim * dim * F64 * 3 \
            + implicit, "lower the number of kept samples, or train BPMF without its implicit part"  # fmt: skip
    # user autoencoders, Mult-VAE / Mult-DAE, popularity: the weights with their optimizer state and a batch
    widths = [n, *model.hidden, n]
    params = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True)) * F32 * 4
    batch = max(train.batch_size, 1024) * n * F32 * 4
    return data + params + batch, "lower --batch-size"


def _gram_bytes(k: int, nnz: int) -> int:
    """`gram_columns`' working memory: A' and B as sparse tensors (int64 indices, float64 values), and a block
    of rows of the sparse product with its intermediates."""
    from movierec.trainer.fit.closed_form import GRAM_ROWS

    return 2 * nnz * (F64 + I64) + 3 * GRAM_ROWS * k * (F64 + I64)


def _full_batch(train: TrainConfig, n_rows: int) -> bool:
    return train.batch_size >= n_rows


def _members(model: ModelConfig) -> list[tuple[str, ModelConfig, TrainConfig]]:
    out = []
    for i, m in enumerate(model.extra.get("members", []), start=1):
        mcfg = ModelConfig.from_dict({**m["model"], "n_items": model.n_items})
        out.append((f"member {i} ({mcfg.kind})", mcfg, TrainConfig.from_dict(m["train"])))
    return out


@dataclass(frozen=True)
class Stage:
    name: str
    need: int
    option: str
    role: str = ""


def plan(roles: dict[str, tuple[ModelConfig, TrainConfig]], shape: Shape) -> list[Stage]:
    """Every training stage of a preset with its memory estimate, in training order (ensemble members one by
    one, so a member that cannot fit is named before the members before it spend their time)."""
    stages = []
    for role, (model, train) in roles.items():
        if model.kind == "ensemble":
            for name, mcfg, mtrain in _members(model):
                need, option = stage_bytes(mcfg, mtrain, shape)
                stages.append(Stage(f"the {role} model's {name}", need, option, role))
        else:
            need, option = stage_bytes(model, train, shape)
            stages.append(Stage(f"the {role} model ({model.kind})", need, option, role))
    return stages


def check_plan(stages: list[Stage]) -> None:
    """Refuse the run up front when any stage would not fit (the first such stage is named)."""
    have = available_bytes()
    for stage in stages:
        check(stage.name, stage.need, stage.option, have)
