"""One HTTP request with retries and backoff on connection errors and 5xx answers."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import httpx

from magicaf_nb.services.errors import ServiceError, describe_transport_error

RETRYABLE_STATUS = {502, 503, 504}
RETRYABLE_ERRORS = (
    httpx.ConnectError,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.PoolTimeout,
    httpx.ConnectTimeout,
)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    base_delay_s: float = 0.1
    max_delay_s: float = 2.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.max_delay_s, self.base_delay_s * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    json: Any = None,
    policy: RetryPolicy,
    service: str,
    fix: str,
    reject_fix: str = "Fix: the server refused this request; its message above says why.",
) -> httpx.Response:
    """Send one request; retry transient failures; raise ``ServiceError`` when out of tries."""
    last_cause = ""
    status: int | None = None
    for attempt in range(policy.max_retries + 1):
        try:
            response = await client.request(method, url, json=json)
        except RETRYABLE_ERRORS as exc:
            last_cause, status = describe_transport_error(exc), None
        except httpx.TimeoutException as exc:
            raise ServiceError(
                f"{service}: {method} {url} {describe_transport_error(exc)}. {fix}", url=url
            ) from exc
        else:
            if response.status_code < 400:
                return response
            status = response.status_code
            last_cause = f"HTTP {status}: {response.text[:300]}"
            if status not in RETRYABLE_STATUS:
                break
        if attempt < policy.max_retries:
            await asyncio.sleep(policy.delay(attempt))
    tries = attempt + 1
    advice = reject_fix if status is not None and 400 <= status < 500 else fix
    raise ServiceError(
        f"{service}: {method} {url} failed after {tries} attempt(s): {last_cause}. {advice}",
        url=url,
        status=status,
    )
