"""The structural decoder (Leeb et al., 2023, section 3).

Starting from a learned constant S_0, each latent variable u_i is infused by its own Str-Tfm layer,

    S_i = alpha_i(u_i) * S_{i-1} + beta_i(u_i),   alpha_i = exp(raw_i),

applied per channel and broadcast over every pixel, between the conv blocks of the decoder.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from training.config import BackboneConfig
from training.models.backbone import decoder_conv_stack, mlp


class StrTfm(nn.Module):
    """Structural transform: a small MLP maps a latent chunk to a per-channel scale and shift.

    The MLP's last layer starts at zero, so alpha = exp(0) = 1 and beta = 0: the layer is the identity at init.
    """

    def __init__(self, in_dim: int, channels: int, hidden: Sequence[int]):
        super().__init__()
        self.mlp = mlp([in_dim, *hidden, 2 * channels])
        last = self.mlp[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        shift, raw_scale = self.mlp(u).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return torch.exp(raw_scale) * h + shift


def variable_slices(latent_dim: int, num_variables: int) -> list[slice]:
    """SAE-k splits the latent into k equal chunks, in order."""
    if num_variables < 1 or latent_dim % num_variables:
        raise ValueError(f"latent_dim={latent_dim} must be divisible by the number of variables k={num_variables}")
    d = latent_dim // num_variables
    return [slice(i * d, (i + 1) * d) for i in range(num_variables)]


def strtfm_slots(num_slots: int, num_variables: int) -> list[int]:
    """Which decoder slots get a Str-Tfm: evenly spaced, the first variable deepest (slot 0, next to S_0).

    With 12 slots this gives the authors' placements: SAE-6 -> 0,2,4,..; SAE-4 -> 0,3,6,9; SAE-2 -> 0,6.
    """
    if num_variables > num_slots:
        raise ValueError(f"{num_variables} variables need at least as many decoder slots, the backbone has {num_slots}")
    return [i * num_slots // num_variables for i in range(num_variables)]


class StructuralDecoder(nn.Module):
    """Str-Tfm layers act at the start of conv blocks (before their upsampling) and before the output layer.

    ``whole_latent=True`` gives AdaAE: every Str-Tfm sees the whole latent instead of its own chunk.
    """

    def __init__(self, cfg: BackboneConfig, latent_dim: int, num_variables: int, hidden: Sequence[int],
                 whole_latent: bool = False):
        super().__init__()
        self.blocks, self.head = decoder_conv_stack(cfg)
        s = cfg.decoder_initial_size
        self.initial = nn.Parameter(torch.randn(1, cfg.channels, s, s))  # S_0
        self.chunks = variable_slices(latent_dim, num_variables)
        num_slots = len(self.blocks) + 1
        self.slot_of_variable = strtfm_slots(num_slots, num_variables)
        self.whole_latent = whole_latent
        self.strtfms = nn.ModuleList(
            StrTfm(latent_dim if whole_latent else sl.stop - sl.start, cfg.channels, hidden) for sl in self.chunks
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.initial.expand(z.shape[0], -1, -1, -1)
        variables_at = {slot: i for i, slot in enumerate(self.slot_of_variable)}
        for slot, layer in enumerate([*self.blocks, self.head]):
            i = variables_at.get(slot)
            if i is not None:
                h = self.strtfms[i](h, z if self.whole_latent else z[:, self.chunks[i]])
            h = layer(h)
        return h
