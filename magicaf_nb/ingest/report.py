"""``IngestReport``: what one ingest run read, skipped, wrote and removed, and how fast."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

SUMMARY_LABELS = {
    "documents": "documents read",
    "chunks": "chunks in the corpus",
    "new_chunks": "chunks written (embedded + upserted)",
    "existing_chunks": "chunks already stored (skipped)",
    "removed_stale_chunks": "stale chunks removed",
    "files_read": "files / rows read",
    "files_skipped": "files / rows skipped",
    "files_gone": "files gone from the folder (chunks removed)",
    "seconds": "seconds (whole run)",
    "chunks_per_s": "chunks written / s (whole run)",
    "pipeline_seconds": "seconds embedding + upserting",
    "run_id": "run id",
    "collection": "collection",
}


@dataclass
class IngestReport:
    """``files``: one row per file (or DataFrame row) with status, reason and chunk counts.

    ``summary``: documents, chunks, new_chunks, existing_chunks, removed_stale_chunks,
    files_read, files_skipped, files_gone, seconds, chunks_per_s, pipeline_seconds, run_id,
    collection.
    """

    files: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def skipped(self) -> pd.DataFrame:
        return self.files[self.files["status"] == "skipped"]

    def _headline(self) -> str:
        s = self.summary
        gone = f" (of {s['files_gone']} file(s) gone)" if s.get("files_gone") else ""
        return (
            f"Ingested {s.get('documents', 0)} document(s) into {s.get('collection')!r}: "
            f"{s.get('new_chunks', 0)} chunk(s) written, {s.get('existing_chunks', 0)} already "
            f"stored, {s.get('removed_stale_chunks', 0)} stale removed{gone}, "
            f"{s.get('files_skipped', 0)} skipped; {s.get('seconds', 0.0):.1f} s "
            f"({s.get('chunks_per_s', 0.0):.1f} chunks/s)."
        )

    def __repr__(self) -> str:
        lines = [self._headline()]
        skipped = self.skipped
        for row in skipped.head(20).itertuples():
            lines.append(f"  skipped {row.path}: {row.reason}")
        if len(skipped) > 20:
            lines.append(f"  ... and {len(skipped) - 20} more (see .files)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(SUMMARY_LABELS.get(k, k))}</th>"
            f"<td style='text-align:right'>{html.escape(_fmt(v))}</td></tr>"
            for k, v in self.summary.items()
        )
        shown = self.files.head(50)
        more = len(self.files) - len(shown)
        tail = f"<p>... {more} more row(s) in <code>.files</code></p>" if more > 0 else ""
        return (
            f"<p><b>{html.escape(self._headline())}</b></p>"
            f"<table>{rows}</table>"
            f"<p>Files</p>{shown.to_html(index=False)}{tail}"
        )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
