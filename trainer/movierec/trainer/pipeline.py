"""Training pipeline: ratings tables in, a verified artifact out. The CLI and the tests both call this."""

from __future__ import annotations

import dataclasses
import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from movierec.core.artifact import Artifact, RatingScale, data_fingerprint, save_artifact
from movierec.core.device import resolve_device
from movierec.core.features import FeatureSchema, Profiles
from movierec.core.models import member_needs_users, model_class, model_objective
from movierec.core.scoring import Catalog, Scorer
from movierec.core.sparse import Csr, IdMap
from movierec.trainer import distributed, memory
from movierec.trainer.checkpoint import remove_checkpoints
from movierec.trainer.config import ModelConfig, Preset, TrainConfig, model_for_shape
from movierec.trainer.data.splits import holdout_mask
from movierec.trainer.evaluate import evaluate
from movierec.trainer.fit.side import SideData
from movierec.trainer.plots import learning_curve_png
from movierec.trainer.role_jobs import (
    RoleJob,
    any_pair_fits,
    checkpoint_spec,
    fit_role,
    input_bytes,
    plan_parallel,
    role_need,
    run_role_jobs,
)
from movierec.trainer.train import FitResult

CATALOG_COLUMNS = ["item", "title", "year", "genres"]


@dataclass
class TrainOutcome:
    path: Path
    version: str
    metrics: dict[str, Any]
    fit: FitResult


def ratings_matrix(df: pd.DataFrame, users: IdMap, items: IdMap) -> Csr:
    u = users.to_index(df["user"].to_numpy(np.int64))
    i = items.to_index(df["item"].to_numpy(np.int64))
    keep = (u >= 0) & (i >= 0)
    return Csr.from_coo(u[keep], i[keep], df["rating"].to_numpy(np.float32)[keep], len(users), len(items))


def default_catalog(items: IdMap) -> pd.DataFrame:
    return pd.DataFrame({"item": items.raw, "title": [f"movie {i}" for i in items.raw], "year": 0, "genres": ""})


def resolve_configs(preset: Preset, overrides: dict[str, Any] | None) -> tuple[ModelConfig, TrainConfig]:
    """Apply {"model": {...}, "train": {...}} overrides (from --config or CLI flags) to a preset."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(OVERRIDE_KEYS))
    if unknown:
        raise ValueError(f"config keys must be among {', '.join(OVERRIDE_KEYS)}, got: {', '.join(unknown)}")
    model = ModelConfig.from_dict({**preset.model.to_dict(), **overrides.get("model", {})})
    train = TrainConfig.from_dict({**preset.train.to_dict(), **overrides.get("train", {})})
    return model, train


OVERRIDE_KEYS = ("model", "train", "ranking_model", "ranking_train")


def resolve_roles(preset: Preset, overrides: dict[str, Any] | None) -> dict[str, tuple[ModelConfig, TrainConfig]]:
    """The models a preset trains, by artifact role ("rating", "ranking"), with overrides applied.

    "model"/"train" overrides apply to the preset's main model, "ranking_model"/"ranking_train" to its
    companion ranking model. The "train" settings that are not about the optimization itself (device) apply
    to both.
    """
    overrides = overrides or {}
    main_model, main_train = resolve_configs(preset, overrides)
    roles: dict[str, tuple[ModelConfig, TrainConfig]] = {model_objective(main_model.kind): (main_model, main_train)}
    if preset.ranking_model is not None:
        rtrain = preset.ranking_train or TrainConfig()
        if "device" in overrides.get("train", {}):
            rtrain = dataclasses.replace(rtrain, device=overrides["train"]["device"])
        rmodel = ModelConfig.from_dict({**preset.ranking_model.to_dict(), **overrides.get("ranking_model", {})})
        rtrain = TrainConfig.from_dict({**rtrain.to_dict(), **overrides.get("ranking_train", {})})
        if "ranking" in roles:
            raise ValueError(f"preset {preset.name!r} has two ranking models")
        roles["ranking"] = (rmodel, rtrain)
    for role, smodel, strain in preset.side_models:
        if "device" in overrides.get("train", {}):
            strain = dataclasses.replace(strain, device=overrides["train"]["device"])
        roles[role] = (smodel, strain)
    return roles


def sample_users(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """The rows of at most `n` users of `df` (a seeded sample; all of them when n <= 0 or there are no more)."""
    ids = df["user"].unique()
    if n <= 0 or ids.size <= n:
        return df
    keep = np.random.default_rng(seed + 17).choice(np.sort(ids), n, replace=False)
    return df[df["user"].isin(keep)]


def time_order(df: pd.DataFrame, users: IdMap, items: IdMap) -> Csr | None:
    """Each rating's place in its user's history (1 = earliest; ties in file order), as a matrix with the
    pattern of `ratings_matrix(df, ...)`; None without timestamps."""
    if "timestamp" not in df or df["timestamp"].isna().all():
        return None
    when = df.groupby("user", sort=False)["timestamp"].rank(method="first").fillna(0).astype(np.float32)
    return ratings_matrix(df.assign(rating=when.to_numpy()), users, items)


def side_data(
    users: IdMap, items: IdMap, catalog: pd.DataFrame | None, profiles: pd.DataFrame | None
) -> tuple[FeatureSchema, SideData, pd.DataFrame | None]:
    """The feature vocabulary of the training data, its feature rows aligned with `users` / `items`, and
    the training users' profiles (None without a profiles table)."""
    known = None
    if profiles is not None:
        known = profiles.drop_duplicates("user").set_index("user").reindex(users.raw)
        known = known.rename_axis("user").reset_index()
    prof = Profiles.from_frame(known) if known is not None else Profiles.empty(len(users))
    movies = Catalog.from_frame(catalog, items).table() if catalog is not None else None
    schema = FeatureSchema.build(prof if known is not None else None, movies)
    item_rows = schema.encode_items(movies) if movies is not None else np.zeros((len(items), 0), np.float32)
    stored = None
    if known is not None:
        stored = prof.to_frame()
        stored.insert(0, "user", users.raw)
    segments = np.array([i for i, name in enumerate(schema.user_features) if name.startswith("segment:")], np.int64)
    return schema, SideData(schema.encode_users(prof), item_rows, segment_columns=segments), stored


