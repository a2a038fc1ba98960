"""A folder of JPEGs (aligned CelebA), centre-cropped and resized when read."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np

from sae.core.datasets import base

if TYPE_CHECKING:
    from PIL.Image import Image


CELEBA_IMAGE_SIZE = 128
JPEG_SUFFIXES = (".jpg", ".jpeg")


def centre_crop_resize(image: Image, size: int) -> Image:
    """A PIL image → the largest centred square, resized to ``size``×``size`` RGB (bicubic, antialiased)."""
    from PIL import Image

    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = image.convert("RGB").crop((left, top, left + side, top + side))
    return square.resize((size, size), Image.Resampling.BICUBIC)


@dataclass
class JpegFolder(base.ImageFile):
    """A folder of JPEGs (aligned CelebA: ``img_align_celeba/000001.jpg`` …), in sorted file-name order.

    Each read decodes the files, crops the largest centred square and resizes it to ``size`` (128). A folder
    with no JPEGs but an ``img_align_celeba`` subfolder (the extracted archive) reads that subfolder. No labels.
    Reads of more than a few files decode on ``threads`` threads (Pillow releases the GIL while decoding and
    resizing; default: up to 8, one per core)."""

    path: Path
    size: int = CELEBA_IMAGE_SIZE
    exclude: base.Exclude | None = None
    threads: int | None = None
    factor_names: tuple[str, ...] = field(init=False, default=())
    factor_sizes: tuple[int, ...] = field(init=False, default=())
    has_labels: bool = field(init=False, default=False)
    slice_reads: ClassVar[bool] = False  # each row is decoded on its own

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_dir():
            raise base.DatasetError(f"image folder {self.path} does not exist")
        self.files = self._list(self.path)
        if not self.files and (self.path / "img_align_celeba").is_dir():
            self.path = self.path / "img_align_celeba"
            self.files = self._list(self.path)
        if not self.files:
            found = sorted(p.name for p in self.path.iterdir())[:10]
            raise base.DatasetError(f"{self.path} holds no JPEG files ({'/'.join(JPEG_SUFFIXES)}); found {found}")
        if self.size < 1:
            raise base.DatasetError(f"JpegFolder size must be ≥ 1 pixel, got {self.size}")
        self.shape = (len(self.files), self.size, self.size, 3)
        self.threads = int(self.threads) if self.threads is not None else min(8, os.cpu_count() or 1)
        if self.threads < 1:
            raise base.DatasetError(f"JpegFolder threads must be ≥ 1, got {self.threads}")
        self._pool: ThreadPoolExecutor | None = None
        self._rows = base.usable_rows(self, self.exclude)

    @staticmethod
    def _list(folder: Path) -> list[Path]:
        return sorted(
            (p for p in folder.iterdir() if p.suffix.lower() in JPEG_SUFFIXES and p.is_file()), key=lambda p: p.name
        )

    def _decode(self, file: Path) -> base.ImageArray:
        try:
            from PIL import Image, UnidentifiedImageError
        except ImportError as e:
            raise base.DatasetError(
                f"reading JPEGs in {self.path} needs Pillow: pip install 'sae-serving[data]' (or pillow)"
            ) from e
        try:
            with Image.open(file) as image:
                image.load()
                return np.asarray(centre_crop_resize(image, self.size), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise base.DatasetError(f"{file}: unreadable JPEG ({e})") from e

    def read(self, indices: base.RowSelection) -> base.ImageArray:
        """uint8 [n, S, S, 3], decoded now."""
        rows = base.row_range(indices, len(self), self.path)
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        files = [self.files[r] for r in rows]
        decoded: Iterator[base.ImageArray]
        if self.threads == 1 or len(files) < 4 * cast(int, self.threads):  # __post_init__ resolved it
            decoded = map(self._decode, files)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="jpeg-decode")
            decoded = self._pool.map(self._decode, files)
        for i, image in enumerate(decoded):
            out[i] = image
        return out

    def read_labels(self, indices: base.RowSelection) -> base.LabelArray:
        raise base.DatasetError(f"{self.path} (a folder of JPEGs) has no labels")

    def read_factors(self, indices: base.RowSelection) -> base.FactorArray:
        raise base.DatasetError(f"{self.path} (a folder of JPEGs) has no factors")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pool"] = None
        return state
