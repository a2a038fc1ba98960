"""Serving side of the package; ``train``, ``export``, ``load_model`` and ``SAEClient`` are its Python API
(``serving/api.py``), imported on first use so that ``sae`` starts without tritonclient or torch."""
from __future__ import annotations

_API = ("SAEClient", "export", "load_model", "train")


def __getattr__(name: str):
    if name in _API:
        from sae.serving import api

        return getattr(api, name)
    raise AttributeError(f"module 'serving' has no attribute {name!r}")
