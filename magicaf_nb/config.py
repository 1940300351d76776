"""Typed configuration mirroring MagicAF's names, and the stack topology (``StackSpec``).

Service configs load from MagicAF's environment variables: ``EMBEDDING_URL``,
``EMBEDDING_MODEL``, ``QDRANT_URL``, ``QDRANT_API_KEY``, ``LLM_URL`` (with ``/v1``),
``LLM_MODEL``, ``LLM_API_KEY``.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

# Replicated services behind a load balancer. The vector store ("qdrant") is not one of
# them: it scales by shards (and, in a Qdrant cluster, replicas), not by LB replicas.
COMPONENTS = ("embedding", "llm", "app")
VECTOR_COMPONENT = "qdrant"
MAX_REPLICAS = 16
MAX_THREADS = 64


class ConfigError(ValueError):
    """A configuration value is missing or out of range; the message says which and the fix."""


def _env(env: Mapping[str, str] | None, name: str, default: str | None = None) -> str | None:
    source = os.environ if env is None else env
    value = source.get(name)
    return value if value not in (None, "") else default


def _require(env: Mapping[str, str] | None, name: str, example: str) -> str:
    value = _env(env, name)
    if value is None:
        raise ConfigError(
            f"{name} is not set. Fix: export {name}={example} "
            "(or take the values from LocalStack.endpoints())."
        )
    return value


@dataclass(frozen=True)
class EmbeddingConfig:
    """How to reach an OpenAI-compatible embedding server (TEI, llama-server, ...)."""

    url: str
    model: str = "all-MiniLM-L6-v2"
    api_key: str | None = None
    batch_size: int = 32
    parallel_batches: int = 2
    timeout_s: float = 60.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        check_positive_int("batch_size", self.batch_size, upper=4096)
        check_positive_int("parallel_batches", self.parallel_batches, upper=256)
        check_non_negative_int("max_retries", self.max_retries, upper=20)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> EmbeddingConfig:
        values: dict[str, Any] = {
            "url": _require(env, "EMBEDDING_URL", "http://127.0.0.1:8080"),
            "model": _env(env, "EMBEDDING_MODEL", "all-MiniLM-L6-v2"),
            "api_key": _env(env, "EMBEDDING_API_KEY"),
        }
        return cls(**{**values, **overrides})


@dataclass(frozen=True)
class VectorStoreConfig:
    """How to reach Qdrant."""

    url: str
    api_key: str | None = None
    timeout_s: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> VectorStoreConfig:
        values: dict[str, Any] = {
            "url": _require(env, "QDRANT_URL", "http://127.0.0.1:6333"),
            "api_key": _env(env, "QDRANT_API_KEY"),
        }
        return cls(**{**values, **overrides})


@dataclass(frozen=True)
class LlmConfig:
    """How to reach an OpenAI-compatible chat server; ``base_url`` ends with ``/v1``."""

    base_url: str
    model: str = "SmolLM2-135M-Instruct"
    api_key: str | None = None
    timeout_s: float = 300.0
    max_retries: int = 3

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> LlmConfig:
        values: dict[str, Any] = {
            "base_url": _require(env, "LLM_URL", "http://127.0.0.1:8081/v1"),
            "model": _env(env, "LLM_MODEL", "SmolLM2-135M-Instruct"),
            "api_key": _env(env, "LLM_API_KEY"),
        }
        return cls(**{**values, **overrides})


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling parameters for one chat completion."""

    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = 0

    def __post_init__(self) -> None:
        check_positive_int("max_tokens", self.max_tokens, upper=32768)
        if not 0.0 <= self.temperature <= 5.0:
            raise ConfigError(f"temperature={self.temperature} is out of range: use 0.0 to 5.0.")

    def to_openai(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
        }
        if self.stop:
            body["stop"] = list(self.stop)
        if self.seed is not None:
            body["seed"] = self.seed
        return body


