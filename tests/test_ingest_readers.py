"""Ingestion without servers: readers and their report, token chunking, point ids.

Every file is real and made here in a tmp folder: a hand-written PDF (read back by
pypdf), HTML, CSV, JSON Lines, a binary file, an empty file, a huge (sparse) file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from pathlib import Path

import pandas as pd
import pytest

from magicaf_nb.ingest import (
    DEFAULT_MAX_BYTES,
    Chunker,
    Document,
    IngestError,
    point_id,
    read_dataframe,
    read_folder,
    sample_corpus,
)
from magicaf_nb.ingest.chunking import windows

HTML = """<!doctype html><html><head><title>Load balancing</title>
<style>body { color: red }</style><script>var hidden = "SCRIPT TEXT";</script></head>
<body><h1>HAProxy</h1><p>Round robin spreads <b>requests</b> over replicas.</p>
<ul><li>health checks</li><li>retries</li></ul></body></html>"""


def tiny_pdf(pages: list[list[str]], title: str) -> bytes:
    """A valid PDF with one Helvetica text line per entry, written by hand (xref included)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids = []
    for lines in pages:
        shown = " ".join(f"({line}) Tj T*" for line in lines)
        stream = f"BT /F1 12 Tf 72 720 Td 14 TL {shown} ET".encode()
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R >> >> >>" % len(objects)
        )
        kids.append(len(objects))
    refs = b" ".join(b"%d 0 R" % k for k in kids)
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (refs, len(kids))
    objects.append(b"<< /Title (%s) >>" % title.encode())
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        len(objects),
        xref,
    )
    return bytes(out)


def write_good_files(root: Path) -> None:
    """One readable file of each kind (the CSV and JSONL hold two text rows each)."""
    (root / "notes.txt").write_text("Plain notes.\nQdrant stores vectors with payloads.\n")
    (root / "guide.md").write_text("# Scaling guide\n\nAdd replicas behind a load balancer.\n")
    (root / "sub").mkdir()
    (root / "sub" / "ref.rst").write_text("Reference\n=========\n\nShards split a collection.\n")
    (root / "sub" / "page.html").write_text(HTML)
    pages = [["Vector databases store embeddings.", "They answer neighbour queries."]]
    (root / "paper.pdf").write_bytes(tiny_pdf([*pages, ["HNSW graphs make search fast."]], "Tiny"))
    (root / "rows.csv").write_text(
        'id,body,title\n1,"Embeddings map text to vectors, with commas",First\n2,,Empty\n'
        "3,Batching raises throughput.,Third\n"
    )
    lines = [{"body": "Continuous batching in vLLM."}, {"body": "  "}, {"body": "TEI serves."}]
    (root / "rows.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")


