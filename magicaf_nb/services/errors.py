"""Errors from the HTTP services, naming the URL, the cause and the fix."""

from __future__ import annotations

import httpx


class ServiceError(RuntimeError):
    """A request to a service failed; ``url`` and ``status`` say where and how."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


def describe_transport_error(exc: Exception) -> str:
    """A human cause for a transport-level failure."""
    if isinstance(exc, httpx.ConnectError):
        return f"connection refused or unreachable ({exc or 'no server listening'})"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"the server closed the connection mid-response ({exc})"
    return f"{type(exc).__name__}: {exc}"
