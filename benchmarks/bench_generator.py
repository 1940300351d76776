"""Benchmark of the load generator itself. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_generator.py [--seconds 3]

1. Its highest request rate (closed loop, one process pinned to one core) against a
   trivial local endpoint (HAProxy answering from memory on the other core), next to
   wrk (C, one thread, same core, same endpoint) in the same run, and their ratio.
2. Open loop at 200 requests/s (Poisson): p99 send lateness against the schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd

from magicaf_nb.bench import HttpTarget, aclosed_loop, aopen_loop, summarize
from magicaf_nb.binaries import haproxy_path
from magicaf_nb.stack.ports import pick_free_port

SERVER_CORE, CLIENT_CORE = 0, 1


def trivial_endpoint(port: int, folder: Path) -> subprocess.Popen[bytes]:
    cfg = folder / "trivial.cfg"
    cfg.write_text(f"""global
    nbthread 1
    cpu-map 1/1 {SERVER_CORE}
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
frontend trivial
    bind 127.0.0.1:{port}
    http-request return status 200 content-type text/plain string ok
""")
    proc = subprocess.Popen(
        [str(haproxy_path()), "-db", "-f", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    time.sleep(0.3)
    return proc


def wrk_rate(url: str, connections: int, seconds: float) -> float | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    out = subprocess.run(
        [
            "taskset",
            "-c",
            str(CLIENT_CORE),
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds:.0f}s",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    return float(match.group(1)) if match else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if os.cpu_count() and os.cpu_count() >= 2:
        os.sched_setaffinity(0, {CLIENT_CORE})
    port = pick_free_port()
    url = f"http://127.0.0.1:{port}/"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        server = trivial_endpoint(port, Path(tmp))
        try:
            run = asyncio.run(
                aclosed_loop(
                    HttpTarget(url), args.connections, max_seconds=args.seconds, warmup_requests=200
                )
            )
            ours = summarize(run.records)["requests_per_s"]
            rows.append(("magicaf_nb closed loop, 1 core", ours, "requests/s"))
            theirs = wrk_rate(url, args.connections, args.seconds)
            if theirs:
                rows.append(("wrk -t1, same core, same endpoint", theirs, "requests/s"))
                rows.append(("ratio magicaf_nb / wrk (goal >= 0.25)", ours / theirs, "x"))
            for rate in (200.0, 1000.0):
                run = asyncio.run(aopen_loop(HttpTarget(url), rate, max_seconds=5.0, warmup_s=0.5))
                s = summarize(run.records)
                rows.append(
                    (
                        f"open loop {rate:.0f}/s: p99 send lateness (goal < 5 ms at 200)",
                        s["send_lateness_p99_ms"],
                        "ms",
                    )
                )
                rows.append(
                    (f"open loop {rate:.0f}/s: achieved rate", s["requests_per_s"], "requests/s")
                )
        finally:
            server.terminate()
            server.wait()
    table = pd.DataFrame(rows, columns=["figure", "value", "unit"])
    with pd.option_context("display.width", 140, "display.max_colwidth", 70):
        print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
