"""The convolutional backbone shared by every model of the paper (Leeb et al., 2023, appendix).

Conv block: [2x bilinear upsample] -> 3x3 conv -> [2x2 max-pool] -> GroupNorm -> Mish.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sae.training.model_config import BackboneConfig


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with Mish between them and no output nonlinearity."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i > 0:
            layers.append(nn.Mish())
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


class ConvBlock(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int,
        *,
        kernel_size: int = 3,
        upsample: bool = False,
        pool: bool = False,
    ):
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False) if upsample else None
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.pool = nn.MaxPool2d(2) if pool else None
        self.norm = nn.GroupNorm(groups, out_channels)
        self.act = nn.Mish()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.upsample is not None:
            h = self.upsample(h)
        h = self.conv(h)
        if self.pool is not None:
            h = self.pool(h)
        return self.act(self.norm(h))


def encoder_conv_blocks(cfg: BackboneConfig) -> list[ConvBlock]:
    """The encoder's conv blocks: the first with the wide kernel, max-pooling after ``encoder_pool_after``."""
    c = cfg.channels
    return [
        ConvBlock(
            cfg.image_channels if i == 1 else c,
            c,
            cfg.groups,
            kernel_size=cfg.first_kernel if i == 1 else 3,
            pool=i in cfg.encoder_pool_after,
        )
        for i in range(1, cfg.encoder_blocks + 1)
    ]


class Encoder(nn.Module):
    """CNN -> flatten -> MLP. Returns ``out_dim`` numbers per image (latent, or mean and log-variance)."""

    def __init__(self, cfg: BackboneConfig, out_dim: int):
        super().__init__()
        self.blocks = nn.Sequential(*encoder_conv_blocks(cfg))
        flat = cfg.channels * cfg.encoder_final_size**2
        self.head = mlp([flat, *cfg.encoder_mlp, out_dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).flatten(1))


def decoder_conv_stack(cfg: BackboneConfig, extra_in_channels: Sequence[int] = ()) -> tuple[nn.ModuleList, nn.Module]:
    """The decoder's conv blocks and its output layer (upsample + 3x3 conv to image channels, no norm).

    Returned separately so that structural decoders can act before each of them. ``extra_in_channels[slot]`` widens
    the input of slot ``slot`` (block i is slot i - 1, the output layer the last slot), for VLAE's rung features.
    """
    c = cfg.channels
    extra = list(extra_in_channels) + [0] * (cfg.decoder_slots - len(extra_in_channels))
    blocks = nn.ModuleList(
        ConvBlock(c + extra[i - 1], c, cfg.groups, upsample=i in cfg.decoder_upsample_before)
        for i in range(1, cfg.decoder_blocks + 1)
    )
    head = nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Conv2d(c + extra[-1], cfg.image_channels, 3, padding=1),
    )
    return blocks, head


class HourglassDecoder(nn.Module):
    """Baseline decoder: MLP from the latent to the smallest feature map, then the conv stack."""

    def __init__(self, cfg: BackboneConfig, latent_dim: int):
        super().__init__()
        self.shape = (cfg.channels, cfg.decoder_initial_size, cfg.decoder_initial_size)
        self.mlp = mlp([latent_dim, *cfg.decoder_mlp, cfg.channels * cfg.decoder_initial_size**2])
        self.blocks, self.head = decoder_conv_stack(cfg)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mlp(z).view(-1, *self.shape)
        for block in self.blocks:
            h = block(h)
        return self.head(h)
