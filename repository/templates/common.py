"""What the python-backend templates share: the request error they refuse a request with, its Triton error, and the
loader of the companion modules ``sae export`` copies beside a model's ``model.py``.

``sae export`` copies this file beside every python-backend ``model.py`` as ``sae_common.py`` (``COMPANIONS`` in
``repository/templates/__init__.py``); each template loads it by path from its own folder, or imports it from the
package where the template itself is imported from the package (tests, benchmarks). Needs the standard library only.
"""

import importlib
import importlib.util
import os
import sys


class BadRequest(ValueError):
    """A request error; the message names the input."""


def bad_request(pb, message: str):
    """A TritonError with status INVALID_ARGUMENT where the python backend supports codes (else INTERNAL)."""
    code = getattr(pb.TritonError, "INVALID_ARG", None)
    return pb.TritonError(message) if code is None else pb.TritonError(message, code)


def companion(copied: str, packaged: str):
    """A module ``sae export`` copies beside the model.py that loaded this file (``copied``.py, loaded by path:
    nothing depends on sys.path), or, where this file is imported from the package, the package's module."""
    beside = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{copied}.py")
    if not os.path.isfile(beside):
        return importlib.import_module(packaged)
    spec = importlib.util.spec_from_file_location(copied, beside)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {beside}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[copied] = module  # registered before it runs: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
