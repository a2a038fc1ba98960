"""``sae encode --engine ray``: a dataset encoded on a Ray cluster into sharded latents files, merged into one.

The dataset is read as Ray Data blocks, one per shard (a fixed row range), by the same readers as ``sae encode``
(:mod:`sae.core.datasets`); an actor pool of torch-free :class:`~sae.clients.triton_client.SAEClient` s encodes each
block
through Triton and writes it as one HDF5 shard in the layout of ``sae encode``'s output
(:func:`sae.core.latents_file.write_latents_layout`). The driver only plans the row ranges and keeps the manifest;
images and latents never pass through it. ``sae encode --merge DIR --out latents.h5`` joins the shards into the very
file the single-process job writes.

Modules: :mod:`.config` (settings), :mod:`.shards` (the plan, shard files, the manifest, the merge; no Ray),
:mod:`.actor` (the encoder each actor runs), :mod:`.job` (the driver; imports Ray when it runs). Nothing here imports
Ray at import time, so the core and client installs (without the ``scale`` extra) import every module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported on first use by __getattr__; named here for the type checker
    from sae.clients.jobs.ray_encode.config import RayEncodeConfig
    from sae.clients.jobs.ray_encode.job import run_ray_encode
    from sae.clients.jobs.ray_encode.shards import merge_shards

__all__ = ["RayEncodeConfig", "merge_shards", "run_ray_encode"]


def __getattr__(name: str) -> object:
    if name == "RayEncodeConfig":
        from sae.clients.jobs.ray_encode.config import RayEncodeConfig

        return RayEncodeConfig
    if name == "merge_shards":
        from sae.clients.jobs.ray_encode.shards import merge_shards

        return merge_shards
    if name == "run_ray_encode":
        from sae.clients.jobs.ray_encode.job import run_ray_encode

        return run_ray_encode
    raise AttributeError(f"module 'sae.clients.jobs.ray_encode' has no attribute {name!r}")
