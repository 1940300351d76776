"""What each component of a ``DockerStack`` runs: image, command, mounts and limits.

``DockerImages`` goes beside the ``StackSpec`` (which keeps the topology): the spec
says how many replicas with how many threads; the images say which container runs
them. Presets:

- ``DockerImages.official()``: the official images (text-embeddings-inference, the
  llama.cpp server, HAProxy, Qdrant) on CPU; ``official(gpu=True)`` swaps in TEI's GPU
  image and ``vllm/vllm-openai``, each replica asking for a GPU.
- ``DockerImages.host_binaries(image)``: the workbench's own ``llama-server`` and
  HAProxy, bind-mounted from this machine into ``image``, a tiny image that
  ``build_host_runtime_image`` makes from the host's shared libraries. No registry needed.

Commands and environment values are templates: ``{port}``, ``{host}``, ``{threads}``,
``{slots}``, ``{context}``, ``{batch_tokens}``, ``{model}``, ``{model_name}``,
``{index}`` (and ``{config}`` for the load balancer, ``{EMBEDDING_URL}``,
``{LLM_URL}``, ... for the app) are filled in per container.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from magicaf_nb import binaries, models
from magicaf_nb.config import ConfigError

HOST_RUNTIME_REPO = "magicaf-nb/host-runtime"
IMAGE_LABEL = "magicaf_nb.image"

# Official images, pinned to versions whose flags the commands below use.
TEI_CPU_IMAGE = "ghcr.io/huggingface/text-embeddings-inference:cpu-1.5"
TEI_GPU_IMAGE = "ghcr.io/huggingface/text-embeddings-inference:1.5"
LLAMA_CPP_IMAGE = "ghcr.io/ggml-org/llama.cpp:server"
VLLM_IMAGE = "vllm/vllm-openai:v0.6.3"
HAPROXY_IMAGE = "haproxy:2.6"
QDRANT_IMAGE = "qdrant/qdrant:v1.12.4"
APP_IMAGE = "magicaf-nb-app:latest"
APP_IMAGE_HINT = (
    "build it from the repository: docker build -f stack/app.Dockerfile -t " + APP_IMAGE
)

EMBEDDING_HF_ID = "sentence-transformers/all-MiniLM-L6-v2"
CHAT_HF_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass
class ContainerSpec:
    """How one component runs as a container.

    ``model=None`` mounts the workbench's GGUF (``StackSpec.<component>.model_path`` or
    the packaged default) read-only under ``/models`` and passes its path as
    ``{model}``; a string (for example a Hugging Face model id for TEI or vLLM) is
    passed as given. ``mounts`` are extra read-only bind mounts ``(host, container)``.
    ``cpus=None`` limits a replica to the spec's ``threads`` CPUs. ``gpus`` asks for
    that many GPUs per replica (-1: all); with ``gpu_ids`` replica ``i`` gets
    ``gpu_ids[i % len(gpu_ids)]``. ``storage`` (single-node vector server) is where the
    stack's storage folder (``StackSpec.qdrant.storage_dir`` or the stack's run folder)
    is mounted read-write. ``join_command`` (Qdrant) is the command of every
    peer after the first, which joins the cluster the first one started. ``replicas``
    counts instances only for a component the ``StackSpec`` does not have (the app).
    """

    image: str
    command: tuple[str, ...] = ()
    join_command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    mounts: tuple[tuple[str, str], ...] = ()
    model: str | None = None
    model_name: str | None = None
    health_path: str = "/health"
    cpus: float | None = None
    memory: str | None = None
    gpus: int = 0
    gpu_ids: tuple[str, ...] = ()
    user: str | None = None
    replicas: int = 1
    storage: str | None = None

    def validate(self, what: str) -> ContainerSpec:
        if not self.image or not isinstance(self.image, str):
            raise ConfigError(f"{what}: image={self.image!r}; name an image such as 'haproxy:2.6'.")
        if self.cpus is not None and not 0 < float(self.cpus) <= 1024:
            raise ConfigError(f"{what}: cpus={self.cpus!r}; use a number above 0, or None.")
        if self.memory is not None and not re.fullmatch(r"\d+[bkmg]?", str(self.memory).lower()):
            raise ConfigError(f"{what}: memory={self.memory!r}; use a size such as '512m' or '2g'.")
        if not isinstance(self.gpus, int) or self.gpus < -1:
            raise ConfigError(f"{what}: gpus={self.gpus!r}; use 0 (none), a count, or -1 (all).")
        for pair in self.mounts:
            if len(pair) != 2 or not str(pair[1]).startswith("/"):
                raise ConfigError(
                    f"{what}: mount {pair!r}; use (host_path, absolute_container_path) pairs."
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ContainerSpec:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("command", "join_command", "entrypoint", "gpu_ids"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        values["mounts"] = tuple(tuple(m) for m in values.get("mounts", ()))
        return cls(**values)


def fill(template: str, values: Mapping[str, Any], what: str) -> str:
    """``template.format(**values)`` with an error that names the unknown placeholder."""
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"{what}: cannot fill the template {template!r} ({exc}). Known placeholders: "
            + ", ".join("{" + k + "}" for k in sorted(values))
            + ". Write a literal brace as '{{' or '}}'."
        ) from None


# ---------------------------------------------------------------------- commands

LLAMA_EMBEDDING_ARGS = (
    "-m",
    "{model}",
    "--host",
    "{host}",
    "--port",
    "{port}",
    "--no-webui",
    "--metrics",
    "--alias",
    "{model_name}",
    "--embedding",
    "--pooling",
    "mean",
    "-t",
    "{threads}",
    "--parallel",
    "{slots}",
    "-c",
    "{embedding_context}",
    "-b",
    "{batch_tokens}",
    "-ub",
    "{batch_tokens}",
)

LLAMA_CHAT_ARGS = (
    "-m",
    "{model}",
    "--host",
    "{host}",
    "--port",
    "{port}",
    "--no-webui",
    "--metrics",
    "--alias",
    "{model_name}",
    "-t",
    "{threads}",
    "-c",
    "{context}",
    # One KV pool shared by all slots, as LocalStack runs it.
    "--kv-unified",
    "--parallel",
    "{slots}",
)

TEI_ARGS = (
    "--model-id",
    "{model}",
    "--hostname",
    "{host}",
    "--port",
    "{port}",
    "--max-concurrent-requests",
    "512",
    "--max-client-batch-size",
    "{batch_tokens}",
)

VLLM_ARGS = (
    "--model",
    "{model}",
    "--served-model-name",
    "{model_name}",
    "--host",
    "{host}",
    "--port",
    "{port}",
    "--max-num-seqs",
    "{slots}",
    "--max-model-len",
    "{context}",
)

HAPROXY_ARGS = ("-W", "-db", "-f", "{config}")

# Qdrant in cluster mode: the first peer starts the cluster (--uri), the others join it.
QDRANT_FIRST_ARGS = ("./qdrant", "--uri", "http://{host}:{p2p_port}")
QDRANT_JOIN_ARGS = (
    "./qdrant",
    "--bootstrap",
    "http://{host}:{bootstrap_p2p_port}",
    "--uri",
    "http://{host}:{p2p_port}",
)
QDRANT_ENV = {
    "QDRANT__CLUSTER__ENABLED": "true",
    "QDRANT__CLUSTER__P2P__PORT": "{p2p_port}",
    "QDRANT__SERVICE__HOST": "{host}",
    "QDRANT__SERVICE__HTTP_PORT": "{port}",
    "QDRANT__SERVICE__GRPC_PORT": "{grpc_port}",
    "QDRANT__TELEMETRY_DISABLED": "true",
}


@dataclass
class DockerImages:
    """Per-component container specs for a ``DockerStack`` (the ``StackSpec`` keeps topology).

    ``pull=False`` (the default) never contacts a registry: a missing image is an error
    that says how to get it. ``pull=True`` pulls missing images first.
    """

    embedding: ContainerSpec
    llm: ContainerSpec
    lb: ContainerSpec
    qdrant: ContainerSpec | None = None
    app: ContainerSpec | None = None
    pull: bool = False

    def validate(self) -> DockerImages:
        for name in ("embedding", "llm", "lb", "qdrant", "app"):
            spec = getattr(self, name)
            if spec is not None:
                spec.validate(f"DockerImages.{name}")
        return self

    def for_component(self, component: str) -> ContainerSpec:
        spec = getattr(self, component, None)
        if not isinstance(spec, ContainerSpec):
            raise ConfigError(
                f"DockerImages has no container spec for the {component!r} component. "
                f"Fix: DockerImages({component}=ContainerSpec(image=...), ...)."
            )
        return spec

    def images(self) -> list[str]:
        names = [getattr(self, n) for n in ("embedding", "llm", "lb", "qdrant", "app")]
        return sorted({s.image for s in names if s is not None})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pull": self.pull}
        for name in ("embedding", "llm", "lb", "qdrant", "app"):
            spec = getattr(self, name)
            out[name] = None if spec is None else spec.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DockerImages:
        parts = {
            name: ContainerSpec.from_dict(data[name]) if data.get(name) else None
            for name in ("embedding", "llm", "lb", "qdrant", "app")
        }
        return cls(**parts, pull=bool(data.get("pull", False)))  # type: ignore[arg-type]

    @classmethod
    def official(
        cls, *, gpu: bool = False, pull: bool = False, app_replicas: int = 1
    ) -> DockerImages:
        """The official images: TEI, llama.cpp server (CPU) or vLLM (GPU), HAProxy, Qdrant.

        The app image is built from ``stack/app.Dockerfile`` (``docker build -f
        stack/app.Dockerfile -t magicaf-nb-app .``). ``app_replicas`` counts app
        instances only for a ``StackSpec`` without an ``app``.
        """
        if gpu:
            embedding = ContainerSpec(
                image=TEI_GPU_IMAGE,
                command=TEI_ARGS,
                model=EMBEDDING_HF_ID,
                model_name=models.EMBEDDING_MODEL_NAME,
                memory="8g",
                gpus=1,
            )
            llm = ContainerSpec(
                image=VLLM_IMAGE,
                command=VLLM_ARGS,
                model=CHAT_HF_ID,
                model_name=models.CHAT_MODEL_NAME,
                memory="16g",
                gpus=1,
            )
        else:
            embedding = ContainerSpec(
                image=TEI_CPU_IMAGE,
                command=TEI_ARGS,
                model=EMBEDDING_HF_ID,
                model_name=models.EMBEDDING_MODEL_NAME,
                memory="2g",
            )
            llm = ContainerSpec(
                image=LLAMA_CPP_IMAGE,
                command=LLAMA_CHAT_ARGS,
                model_name=models.CHAT_MODEL_NAME,
                memory="2g",
            )
        return cls(
            embedding=embedding,
            llm=llm,
            lb=ContainerSpec(
                image=HAPROXY_IMAGE, entrypoint=("haproxy",), command=HAPROXY_ARGS, memory="256m"
            ),
            qdrant=ContainerSpec(
                image=QDRANT_IMAGE,
                command=QDRANT_FIRST_ARGS,
                join_command=QDRANT_JOIN_ARGS,
                environment=dict(QDRANT_ENV),
                health_path="/readyz",
                memory="2g",
                replicas=3,
            ),
            app=ContainerSpec(
                image=APP_IMAGE,
                command=("python", *APP_ARGS),
                environment=dict(APP_ENV),
                memory="1g",
                replicas=app_replicas,
            ),
            pull=pull,
        )

    @classmethod
    def host_binaries(cls, image: str, *, app_replicas: int = 1) -> DockerImages:
        """This machine's ``llama-server`` and ``haproxy``, bind-mounted into ``image``.

        ``image`` must hold the shared libraries they need: ``build_host_runtime_image``
        makes one. The containers then run exactly the servers that ``LocalStack`` runs;
        the vector server and the app instances run this machine's Python.
        ``app_replicas`` counts app instances only for a ``StackSpec`` without an ``app``.
        """
        llama = binaries.llama_server_path()
        haproxy_bin = binaries.haproxy_path().resolve()
        llama_dir = str(llama.parent)
        return cls(
            embedding=ContainerSpec(
                image=image,
                entrypoint=(str(llama),),
                command=LLAMA_EMBEDDING_ARGS,
                mounts=((llama_dir, llama_dir),),
                model_name=models.EMBEDDING_MODEL_NAME,
                memory="1g",
            ),
            llm=ContainerSpec(
                image=image,
                entrypoint=(str(llama),),
                command=LLAMA_CHAT_ARGS,
                mounts=((llama_dir, llama_dir),),
                model_name=models.CHAT_MODEL_NAME,
                memory="2g",
            ),
            lb=ContainerSpec(
                image=image,
                entrypoint=(str(haproxy_bin),),
                command=HAPROXY_ARGS,
                mounts=((str(haproxy_bin), str(haproxy_bin)),),
                memory="256m",
            ),
            qdrant=embedded_vector_server(image),
            app=host_app(image, app_replicas),
        )


def _host_python(image: str, args: tuple[str, ...], **options: Any) -> ContainerSpec:
    """``python args...`` with this machine's Python, virtual environment and sources.

    They are bind-mounted read-only with ``/usr`` (the libraries that Python's extension
    modules load), so the container runs exactly the code this kernel runs.
    """
    package_root = str(Path(__file__).resolve().parents[2])
    prefixes = sorted({sys.base_prefix, sys.prefix, package_root, "/usr"})
    environment = {"PYTHONPATH": package_root, "PYTHONDONTWRITEBYTECODE": "1"}
    environment.update(options.pop("environment", {}))
    return ContainerSpec(
        image=image,
        entrypoint=(sys.executable,),
        command=args,
        environment=environment,
        mounts=tuple((p, p) for p in prefixes if Path(p).is_dir()),
        user=f"{os.getuid()}:{os.getgid()}",
        **options,
    )


def embedded_vector_server(image: str) -> ContainerSpec:
    """The workbench's own vector server (``magicaf_nb.vector``) in ``image``.

    The collections live in the stack's storage folder, mounted at ``/storage``.
    """
    args = ("-m", "magicaf_nb.vector", "--host", "{host}", "--port", "{port}")
    return _host_python(
        image,
        (*args, "--storage", "/storage"),
        health_path="/readyz",
        memory="2g",
        storage="/storage",
    )


# Each app instance builds its RAGWorkflow from MagicAF's variables: the stack's LB URLs.
APP_ARGS = ("-m", "magicaf_nb.app", "--host", "{host}", "--port", "{port}")
APP_ENV = {
    "EMBEDDING_URL": "{EMBEDDING_URL}",
    "EMBEDDING_MODEL": "{EMBEDDING_MODEL}",
    "LLM_URL": "{LLM_URL}",
    "LLM_MODEL": "{LLM_MODEL}",
    "QDRANT_URL": "{QDRANT_URL}",
    "QDRANT_COLLECTION": "{QDRANT_COLLECTION}",
    "MAGICAF_APP_INSTANCE": "app-{index}",
}


def host_app(image: str, replicas: int = 1) -> ContainerSpec:
    """App instances (``magicaf_nb.app``) running this machine's code in ``image``."""
    return _host_python(image, APP_ARGS, environment=dict(APP_ENV), memory="1g", replicas=replicas)


