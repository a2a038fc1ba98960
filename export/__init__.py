"""Export: a trained run -> ONNX / TorchScript graphs, the bank and a complete model set (``sae.export.model_set``).

``from sae import export`` names both this package and the Python API's function (``sae.api.export``): Python binds
``sae.export`` to this package as soon as any of its modules is imported, so the package itself is callable, and
``export(run, repo, name=...)`` is ``sae.api.export`` whichever of the two a caller got.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableExportPackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from sae.api import export

        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableExportPackage
