"""One call from a python-backend model into another served model through Triton's BLS API (Business Logic
Scripting), as ``NAME_traverse``, ``NAME_hybrid_sample`` and ``NAME_prior_sample`` call ``NAME_decode``.

A BLS request goes through the called model's own scheduler, so ``NAME_decode``'s dynamic batcher merges the
latents of concurrent callers (and of direct decode requests) into one ONNX Runtime call, and checks each caller's
latents and images on their own: a caller whose latents the decoder refuses gets that error alone. Needs numpy
only; ``sae export`` copies this file beside the models that use it as ``sae_bls.py``.

Every model of a set carries the same version number (``repository/install.py``), so a caller asks for the decoder
of its own version. While a polling server swaps the set's folders one by one, a sampler of version N whose decoder
N is already gone answers UNAVAILABLE (which the clients retry) instead of decoding its version's latents with
another version's decoder: each answer is entirely one version's.
"""

import numpy as np


class Refused(ValueError):
    """The called model refused the input (INVALID_ARGUMENT): still the client's input, not a server fault."""


class VersionUnavailable(RuntimeError):
    """The called model's version is not loaded (the repository is between two versions): retry."""


def unavailable(pb, message: str):
    """A TritonError with status UNAVAILABLE (which the clients retry) where the python backend supports codes."""
    code = getattr(pb.TritonError, "UNAVAILABLE", None)
    return pb.TritonError(message) if code is None else pb.TritonError(message, code)


def call(
    pb,
    model: str,
    input_name: str,
    array: np.ndarray,
    output_name: str,
    refusals: tuple[str, ...] = (),
    version: int = -1,
) -> np.ndarray:
    """``model``'s ``output_name`` for the one input ``input_name`` = ``array``, in host memory, from ``model``'s
    ``version`` (-1: the newest it serves). Raises Refused for an INVALID_ARGUMENT answer, or one whose message
    contains one of ``refusals`` (the python backend hands a BLS caller the called model's error message, but not
    always its code), VersionUnavailable when ``version`` is not loaded, and RuntimeError for any other error; every
    message starts with ``model``."""
    kwargs = {}
    if hasattr(pb, "PreferredMemory"):  # a GPU model's output comes back to host memory
        kwargs["preferred_memory"] = pb.PreferredMemory(pb.TRITONSERVER_MEMORY_CPU, 0)
    request = pb.InferenceRequest(
        model_name=model,
        model_version=version,
        requested_output_names=[output_name],
        inputs=[pb.Tensor(input_name, array)],
        **kwargs,
    )
    response = request.exec()
    if response.has_error():
        error = response.error()
        message = f"{model}: {error.message()}"
        code = getattr(pb.TritonError, "INVALID_ARG", None)
        if (code is not None and hasattr(error, "code") and error.code() == code) or any(
            r in message for r in refusals
        ):
            raise Refused(message)
        if version >= 0 and not pb.is_model_ready(model, str(version)):
            raise VersionUnavailable(
                f"{model} version {version} is not loaded (the repository is changing versions; retry): {message}"
            )
        raise RuntimeError(message)
    return pb.get_output_tensor_by_name(response, output_name).as_numpy()
