"""``magicaf-nb``: drive the embedded stack from a shell. State persists between calls."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence

import pandas as pd

from magicaf_nb import models
from magicaf_nb.config import (
    COMPONENTS,
    MAX_REPLICAS,
    VECTOR_COMPONENT,
    AppServerSpec,
    ConfigError,
    EmbeddingConfig,
    EmbeddingServerSpec,
    GenerationConfig,
    LlmConfig,
    LlmServerSpec,
    StackSpec,
    VectorServerSpec,
    check_positive_int,
)

ALL_COMPONENTS = (*COMPONENTS, VECTOR_COMPONENT)


def _int_arg(name: str, upper: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name}={text!r} is not a whole number: use an integer from 1 to {upper}"
            ) from None
        try:
            return check_positive_int(name, value, upper=upper)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _port_arg(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port {text!r} is not a number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 1-65535")
    return value


def _print_table(frame: pd.DataFrame) -> None:
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(frame.to_string(index=False))


def _endpoints_env(name: str) -> dict[str, str]:
    from magicaf_nb.stack import LocalStack, StackError

    try:
        return LocalStack.attach(name).endpoints()
    except StackError:
        return dict(os.environ)


def cmd_up(args: argparse.Namespace) -> int:
    from magicaf_nb.stack import LocalStack

    spec = StackSpec(
        name=args.name,
        embedding=EmbeddingServerSpec(
            replicas=args.embedding,
            threads=args.embedding_threads,
            quant=args.quant,
            lb_port=args.embedding_port,
        ),
        llm=LlmServerSpec(
            replicas=args.llm,
            threads=args.llm_threads,
            slots=args.llm_slots,
            context=args.context,
            lb_port=args.llm_port,
        ),
        qdrant=VectorServerSpec(url=args.qdrant_url, port=args.qdrant_port),
        app=AppServerSpec(replicas=args.app, collection=args.collection),
    )
    start = time.monotonic()
    stack = LocalStack(spec, detach=True).up()
    print(f"Stack {args.name!r} is up in {time.monotonic() - start:.1f} s.")
    _print_table(stack.status())
    for key, value in stack.endpoints().items():
        print(f"export {key}={value}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from magicaf_nb.stack import LocalStack

    _print_table(LocalStack.attach(args.name).status())
    return 0


def cmd_endpoints(args: argparse.Namespace) -> int:
    from magicaf_nb.stack import LocalStack

    for key, value in LocalStack.attach(args.name).endpoints().items():
        print(f"export {key}={value}")
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    from magicaf_nb.stack import LocalStack

    event = LocalStack.attach(args.name).scale(args.component, args.replicas)
    print(f"{event.component}: {event.before} -> {event.after} replicas in {event.seconds:.2f} s")
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    from magicaf_nb.stack import LocalStack

    LocalStack.attach(args.name).kill(args.component, args.index)
    print(f"Killed {args.component} replica {args.index} (SIGKILL).")
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    from magicaf_nb.stack import LocalStack

    seconds = LocalStack.attach(args.name).restart(args.component, args.index)
    print(f"{args.component} replica {args.index} serves again after {seconds:.2f} s.")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from magicaf_nb.stack import LocalStack

    print(LocalStack.attach(args.name).logs(args.component, args.index, args.lines))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from magicaf_nb.stack import state

    data = state.read(args.name)
    if data is None:
        print(f"No stack named {args.name!r} is running.")
        return 0
    killed = state.reap(data)
    state.remove(args.name)
    print(f"Stack {args.name!r} is down ({killed} process group(s) stopped).")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from magicaf_nb.services import EmbeddingClient

    config = EmbeddingConfig.from_env(_endpoints_env(args.name))
    vectors = EmbeddingClient(config).embed(args.texts)
    for text, vector in zip(args.texts, vectors, strict=True):
        head = ", ".join(f"{x:+.4f}" for x in vector[:6])
        print(f"{len(vector)} dims  [{head}, ...]  {text[:60]!r}")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from magicaf_nb.services import LlmClient

    config = LlmConfig.from_env(_endpoints_env(args.name))
    result = LlmClient(config).stream_chat(
        args.prompt, GenerationConfig(max_tokens=args.max_tokens)
    )
    print(result.text.strip())
    ttft = f"{1000 * result.ttft_s:.0f} ms" if result.ttft_s is not None else "-"
    rate = f"{result.tokens_per_s:.1f}" if result.tokens_per_s else "-"
    print(
        f"\n[{result.completion_tokens} tokens, time to first token {ttft}, {rate} tokens/s, "
        f"served by {result.served_by}]",
        file=sys.stderr,
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from magicaf_nb import binaries

    report = {
        "llama-server": str(binaries.llama_server_path()),
        "haproxy": str(binaries.haproxy_path()),
        "chat model": str(models.chat_model_path()),
    }
    for quant in args.quant:
        report[f"embedding model ({quant})"] = str(models.embedding_model_path(quant))
    print(json.dumps(report, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="magicaf-nb", description=__doc__)
    parser.add_argument("--name", default="default", help="stack name (default: default)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the stack (servers keep running after this exits)")
    up.add_argument("--embedding", type=_int_arg("embedding replicas", MAX_REPLICAS), default=1)
    up.add_argument("--llm", type=_int_arg("llm replicas", MAX_REPLICAS), default=1)
    up.add_argument("--app", type=_int_arg("app replicas", MAX_REPLICAS), default=1)
    up.add_argument("--collection", default="magicaf", help="the collection the app answers from")
    up.add_argument("--embedding-threads", type=_int_arg("embedding threads", 64), default=1)
    up.add_argument("--llm-threads", type=_int_arg("llm threads", 64), default=1)
    up.add_argument("--llm-slots", type=_int_arg("llm slots", 256), default=8)
    up.add_argument("--context", type=_int_arg("llm context", 131072), default=8192)
    up.add_argument("--quant", choices=["f16", "q8_0", "f32"], default="f16")
    up.add_argument("--embedding-port", type=_port_arg, default=None)
    up.add_argument("--llm-port", type=_port_arg, default=None)
    up.add_argument(
        "--qdrant-url",
        default=None,
        help="use this Qdrant instead of starting the embedded vector server "
        "(default: $QDRANT_URL if set)",
    )
    up.add_argument("--qdrant-port", type=_port_arg, default=None)
    up.set_defaults(func=cmd_up)

    sub.add_parser("status", help="one row per process").set_defaults(func=cmd_status)
    sub.add_parser("endpoints", help="print export lines").set_defaults(func=cmd_endpoints)
    sub.add_parser("down", help="stop everything").set_defaults(func=cmd_down)

    scale = sub.add_parser("scale", help="set a component's replica count")
    scale.add_argument("component", choices=ALL_COMPONENTS)
    scale.add_argument("replicas", type=_int_arg("replicas", MAX_REPLICAS))
    scale.set_defaults(func=cmd_scale)

    for name, func, text in (
        ("kill", cmd_kill, "SIGKILL one replica"),
        ("restart", cmd_restart, "restart one replica"),
    ):
        action = sub.add_parser(name, help=text)
        action.add_argument("component", choices=ALL_COMPONENTS)
        action.add_argument("index", type=int)
        action.set_defaults(func=func)

    logs = sub.add_parser("logs", help="a replica's (or the LB's) last log lines")
    logs.add_argument("component", choices=ALL_COMPONENTS)
    logs.add_argument("index", type=int, nargs="?")
    logs.add_argument("--lines", type=int, default=40)
    logs.set_defaults(func=cmd_logs)

    embed = sub.add_parser("embed", help="embed texts through EMBEDDING_URL")
    embed.add_argument("texts", nargs="+")
    embed.set_defaults(func=cmd_embed)

    chat = sub.add_parser("chat", help="ask the LLM through LLM_URL (streamed)")
    chat.add_argument("prompt")
    chat.add_argument("--max-tokens", type=_int_arg("max tokens", 32768), default=128)
    chat.set_defaults(func=cmd_chat)

    mdl = sub.add_parser("models", help="check binaries and prepare the model files")
    mdl.add_argument("--quant", nargs="*", default=["f16"], choices=["f16", "q8_0", "f32"])
    mdl.set_defaults(func=cmd_models)

    from magicaf_nb.cli_rag import add_commands

    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"magicaf-nb {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
