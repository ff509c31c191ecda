"""What a model is: `ModelConfig`, a frozen dataclass that round-trips through plain JSON into the artifact."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

Activation = Literal["sigmoid", "selu", "relu", "tanh", "elu", "identity"]
T = TypeVar("T")


def from_json_dict(cls: type[T], data: dict[str, Any]) -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
    return cls(**kwargs)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a user-based autoencoder: n_items -> hidden... -> n_items.

    `kind` selects the model family in `movierec.core.models.registry.FAMILIES`; the other fields are read by that
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
        return from_json_dict(cls, data)

    def validate(self) -> None:
        if self.n_items <= 0:
            raise ValueError(f"n_items must be > 0, got {self.n_items}")
        if any(h <= 0 for h in self.hidden):
            raise ValueError(f"hidden layer sizes must be > 0, got {list(self.hidden)}")
        for name in ("dropout", "input_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
