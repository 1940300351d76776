"""Turn an ingest source (a folder, a file, a DataFrame, Documents, "sample") into Documents.

Every reader also returns a report, one row per file (or DataFrame row): ``path``,
``source``, ``status`` ("read" or "skipped"), ``reason``, ``documents``, ``chars``,
``bytes``. Skips never raise: the report says why and what to do about it.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from magicaf_nb.ingest.documents import Document, sample_corpus
from magicaf_nb.ingest.errors import IngestError
from magicaf_nb.ingest.formats import Skip, read_file

MiB = 2**20
DEFAULT_MAX_BYTES = 20 * MiB
REPORT_COLUMNS = ["path", "source", "status", "reason", "documents", "chars", "bytes"]


@dataclass
class Corpus:
    """Documents, the per-file report, and which report row each document came from."""

    documents: list[Document]
    report: pd.DataFrame
    origin: dict[str, str] = field(default_factory=dict)  # document source -> report path


def _row(
    path: str, source: str, status: str, reason: str, docs: int, chars: int, size: int
) -> dict[str, Any]:
    return dict(zip(REPORT_COLUMNS, (path, source, status, reason, docs, chars, size), strict=True))


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    report = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    for column in ("documents", "chars", "bytes"):
        report[column] = report[column].astype("int64")
    return report


def _walk(root: Path) -> tuple[list[Path], list[Path]]:
    """Files under ``root`` in a stable order, and the hidden folders left unsearched."""
    files: list[Path] = []
    hidden: list[Path] = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        base = Path(folder)
        hidden += [base / d for d in dirs if d.startswith(".")]
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [base / n for n in sorted(names)]
    return files, sorted(hidden)


def _check_max_bytes(max_bytes: int) -> int:
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise IngestError(f"max_bytes={max_bytes!r}: use a positive whole number of bytes.")
    return max_bytes


def _skip_before_reading(path: Path, size: int, max_bytes: int, hidden: bool) -> None:
    if hidden:
        raise Skip("hidden file")
    if not path.is_file():
        raise Skip("not a regular file")
    if size == 0:
        raise Skip("empty file (0 bytes)")
    if size > max_bytes:
        raise Skip(
            f"huge file: {size / MiB:.1f} MiB is over max_bytes={max_bytes / MiB:.1f} MiB; "
            "fix: split it, or pass a larger max_bytes"
        )


def _read_one(
    path: Path, root: Path, text_column: str | None, max_bytes: int
) -> tuple[dict[str, Any], list[Document]]:
    """(report row, documents) for one file; the size is checked before any byte is read."""
    shown = str(path.relative_to(root)) if path != root else path.name
    source = str(path.resolve())
    size = 0
    try:
        size = path.stat().st_size
        _skip_before_reading(path, size, max_bytes, path != root and path.name.startswith("."))
        parts = read_file(path, path.read_bytes(), text_column)
        docs = [Document(source + p.key, p.title, p.text) for p in parts if p.text.strip()]
        if not docs:
            raise Skip("no text in it" if len(parts) < 2 else "no row has text")
    except Skip as skip:
        return _row(shown, source, "skipped", skip.reason, 0, 0, size), []
    except OSError as exc:
        reason = f"cannot read it ({exc.strerror or exc})"
        return _row(shown, source, "skipped", reason, 0, 0, size), []
    chars = sum(len(d.text) for d in docs)
    return _row(shown, source, "read", "", len(docs), chars, size), docs


def collect_folder(
    path: str | os.PathLike[str],
    *,
    text_column: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Corpus:
    """Read a folder recursively (or one file); see ``read_folder``."""
    _check_max_bytes(max_bytes)
    root = Path(path).expanduser()
    if not root.exists():
        raise IngestError(
            f"Nothing to ingest at {root}: no such file or folder. Fix: check the path "
            f"(relative paths start from {Path.cwd()})."
        )
    files, hidden = _walk(root) if root.is_dir() else ([root], [])
    rows: list[dict[str, Any]] = []
    documents: list[Document] = []
    origin: dict[str, str] = {}
    for file in files:
        row, docs = _read_one(file, root, text_column, max_bytes)
        rows.append(row)
        documents += docs
        origin.update((d.source, row["path"]) for d in docs)
    for folder in hidden:
        shown = str(folder.relative_to(root))
        rows.append(
            _row(
                shown + "/",
                str(folder.resolve()),
                "skipped",
                "hidden folder, not searched",
                0,
                0,
                0,
            )
        )
    return Corpus(documents, _frame(rows), origin)


def read_folder(
    path: str | os.PathLike[str],
    *,
    text_column: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[list[Document], pd.DataFrame]:
    """Read every supported file under ``path`` (recursively), or ``path`` itself if a file.

    Supported: .txt .md .markdown .rst (UTF-8 text), .html .htm (text without markup or
    scripts), .pdf (extracted text), .jsonl and .csv (one document per row, from
    ``text_column``, default "text"). Binary, undecodable, empty, unsupported and huge
    (> ``max_bytes``) files are skipped with the reason in the report; hidden folders
    (``.git``) are not searched. Sources are absolute paths (``#row<N>`` / ``#line<N>``
    appended for table rows), so the same file keeps its ids from any working directory.
    Raises ``IngestError`` only if ``path`` does not exist.
    """
    corpus = collect_folder(path, text_column=text_column, max_bytes=max_bytes)
    return corpus.documents, corpus.report


def _check_column(df: pd.DataFrame, name: str | None, role: str) -> None:
    if name is not None and name not in df.columns:
        shown = ", ".join(repr(c) for c in list(df.columns)[:12])
        raise IngestError(
            f"The DataFrame has no {role} column {name!r}; its columns are: {shown}. "
            f"Fix: pass {role}_column= one of them."
        )


def text_key(text: str) -> str:
    """A short stable key of a text (the default DataFrame row source)."""
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _kind(value: Any) -> str:
    try:
        if pd.isna(value):
            return "missing"
    except (TypeError, ValueError):  # list-like cells
        pass
    return f"a {type(value).__name__}, not text"


def collect_dataframe(
    df: pd.DataFrame,
    text_column: str | None,
    source_column: str | None = None,
    title_column: str | None = None,
) -> Corpus:
    """One document per row with text; see ``read_dataframe``."""
    if not isinstance(df, pd.DataFrame):
        raise IngestError(f"Expected a pandas DataFrame, got {type(df).__name__}.")
    if text_column is None:
        raise IngestError(
            "Ingesting a DataFrame needs text_column=, the column that holds the text; "
            f"its columns are: {', '.join(repr(c) for c in list(df.columns)[:12])}."
        )
    _check_column(df, text_column, "text")
    _check_column(df, source_column, "source")
    _check_column(df, title_column, "title")
    rows: list[dict[str, Any]] = []
    documents: list[Document] = []
    first_row: dict[str, int] = {}  # default source -> the row that had it first
    for position, (index, record) in enumerate(df.iterrows()):
        text = record[text_column]
        has_text = isinstance(text, str) and bool(text.strip())
        if source_column:
            source = str(record[source_column])
        else:  # from the text, so another DataFrame's rows never share a source
            source = "dataframe:" + (text_key(text) if has_text else f"row-{index}")
        if not has_text:
            kind = "empty" if isinstance(text, str) else _kind(text)
            reason = f"no text in column {text_column!r} (row {position}: {kind})"
            rows.append(_row(source, source, "skipped", reason, 0, 0, 0))
            continue
        if not source_column and source in first_row:
            reason = f"same text as row {first_row[source]}"
            rows.append(_row(f"{source} (row {position})", source, "skipped", reason, 0, 0, 0))
            continue
        first_row.setdefault(source, position)
        title = str(record[title_column]) if title_column else source
        documents.append(Document(source, title, text))
        rows.append(_row(source, source, "read", "", 1, len(text), len(text.encode())))
    return Corpus(documents, _frame(rows), {d.source: d.source for d in documents})


def read_dataframe(
    df: pd.DataFrame,
    text_column: str,
    source_column: str | None = None,
    title_column: str | None = None,
) -> tuple[list[Document], pd.DataFrame]:
    """One document per row whose ``text_column`` holds text; others are reported skipped.

    ``source`` comes from ``source_column``. Without one it is ``dataframe:<hash of the
    text>``: stable across runs and distinct from any other DataFrame's rows, so ingesting
    two DataFrames into one collection never replaces one with the other (rows repeating
    an earlier row's text are skipped). Give a ``source_column`` (a stable row key) to have
    an edited row replace its old chunks. ``title`` comes from ``title_column`` (else the
    source). Returns ``(documents, report)`` like ``read_folder``.
    """
    corpus = collect_dataframe(df, text_column, source_column, title_column)
    return corpus.documents, corpus.report


def collect_documents(documents: Sequence[Document]) -> Corpus:
    rows = []
    for i, doc in enumerate(documents):
        if not isinstance(doc, Document):
            raise IngestError(
                f"Item {i} of the list is a {type(doc).__name__}, not a Document. Fix: wrap "
                "texts as Document(source=..., title=..., text=...)."
            )
        status, reason = ("read", "") if doc.text.strip() else ("skipped", "no text in it")
        docs = int(status == "read")
        rows.append(_row(doc.source, doc.source, status, reason, docs, len(doc.text) * docs, 0))
    kept = [d for d in documents if d.text.strip()]
    return Corpus(kept, _frame(rows), {d.source: d.source for d in kept})


def collect(
    source: Any,
    *,
    text_column: str | None = None,
    source_column: str | None = None,
    title_column: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Corpus:
    """Dispatch on the kind of ``source``: "sample", a path, a DataFrame or Documents."""
    if isinstance(source, str) and source == "sample":
        return collect_documents(sample_corpus())
    if isinstance(source, str | os.PathLike):
        return collect_folder(source, text_column=text_column, max_bytes=max_bytes)
    if isinstance(source, pd.DataFrame):
        return collect_dataframe(source, text_column, source_column, title_column)
    if isinstance(source, Document):
        return collect_documents([source])
    if isinstance(source, list | tuple):
        return collect_documents(source)
    raise IngestError(
        f"Cannot ingest a {type(source).__name__}. Fix: pass a folder or file path, a pandas "
        'DataFrame (with text_column=), a list of Document, or "sample".'
    )


def check_unique_sources(documents: Sequence[Document]) -> None:
    """Sources key the clean-up of a changed document's old chunks, so they must be unique."""
    counts = Counter(d.source for d in documents)
    repeated = [(s, n) for s, n in counts.items() if n > 1]
    if repeated:
        shown = ", ".join(f"{s!r} x{n}" for s, n in repeated[:5])
        raise IngestError(
            f"{len(repeated)} source(s) name more than one document ({shown}): each document "
            "needs its own source, because re-ingesting a source replaces all its chunks. Fix: "
            "give every document a distinct source (source_column= for a DataFrame)."
        )


def empty_corpus_message(report: pd.DataFrame, where: str) -> str:
    """Why nothing could be read: how many items were skipped, grouped by reason."""
    skipped = report[report["status"] == "skipped"]
    if skipped.empty:
        return f"Nothing to ingest: {where} holds no files or documents. Fix: point at a corpus."
    kinds = skipped["reason"].str.split(r"[:;(]", n=1, regex=True).str[0].str.strip()
    counts = kinds.value_counts()
    reasons = "; ".join(f"{n} x {reason}" for reason, n in counts.items())
    example = skipped.iloc[0]
    return (
        f"Nothing to ingest: no readable document in {where}. {len(skipped)} item(s) skipped: "
        f"{reasons}. First: {example['path']}: {example['reason']}. The report DataFrame "
        "lists them all (read_folder returns it)."
    )
