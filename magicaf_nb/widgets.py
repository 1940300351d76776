"""ipywidgets panels. Each control calls a plain function that a cell can call directly,
so nbval executes the same code path without clicks."""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import pandas as pd
from IPython.display import display

from magicaf_nb.config import COMPONENTS
from magicaf_nb.stack.local import LocalStack, ScaleEvent


def apply_scale(stack: LocalStack, targets: dict[str, int]) -> list[ScaleEvent]:
    """Scale each component to its target replica count (what the sliders do)."""
    return [
        stack.scale(comp, n)
        for comp, n in targets.items()
        if n != len([r for r in stack.replicas if r.component == comp])
    ]


def kill_replica(stack: LocalStack, component: str, index: int) -> None:
    """SIGKILL one replica (what the kill button does)."""
    stack.kill(component, index)


def _serving(stack: LocalStack) -> list[tuple[str, tuple[str, int]]]:
    return [
        (f"{r.component} r{r.index} (port {r.port})", (r.component, r.index))
        for r in stack.replicas
        if r.state == "serving"
    ]


def stack_panel(stack: LocalStack, max_replicas: int = 4) -> w.Widget:
    """Replica sliders with an Apply button, a kill button, and the live status table."""
    sliders = {
        comp: w.IntSlider(
            value=len([r for r in stack.replicas if r.component == comp]),
            min=1,
            max=max_replicas,
            description=f"{comp} replicas",
            style={"description_width": "initial"},
        )
        for comp in COMPONENTS
    }
    apply = w.Button(description="Apply scaling", button_style="primary")
    victim = w.Dropdown(options=_serving(stack), description="replica")
    kill = w.Button(description="Kill (SIGKILL)", button_style="danger")
    out = w.Output()

    def show(message: str = "") -> None:
        out.clear_output()
        with out:
            if message:
                print(message)
            display(stack.status())
        victim.options = _serving(stack)

    def on_apply(_: Any) -> None:
        try:
            events = apply_scale(stack, {c: s.value for c, s in sliders.items()})
            show(
                "; ".join(
                    f"{e.component}: {e.before}->{e.after} in {e.seconds:.2f} s" for e in events
                )
                or "nothing to change"
            )
        except Exception as exc:
            show(f"error: {exc}")

    def on_kill(_: Any) -> None:
        if victim.value is None:
            return show("no serving replica to kill")
        try:
            kill_replica(stack, *victim.value)
            show(f"killed {victim.value[0]} replica {victim.value[1]}")
        except Exception as exc:
            show(f"error: {exc}")

    apply.on_click(on_apply)
    kill.on_click(on_kill)
    show()
    return w.VBox([w.HBox([*sliders.values(), apply]), w.HBox([victim, kill]), out])


def batching_panel(stack: LocalStack, texts: list[str], prompts: list[str]) -> w.Widget:
    """Pick sweep ranges, run them, see the tables and charts (notebook 04)."""
    import matplotlib.pyplot as plt

    from magicaf_nb import charts
    from magicaf_nb.bench.experiments import (
        embedding_batch_sweep,
        embedding_concurrency_sweep,
        llm_concurrency_sweep,
    )

    sizes = w.SelectMultiple(
        options=[1, 2, 4, 8, 16, 32, 64, 128], value=(1, 8, 32), description="batch sizes"
    )
    conc = w.IntRangeSlider(value=(1, 8), min=1, max=16, description="concurrency")
    slots = w.SelectMultiple(options=[1, 2, 4, 8], value=(1, 8), description="LLM slots")
    which = w.ToggleButtons(options=["embedding batch", "embedding concurrency", "LLM slots"])
    run = w.Button(description="Run sweep", button_style="primary")
    out = w.Output()

    def levels() -> list[int]:
        low, high = conc.value
        return sorted({low, high, *[2**k for k in range(8) if low <= 2**k <= high]})

    def on_run(_: Any) -> None:
        out.clear_output()
        with out:
            url = stack.endpoints()["EMBEDDING_URL"]
            if which.value == "embedding batch":
                table = embedding_batch_sweep(url, texts, sorted(sizes.value))
                display(table.round(2))
                charts.metric_against_load(
                    table, load="batch_size", metric="texts_per_s", ylabel="texts/s"
                )
            elif which.value == "embedding concurrency":
                table = embedding_concurrency_sweep(url, texts, levels())
                display(table.round(2))
                charts.metric_against_load(
                    table, load="concurrency", metric="texts_per_s", ylabel="texts/s"
                )
            else:
                table = pd.concat(
                    [
                        llm_concurrency_sweep(
                            stack, levels(), slots=s, requests_per_level=8, prompts=prompts
                        )
                        for s in sorted(slots.value)
                    ]
                )
                display(table.round(2))
                charts.metric_against_load(
                    table,
                    load="concurrency",
                    metric="output_tokens_per_s",
                    series="slots",
                    ylabel="output tokens/s",
                )
            plt.show()

    run.on_click(on_run)
    return w.VBox([which, w.HBox([sizes, conc, slots]), run, out])
