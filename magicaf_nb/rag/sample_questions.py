"""Questions about the sample corpus (CPython's language reference topics), each with
the topics that answer it: the ground truth for retrieval quality (hit@k)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from magicaf_nb.rag.result import Evidence


@dataclass(frozen=True)
class SampleQuestion:
    question: str
    topics: tuple[str, ...]  # pydoc topic names; the corpus source is "pydoc:<topic>"


SAMPLE_QUESTIONS = [
    SampleQuestion("How do I catch an exception raised inside a block of code?", ("try",)),
    SampleQuestion(
        "What happens when the expression of an assert statement is false?", ("assert",)
    ),
    SampleQuestion(
        "How does the with statement call __enter__ and __exit__?", ("with", "context-managers")
    ),
    SampleQuestion("What does the yield keyword do inside a function?", ("yield",)),
    SampleQuestion(
        "How can a function rebind a variable defined at module level?", ("global", "naming")
    ),
    SampleQuestion("What does the nonlocal statement do?", ("nonlocal",)),
    SampleQuestion("How do I write a small anonymous function in an expression?", ("lambda",)),
    SampleQuestion("Which statement does nothing and is used as a placeholder?", ("pass",)),
    SampleQuestion("When does the else clause of a for loop run?", ("for", "break")),
    SampleQuestion("What happens when break is executed inside a loop?", ("break",)),
    SampleQuestion("How do I raise an exception from another exception as its cause?", ("raise",)),
    SampleQuestion("How does the import statement find and load a module?", ("import",)),
    SampleQuestion(
        "Which string method removes leading and trailing whitespace?", ("string-methods",)
    ),
    SampleQuestion(
        "How do replacement fields and format specifications work in str.format?",
        ("formatstrings",),
    ),
    SampleQuestion("Which values are considered false when tested for truth?", ("truth",)),
    SampleQuestion(
        "What operations do dictionaries support, like get and setdefault?",
        ("typesmapping", "dict"),
    ),
    SampleQuestion(
        "How do slicings with a start, a stop and a step select items?", ("slicings", "typesseq")
    ),
    SampleQuestion(
        "What is the precedence of the operators, from lowest to highest?", ("operator-summary",)
    ),
    SampleQuestion("How does the del statement delete names and list items?", ("del",)),
    SampleQuestion(
        "How are hexadecimal, octal and binary integer literals written?", ("integers",)
    ),
    SampleQuestion("What does an await expression do in a coroutine?", ("await", "async")),
    SampleQuestion("How do chained comparisons like a < b < c evaluate?", ("comparisons",)),
    SampleQuestion(
        "How does a class definition create a class object and its namespace?", ("class",)
    ),
    SampleQuestion(
        "Which operations do mutable sequences add, such as append and extend?",
        ("typesseq-mutable",),
    ),
    SampleQuestion(
        "How does a while loop repeat, and what does continue do in it?", ("while", "continue")
    ),
    SampleQuestion("How do the bitwise and, or and xor operators work on integers?", ("bitwise",)),
]


def topic_of(source: str) -> str:
    return source.removeprefix("pydoc:")


def hits_at(evidence: list[Evidence], topics: tuple[str, ...], k: int) -> bool:
    return any(topic_of(e.source) in topics for e in evidence[:k])


def retrieval_table(
    results: list[tuple[SampleQuestion, list[Evidence]]], k: int = 5
) -> pd.DataFrame:
    """One row per question: did the answering topic rank in the top k, and where."""
    rows = []
    for question, evidence in results:
        ranks = [
            i for i, e in enumerate(evidence, start=1) if topic_of(e.source) in question.topics
        ]
        rows.append(
            {
                "question": question.question,
                "expected": ", ".join(question.topics),
                "top_source": topic_of(evidence[0].source) if evidence else None,
                "rank": ranks[0] if ranks else None,
                f"hit@{k}": bool(ranks and ranks[0] <= k),
            }
        )
    return pd.DataFrame(rows)
