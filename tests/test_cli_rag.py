"""`magicaf-nb ingest` and `magicaf-nb ask` against a running stack (found by its name)."""

from __future__ import annotations

from pathlib import Path

import pytest

from magicaf_nb.cli import main
from magicaf_nb.stack import LocalStack


def test_ingest_a_folder_then_ask_prints_answer_sources_and_timings(
    stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rivers.md").write_text("# Rivers\n\nThe Danube flows through ten countries.")
    (tmp_path / "tea.txt").write_text("Green tea is made from unoxidized Camellia leaves.")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    name = stack.spec.name
    assert main(["--name", name, "ingest", str(tmp_path), "--collection", "cli_rag"]) == 0
    out = capsys.readouterr().out
    assert "2 chunk(s) written" in out and "1 skipped" in out
    code = main(
        [
            "--name",
            name,
            "ask",
            "Which river flows through ten countries?",
            "--collection",
            "cli_rag",
            "--top-k",
            "1",
            "--max-tokens",
            "8",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "[1] " in out and "rivers.md" in out
    assert "llm" in out and "total" in out

    (tmp_path / "tea.txt").unlink()
    ingest = ["--name", name, "ingest", str(tmp_path), "--collection", "cli_rag"]
    assert main([*ingest, "--keep-deleted"]) == 0
    assert "0 stale removed" in capsys.readouterr().out
    assert main(ingest) == 0
    assert "1 stale removed (of 1 file(s) gone)" in capsys.readouterr().out


def test_ingest_without_a_path_says_what_to_give(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest"]) == 1
    assert "--sample" in capsys.readouterr().err
