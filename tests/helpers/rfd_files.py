"""Small folders in the Robot Finger Dataset's file format, written by the tests that read or train on them."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from sae.core.datasets.rfd import RFD_FACTOR_SIZES


def random_factors(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, s, n) for s in RFD_FACTOR_SIZES], axis=1).astype(np.int64)


def finger_images(factors: np.ndarray, size: int = 128) -> np.ndarray:
    """uint8 [N, size, size, 3]: a background whose colour follows the cube colour and a square placed by x and y."""
    n = len(factors)
    images = np.empty((n, size, size, 3), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for i, f in enumerate(factors):
        images[i] = (np.array([40, 90, 140]) + 12 * f[1]).astype(np.uint8)
        cx, cy = 10 + f[6] * (size - 20) // 30, 10 + f[7] * (size - 20) // 30
        square = (abs(xx - cx) < 8) & (abs(yy - cy) < 8)
        images[i][square] = (200, 40 + 6 * f[3], 30 + 20 * f[8])
    return images


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def write_info(folder: Path, prefix: str, n: int, sizes=RFD_FACTOR_SIZES, pickled_values: bool = True) -> None:
    """``PREFIX_info.npz`` as the dataset ships it: numeric keys, and ``factor_values``, a pickled dict."""
    arrays = {"num_factor_values": np.asarray(sizes, np.int64), "dataset_size": np.asarray(n)}
    if pickled_values:
        values = np.empty((), dtype=object)
        values[()] = {"shape": [0], "colour": list(range(8))}
        arrays["factor_values"] = values
    np.savez(folder / f"{prefix}_info.npz", **arrays)


def write_finger_variant(
    root: Path,
    images: np.ndarray,
    factors: np.ndarray,
    variant: str = "finger",
    members: dict[int, bytes] | None = None,
) -> Path:
    """``root/VARIANT/`` with the tar of PNGs (members ``images/N.png``), labels and info; ``members`` replaces
    the bytes of chosen rows (to write corrupt files)."""
    folder = root / variant
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / f"{variant}_images.tar", "w") as tar:
        for i, image in enumerate(images):
            data = (members or {}).get(i, png_bytes(image))
            info = tarfile.TarInfo(f"images/{i}.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    np.savez(folder / f"{variant}_labels.npz", labels=factors)
    write_info(folder, variant, len(images))
    return folder


def write_finger_real(root: Path, images: np.ndarray, factors: np.ndarray) -> Path:
    """``root/finger_real/`` with the images in an uncompressed ``.npz``, labels and info."""
    folder = root / "finger_real"
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "finger_real_images.npz", images=images)
    np.savez(folder / "finger_real_labels.npz", labels=factors)
    write_info(folder, "finger_real", len(images))
    return folder


def write_rfd(root: Path, n: int = 24, seed: int = 0) -> Path:
    """``root/robot_finger_datasets/`` with all three variants of ``n`` images each."""
    base = root / "robot_finger_datasets"
    for k, variant in enumerate(("finger", "finger_heldout_colors")):
        factors = random_factors(n, seed + k)
        write_finger_variant(base, finger_images(factors), factors, variant)
    factors = random_factors(n, seed + 2)
    write_finger_real(base, finger_images(factors), factors)
    return base
