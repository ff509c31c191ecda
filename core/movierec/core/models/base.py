"""The model interface every family implements: `Recommender`, an `nn.Module` with typed class-level traits.

Every model maps a batch of user rating vectors `x` (B x n_items, 0 = unrated) to an output of the same shape:
`forward` is what the training loss sees, `scores` is what inference uses (predicted ratings for a rating
model, preference scores for a ranking model; higher is better). The traits tell the rest of the system what
to do with a family without probing its attributes:

  orientation   "user" (rows = users) or "item" (trained on rows = movies: I-AutoRec)
  objective     "rating" (masked MSE on observed ratings; validation RMSE; the artifact's rating role) or
                "ranking" (top-N; validation NDCG@10; the ranking role)
  sparse_input  True when `scores_sparse` scores a torch sparse CSR batch itself (no dense batch to build)
  trained_by    how the trainer fits it: "gradient" (the epoch loop), "closed_form" (solved from the ratings),
                "sampler" (Gibbs sampling), "ensemble" (fit the members, then blend them), "side_gradient"
                (the epoch loop with user and movie features and DropoutNet-style input dropping)
  side_information  True when `scores_side` also reads user features and scores movies added after training
                from their features (the cold-start models)

Models hold inference only (`scores`, fold-in of new rows at scoring time) and the buffers the trainer fills.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal, get_args

import torch
from torch import nn

from movierec.core.config import Activation, ModelConfig
from movierec.core.sparse import Csr

Orientation = Literal["user", "item"]
Objective = Literal["rating", "ranking"]
TrainedBy = Literal["gradient", "closed_form", "sampler", "ensemble", "side_gradient"]

_TRAITS: dict[str, tuple[Any, ...]] = {
    "orientation": get_args(Orientation),
    "objective": get_args(Objective),
    "sparse_input": (True, False),
    "trained_by": get_args(TrainedBy),
    "side_information": (True, False),
}


class Recommender(nn.Module, ABC):
    """A recommender model. Concrete subclasses set every trait (checked when the class is defined)."""

    orientation: ClassVar[Orientation]
    objective: ClassVar[Objective]
    sparse_input: ClassVar[bool] = False
    trained_by: ClassVar[TrainedBy]
    side_information: ClassVar[bool] = False
    # Gradient-trained models that can be retrained from scratch on every training rating for the step count
    # chosen on validation (`reset_parameters`, `steps_taken`, `set_steps_taken`): the ensemble's refit_full.
    refittable: ClassVar[bool] = False

    config: ModelConfig

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # ABCMeta marks abstract classes only after this hook runs: a class that still inherits the abstract
        # `scores` is an intermediate base, not a family
        if next(vars(k)["scores"] for k in cls.__mro__ if "scores" in vars(k)) is Recommender.__dict__["scores"]:
            return
        for name, allowed in _TRAITS.items():
            value = next((vars(k)[name] for k in cls.__mro__ if name in vars(k)), None)
            if value not in allowed:
                raise TypeError(f"{cls.__name__}.{name} must be one of {allowed}, got {value!r}")

    @abstractmethod
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Inference output for dense rating rows (B x n_items): predicted ratings or preference scores."""

    def scores_sparse(self, x: torch.Tensor) -> torch.Tensor:
        """`scores` of a torch sparse CSR batch (rows = users); only for families with `sparse_input`."""
        raise NotImplementedError(
            f"{type(self).__name__} does not score sparse input (sparse_input is False)"
        )

    def scores_side(self, x: torch.Tensor, users: torch.Tensor, added: torch.Tensor) -> torch.Tensor:
        """Scores with side information; only for families with `side_information`.

        x: B x (n_items + m) rating rows whose last m columns are movies added after training; users:
        B x n_user_features (all zero = nothing known); added: m x n_item_features, the added movies'
        features. Returns B x (n_items + m).
        """
        raise NotImplementedError(
            f"{type(self).__name__} uses no side information (side_information is False)"
        )

    def extra_loss(self) -> torch.Tensor | None:
        """A term the training loss adds after the last forward pass (Mult-VAE's annealed KL), or None."""
        return None

    def prepare_serving(self, full: Csr) -> None:
        """Compute serving state from every training rating (users x items) once the weights are final, e.g.
        I-AutoRec's movie codes. Default: nothing to compute."""

    def step_counter(self) -> int:
        """Training steps counted outside the state dict (checkpointed next to it); 0 when none."""
        return 0

    def restore_step_counter(self, steps: int) -> None:
        """Set the counter `step_counter` reports (resuming from a checkpoint)."""

    def reset_parameters(self) -> None:
        """Re-initialize the trainable weights (refittable families)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be refit")

    def steps_taken(self) -> int:
        """Training forward passes that produced the current weights (refittable families)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be refit")

    def set_steps_taken(self, steps: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be refit")


def count_parameters(model: nn.Module) -> int:
    return sum(int(p.numel()) for p in model.parameters())


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "selu": nn.SELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "identity": nn.Identity,
}


def activation(name: Activation | str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(_ACTIVATIONS)}") from None


SPARSE_INPUT_DENSITY = 0.1  # below this fraction of rated entries a dense batch is multiplied as a sparse one


def is_sparse(rated: torch.Tensor) -> bool:
    return bool(rated.numel()) and float(rated.mean()) < SPARSE_INPUT_DENSITY


def with_values(csr: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The same sparsity pattern as `csr` with other stored values (in its storage order)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(csr.crow_indices(), csr.col_indices(), values, csr.shape)


def dense_to_csr(x: torch.Tensor) -> torch.Tensor:
    """A dense [B, n] batch as a sparse CSR tensor (its nonzero entries), for `csr_matmul`."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return x.to_sparse_csr()


def csr_matmul(
    x: torch.Tensor, weight: torch.Tensor, *, binary: bool = False, columns: torch.Tensor | None = None
) -> torch.Tensor:
    """`x @ weight` for a sparse CSR `x` [B, n] and a dense `weight` [n, d] (or [k, d] with `columns`): each
    row the sum of the weight rows of its stored columns, times the stored value (1 for a nonzero value
    with `binary`), by `embedding_bag`, the gather-and-sum kernel recommender embeddings use. torch's sparse
    CSR x dense product was 3-7x slower here (EASE on ml-100k, 1 thread: 8 users 322 -> 97 us, 64 users
    4.7 -> 0.67 ms). `columns` [n] renumbers x's columns into weight's rows; -1 drops a column. Inference
    only: no gradient reaches `x`'s values."""
    crow, col, values = x.crow_indices(), x.col_indices(), x.values()
    if binary:
        values = values != 0
    if columns is not None:
        col = columns[col]
        kept = col >= 0
        values = values * kept
        col = col.clamp(min=0)
    if weight.shape[0] == 0 or col.numel() == 0:
        return weight.new_zeros(x.shape[0], weight.shape[1])
    return torch.nn.functional.embedding_bag(
        col, weight, crow, mode="sum", per_sample_weights=values.to(weight.dtype), include_last_offset=True
    )


def drop_legacy_keys(state_dict: dict[str, Any], prefix: str, names: tuple[str, ...]) -> None:
    """Remove state entries older artifacts carry and the model no longer has (e.g. a placeholder parameter)."""
    for name in names:
        state_dict.pop(prefix + name, None)