def check_positive_int(name: str, value: Any, *, upper: int) -> int:
    """Validate ``1 <= value <= upper`` for an integer knob, with an error that says the fix."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = int(value)
    else:
        try:
            as_int = int(str(value), 10)
        except ValueError:
            raise ConfigError(
                f"{name}={value!r} is not a whole number: use an integer from 1 to {upper}."
            ) from None
        raise ConfigError(
            f"{name}={value!r} is a {type(value).__name__}: pass int({as_int}) "
            f"(an integer from 1 to {upper})."
        )
    if value < 1 or value > upper:
        raise ConfigError(f"{name}={value} is out of range: use an integer from 1 to {upper}.")
    return value


def check_non_negative_int(name: str, value: Any, *, upper: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= upper:
        raise ConfigError(f"{name}={value!r} is out of range: use an integer from 0 to {upper}.")
    return value


def check_port(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(
            f"{name}={value!r} is not a TCP port: use 1024-65535, or None to auto-pick a free one."
        )
    return value


@dataclass
class EmbeddingServerSpec:
    """Embedding replicas: llama-server --embedding serving all-MiniLM-L6-v2."""

    replicas: int = 1
    threads: int = 1
    quant: Literal["f16", "q8_0", "f32"] = "f16"
    slots: int = 4
    batch_tokens: int = 2048
    model_path: Path | None = None
    lb_port: int | None = None

    def validate(self) -> None:
        check_positive_int("embedding replicas", self.replicas, upper=MAX_REPLICAS)
        check_positive_int("embedding threads", self.threads, upper=MAX_THREADS)
        check_positive_int("embedding slots", self.slots, upper=64)
        check_positive_int("embedding batch_tokens", self.batch_tokens, upper=65536)
        if self.batch_tokens < 512:
            raise ConfigError(
                f"embedding batch_tokens={self.batch_tokens} is below the model's 512-token "
                "context: use at least 512."
            )
        if self.quant not in ("f16", "q8_0", "f32"):
            raise ConfigError(f"embedding quant={self.quant!r}: use 'f16', 'q8_0' or 'f32'.")
        check_port("embedding lb_port", self.lb_port)


@dataclass
class LlmServerSpec:
    """LLM replicas: llama-server with continuous batching over ``slots`` sequences."""

    replicas: int = 1
    threads: int = 1
    slots: int = 8
    context: int = 8192
    model_path: Path | None = None
    lb_port: int | None = None

    def validate(self) -> None:
        check_positive_int("llm replicas", self.replicas, upper=MAX_REPLICAS)
        check_positive_int("llm threads", self.threads, upper=MAX_THREADS)
        check_positive_int("llm slots", self.slots, upper=256)
        check_positive_int("llm context", self.context, upper=131072)
        if self.context // self.slots < 256:
            raise ConfigError(
                f"llm context={self.context} split over slots={self.slots} leaves "
                f"{self.context // self.slots} tokens per request: raise context or lower slots."
            )
        check_port("llm lb_port", self.lb_port)


@dataclass
class VectorServerSpec:
    """The vector store: the embedded Qdrant-API server, or an external Qdrant.

    ``url`` names an external Qdrant and nothing is started. Without it, ``QDRANT_URL``
    from the environment is used when ``use_env`` is true and it is set. Otherwise the
    stack starts the embedded server (Qdrant's engine, qdrant-edge, behind Qdrant's REST
    API) on ``port`` (None: a free one), storing collections in ``storage_dir`` (None: the
    stack's run folder, so they survive ``down()`` and ``up()``).
    """

    url: str | None = None
    use_env: bool = True
    port: int | None = None
    storage_dir: Path | None = None

    def validate(self) -> None:
        check_port("qdrant port", self.port)
        if self.url is not None and not str(self.url).startswith(("http://", "https://")):
            raise ConfigError(
                f"qdrant url={self.url!r} is not an http(s) URL: use for example "
                "http://127.0.0.1:6333, or None to start the embedded server."
            )

    def external_url(self, env: Mapping[str, str] | None = None) -> str | None:
        """The external Qdrant to use, or None to start the embedded server."""
        if self.url:
            return self.url
        return _env(env, "QDRANT_URL") if self.use_env else None


@dataclass
class AppServerSpec:
    """Stateless RAG app instances (``python -m magicaf_nb.app``) behind a load balancer.

    Each instance builds its own ``RAGWorkflow`` from the stack's endpoints and answers
    ``POST /ask`` from ``collection``.
    """

    replicas: int = 1
    collection: str = "magicaf"
    lb_port: int | None = None

    def validate(self) -> None:
        check_positive_int("app replicas", self.replicas, upper=MAX_REPLICAS)
        if not self.collection or not self.collection.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(
                f"app collection={self.collection!r}: use letters, digits, '-' and '_'."
            )
        check_port("app lb_port", self.lb_port)


@dataclass
class StackSpec:
    """The topology of one stack: replicas, threads and ports per component."""

    name: str = "default"
    embedding: EmbeddingServerSpec = field(default_factory=EmbeddingServerSpec)
    llm: LlmServerSpec = field(default_factory=LlmServerSpec)
    qdrant: VectorServerSpec = field(default_factory=VectorServerSpec)
    app: AppServerSpec = field(default_factory=AppServerSpec)
    host: str = "127.0.0.1"
    startup_timeout_s: float = 120.0

    def validate(self) -> StackSpec:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"stack name {self.name!r}: use letters, digits, '-' and '_'.")
        if self.host not in ("127.0.0.1", "::1", "localhost"):
            raise ConfigError(
                f"host={self.host!r}: the embedded stack binds to loopback only; use 127.0.0.1."
            )
        self.embedding.validate()
        self.llm.validate()
        self.qdrant.validate()
        self.app.validate()
        return self

    def component(self, name: str) -> EmbeddingServerSpec | LlmServerSpec | AppServerSpec:
        if name not in COMPONENTS:
            raise ConfigError(f"Unknown component {name!r}: use one of {', '.join(COMPONENTS)}.")
        return getattr(self, name)

    def cpu_threads(self) -> int:
        return (
            self.embedding.replicas * self.embedding.threads + self.llm.replicas * self.llm.threads
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for comp in ("embedding", "llm"):
            if data[comp]["model_path"] is not None:
                data[comp]["model_path"] = str(data[comp]["model_path"])
        if data["qdrant"]["storage_dir"] is not None:
            data["qdrant"]["storage_dir"] = str(data["qdrant"]["storage_dir"])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StackSpec:
        emb = dict(data.get("embedding", {}))
        llm = dict(data.get("llm", {}))
        for part in (emb, llm):
            if part.get("model_path"):
                part["model_path"] = Path(part["model_path"])
        qdrant = dict(data.get("qdrant", {}))
        if qdrant.get("storage_dir"):
            qdrant["storage_dir"] = Path(qdrant["storage_dir"])
        return cls(
            name=data.get("name", "default"),
            embedding=EmbeddingServerSpec(**emb),
            llm=LlmServerSpec(**llm),
            qdrant=VectorServerSpec(**qdrant),
            app=AppServerSpec(**data.get("app", {})),
            host=data.get("host", "127.0.0.1"),
            startup_timeout_s=data.get("startup_timeout_s", 120.0),
        )
