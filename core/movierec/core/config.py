"""What a model is: `ModelConfig`, a frozen dataclass that round-trips through plain JSON into the artifact."""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

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


S = TypeVar("S", bound="FamilySettings")


@dataclass(frozen=True)
class FamilySettings:
    """A model family's own settings: a frozen dataclass per family, stored as `ModelConfig.extra` in JSON.

    `parse` turns the JSON object into the family's typed settings, refusing unknown keys and values of the
    wrong type with a message naming the key and what is allowed, so a typo in a preset or a `--config`
    file fails at once instead of silently falling back to a default.
    """

    @classmethod
    def parse(cls: type[S], data: dict[str, Any], owner: str) -> S:
        hints = get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            allowed = ", ".join(names) or "none"
            raise ValueError(f"{owner}: unknown setting(s) {', '.join(unknown)}; allowed: {allowed}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            kwargs[key] = _coerce(value, hints[key], f"{owner}: setting {key!r}")
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    if origin is Union or origin is types.UnionType:
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(o for o in options if o is not type(None))
        origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint):
            raise ValueError(f"{where} must be one of {list(get_args(hint))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where} must be a list, got {value!r}")
        (inner, *_rest) = get_args(hint) or (Any,)
        return tuple(value) if inner is Any else tuple(_coerce(v, inner, where) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
        return value
    return value  # JSON objects (an ensemble's member specs) are checked by their own parser
