"""Typed configuration: what a model is (ModelConfig), how it is trained (TrainConfig), named presets.

Configs are frozen dataclasses that round-trip through plain JSON (`to_dict` / `from_dict`), so the artifact
carries the exact configuration it was built from and nothing is pickled.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

Activation = Literal["sigmoid", "selu", "relu", "tanh", "elu", "identity"]
T = TypeVar("T")


def _from_dict(cls: type[T], data: dict[str, Any]) -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
    return cls(**kwargs)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a user-based autoencoder: n_items -> hidden... -> n_items.

    `kind` selects the model family in `movierec.trainer.model.MODEL_TYPES`; the other fields are read by that
    family (an autoencoder reads all of them).
    """

    kind: str = "autoencoder"
    n_items: int = 0
    hidden: tuple[int, ...] = (20, 10, 20)
    activation: Activation = "sigmoid"
    output_activation: Activation = "identity"
    dropout: float = 0.0  # dropout on the bottleneck code (training only)
    input_dropout: float = 0.0  # denoising: fraction of observed inputs zeroed during training
    extra: dict[str, Any] = field(default_factory=dict)  # family-specific settings (JSON values only)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, data)

    def validate(self) -> None:
        if self.n_items <= 0:
            raise ValueError(f"n_items must be > 0, got {self.n_items}")
        if any(h <= 0 for h in self.hidden):
            raise ValueError(f"hidden layer sizes must be > 0, got {list(self.hidden)}")
        for name in ("dropout", "input_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is fitted. Every choice is made on a validation split carved from the training data."""

    epochs: int = 200
    batch_size: int = 32
    optimizer: Literal["rmsprop", "adam", "sgd"] = "rmsprop"
    lr: float = 0.01
    weight_decay: float = 0.0
    loss: str = "masked_mse"
    valid_fraction: float = 0.1  # per-user holdout carved from the training file for early stopping
    patience: int = 20  # epochs without validation improvement before stopping; 0 disables early stopping
    seed: int = 0
    device: str = "auto"
    dense_refeed: bool = False  # Kuchaiev & Ginsburg 2017: a second step on the model's own output
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _from_dict(cls, data)

    def validate(self) -> None:
        if self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")


@dataclass(frozen=True)
class Preset:
    """A named (model, training) pair. `n_items` is filled in from the data at training time."""

    name: str
    description: str
    model: ModelConfig
    train: TrainConfig


# The classic stacked autoencoder (the SuperDataScience notebook): nb_movies -> 20 -> 10 -> 20 -> nb_movies,
# sigmoid hidden layers, linear output, MSE on rated movies only, RMSprop, 200 epochs. The notebook's
# lr=0.01 / weight_decay=0.5 only works because its loop never calls zero_grad (gradients pile up across
# every step); with a correct mini-batch loop those settings collapse, so lr and weight decay here were
# chosen on a validation split of u1.base (see README, "The classic preset").
CLASSIC = Preset(
    name="classic",
    description="Stacked autoencoder 20-10-20, sigmoid, masked MSE, RMSprop (the classic notebook, trained correctly)",
    model=ModelConfig(hidden=(20, 10, 20), activation="sigmoid", output_activation="identity"),
    train=TrainConfig(epochs=200, batch_size=32, optimizer="rmsprop", lr=0.003, weight_decay=1e-4),
)

PRESETS: dict[str, Preset] = {CLASSIC.name: CLASSIC}
DEFAULT_PRESET = "classic"


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}") from None
