"""One ``httpx.AsyncClient`` per event loop: the notebook's loop and the sync wrappers'
background loop each get their own (an AsyncClient must not cross loops)."""

from __future__ import annotations

import asyncio
import weakref

import httpx


class ClientPool:
    def __init__(
        self, *, timeout_s: float, headers: dict[str, str] | None = None, max_connections: int = 256
    ) -> None:
        self._timeout = httpx.Timeout(timeout_s, connect=5.0)
        self._headers = headers or {}
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._clients = weakref.WeakKeyDictionary()

    def get(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(
                timeout=self._timeout, headers=self._headers, limits=self._limits, trust_env=False
            )
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}
