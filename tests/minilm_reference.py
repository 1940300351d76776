"""An independent numpy reference of all-MiniLM-L6-v2 (sentence-transformers), for the tests.

It shares nothing with ``magicaf_nb.gguf_convert``: token ids come from the Hugging Face
``tokenizers`` library, weights straight from ``model.safetensors`` by their HF names, and the
forward pass is a plain post-LayerNorm BERT encoder in float64, followed by mean pooling over
the attention mask and L2 normalisation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MAX_TOKENS = 512


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


_erf = np.vectorize(math.erf, otypes=[np.float64])  # numpy has no erf; scipy is not a dependency


def _gelu(x: np.ndarray) -> np.ndarray:
    """The exact (erf) GELU of BERT's ``hidden_act: gelu``."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


@dataclass
class MiniLMReference:
    tokenizer: Tokenizer
    weights: dict[str, np.ndarray]
    n_layers: int
    n_heads: int
    eps: float

    def _w(self, name: str) -> np.ndarray:
        return self.weights[name]

    def _linear(self, x: np.ndarray, prefix: str) -> np.ndarray:
        return x @ self._w(prefix + ".weight").T + self._w(prefix + ".bias")

    def token_ids(self, text: str) -> list[int]:
        """Ids with [CLS] … [SEP], truncated to 512, as sentence-transformers' tokenizer does."""
        return self.tokenizer.encode(text).ids

    def token_count(self, text: str) -> int:
        return len(self.token_ids(text))

    def _hidden_states(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Last hidden states, (batch, seq, hidden), for padded ``ids`` and 0/1 ``mask``."""
        batch, seq = ids.shape
        x = (
            self._w("embeddings.word_embeddings.weight")[ids]
            + self._w("embeddings.position_embeddings.weight")[:seq]
            + self._w("embeddings.token_type_embeddings.weight")[0]
        )
        x = _layer_norm(
            x,
            self._w("embeddings.LayerNorm.weight"),
            self._w("embeddings.LayerNorm.bias"),
            self.eps,
        )
        d_head = x.shape[-1] // self.n_heads
        # Padded keys get a huge negative score, i.e. zero attention weight.
        key_bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9)
        valid = mask > 0
        for i in range(self.n_layers):
            p = f"encoder.layer.{i}"
            q, k, v = (
                self._linear(x, f"{p}.attention.self.{name}")
                .reshape(batch, seq, self.n_heads, d_head)
                .transpose(0, 2, 1, 3)
                for name in ("query", "key", "value")
            )
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d_head) + key_bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, -1)
            x = _layer_norm(
                x + self._linear(ctx, f"{p}.attention.output.dense"),
                self._w(f"{p}.attention.output.LayerNorm.weight"),
                self._w(f"{p}.attention.output.LayerNorm.bias"),
                self.eps,
            )
            inner = self._linear(x, f"{p}.intermediate.dense")
            inner[valid] = _gelu(inner[valid])  # padded rows are never read; skip their erf
            x = _layer_norm(
                x + self._linear(inner, f"{p}.output.dense"),
                self._w(f"{p}.output.LayerNorm.weight"),
                self._w(f"{p}.output.LayerNorm.bias"),
                self.eps,
            )
        return x

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-norm sentence embeddings, shape (len(texts), hidden), float32.

        The texts run as one right-padded batch with an attention mask; mean pooling sums
        the hidden states over the mask only.
        """
        encodings = [self.token_ids(t) for t in texts]
        seq = max(len(ids) for ids in encodings)
        ids = np.zeros((len(texts), seq), dtype=np.int64)  # [PAD] is id 0
        mask = np.zeros((len(texts), seq))
        for row, enc in enumerate(encodings):
            ids[row, : len(enc)] = enc
            mask[row, : len(enc)] = 1.0
        hidden = self._hidden_states(ids, mask)
        pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def load_reference(model_dir: Path) -> MiniLMReference:
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    # tokenizer.json ships with truncation at 128 and fixed padding to 128: undo both.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    raw = load_file(str(model_dir / "model.safetensors"))
    weights = {
        k.removeprefix("bert."): v.astype(np.float64) for k, v in raw.items() if v.dtype.kind == "f"
    }
    return MiniLMReference(
        tokenizer=tokenizer,
        weights=weights,
        n_layers=int(config["num_hidden_layers"]),
        n_heads=int(config["num_attention_heads"]),
        eps=float(config.get("layer_norm_eps", 1e-12)),
    )
