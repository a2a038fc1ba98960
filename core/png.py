"""A tiny dependency-free PNG writer (numpy + the standard library only).

Used for example grids and reconstructions in docs and clients, where Pillow is not available.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import numpy.typing as npt

from sae.core.atomic import write_bytes_atomic

__all__ = ["write_png", "encode_png", "image_grid"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _as_hwc_uint8(image: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in _COLOR_TYPES:
        raise ValueError(f"expected an HW, HW1, HW2, HW3 or HW4 image, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must be non-empty, got shape {image.shape}")
    return np.ascontiguousarray(image)


def encode_png(image_uint8_hwc: npt.NDArray[np.uint8], level: int = 6) -> bytes:
    """Encode an 8-bit image (H×W, H×W×1/2/3/4) as PNG bytes (filter type 0 on every row)."""
    image = _as_hwc_uint8(image_uint8_hwc)
    height, width, channels = image.shape
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPES[channels], 0, 0, 0)
    rows = image.reshape(height, width * channels)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)  # filter byte 0 ("None")
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level))
        + _chunk(b"IEND", b"")
    )


def write_png(path: str | os.PathLike[str], image_uint8_hwc: npt.NDArray[np.uint8]) -> None:
    """Write an 8-bit image (H×W gray, or H×W×C with C in 1..4) to ``path`` as PNG."""
    write_bytes_atomic(path, encode_png(image_uint8_hwc))


def image_grid(
    images_nhwc_uint8: npt.NDArray[np.uint8], ncols: int, pad: int = 2, pad_value: int = 255
) -> npt.NDArray[np.uint8]:
    """Tile N images (N×H×W×C uint8, or N×H×W) into one H'×W'×C uint8 image, row-major.

    ``pad`` pixels of ``pad_value`` separate the tiles and frame the grid; missing cells in the last row stay
    filled with ``pad_value``.
    """
    images = np.asarray(images_nhwc_uint8)
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"expected N×H×W×C images with N ≥ 1, got shape {images.shape}")
    if ncols < 1 or pad < 0:
        raise ValueError("ncols must be ≥ 1 and pad ≥ 0")
    n, h, w, c = images.shape
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    grid = np.full((pad + nrows * (h + pad), pad + ncols * (w + pad), c), pad_value, np.uint8)
    for k in range(n):
        r, q = divmod(k, ncols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[y : y + h, x : x + w] = images[k]
    return grid
