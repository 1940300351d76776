"""Free-port picking and port-conflict errors on 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket

import psutil


class PortInUseError(OSError):
    """A port the stack was told to use is taken."""


def pick_free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _owner_of(port: int) -> str:
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid:
                    with contextlib.suppress(psutil.Error):
                        proc = psutil.Process(conn.pid)
                        return f" by pid {conn.pid} ({proc.name()})"
                return ""
    return ""


def ensure_port_free(port: int, what: str, host: str = "127.0.0.1") -> None:
    """Raise ``PortInUseError`` naming ``what`` and the fix when ``port`` cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise PortInUseError(
                f"Port {port} on {host} for the {what} is already in use{_owner_of(port)}. "
                "Fix: choose another port, or leave it unset (None) to auto-pick a free one."
            ) from None