# ---------------------------------------------------------------------- the host runtime image


def _shared_libraries(binary: Path) -> list[str]:
    """Absolute paths of the shared libraries ``binary`` loads, outside its own folder."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise ConfigError(f"`ldd {binary}` failed: {out.stderr.strip() or out.stdout.strip()}")
    own = str(binary.resolve().parent)
    libs = []
    for line in out.stdout.splitlines():
        match = re.search(r"(/\S+) \(0x", line)
        if match and not match.group(1).startswith(own) and "not found" not in line:
            libs.append(match.group(1))
        elif "not found" in line:
            raise ConfigError(f"{binary} needs a library this machine lacks: {line.strip()}")
    return libs


def host_runtime_rootfs(binaries_: Iterable[Path]) -> tuple[bytes, str]:
    """A root filesystem tarball with the shared libraries of ``binaries_``, and its digest."""
    libs = sorted({lib for b in binaries_ for lib in _shared_libraries(Path(b))})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for folder, mode in (("tmp", 0o1777), ("etc", 0o755), ("models", 0o755), ("run", 0o755)):
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        group = b"root:x:0:\nnogroup:x:65534:\n"
        for name, data in (("etc/passwd", passwd), ("etc/group", group)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
        for lib in libs:
            real = os.path.realpath(lib)
            info = tar.gettarinfo(real, arcname=lib.lstrip("/"))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(real, "rb") as handle:
                tar.addfile(info, handle)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()[:12]


def build_host_runtime_image(client: Any, binaries_: Sequence[Path] | None = None) -> str:
    """Import (once) a tiny image holding the host libraries that the server binaries need.

    The binaries themselves are not in the image: ``DockerImages.host_binaries`` bind-mounts
    them. Returns the image reference; an image with the same content is reused.
    """
    chosen = (
        list(binaries_) if binaries_ else [binaries.llama_server_path(), binaries.haproxy_path()]
    )
    rootfs, digest = host_runtime_rootfs(chosen)
    ref = f"{HOST_RUNTIME_REPO}:{digest}"
    try:
        client.images.get(ref)
        return ref
    except Exception as exc:  # docker.errors.ImageNotFound
        if type(exc).__name__ != "ImageNotFound":
            raise
    client.api.import_image_from_data(
        rootfs,
        repository=HOST_RUNTIME_REPO,
        tag=digest,
        changes=[f"LABEL {IMAGE_LABEL}=host-runtime", "ENV PATH=/usr/local/bin:/usr/bin:/bin"],
    )
    client.images.get(ref)  # raises if the import did not produce it
    return ref