RANKING_DESCRIPTIONS = {
    "rating": "predicted rating of the rating model (no ranking model in this artifact)",
    "ranking": "scores of the ranking model (model-ranking.pt); predicted ratings come from the rating model",
}


def run_training(
    train_df: pd.DataFrame,
    test_df: pd.DataFrame | None,
    catalog: pd.DataFrame | None,
    preset: Preset,
    out: str | Path,
    *,
    overrides: dict[str, Any] | None = None,
    dataset: str = "",
    progress: bool = True,
    k: int = 10,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    profiles: pd.DataFrame | None = None,
    jobs: int | None = 1,
) -> TrainOutcome:
    """Fit every model of `preset` on `train_df`, select epochs and hyperparameters on a validation split of
    it, evaluate on `test_df` (reporting only), save one artifact holding all of them.

    `profiles`: user profiles (columns user, age, gender, occupation, zip; any but user may be missing or
    blank), stored in the artifact for the users of `train_df` and used by the cold-start models.
    `checkpoint_dir`: checkpoint every epoch there (`<role>.pt`), removed once the artifact is written;
    `resume` continues from those checkpoints. `jobs`: how many roles train at once, each in its own process
    (None: one per `threads` CPUs on enough data, as memory allows; see `role_jobs`). Under torchrun (a process group is up) the models train
    data-parallel and only rank 0 evaluates and writes; the other ranks return an outcome with no version.
    """
    roles = resolve_roles(preset, overrides)
    world, rank = distributed.world_size(), distributed.rank()
    progress = progress and rank == 0
    if world > 1 and rank == 0:  # a note even with --quiet: where the ranks duplicate work
        single = distributed.replicated_stages(distributed.stage_kinds(m for m, _ in roles.values()))
        if single:
            print(f"data-parallel on {world} ranks; single-node on every rank (not trained by gradient steps): "
                  f"{', '.join(single)}", file=sys.stderr)
    users = IdMap.from_ids(train_df["user"])
    items = IdMap.from_ids(train_df["item"])
    full = ratings_matrix(train_df, users, items)
    # the models as trained at this size: tier settings of the models (e.g. BPMF's chain), members left out
    skipped: dict[str, list[str]] = {}
    for role, (model_cfg, train_cfg) in list(roles.items()):
        model_cfg, skipped[role] = model_for_shape(model_cfg, train_cfg, len(users), len(items))
        roles[role] = (model_cfg, train_cfg)
        if skipped[role] and rank == 0:  # a note even with --quiet: the blend is not the one the preset names
            print(f"{role} model: left out at {len(users):,} users x {len(items):,} movies (their training settings' "
                  f"size tier): {', '.join(skipped[role])}; the blend of the other members serves", file=sys.stderr)
    # memory up front: a stage that cannot fit is refused now, in one line, not after hours of other stages
    stages = memory.plan(roles, memory.Shape(len(users), len(items), full.nnz))
    memory.check_plan(stages)
    if any(model_class(m.kind).side_information for m, _ in roles.values()):
        schema, side, stored_profiles = side_data(users, items, catalog, profiles)
    else:  # no model reads side information: none recorded (the profiles are still kept)
        schema, side = FeatureSchema(), SideData(np.zeros((len(users), 0), np.float32), np.zeros((len(items), 0), np.float32))
        stored_profiles = side_data(users, items, None, profiles)[2]
    t_all = time.perf_counter()

    def role_job(role: str, progress: bool) -> RoleJob:
        """The role's fit with its own training / validation split (built when it is about to train)."""
        model_cfg, train_cfg = roles[role]
        extra = dict(model_cfg.extra)
        if member_needs_users(model_cfg):
            extra["n_users"] = len(users)
        uses_side = model_class(model_cfg.kind).side_information
        if uses_side:
            extra.update(n_user_features=schema.n_user_features, n_item_features=schema.n_item_features,
                         global_mean=float(full.values.mean()) if full.nnz else 0.0)  # fmt: skip
            if model_class(model_cfg.kind).objective == "ranking" and side.segment_columns is not None:
                extra["n_segments"] = int(side.segment_columns.size)
        model_cfg = dataclasses.replace(model_cfg, n_items=len(items), extra=extra)
        valid_mask = holdout_mask(train_df["user"].to_numpy(np.int64), train_cfg.valid_fraction, train_cfg.seed)
        fit_train = ratings_matrix(train_df[~valid_mask], users, items)
        valid_users = train_cfg.for_shape(len(users), len(items)).settings.valid_users
        fit_valid = ratings_matrix(sample_users(train_df[valid_mask], valid_users, train_cfg.seed), users, items)
        fit_side = None
        if uses_side:
            fit_side = dataclasses.replace(side, order=time_order(train_df[~valid_mask], users, items))
        return RoleJob(role, model_cfg, train_cfg, fit_train, fit_valid, full, fit_side, progress,
                       checkpoint_spec(checkpoint_dir, role, resume), torch.get_num_threads(), write=rank == 0)

    on_cuda = any(resolve_device(t.device).type == "cuda" for _, t in roles.values())
    parallel = plan_parallel(jobs, len(roles), torch.get_num_threads(), on_cuda, full.nnz)
    needs = {role: role_need([s for s in stages if s.role == role],
                             input_bytes(full, side if model_class(m.kind).side_information else None))
             for role, (m, _) in roles.items()}  # fmt: skip
    available = memory.available_bytes()
    if parallel > 1 and any_pair_fits(list(needs.values()), available):
        # only the first role shows its progress bars: several would overwrite each other
        work = [role_job(role, progress and i == 0) for i, role in enumerate(roles)]
        done = run_role_jobs(work, parallel, needs, available,
                             note=(lambda line: print(line, file=sys.stderr)) if progress else (lambda line: None))  # fmt: skip
    else:  # one at a time in this process: each role's matrices exist only while it trains
        done = {role: fit_role(role_job(role, progress)) for role in roles}
    entries = {role: r.entry for role, r in done.items()}
    fits = {role: r.fit for role, r in done.items()}
    trainings = {role: r.training for role, r in done.items()}
    for role, left_out in skipped.items():
        if left_out:
            trainings[role]["members_left_out"] = left_out
    seconds_all = time.perf_counter() - t_all
    main_role = next(iter(roles))
    result = fits[main_role]
    if rank != 0:  # rank 0 evaluates and writes the artifact
        return TrainOutcome(Path(out), "", {"valid_rmse": result.best_valid_rmse}, result)
    ranking_role = "ranking" if "ranking" in entries else "rating"
    cat = catalog[CATALOG_COLUMNS] if catalog is not None else default_catalog(items)
    artifact = Artifact(
        models=entries,
        users=users,
        items=items,
        history=full,
        catalog=cat.reset_index(drop=True),
        rating_scale=RatingScale.infer(train_df["rating"].to_numpy()),  # min, max, step of the training data
        features=schema,
        profiles=stored_profiles,
        meta={
            "dataset": dataset,
            "preset": preset.name,
            "data_fingerprint": data_fingerprint(
                train_df["user"].to_numpy(), train_df["item"].to_numpy(), train_df["rating"].to_numpy()
            ),
            # What Recommend ranks by: the "ranking" model when the artifact has one, else predicted ratings.
            "ranking_by": RANKING_DESCRIPTIONS[ranking_role],
            "ranking": {"role": ranking_role, "kind": entries[ranking_role].config.kind},
            "rating": {"role": "rating", "kind": entries["rating"].config.kind} if "rating" in entries else None,
            "training": {**trainings[main_role], "seconds": round(seconds_all, 3), "roles": trainings},
        },
        plots={
            "learning_curve.png": learning_curve_png(
                result.history, f"{preset.name} on {dataset or 'training data'}", result.best_epoch
            )
        },
    )
    metrics: dict[str, Any] = {"valid_rmse": result.best_valid_rmse}
    if "ranking" in fits:
        metrics["valid_ndcg@10"] = fits["ranking"].best_valid_ndcg
    if test_df is not None:
        # The test file only reports: the models, epochs and hyperparameters were fixed above.
        model_device = next(itertools.chain(result.model.buffers(), result.model.parameters())).device
        scorer = Scorer(artifact, model_device)
        metrics.update({f"test_{k_}": v for k_, v in evaluate(scorer, test_df, k).items()})
    artifact.metrics = metrics
    version = save_artifact(artifact, out)
    if checkpoint_dir is not None:
        remove_checkpoints(checkpoint_dir, roles)  # the artifact is complete: nothing left to resume
    if progress:
        print(f"artifact {version} written to {out}", file=sys.stderr)
    return TrainOutcome(Path(out), version, metrics, result)
