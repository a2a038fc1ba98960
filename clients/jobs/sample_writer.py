"""Large hybrid-sample runs streamed to files with memory bounded by one request (and one PNG tile), not by n.

The format follows the output's suffix: ``.png`` tiled PNG grids (``samples.png`` for one tile, else
``samples_0000.png``, ``samples_0001.png``, ...), ``.h5`` images (uint8), latents and source indices written chunk
by chunk with h5py, ``.npz`` the same arrays in one file (held in memory, so only up to ``NPZ_MAX_SAMPLES``).
Part p of a run is drawn with ``part_seed(seed, p)``, as :meth:`SAEClient.sample` splits a call, so a streamed run
holds exactly the samples of one ``client.sample(n, seed)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from sae.clients.request_plans import sample_parts
from sae.clients.results import HybridSamples
from sae.core.atomic import atomic_write
from sae.core.draw import to_uint8
from sae.core.errors import InferenceError, UsageError
from sae.core.png import image_grid, write_png

if TYPE_CHECKING:
    from sae.core.progress_bar import ProgressDisplay

FORMATS = (".png", ".h5", ".npz")
NPZ_MAX_SAMPLES = 16_384  # 64x64 RGB uint8: about 200 MB held in memory before the file is written
PNG_TILE_SAMPLES = 1_024  # samples per PNG grid

Sampler = Callable[[int, int], HybridSamples]  # (count <= the server's limit, SEED) -> one request's samples


@dataclass(frozen=True)
class SampleRun:
    """What to draw: ``n`` samples seeded like ``client.sample(n, seed)``, in requests of at most ``limit``."""

    n: int
    seed: int
    limit: int

    def __post_init__(self) -> None:
        for name in ("n", "limit"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise UsageError(f"seed must be non-negative, got {self.seed}")

    @property
    def requests(self) -> int:
        return math.ceil(self.n / self.limit)


def sample_format(out: Path, n: int) -> str:
    """The format of ``out`` by its suffix; a clear error for an unknown suffix or an .npz over the cap."""
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"--out {out}: unknown format {suffix or '(no suffix)'!r}; use one of {', '.join(FORMATS)}")
    if suffix == ".npz" and n > NPZ_MAX_SAMPLES:
        raise UsageError(
            f"--out {out}: .npz holds every sample in memory and is capped at {NPZ_MAX_SAMPLES:,} "
            f"samples, got {n:,}; write .h5 instead (streamed chunk by chunk)"
        )
    return suffix


def png_tile_paths(out: Path, n: int, tile: int | None = None) -> list[Path]:
    """``out`` for one tile, else ``STEM_0000.png``, ``STEM_0001.png``, ... beside it."""
    count = math.ceil(n / (tile or PNG_TILE_SAMPLES))
    if count == 1:
        return [Path(out)]
    return [Path(out).with_name(f"{Path(out).stem}_{i:04d}{Path(out).suffix}") for i in range(count)]


def sample_chunks(sampler: Sampler, run: SampleRun, progress: ProgressDisplay | None = None) -> Iterator[HybridSamples]:
    """One request's samples at a time, part p seeded ``part_seed(run.seed, p)``; ``progress.update`` per chunk."""
    for part, (count, seed) in enumerate(sample_parts(run.n, run.seed, run.limit)):
        chunk = sampler(count, seed)
        if len(chunk.images) != count:
            raise InferenceError(f"sampler returned {len(chunk.images)} samples for part {part}, asked for {count}")
        yield chunk
        if progress is not None:
            progress.update(count)


def write_h5(out: Path, chunks: Iterator[HybridSamples], n: int) -> list[Path]:
    import h5py

    with atomic_write(out) as tmp, h5py.File(tmp, "w") as f:
        start = 0
        for chunk in chunks:
            images = to_uint8(chunk.images)
            if start == 0:
                rows = len(images)
                f.create_dataset("images", (n, *images.shape[1:]), np.uint8, chunks=(min(rows, 256), *images.shape[1:]))
                f.create_dataset("latents", (n, chunk.latents.shape[1]), np.float32)
                f.create_dataset("source_index", (n, chunk.source_index.shape[1]), np.int64)
                f.attrs["draw_mode"] = chunk.draw_mode
            end = start + len(images)
            f["images"][start:end] = images
            f["latents"][start:end] = chunk.latents
            f["source_index"][start:end] = chunk.source_index
            start = end
    return [Path(out)]


def write_npz(out: Path, chunks: Iterator[HybridSamples], n: int) -> list[Path]:
    parts = [(to_uint8(c.images), c.latents.astype(np.float32), c.source_index.astype(np.int64)) for c in chunks]
    images, latents, source_index = (np.concatenate(column) for column in zip(*parts))
    with atomic_write(out) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a path
            np.savez(f, images=images, latents=latents, source_index=source_index)
    return [Path(out)]


def write_png_tiles(out: Path, chunks: Iterator[HybridSamples], n: int, tile: int | None = None) -> list[Path]:
    tile = tile or PNG_TILE_SAMPLES
    paths = png_tile_paths(out, n, tile)
    pending: list[npt.NDArray[np.uint8]] = []
    written: list[Path] = []

    def flush() -> None:
        images = np.concatenate(pending)
        pending.clear()
        write_png(paths[len(written)], image_grid(images, ncols=int(round(len(images) ** 0.5))))
        written.append(paths[len(written)])

    held = 0
    for chunk in chunks:
        images = to_uint8(chunk.images)
        while len(images):
            take = min(tile - held, len(images))
            pending.append(images[:take])
            images, held = images[take:], held + take
            if held == tile:
                flush()
                held = 0
    if held:
        flush()
    return written


WRITERS = {".h5": write_h5, ".npz": write_npz, ".png": write_png_tiles}


def stream_samples(sampler: Sampler, run: SampleRun, out: Path, progress: bool = True) -> list[Path]:
    """Draw ``run`` through ``sampler`` into ``out`` (format by suffix); the paths written. A bar on stderr when
    there is more than one request (and stderr is a terminal)."""
    from sae.core.progress_bar import progress_bar

    writer = WRITERS[sample_format(out, run.n)]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with progress_bar(run.n, "samples", unit="sample", enabled=progress and run.requests > 1) as bar:
        return writer(Path(out), sample_chunks(sampler, run, bar), run.n)
