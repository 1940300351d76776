"""Chat over the OpenAI ``POST /v1/chat/completions`` schema, plain and streaming."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from magicaf_nb.config import GenerationConfig, LlmConfig
from magicaf_nb.services.errors import ServiceError, describe_transport_error
from magicaf_nb.services.http import RETRYABLE_ERRORS, RETRYABLE_STATUS, RetryPolicy, request_json
from magicaf_nb.services.pool import ClientPool, auth_headers
from magicaf_nb.services.sync import run_sync

Messages = Sequence[dict[str, str]]


@dataclass
class ChatResult:
    """One completion with its timing. Streaming fills ``ttft_s`` and ``token_times_s``."""

    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    served_by: str | None = None
    ttft_s: float | None = None
    token_times_s: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float | None:
        """Output tokens per second of the whole request (decode rate seen by the client)."""
        if not self.completion_tokens or self.latency_s <= 0:
            return None
        return self.completion_tokens / self.latency_s

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first (vLLM's TPOT)."""
        if self.ttft_s is None or not self.completion_tokens or self.completion_tokens < 2:
            return None
        return (self.latency_s - self.ttft_s) / (self.completion_tokens - 1)


def as_messages(prompt: str | Messages, system: str | None = None) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError("The prompt is empty: pass a question or a list of chat messages.")
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = [dict(m) for m in prompt]
        if not messages:
            raise ValueError("No messages: pass a prompt string or a non-empty message list.")
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return messages


class LlmClient:
    """An OpenAI-compatible chat client for vLLM, llama-server and their load balancers."""

    def __init__(self, config: LlmConfig) -> None:
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.policy = RetryPolicy(max_retries=config.max_retries)
        self._pool = ClientPool(timeout_s=config.timeout_s, headers=auth_headers(config.api_key))
        self._fix = (
            f"Fix: check that the LLM server is up (`magicaf-nb status`) and that "
            f"LLM_URL={config.base_url} is right (it ends with /v1)."
        )

    def _body(
        self,
        prompt: str | Messages,
        generation: GenerationConfig | None,
        system: str | None,
        stream: bool,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": as_messages(prompt, system),
            **(generation or GenerationConfig()).to_openai(),
        }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def achat(
        self,
        prompt: str | Messages,
        generation: GenerationConfig | None = None,
        *,
        system: str | None = None,
    ) -> ChatResult:
        url = f"{self.base_url}/chat/completions"
        start = time.perf_counter()
        response = await request_json(
            self._pool.get(),
            "POST",
            url,
            json=self._body(prompt, generation, system, False),
            policy=self.policy,
            service="llm",
            fix=self._fix,
        )
        latency = time.perf_counter() - start
        body = response.json()
        try:
            choice = body["choices"][0]
            usage = body.get("usage") or {}
        except (KeyError, IndexError, TypeError) as exc:
            raise ServiceError(
                f"llm: {url} answered without choices: {str(body)[:200]}", url=url
            ) from exc
        return ChatResult(
            text=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            latency_s=latency,
            served_by=response.headers.get("x-served-by"),
        )

    async def astream_chat(
        self,
        prompt: str | Messages,
        generation: GenerationConfig | None = None,
        *,
        system: str | None = None,
    ) -> ChatResult:
        """Stream a completion; measures time to first token and every token's arrival."""
        url = f"{self.base_url}/chat/completions"
        body = self._body(prompt, generation, system, True)
        for attempt in range(self.policy.max_retries + 1):
            try:
                return await self._stream_once(url, body)
            except _RetryableStreamError as exc:
                cause = str(exc)
                if attempt < self.policy.max_retries:
                    await asyncio.sleep(self.policy.delay(attempt))
        raise ServiceError(
            f"llm: POST {url} (stream) failed after "
            f"{self.policy.max_retries + 1} attempt(s): {cause}. {self._fix}",
            url=url,
        )

    async def _stream_once(self, url: str, body: dict[str, Any]) -> ChatResult:
        start = time.perf_counter()
        parts: list[str] = []
        token_times: list[float] = []
        finish, usage = None, {}
        try:
            async with self._pool.get().stream("POST", url, json=body) as response:
                if response.status_code >= 400:
                    detail = (await response.aread()).decode(errors="replace")[:300]
                    if response.status_code in RETRYABLE_STATUS:
                        raise _RetryableStreamError(f"HTTP {response.status_code}: {detail}")
                    raise ServiceError(
                        f"llm: POST {url} -> HTTP {response.status_code}: {detail}. {self._fix}",
                        url=url,
                        status=response.status_code,
                    )
                served_by = response.headers.get("x-served-by")
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    chunk = json.loads(payload)
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        delta = (choice.get("delta") or {}).get("content")
                        if delta:
                            token_times.append(time.perf_counter() - start)
                            parts.append(delta)
                        finish = choice.get("finish_reason") or finish
        except RETRYABLE_ERRORS as exc:
            if token_times:  # tokens already reached the caller: a retry would duplicate them
                raise ServiceError(
                    f"llm: stream from {url} broke after {len(token_times)} "
                    f"tokens: {describe_transport_error(exc)}",
                    url=url,
                ) from exc
            raise _RetryableStreamError(describe_transport_error(exc)) from exc
        return ChatResult(
            text="".join(parts),
            finish_reason=finish,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens") or len(token_times) or None,
            latency_s=time.perf_counter() - start,
            served_by=served_by,
            ttft_s=token_times[0] if token_times else None,
            token_times_s=token_times,
        )

    async def ahealth_check(self) -> bool:
        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        await request_json(
            self._pool.get(),
            "GET",
            f"{root}/health",
            policy=RetryPolicy(max_retries=0),
            service="llm",
            fix=self._fix,
        )
        return True

    def chat(
        self,
        prompt: str | Messages,
        generation: GenerationConfig | None = None,
        *,
        system: str | None = None,
    ) -> ChatResult:
        return run_sync(self.achat(prompt, generation, system=system))

    def stream_chat(
        self,
        prompt: str | Messages,
        generation: GenerationConfig | None = None,
        *,
        system: str | None = None,
    ) -> ChatResult:
        return run_sync(self.astream_chat(prompt, generation, system=system))

    def health_check(self) -> bool:
        return run_sync(self.ahealth_check())

    async def aclose(self) -> None:
        await self._pool.aclose()


class _RetryableStreamError(Exception):
    pass


__all__ = ["ChatResult", "LlmClient", "as_messages"]
