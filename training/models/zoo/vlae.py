"""VLAE-k, the variational ladder autoencoder (Zhao et al. 2017) on the shared backbone (notes, "VLAE-k").

Encoder: the backbone's conv blocks, with k rungs that read intermediate feature maps and each give the posterior
mean and log-scale of one chunk of latent_dim / k dimensions. A rung is the authors' ``InferenceRung`` (learn_rep
``src/ladder.py``, ``config/a/e/ladder/12.yaml``; widths of the default ``LadderConfig``): the three shallowest
rungs have a small net of 3x3 conv blocks (16→8, 32→32 and 32 channels), every deeper one a linear layer of 128;
the map is max-pooled over space (after the convs, before the linear layer) and an MLP with hidden widths 64, 32
gives the rung's output. The backbone's flatten-and-MLP head is not used.

Decoder: the slot decoder of SAE-k (learned constant S_0, chunk 1 deepest); instead of a Str-Tfm, each rung maps its
chunk through an MLP (64, 128) to ``ladder.features`` (16) values, broadcast over space and concatenated as extra
input channels of the conv that follows (the authors' ``GenerativeRung``).

The ladder pairs the deep end of each side: the chunk entering next to S_0 is read from the last encoder block, the
chunk entering next to the output from the first. Trained as a VAE: ``BCE + β · KL`` (β = 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sae.training.model_config import BackboneConfig, LadderConfig
from sae.training.models.backbone import ConvBlock, encoder_conv_blocks, mlp
from sae.training.models.registry import register_model
from sae.training.models.slot_decoder import SlotDecoder, variable_slots
from sae.training.models.zoo.vae import VariationalAutoencoder, VariationalConfig


def encoder_rung_blocks(encoder_blocks: int, num_slots: int, decoder_slots: Sequence[int]) -> list[int]:
    """The 1-based encoder block after which each variable's rung reads, mirroring its decoder slot."""
    return [encoder_blocks - slot * encoder_blocks // num_slots for slot in decoder_slots]


class EncoderRung(nn.Module):
    """Feature map [B, C, H, W] -> [B, out_dim]: convs (or none), max over space, [linear + Mish], MLP."""

    def __init__(self, channels: int, groups: int, convs: Sequence[int], ladder: LadderConfig, out_dim: int):
        super().__init__()
        widths = [channels, *convs]
        self.convs = nn.Sequential(*(ConvBlock(c_in, c_out, groups) for c_in, c_out in zip(widths[:-1], widths[1:])))
        pooled = widths[-1]
        self.project = None if convs else nn.Sequential(nn.Linear(pooled, ladder.encoder_rung_width), nn.Mish())
        self.mlp = mlp([pooled if convs else ladder.encoder_rung_width, *ladder.encoder_hidden, out_dim])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        pooled = self.convs(h).amax(dim=(2, 3))
        if self.project is not None:
            pooled = self.project(pooled)
        return self.mlp(pooled)


class LadderEncoder(nn.Module):
    """Images -> [B, 2·D]: the means of all chunks, in variable order, then their log-scales."""

    def __init__(self, cfg: BackboneConfig, latent_dim: int, num_variables: int, ladder: LadderConfig):
        super().__init__()
        self.blocks = nn.ModuleList(encoder_conv_blocks(cfg))
        chunk = latent_dim // num_variables
        slots = variable_slots(cfg.decoder_slots, num_variables)
        self.rung_after = encoder_rung_blocks(cfg.encoder_blocks, cfg.decoder_slots, slots)
        # Rank 0 is the shallowest rung; of two rungs after the same block, the later variable is the shallower.
        shallow_first = sorted(range(num_variables), key=lambda i: (self.rung_after[i], -i))
        depth_rank = {i: rank for rank, i in enumerate(shallow_first)}
        self.rungs = nn.ModuleList(
            EncoderRung(cfg.channels, cfg.groups, ladder.rung_convs(depth_rank[i]), ladder, 2 * chunk)
            for i in range(num_variables)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: list[torch.Tensor | None] = [None] * len(self.rungs)
        h = x
        for block_number, block in enumerate(self.blocks, start=1):
            h = block(h)
            for i, after in enumerate(self.rung_after):
                if after == block_number:
                    out[i] = self.rungs[i](h)
        rungs = [o for o in out if o is not None]
        if len(rungs) != len(out):
            raise RuntimeError(f"VLAE rungs after blocks {self.rung_after}: a rung follows no encoder block")
        mus, log_scales = zip(*(o.chunk(2, dim=1) for o in rungs))
        return torch.cat([*mus, *log_scales], dim=1)


class LadderDecoder(SlotDecoder):
    """Each chunk enters as ``ladder.features`` broadcast channels, concatenated to the map at its slot."""

    def __init__(self, cfg: BackboneConfig, latent_dim: int, num_variables: int, ladder: LadderConfig):
        super().__init__(cfg, latent_dim, num_variables, extra_channels=ladder.features)
        self.rungs = nn.ModuleList(
            mlp([sl.stop - sl.start, *ladder.decoder_hidden, ladder.features]) for sl in self.chunks
        )

    def inject(self, h: torch.Tensor, z: torch.Tensor, variable: int) -> torch.Tensor:
        features = self.rungs[variable](z[:, self.chunks[variable]])
        return torch.cat([h, features[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])], dim=1)


@register_model("vlae", regulariser=VariationalConfig(beta=1.0))
class VLAE(VariationalAutoencoder):
    places_variables = True
    chunked_latent = True
    reads_ladder = True

    def _build_encoder(self) -> nn.Module:
        cfg = self.cfg
        return LadderEncoder(cfg.backbone, cfg.latent_dim, cfg.num_variables, cfg.ladder)

    def _build_decoder(self) -> nn.Module:
        cfg = self.cfg
        return LadderDecoder(cfg.backbone, cfg.latent_dim, cfg.num_variables, cfg.ladder)
