"""Errors the vector server answers: Qdrant's status codes and ``{"status": {"error"}}`` bodies.

qdrant-client raises ``UnexpectedResponse`` carrying the status code and this body, so a
caller sees the same exception and message as against a Qdrant server.
"""

from __future__ import annotations

NEEDS_QDRANT = "Fix: point QDRANT_URL at a Qdrant server (or cluster) for this."


class ApiError(Exception):
    """An HTTP error with Qdrant's status code and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_input(description: str) -> ApiError:
    return ApiError(400, f"Wrong input: {description}")


def already_exists(description: str) -> ApiError:
    return ApiError(409, f"Wrong input: {description}")


def not_found(description: str) -> ApiError:
    return ApiError(404, f"Not found: {description}")


def collection_not_found(name: str) -> ApiError:
    return not_found(f"Collection `{name}` doesn't exist!")


def format_error(description: str, where: str = "JSON body") -> ApiError:
    return ApiError(400, f"Format error in {where}: {description}")


def validation_error(description: str, where: str = "JSON body") -> ApiError:
    return ApiError(422, f"Validation error in {where}: [{description}]")


def not_supported(what: str) -> ApiError:
    """HTTP 501 for a feature this one-node server does not implement."""
    return ApiError(
        501,
        f"{what} is not supported by the embedded vector server (Qdrant's engine, "
        f"qdrant-edge, on one node). {NEEDS_QDRANT}",
    )


def internal(description: str) -> ApiError:
    return ApiError(500, f"Service internal error: {description}")


# Engine messages that mean the request was wrong, not the server.
_INPUT_MARKERS = (
    "dimension error",
    "Not existing vector name",
    "Wrong input",
    "Bad input",
    "bad request",
    "not found",
    "Unable to parse",
)


def from_engine(exc: BaseException) -> ApiError:
    """Map an exception raised by qdrant-edge to the status code Qdrant would give."""
    text = str(exc).strip() or type(exc).__name__
    if any(marker.lower() in text.lower() for marker in _INPUT_MARKERS):
        return bad_input(text)
    return internal(text)
