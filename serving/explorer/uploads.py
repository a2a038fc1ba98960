"""An uploaded image, checked before it reaches the encoder: at most ``MAX_UPLOAD_BYTES``, a PNG or JPEG by its
first bytes (what the browser says the type is counts for nothing), at most ``MAX_PIXELS`` once decoded, then
converted to RGB, cropped to its central square and resized to the model's input side. The bytes are decoded in
memory; nothing is written to disk."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from sae.core.errors import SAEError

MAX_UPLOAD_BYTES = 4 << 20  # 4 MiB
MAX_PIXELS = 4096 * 4096  # decoded width x height; a larger image (or a decompression bomb) is refused
SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


class UploadError(SAEError, ValueError):
    """An upload the explorer refuses; the message says why, in words for the page."""


@dataclass(frozen=True)
class Upload:
    image: np.ndarray  # uint8 [side, side, 3]
    format: str  # PNG or JPEG
    original_size: tuple[int, int]  # width, height as uploaded

    @property
    def note(self) -> str:
        w, h = self.original_size
        side = self.image.shape[0]
        return f"{self.format} {w}x{h}" + ("" if (w, h) == (side, side) else f", cropped and resized to {side}x{side}")


def image_format(data: bytes) -> str:
    for signature, name in SIGNATURES.items():
        if data.startswith(signature):
            return name
    raise UploadError("not a PNG or JPEG image: upload a .png or .jpg file")


def check_bytes(data: bytes) -> str:
    """The format of an upload (PNG or JPEG) by its size and first bytes, before anything decodes it."""
    if not data:
        raise UploadError("the upload is empty: choose a PNG or JPEG image")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(
            f"the image is too large ({len(data) / 2**20:.1f} MiB; at most {MAX_UPLOAD_BYTES / 2**20:.0f} MiB)"
        )
    return image_format(data)


def read_upload(data: bytes, side: int) -> Upload:
    """``data`` (the request body) -> the model's input image; raises UploadError with the reason."""
    fmt = check_bytes(data)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - the explore extra installs pillow
        raise UploadError("uploads need Pillow: pip install 'sae-serving[explore]'") from None
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as opened:
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise UploadError(f"the image is too large ({width}x{height} pixels; at most {MAX_PIXELS:,})")
            rgb = opened.convert("RGB")
    except UploadError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UploadError(f"the {fmt} image could not be decoded ({e})") from None
    crop = min(width, height)
    left, top = (width - crop) // 2, (height - crop) // 2
    square = rgb.crop((left, top, left + crop, top + crop))
    if crop != side:
        square = square.resize((side, side), Image.Resampling.BILINEAR)
    return Upload(np.asarray(square, dtype=np.uint8), fmt, (width, height))
