"""Text out of one file's bytes, by kind: plain text, HTML, PDF, JSON Lines and CSV.

Each reader returns one ``Part`` per document the file holds (one for a text, HTML or
PDF file; one per row of a JSON Lines or CSV file) or raises ``Skip`` with the reason
the file cannot be ingested, which the report shows.
"""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path
from typing import NamedTuple

from magicaf_nb.ingest.documents import heading_title

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst")
HTML_SUFFIXES = (".html", ".htm")
TABLE_SUFFIXES = (".jsonl", ".csv")
SUPPORTED = (*TEXT_SUFFIXES, *HTML_SUFFIXES, ".pdf", *TABLE_SUFFIXES)
DEFAULT_TEXT_COLUMN = "text"
BINARY_PROBE_BYTES = 8192

# Block-level HTML elements: their text starts on a new line.
# fmt: off
_BLOCKS = (
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
    "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul",
)
# fmt: on
_DROP = ("script", "style", "noscript", "template", "svg", "head")


class Part(NamedTuple):
    """One document of a file: ``key`` is appended to the file's source ("" or "#row3")."""

    key: str
    title: str
    text: str


class Skip(Exception):
    """This file is not ingested; ``reason`` says why (and the fix, where there is one)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_text(raw: bytes) -> str:
    """UTF-8 text with normalised newlines, or ``Skip`` for binary or undecodable bytes."""
    if b"\x00" in raw[:BINARY_PROBE_BYTES]:
        raise Skip("binary file (NUL bytes in the first 8 KiB): not text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Skip(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "fix: convert the file to UTF-8"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def tidy(text: str) -> str:
    """Collapse runs of spaces in each line and runs of blank lines; strip the ends."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def read_plain(path: Path, raw: bytes) -> list[Part]:
    text = decode_text(raw)
    return [Part("", heading_title(text, path.stem), text)]


def read_html(path: Path, raw: bytes) -> list[Part]:
    from bs4 import BeautifulSoup

    if b"\x00" in raw[:BINARY_PROBE_BYTES]:
        raise Skip("binary file (NUL bytes in the first 8 KiB): not HTML")
    soup = BeautifulSoup(raw, "html.parser")  # honours <meta charset>, else guesses
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup.find_all(_DROP):
        tag.decompose()
    for tag in soup.find_all(_BLOCKS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    text = tidy(soup.get_text())
    return [Part("", title or heading_title(text, path.stem), text)]


def read_pdf(path: Path, raw: bytes) -> list[Part]:
    import pypdf

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # recoverable-damage chatter
    try:
        reader = pypdf.PdfReader(io.BytesIO(raw))
        if reader.is_encrypted and not reader.decrypt(""):
            raise Skip("encrypted PDF: fix: decrypt it first (for example `qpdf --decrypt`)")
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = (reader.metadata.title or "") if reader.metadata else ""
    except Skip:
        raise
    except Exception as exc:  # any parser failure on a damaged file: skip it, say why
        raise Skip(f"unreadable PDF ({type(exc).__name__}: {str(exc)[:120]})") from None
    text = "\n\n".join(tidy(page) for page in pages if page.strip())
    if not text:
        raise Skip(
            f"PDF with {len(pages)} page(s) but no extractable text (scanned images?): "
            "fix: run OCR on it first"
        )
    return [Part("", str(meta_title).strip() or heading_title(text, path.stem), text)]


def _column(columns: list[str], wanted: str | None) -> str:
    column = wanted or DEFAULT_TEXT_COLUMN
    if column not in columns:
        named = "" if wanted else " (no text_column given, so 'text' was tried)"
        shown = ", ".join(repr(c) for c in columns[:12]) or "none"
        raise Skip(
            f"no column {column!r}{named}; columns: {shown}. fix: pass text_column= one of them"
        )
    return column


def _row_parts(path: Path, rows: list[tuple[int, dict]], column: str, kind: str) -> list[Part]:
    """Rows with text become parts; a ``title`` column, if any, gives their titles."""
    parts = []
    for number, row in rows:
        value = row.get(column)
        if not isinstance(value, str) or not value.strip():
            continue
        title = row.get("title") if column != "title" else None
        label = title.strip() if isinstance(title, str) and title.strip() else ""
        parts.append(Part(f"#{kind}{number}", label or f"{path.name} {kind} {number}", value))
    return parts


def read_jsonl(path: Path, raw: bytes, text_column: str | None) -> list[Part]:
    """One document per JSON object line; the source ends in ``#line<N>``."""
    rows: list[tuple[int, dict]] = []
    for number, line in enumerate(decode_text(raw).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise Skip(f"line {number} is not JSON ({exc.msg}): fix or remove that line") from None
        if not isinstance(row, dict):
            raise Skip(f"line {number} is a JSON {type(row).__name__}, not an object")
        rows.append((number, row))
    keys = list(dict.fromkeys(k for _, row in rows for k in row))
    return _row_parts(path, rows, _column(keys, text_column), "line")


def read_csv(path: Path, raw: bytes, text_column: str | None) -> list[Part]:
    """One document per data row; the source ends in ``#row<N>`` (the header is row 0)."""
    import pandas as pd

    text = decode_text(raw)
    try:
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise Skip(f"malformed CSV ({str(exc).strip()[:160]})") from None
    column = _column([str(c) for c in table.columns], text_column)
    rows = list(enumerate(table.to_dict("records"), start=1))
    return _row_parts(path, rows, column, "row")


def read_file(path: Path, raw: bytes, text_column: str | None) -> list[Part]:
    """Dispatch on the suffix (case-insensitive)."""
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return read_plain(path, raw)
    if suffix in HTML_SUFFIXES:
        return read_html(path, raw)
    if suffix == ".pdf":
        return read_pdf(path, raw)
    if suffix == ".jsonl":
        return read_jsonl(path, raw, text_column)
    if suffix == ".csv":
        return read_csv(path, raw, text_column)
    raise Skip(f"unsupported file type {suffix or '(no suffix)'}: supported are {SUPPORTED}")
