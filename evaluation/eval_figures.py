"""The PNG figures of `sae eval`: hybrid and prior samples, reconstructions, latent traversals, hybridised chunks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sae.clients.triton_client import SAEClient
from sae.core.png import image_grid, write_png
from sae.evaluation.eval_config import EvalConfig
from sae.evaluation.eval_passes import SamplePass, TestPass
from sae.evaluation.figures import LocalBank, hybridised_chunks_figure, traversal_figure, variable_of_dim


def write_figures(
    client: SAEClient,
    figures_dir: Path,
    cfg: EvalConfig,
    hybrid: SamplePass,
    prior: SamplePass | None,
    passed: TestPass,
    num_variables: int,
    bank: LocalBank | None,
) -> dict[str, Any]:
    test_latents = passed.latents
    var_of_dim = variable_of_dim(test_latents.shape[1], num_variables)
    out: dict[str, Any] = {}
    sets = {"hybrid_samples": hybrid} | ({"prior_samples": prior} if prior is not None else {})
    for key, drawn in sets.items():
        path = figures_dir / f"{key}.png"
        write_png(path, image_grid(drawn.first, ncols=int(math.ceil(math.sqrt(len(drawn.first))))))
        out[key] = {"path": str(path.relative_to(cfg.out)), "images": int(len(drawn.first)), "seed": cfg.seed}
    out["hybrid_samples"]["draw_mode"] = hybrid.draw_mode
    path = figures_dir / "reconstructions.png"
    write_png(path, image_grid(passed.examples, ncols=len(passed.examples) // 2))
    out["reconstructions"] = {
        "path": str(path.relative_to(cfg.out)),
        "layout": "top: test images; bottom: their reconstructions",
    }
    if bank is not None:
        low, high, pool = bank.dim_min, bank.dim_max, bank.latents
        range_source, pool_source = f"the bank's min/max ({cfg.bank})", f"latents of the bank ({cfg.bank})"
    else:
        low, high, pool = test_latents.min(axis=0), test_latents.max(axis=0), test_latents
        range_source, pool_source = "the encoded test images' min/max", "encoded test latents"
    spread = len(test_latents) // 3  # start latents away from the file's first rows (sorted by factor values)
    grid, drawn_by = traversal_figure(
        client, test_latents[spread], var_of_dim, cfg.traversal_steps, low, high, range_source
    )
    path = figures_dir / "traversals.png"
    write_png(path, grid)
    out["traversals"] = {
        "path": str(path.relative_to(cfg.out)),
        "drawn_by": drawn_by,
        "steps": cfg.traversal_steps,
        "layout": f"one row per latent dimension, grouped by variable ({num_variables} variables)",
    }
    grid, drawn_by = hybridised_chunks_figure(
        client, test_latents[[spread, 2 * spread]], var_of_dim, cfg.chunk_redraws, cfg.seed, pool, pool_source
    )
    path = figures_dir / "hybridised_chunks.png"
    write_png(path, grid)
    out["hybridised_chunks"] = {
        "path": str(path.relative_to(cfg.out)),
        "drawn_by": drawn_by,
        "layout": "per base image: one row per quarter of the variables; first column the "
        "base, then re-draws of that quarter with the rest fixed",
    }
    return out
