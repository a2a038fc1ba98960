"""The decoder that walks its slots from a learned constant (Leeb et al., 2023, section 3; VLAE's generative ladder).

The conv stack of the backbone has ``decoder_slots`` slots: before each conv block and before the output layer. The
latent is split into k equal chunks in order, and chunk i enters at slot ``variable_slots(...)[i]`` (chunk 1 deepest,
next to S_0). How a chunk enters is the subclass's :meth:`SlotDecoder.inject`: a Str-Tfm (SAE, AdaAE) or broadcast
features concatenated as channels (VLAE).
"""

from __future__ import annotations

import torch
from torch import nn

from sae.training.model_config import BackboneConfig
from sae.training.models.backbone import decoder_conv_stack


def variable_slices(latent_dim: int, num_variables: int) -> list[slice]:
    """The latent split into k equal chunks, in order."""
    if num_variables < 1 or latent_dim % num_variables:
        raise ValueError(f"latent_dim={latent_dim} must be divisible by the number of variables k={num_variables}")
    d = latent_dim // num_variables
    return [slice(i * d, (i + 1) * d) for i in range(num_variables)]


def variable_slots(num_slots: int, num_variables: int) -> list[int]:
    """Which decoder slot each variable enters at: evenly spaced, the first variable deepest (slot 0, next to S_0).

    With 12 slots this gives the authors' placements: SAE-6 -> 0,2,4,..; SAE-4 -> 0,3,6,9; SAE-2 -> 0,6.
    """
    if num_variables > num_slots:
        raise ValueError(f"{num_variables} variables need at least as many decoder slots, the backbone has {num_slots}")
    return [i * num_slots // num_variables for i in range(num_variables)]


class SlotDecoder(nn.Module):
    """S_0 (a learned constant, from a standard normal), then each slot's layer, with each variable injected first.

    ``extra_channels``: how many channels :meth:`inject` adds to the map at a variable's slot (widening the input of
    that slot's layer). Attribute names (``blocks``, ``head``, ``initial``) are those of the checkpoints.
    """

    def __init__(self, cfg: BackboneConfig, latent_dim: int, num_variables: int, extra_channels: int = 0):
        super().__init__()
        self.chunks = variable_slices(latent_dim, num_variables)
        self.slot_of_variable = variable_slots(cfg.decoder_slots, num_variables)
        extra = [0] * cfg.decoder_slots
        for slot in self.slot_of_variable:
            extra[slot] = extra_channels
        self.blocks, self.head = decoder_conv_stack(cfg, extra)
        s = cfg.decoder_initial_size
        self.initial = nn.Parameter(torch.randn(1, cfg.channels, s, s))  # S_0

    def inject(self, h: torch.Tensor, z: torch.Tensor, variable: int) -> torch.Tensor:
        """The feature map ``h`` with variable ``variable`` of the latents ``z`` [B, D] infused."""
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.initial.expand(z.shape[0], -1, -1, -1)
        variable_at = {slot: i for i, slot in enumerate(self.slot_of_variable)}
        for slot, layer in enumerate([*self.blocks, self.head]):
            if slot in variable_at:
                h = self.inject(h, z, variable_at[slot])
            h = layer(h)
        return h
