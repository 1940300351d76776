"""Chunks a folder no longer has: files deleted since the last run, rows gone from a file.

A folder's chunks carry their file's resolved path as ``source`` (a JSONL line adds
``#line3``, a CSV row ``#row3``). After a run, a stored chunk under the folder that the run did not
produce is an orphan when its file is gone from the folder, or when its file was read
and no longer has that row. A file that was skipped this time (unreadable, too large)
keeps its chunks: the run cannot tell what it holds now.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from magicaf_nb.ingest.store import Stored


@dataclass
class Orphans:
    """Point ids to remove, grouped by the report path they are counted under."""

    ids_by_path: dict[str, list[str]] = field(default_factory=dict)
    gone_files: dict[str, str] = field(default_factory=dict)  # report path -> file source

    @property
    def ids(self) -> list[str]:
        return [point for ids in self.ids_by_path.values() for point in ids]


def in_scope(source: str, root: Path) -> bool:
    """Whether a stored ``source`` came from ``root`` (a folder, or a single file)."""
    base = str(root)
    if root.is_dir():
        return source.startswith(base.rstrip(os.sep) + os.sep)
    return source == base or source.startswith(base + "#")


ROW_KEY = re.compile(r"#(?:line|row)\d+$")


def file_source(source: str) -> str:
    """The file part of a chunk's source (without a ``#line3``/``#row3`` key)."""
    return ROW_KEY.sub("", source)


def find_orphans(
    stored: Mapping[str, Stored],
    root: Path,
    report: pd.DataFrame,
    produced: Set[str],
) -> Orphans:
    """The stored chunks under ``root`` that this run's corpus no longer has."""
    path_of = dict(zip(report["source"], report["path"], strict=True))
    read = set(report.loc[report["status"] == "read", "source"])
    found = Orphans()
    for point, have in stored.items():
        if have.source in produced or not in_scope(have.source, root):
            continue
        owner = file_source(have.source)
        if owner not in path_of:  # the file is gone from the folder
            shown = _shown(owner, root)
            found.gone_files[shown] = owner
            found.ids_by_path.setdefault(shown, []).append(point)
        elif owner in read:  # the file is there and no longer has this row
            found.ids_by_path.setdefault(path_of[owner], []).append(point)
    return found


def _shown(source: str, root: Path) -> str:
    if root.is_dir():
        return os.path.relpath(source, root)
    return Path(source).name
