"""Python-backend code that `sae export` copies, as ``model.py``, into each generated Triton model.

The files are kept here, once, because a Triton repository treats every folder as a model. Each file is
self-contained (Triton loads it by path, with numpy, h5py and onnxruntime of the server's Python environment) and
imports ``triton_python_backend_utils`` only inside ``initialize``, so tests and benchmarks can import its pure
functions outside Triton. Every template imports ``common.py`` (the request error and the companion loader), which
``sae export`` copies beside each python model as ``COMMON_FILE``; the sampler and traverse models import more
companions copied beside them (``COMPANIONS``: the name in the version folder -> the one source file): the wire
contract, the bank file reader, the counter-based draw, the ONNX Runtime session setup and the BLS call into another
served model.
"""

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent
ONNX_MODEL = TEMPLATES / "onnx_model.py"
SAMPLER_MODEL = TEMPLATES / "sampler_model.py"
TRAVERSE_MODEL = TEMPLATES / "traverse_model.py"
TORCH_MODEL = (
    TEMPLATES / "torch_model.py"
)  # TorchScript with PyTorch in the python backend (benchmarks/gpu_check/check.py)
CORE = TEMPLATES.parent.parent / "core"  # the torch-free base: sae.core, in a source tree and in a wheel
BLS = TEMPLATES / "bls.py"
COMMON = TEMPLATES / "common.py"
COMMON_FILE = "sae_common.py"  # its name beside model.py, the name the templates load it by
COMPANIONS = {
    COMMON_FILE: COMMON,
    "sae_draw.py": CORE / "draw.py",
    "sae_onnx_model.py": ONNX_MODEL,
    "sae_wire.py": CORE / "wire.py",
    "sae_bank_file.py": CORE / "bank_file.py",
    "sae_bls.py": BLS,
}
