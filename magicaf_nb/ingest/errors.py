"""The one error type of ingestion: it names the input at fault and the fix."""

from __future__ import annotations


class IngestError(ValueError):
    """Ingestion refused its input; nothing was written. The message says why and the fix."""
