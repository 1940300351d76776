"""Change a running component's server flags (threads, LLM slots, context) by restarting
its replicas one at a time, each drained first, so the service stays up throughout."""

from __future__ import annotations

from typing import Any

from magicaf_nb.config import ConfigError

RECONFIGURABLE = {"threads", "slots", "context", "batch_tokens"}


def reconfigure(stack: Any, component: str, **changes: Any) -> list[float]:
    """Apply ``changes`` to ``stack.spec.<component>`` and roll them out; return the
    seconds each replica took to serve again. The old values are restored if a
    replica fails to come back."""
    unknown = set(changes) - RECONFIGURABLE
    if unknown:
        raise ConfigError(
            f"Cannot change {sorted(unknown)} live: use one of {sorted(RECONFIGURABLE)}."
        )
    spec = stack.spec.component(component)
    old = {key: getattr(spec, key) for key in changes if hasattr(spec, key)}
    missing = set(changes) - set(old)
    if missing:
        raise ConfigError(f"{component} has no setting {sorted(missing)}.")
    for key, value in changes.items():
        setattr(spec, key, value)
    try:
        spec.validate()
    except ConfigError:
        for key, value in old.items():
            setattr(spec, key, value)
        raise
    indices = [r.index for r in stack.replicas if r.component == component and r.state == "serving"]
    return [stack.restart(component, i) for i in indices]
