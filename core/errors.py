"""Typed errors of the package, rooted in :class:`SAEError`; here those of the client side.

Every client message names the model (the full served name, prefix included) and, where one is at fault, the input.
"""

from __future__ import annotations


class SAEError(Exception):
    """Root of the errors this package raises on purpose: the message says what is wrong and names the file, input
    or flag at fault, so the ``sae`` command prints it as one line."""


class UsageError(SAEError, ValueError):
    """A command's arguments that argparse cannot check alone: missing, or contradicting each other (exit 2)."""


class MissingDependencyError(SAEError, RuntimeError):
    """An optional dependency (an extra such as ``[cli]`` or ``[explore]``, or the Triton wheel) is not installed:
    the message names what to install (exit 1)."""


class ClientError(SAEError, RuntimeError):
    """Base class for everything the client raises."""


class InvalidInputError(ClientError, ValueError):
    """An input was rejected before sending (or by the server): the message names the model and the input."""

    def __init__(self, message: str, model: str = "", input_name: str = ""):
        super().__init__(message)
        self.model = model
        self.input_name = input_name


class ServerUnavailableError(ClientError):
    """The server did not answer (or did not become ready) in time, even after the bounded retries."""


class ServerNotFoundError(ServerUnavailableError):
    """Nothing listens at the address (connection refused, or the host does not resolve): waiting will not help."""


class ModelNotReadyError(ServerUnavailableError):
    """The server serves the model but it did not become ready in time (still loading, or the server starting)."""


class ClientTimeoutError(ServerUnavailableError, TimeoutError):
    """A call ran past its deadline (``timeout_s``)."""


class InferenceError(ClientError):
    """The server answered with an error (``status`` is the gRPC status, e.g. ``StatusCode.INVALID_ARGUMENT``)."""

    def __init__(self, message: str, model: str = "", status: str = ""):
        super().__init__(message)
        self.model = model
        self.status = status


class ModelNotServedError(InferenceError, ValueError):
    """The server does not serve the model the client asked for (wrong ``model=`` prefix, or not exported yet): an
    error of the caller's input, so also a ``ValueError``."""


class EncodeJobError(ClientError):
    """``sae encode`` cannot go on: the output belongs to another input/model, or every server is down.

    The output file is never left corrupt: run the job again to resume from the last committed chunk.
    """


class EncodeInputError(EncodeJobError, ValueError):
    """``sae encode``'s input or output file is not one it can use (no images, an output of another encoding or
    not a latents file): an error of the caller's input."""
