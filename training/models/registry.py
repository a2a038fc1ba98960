"""The model kinds, registered in the manner of timm's ``register_model``.

A kind is one model class under one name, with the regulariser settings it takes by default. Each kind's module
(``training/models/zoo/``) registers itself::

    @register_model("betavae", regulariser=VariationalConfig(beta=2.0))
    class VariationalAutoencoder(StandardNormalPrior, Autoencoder): ...

What a kind can do (has a prior, draws its latent in chunks, ...) is a class attribute of its model
(``sae.training.models.autoencoder.Autoencoder`` lists them); :class:`ModelKind` reads them for the configs, which never
import a model. This module imports only the package's errors: the built-in kinds register when
``sae.training.models.zoo`` is imported (``sae.training.config`` does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sae.core.errors import SAEError
from sae.training.config_error import TrainingConfigError

if TYPE_CHECKING:  # for the checker only: at run time the registry imports no model
    from sae.training.models.autoencoder import Autoencoder

ModelClass = TypeVar("ModelClass", bound="type[Autoencoder]")


@dataclass(frozen=True)
class RegulariserConfig:
    """Base of every kind's regulariser settings (a frozen dataclass beside its model).

    ``validate`` refuses negative weights; a kind's settings add their own checks. ``validate_batch`` is called with
    the training batch size, for estimators over the batch.
    """

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and value < 0:
                raise TrainingConfigError(f"ModelConfig.regulariser.{f.name}={value} must not be negative")

    def validate_batch(self, batch_size: int) -> None:
        """Checks that need the training batch size; none by default."""


@dataclass(frozen=True)
class ModelKind:
    """A registered kind: its name, its model class and its default regulariser settings (``None``: it takes none)."""

    name: str
    model_class: type[Autoencoder]
    regulariser: RegulariserConfig | None = None

    @property
    def regulariser_type(self) -> type | None:
        """The settings class ``ModelConfig.regulariser`` must hold for this kind (``None``: no regulariser)."""
        return None if self.regulariser is None else type(self.regulariser)

    # The capabilities, as the model class declares them.
    @property
    def has_prior(self) -> bool:
        return bool(self.model_class.has_prior)

    @property
    def variational(self) -> bool:
        return bool(self.model_class.variational)

    @property
    def structured(self) -> bool:
        return bool(self.model_class.structured)

    @property
    def places_variables(self) -> bool:
        return bool(self.model_class.places_variables)

    @property
    def chunked_latent(self) -> bool:
        return bool(self.model_class.chunked_latent)

    @property
    def reads_ladder(self) -> bool:
        return bool(self.model_class.reads_ladder)

    @property
    def min_batch_size(self) -> int:
        return int(self.model_class.min_batch_size)


CAPABILITIES = (
    "has_prior",
    "variational",
    "structured",
    "places_variables",
    "chunked_latent",
    "reads_ladder",
    "min_batch_size",
)

_KINDS: dict[str, ModelKind] = {}


class UnknownModelKind(SAEError, ValueError):
    pass


def register_model(name: str, regulariser: RegulariserConfig | None = None) -> Callable[[ModelClass], ModelClass]:
    """Class decorator: register the model class as kind ``name`` with default regulariser settings."""

    def register(model_class: ModelClass) -> ModelClass:
        _add(ModelKind(name, model_class, regulariser))
        return model_class

    return register


def _add(kind: ModelKind) -> None:
    cls = kind.model_class
    if not kind.name.isidentifier() or kind.name != kind.name.lower():
        raise ValueError(f"model kind name {kind.name!r} must be a lower-case identifier")
    if kind.name in _KINDS:
        raise ValueError(
            f"model kind {kind.name!r} is registered already (by {_KINDS[kind.name].model_class.__name__})"
        )
    missing = [c for c in CAPABILITIES if not hasattr(cls, c)]
    if missing:
        raise TypeError(
            f"model kind {kind.name!r}: {cls.__name__} lacks the capability attributes {missing}; "
            "derive it from sae.training.models.autoencoder.Autoencoder"
        )
    if kind.has_prior != callable(getattr(cls, "prior_sample", None)):
        raise TypeError(
            f"model kind {kind.name!r}: {cls.__name__}.has_prior is {kind.has_prior} but it "
            f"{'lacks' if kind.has_prior else 'defines'} prior_sample(n, generator)"
        )
    if kind.regulariser is not None and not isinstance(kind.regulariser, RegulariserConfig):
        raise TypeError(
            f"model kind {kind.name!r}: regulariser must be a RegulariserConfig dataclass, "
            f"got {type(kind.regulariser).__name__}"
        )
    _KINDS[kind.name] = kind


def unregister_model(name: str) -> None:
    """Remove kind ``name`` (kinds registered for a test)."""
    if _KINDS.pop(name, None) is None:
        raise UnknownModelKind(_unknown(name))


def find_kind(name: Any) -> ModelKind | None:
    return _KINDS.get(name) if isinstance(name, str) else None


def model_kind(name: str) -> ModelKind:
    kind = find_kind(name)
    if kind is None:
        raise UnknownModelKind(_unknown(name))
    return kind


def model_kinds() -> tuple[str, ...]:
    """The registered kind names, in registration order."""
    return tuple(_KINDS)


def _unknown(name: Any) -> str:
    return f"unknown model kind {name!r}; choose one of {', '.join(_KINDS) or '(none registered)'}"