def write_bad_files(root: Path) -> None:
    """Files that must be skipped, each for its own reason."""
    (root / "blob.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (root / "latin1.md").write_bytes("Caf\xe9 cr\xe8me".encode("latin-1"))
    (root / "empty.txt").write_bytes(b"")
    (root / "spaces.txt").write_text("   \n\n  ")
    with open(root / "huge.txt", "wb") as handle:  # sparse: costs no disk
        handle.truncate(DEFAULT_MAX_BYTES + 1)
    (root / "image.png").write_bytes(b"\x89PNG\r\n")
    (root / "scan.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")


def by_path(report: pd.DataFrame) -> dict[str, dict]:
    return {row["path"]: row for row in report.to_dict("records")}


def test_read_folder_reads_every_supported_kind(tmp_path: Path) -> None:
    write_good_files(tmp_path)
    docs, report = read_folder(tmp_path, text_column="body")
    rows = by_path(report)
    assert set(rows) == {
        "notes.txt",
        "guide.md",
        "paper.pdf",
        "rows.csv",
        "rows.jsonl",
        "sub/ref.rst",
        "sub/page.html",
    }
    assert {r["status"] for r in rows.values()} == {"read"}
    assert rows["rows.csv"]["documents"] == 2 and rows["rows.jsonl"]["documents"] == 2
    assert report["chars"].sum() == sum(len(d.text) for d in docs)
    by_source = {d.source: d for d in docs}
    html = by_source[str((tmp_path / "sub" / "page.html").resolve())]
    assert html.title == "Load balancing"
    assert "SCRIPT TEXT" not in html.text and "color: red" not in html.text
    assert "Round robin spreads requests over replicas." in html.text
    assert "health checks\n" in html.text  # block elements start new lines
    pdf = by_source[str((tmp_path / "paper.pdf").resolve())]
    assert pdf.title == "Tiny"
    assert "They answer neighbour queries." in pdf.text and "HNSW graphs" in pdf.text
    guide = by_source[str((tmp_path / "guide.md").resolve())]
    assert guide.title == "Scaling guide"
    csv_source = str((tmp_path / "rows.csv").resolve())
    assert by_source[csv_source + "#row1"].text == "Embeddings map text to vectors, with commas"
    assert by_source[csv_source + "#row1"].title == "First"
    assert csv_source + "#row2" not in by_source  # empty cell
    jsonl_source = str((tmp_path / "rows.jsonl").resolve())
    assert by_source[jsonl_source + "#line3"].text == "TEI serves."
    assert by_source[jsonl_source + "#line3"].title == "rows.jsonl line 3"


def test_read_folder_skips_bad_files_with_reasons(tmp_path: Path) -> None:
    write_good_files(tmp_path)
    write_bad_files(tmp_path)
    (tmp_path / "sub" / ".draft.md").write_text("# Not yet\n")
    docs, report = read_folder(tmp_path, text_column="body")
    rows = by_path(report)
    reasons = {path: row["reason"] for path, row in rows.items() if row["status"] == "skipped"}
    assert reasons.pop("sub/.draft.md") == "hidden file"
    assert set(reasons) == {
        "blob.txt",
        "latin1.md",
        "empty.txt",
        "spaces.txt",
        "huge.txt",
        "image.png",
        "scan.pdf",
        ".git/",
    }
    assert reasons["blob.txt"].startswith("binary file")
    assert "not UTF-8" in reasons["latin1.md"] and "0xe9 at offset 3" in reasons["latin1.md"]
    assert reasons["empty.txt"] == "empty file (0 bytes)"
    assert reasons["spaces.txt"] == "no text in it"
    assert "huge file: 20.0 MiB is over max_bytes=20.0 MiB" in reasons["huge.txt"]
    assert rows["huge.txt"]["bytes"] == DEFAULT_MAX_BYTES + 1
    assert "unsupported file type .png" in reasons["image.png"]
    assert "unreadable PDF" in reasons["scan.pdf"]
    assert reasons[".git/"] == "hidden folder, not searched"
    assert len(docs) == 9  # the good files still read: 5 single documents + 2 + 2 rows
    assert (report.loc[report["status"] == "skipped", ["documents", "chars"]] == 0).all().all()


def test_read_folder_table_column_missing_and_limits(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("id,body\n1,hello there\n")
    docs, report = read_folder(tmp_path)  # no text_column: 'text' is tried
    assert docs == []
    reason = report.iloc[0]["reason"]
    assert "no column 'text'" in reason and "'body'" in reason and "text_column=" in reason
    (tmp_path / "small.txt").write_text("x" * 5000)
    _, report = read_folder(tmp_path / "small.txt", max_bytes=1000)  # a single file works too
    assert report.iloc[0]["path"] == "small.txt"
    assert report.iloc[0]["reason"].startswith("huge file")
    with pytest.raises(IngestError, match="max_bytes"):
        read_folder(tmp_path, max_bytes=0)


def test_csv_fields_longer_than_the_csv_modules_limit(tmp_path: Path) -> None:
    long_text = "word " * 40_000  # 200 kB in one cell: over csv's 128 kB field limit
    pd.DataFrame({"text": [long_text, "short"]}).to_csv(tmp_path / "big.csv", index=False)
    (tmp_path / "broken.csv").write_text('text\n"unterminated\n')
    docs, report = read_folder(tmp_path)
    assert [len(d.text) for d in docs] == [len(long_text), len("short")]
    assert by_path(report)["broken.csv"]["reason"].startswith("malformed CSV")


def test_read_folder_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"no-such-dir: no such file or folder"):
        read_folder(tmp_path / "no-such-dir")


def test_read_dataframe_rows_sources_and_titles() -> None:
    df = pd.DataFrame(
        {
            "body": ["First text.", None, "  ", "Fourth text."],
            "url": ["u1", "u2", "u3", "u4"],
            "name": ["One", "Two", "Three", "Four"],
        }
    )
    docs, report = read_dataframe(df, "body", source_column="url", title_column="name")
    assert docs == [Document("u1", "One", "First text."), Document("u4", "Four", "Fourth text.")]
    assert list(report["status"]) == ["read", "skipped", "skipped", "read"]
    assert "(row 1: missing)" in report.iloc[1]["reason"] and "empty" in report.iloc[2]["reason"]
    docs, _ = read_dataframe(df, "body")
    assert [d.source for d in docs] == [
        "dataframe:" + hashlib.sha1(b"First text.").hexdigest()[:16],
        "dataframe:" + hashlib.sha1(b"Fourth text.").hexdigest()[:16],
    ]
    repeated = pd.DataFrame({"body": ["Same words.", "Other words.", "Same words."]})
    docs, report = read_dataframe(repeated, "body")
    assert len(docs) == 2 and report.iloc[2]["reason"] == "same text as row 0"
    with pytest.raises(IngestError, match=r"no text column 'content'.*'body'"):
        read_dataframe(df, "content")


def test_sample_corpus_is_the_python_reference() -> None:
    docs = sample_corpus()
    assert len(docs) >= 70
    assert len({d.source for d in docs}) == len(docs)
    assert all(d.source.startswith("pydoc:") and d.text.strip() for d in docs)
    titles = {d.source: d.title for d in docs}
    assert titles["pydoc:assert"] == 'The "assert" statement'
    assert sum(len(d.text) for d in docs) > 300_000


def test_point_ids_are_deterministic_uuid5() -> None:
    first = point_id("pydoc:assert", "Assert statements are a convenient way")
    assert first == point_id("pydoc:assert", "Assert statements are a convenient way")
    assert uuid.UUID(first).version == 5
    assert first != point_id("pydoc:assert", "Assert statements are a convenient way.")
    assert first != point_id("pydoc:async", "Assert statements are a convenient way")


def test_chunks_fit_the_model_and_cut_the_original_text() -> None:
    chunker = Chunker(chunk_size=128, overlap=16)
    docs = sample_corpus()[:20]
    chunks = chunker.chunk_documents(docs)
    texts = {d.source: d.text for d in docs}
    encodings = chunker.tokenizer.encode_batch([c.text for c in chunks])  # with [CLS]/[SEP]
    for chunk, encoding in zip(chunks, encodings, strict=True):
        assert chunk.text in texts[chunk.source]  # cut from the original text
        assert len(encoding.ids) == chunk.tokens + 2 <= 128 + 2
    # Consecutive chunks of one document overlap (up to 16 tokens; snapped to words).
    first = [c for c in chunks if c.source == docs[0].source]
    assert len(first) >= 3 and [c.index for c in first] == list(range(len(first)))
    doc = texts[docs[0].source]
    for a, b in itertools.pairwise(first):
        a_start = doc.index(a.text)
        b_start = doc.index(b.text, a_start + 1)
        shared = doc[b_start : a_start + len(a.text)]
        assert 1 <= chunker.count_tokens(shared) <= 16, shared
    # Together the chunks cover the whole document's tokens.
    whole = chunker.count_tokens(texts[docs[0].source])
    assert sum(c.tokens for c in first) >= whole


def test_chunker_handles_long_words_and_huge_texts() -> None:
    chunker = Chunker(chunk_size=16, overlap=4)
    text = "alpha " + "supercalifragilistic" * 6 + " omega " + "word " * 40
    pieces = chunker.split(text)
    assert all(chunker.count_tokens(p) <= 16 for p in pieces)
    assert pieces[0].startswith("alpha super") and pieces[-1].endswith("word")
    big = Chunker(chunk_size=256, overlap=0)
    words = " ".join(f"Sentence {i} is about topic {i * 7919 % 10007}." for i in range(40_000))
    assert len(words) > 1_000_000  # tokenized in sections, chunks never cross them badly
    chunks = big.chunk_documents([Document("big", "Big", words)])
    assert all(c.tokens <= 256 for c in chunks)
    assert sum(c.tokens for c in chunks) == big.count_tokens(words)  # overlap 0: a partition
    assert "".join(c.text for c in chunks).replace(" ", "") == words.replace(" ", "")


def test_identical_chunks_of_one_source_collapse() -> None:
    chunker = Chunker(chunk_size=32, overlap=0)
    text = "The quick brown fox jumps over the lazy dog. " * 200
    chunks = chunker.chunk_documents([Document("a", "A", text), Document("b", "B", text)])
    per_source = {s: [c for c in chunks if c.source == s] for s in ("a", "b")}
    # 10 tokens repeat; windows of 32 start at 5 distinct phases, plus the last partial one.
    assert len(per_source["a"]) == len(per_source["b"]) <= 6
    ids = [c.id for c in chunks]
    assert len(ids) == len(set(ids))
    assert [c.index for c in per_source["a"]] == list(range(len(per_source["a"])))


def test_windows_snap_to_word_starts() -> None:
    # Words of 1, 3, 1, 2 and 1 tokens.
    word_ids = [0, 1, 1, 1, 2, 3, 3, 4]
    assert windows(word_ids, 4, 0) == [(0, 4), (4, 8)]
    assert windows(word_ids, 5, 2) == [(0, 5), (4, 8)]
    assert windows([0] * 10, 4, 1) == [(0, 4), (3, 7), (6, 10)]  # one long word: cut inside
    assert windows([0, 1, 2, 3, 3, 3, 3, 3, 4], 4, 0) == [(0, 3), (3, 7), (7, 9)]


def test_chunker_refuses_absurd_sizes() -> None:
    with pytest.raises(IngestError, match=r"chunk_size=600 .*512-token context.*<= 510"):
        Chunker(chunk_size=600)
    with pytest.raises(IngestError, match="overlap=64 must be smaller than chunk_size=64"):
        Chunker(chunk_size=64, overlap=64)
    with pytest.raises(IngestError, match="too small"):
        Chunker(chunk_size=2, overlap=0)
    with pytest.raises(IngestError, match="whole number"):
        Chunker(chunk_size=256.0)  # type: ignore[arg-type]
    assert Chunker(chunk_size=510, overlap=0).max_chunk_size == 510
