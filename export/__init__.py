"""Export: a trained run -> ONNX / TorchScript graphs, the bank and a complete model set (``sae.export.model_set``).

``from sae import export`` names both this package and the Python API's function (``sae.api.export``): Python binds
``sae.export`` to this package as soon as any of its modules is imported, so the package itself is callable, and
``export(run, repo, name=...)`` makes the same call as ``sae.api.export`` whichever of the two a caller got.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sae.export.model_set import ExportReport


class _CallableExportPackage(types.ModuleType):
    def __call__(self, run: str | Path, repo: str | Path, name: str = "", **options: Any) -> ExportReport:
        from sae.export.model_set import export_run

        return export_run(Path(run), Path(repo), name=name, **options)


sys.modules[__name__].__class__ = _CallableExportPackage
