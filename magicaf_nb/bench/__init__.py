"""Load generation and measurement for every component of the stack."""

from magicaf_nb.bench.loadgen import (
    GeneratorLimitWarning,
    RunResult,
    aclosed_loop,
    aopen_loop,
    closed_loop,
    open_loop,
)
from magicaf_nb.bench.store import load_run, load_runs, run_metadata, save_run
from magicaf_nb.bench.summary import by_replica, goodput, summarize
from magicaf_nb.bench.sweep import SweepResult, sweep_concurrency, sweep_rate
from magicaf_nb.bench.targets import (
    AskTarget,
    ChatTarget,
    EmbeddingTarget,
    HttpTarget,
    Outcome,
    VectorSearchTarget,
)

__all__ = [
    "AskTarget",
    "ChatTarget",
    "EmbeddingTarget",
    "GeneratorLimitWarning",
    "HttpTarget",
    "Outcome",
    "RunResult",
    "SweepResult",
    "VectorSearchTarget",
    "aclosed_loop",
    "aopen_loop",
    "by_replica",
    "closed_loop",
    "goodput",
    "load_run",
    "load_runs",
    "open_loop",
    "run_metadata",
    "save_run",
    "summarize",
    "sweep_concurrency",
    "sweep_rate",
]
