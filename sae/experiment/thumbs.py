"""Small PNG thumbnails for ``OUT/thumbs/`` (each at most about 60 KB, so a grid's figures can live in git)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from sae.core.png import encode_png, image_grid
from sae.experiment.cell_results import CellFileError
from sae.experiment.markers import write_atomic

MAX_THUMB_BYTES = 60_000
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> channels


def read_png(path: Path) -> np.ndarray:
    """Decode an 8-bit, non-interlaced PNG whose rows all use filter 0, as ``sae.core.png`` writes them."""
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise CellFileError(f"{path} is not a PNG file")
    pos, header, idat = 8, None, []
    try:
        while pos < len(data):
            length, tag = struct.unpack(">I4s", data[pos : pos + 8])
            body = data[pos + 8 : pos + 8 + length]
            if tag == b"IHDR":
                header = struct.unpack(">IIBBBBB", body)
            elif tag == b"IDAT":
                idat.append(body)
            pos += 12 + length
    except struct.error as e:
        raise CellFileError(f"{path}: a truncated PNG chunk ({e})") from e
    if header is None:
        raise CellFileError(f"{path}: no IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or interlace or colour not in _CHANNELS:
        raise CellFileError(f"{path}: only 8-bit non-interlaced gray/RGB(A) PNGs are read here")
    channels = _CHANNELS[colour]
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, 1 + width * channels)
    except (zlib.error, ValueError) as e:  # ValueError: the pixels do not fill the IHDR's width x height
        raise CellFileError(f"{path}: corrupt PNG pixel data ({e})") from e
    if raw[:, 0].any():
        raise CellFileError(f"{path}: rows use PNG filters other than 0, which this reader does not undo")
    return raw[:, 1:].reshape(height, width, channels).copy()


def _halve(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    pooled = image[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).astype(np.float32).mean(axis=(1, 3))
    return np.round(pooled).astype(np.uint8)


def write_thumbnail(path: Path, image: np.ndarray, max_bytes: int = MAX_THUMB_BYTES) -> Path:
    """Write ``image`` as PNG, halved in size until it fits in ``max_bytes``."""
    encoded = encode_png(image, level=9)
    while len(encoded) > max_bytes and min(image.shape[:2]) >= 16:
        image = _halve(image)
        encoded = encode_png(image, level=9)
    return write_atomic(path, encoded)


def thumbnail_of(figure: Path, path: Path) -> Path:
    return write_thumbnail(path, read_png(figure))


def grid_thumbnail(path: Path, images: np.ndarray, ncols: int) -> Path:
    return write_thumbnail(path, image_grid(images, ncols=ncols))
