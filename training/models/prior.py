"""The standard normal prior of the VAE family and WAE: what ``NAME_prior_sample`` draws codes from."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from sae.training.model_config import ModelConfig


def standard_normal_sample(
    n: int, dim: int, like: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``n`` draws of N(0, I_dim) on ``like``'s device (``generator`` must live there too)."""
    return torch.randn(n, dim, generator=generator, device=like.device, dtype=like.dtype)


class _PriorHost(Protocol):
    """What the mixin reads of the ``Autoencoder`` it is mixed into: its config and its parameters."""

    cfg: ModelConfig

    def parameters(self, recurse: bool = ...) -> Iterator[torch.nn.Parameter]: ...


class PriorSampler(Protocol):
    """A model with a prior (``has_prior``): ``prior_sample(n, generator=None)`` draws ``n`` codes from it."""

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor: ...


class StandardNormalPrior:
    """Mixin for an ``Autoencoder`` kind with the prior N(0, I) over its ``cfg.latent_dim`` dimensions."""

    has_prior = True

    def prior_sample(self: _PriorHost, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return standard_normal_sample(n, self.cfg.latent_dim, next(self.parameters()), generator)
