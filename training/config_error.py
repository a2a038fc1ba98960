"""The error of a training config that cannot be trained: an :class:`ExperimentConfig`, its model (backbone,
latent split into variables, ladder) or its regulariser holding a value the model kind does not take, or a
config JSON with unknown fields. A module of its own, so that the registry and every config module can raise it."""

from __future__ import annotations

from sae.core.errors import SAEError


class TrainingConfigError(SAEError, ValueError):
    """A config value out of range or contradicting another one; the message names the field (exit 2)."""
