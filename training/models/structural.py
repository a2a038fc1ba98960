"""The structural decoder (Leeb et al., 2023, section 3).

Starting from a learned constant S_0, each latent variable u_i is infused by its own Str-Tfm layer,

    S_i = alpha_i(u_i) * S_{i-1} + beta_i(u_i),   alpha_i = exp(raw_i),

applied per channel and broadcast over every pixel, between the conv blocks of the decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from sae.training.model_config import BackboneConfig
from sae.training.models.backbone import mlp
from sae.training.models.slot_decoder import SlotDecoder


class StrTfm(nn.Module):
    """Structural transform: a small MLP maps a latent chunk to a per-channel scale and shift.

    The MLP's last layer starts at zero, so alpha = exp(0) = 1 and beta = 0: the layer is the identity at init.
    """

    def __init__(self, in_dim: int, channels: int, hidden: Sequence[int]):
        super().__init__()
        self.mlp = mlp([in_dim, *hidden, 2 * channels])
        last = cast(nn.Linear, self.mlp[-1])  # mlp ends with its Linear layer
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        shift, raw_scale = self.mlp(u).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return torch.exp(raw_scale) * h + shift


class StructuralDecoder(SlotDecoder):
    """Str-Tfm layers act at the start of conv blocks (before their upsampling) and before the output layer.

    ``whole_latent=True`` gives AdaAE: every Str-Tfm sees the whole latent instead of its own chunk.
    """

    def __init__(
        self,
        cfg: BackboneConfig,
        latent_dim: int,
        num_variables: int,
        hidden: Sequence[int],
        whole_latent: bool = False,
    ):
        super().__init__(cfg, latent_dim, num_variables)
        self.whole_latent = whole_latent
        self.strtfms = nn.ModuleList(
            StrTfm(latent_dim if whole_latent else sl.stop - sl.start, cfg.channels, hidden) for sl in self.chunks
        )

    def inject(self, h: torch.Tensor, z: torch.Tensor, variable: int) -> torch.Tensor:
        return self.strtfms[variable](h, z if self.whole_latent else z[:, self.chunks[variable]])
