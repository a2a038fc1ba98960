"""Typed errors of the client side."""


class ClientError(RuntimeError):
    """Base class for everything the client raises."""


class InvalidInputError(ClientError, ValueError):
    """An input was rejected before sending: the message names the model and the input."""


class ServerUnavailableError(ClientError):
    """The server did not answer (or did not become ready) in time."""


class InferenceError(ClientError):
    """The server answered with an error."""
