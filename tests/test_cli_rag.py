"""`magicaf-nb ingest` and `magicaf-nb ask` against a running stack (found by its name)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
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


def test_demo_runs_the_main_job_headless_and_leaves_nothing_running(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = subprocess.run(
        [sys.executable, "-m", "magicaf_nb.cli", "--name", "demo-test", "demo"],
        env={**os.environ, "MAGICAF_NB_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    written = re.search(r"Ingested (\d+) document\(s\) into '[^']+': (\d+) chunk\(s\) written", out)
    assert written and int(written[1]) > 50 and int(written[2]) > int(written[1]), out
    assert "\n  [1] " in out and "Stage timings (ms):" in out, out
    assert "the stack is down" in out
    leftovers = [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if str(home) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == [], f"processes left running: {leftovers}"
