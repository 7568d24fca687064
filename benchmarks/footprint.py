"""Footprint benchmark: the bridge's resident memory, and how long ``wijkbrug dev`` takes
from a fresh data directory to ``/readyz`` 200.

    RSS of `wijkbrug serve` (connected, workers running, idle for a few seconds):
        just started (region loaded), after the end-to-end run (when run by benchmarks.run),
        and restarted over a database with 10,000 more open cases (seeded through
        Store.accept_message, their deliveries marked done, so the bridge has nothing to do)
    baseline: RSS of the accept benchmark's minimal FastAPI app (same stack), idle
    `wijkbrug dev --data-dir EMPTY` -> GET /readyz 200, in seconds
    baseline: a fresh Synapse (same config writer) to its first 200, timed in this run

Goals (issue 7): < 300 MB with 10,000 open cases; < 10 s from `wijkbrug dev` to ready.
Runnable alone: ``python -m benchmarks.footprint [--cases 10000]``.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, update

from benchmarks import accept, harness
from benchmarks.endtoend import Stack
from benchmarks.harness import Result, result
from bridge.config import load_settings
from bridge.db import OutboxItem
from bridge.homeserver import free_port
from bridge.runtime import open_store
from tests.support import examples
from tests.support.bridge import WIJKBRUG

SETTLE_SECONDS = 3.0
MEMORY_GOAL_MB = 300


def settled_rss(pid: int, settle: float = SETTLE_SECONDS) -> float:
    time.sleep(settle)
    return harness.rss_mb(pid)


def bridge_rss(stack: Stack, settle: float = SETTLE_SECONDS) -> float:
    assert stack.site.process is not None
    return settled_rss(stack.site.process.pid, settle)


def baseline_rss(directory: Path, settle: float = SETTLE_SECONDS) -> float:
    """The minimal FastAPI app of the accept benchmark, idle: what the stack costs alone."""
    directory.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(directory / 'baseline.db').resolve()}"
    process = accept.start_baseline(url, free_port(), directory / "baseline.log")
    try:
        return settled_rss(process.pid, settle)
    finally:
        accept.stop(process)


def seed_open_cases(stack: Stack, count: int) -> float:
    """``count`` more open cases (one message each, delivered) through the store, while
    the bridge is stopped; returns the seconds it took."""
    started = time.perf_counter()
    store = open_store(load_settings(stack.site.config_path))
    if store.engine.dialect.name == "sqlite":
        # Seeding only: no fsync per transaction (the bridge itself keeps synchronous=FULL).

        @event.listens_for(store.engine, "connect")
        def _fast(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA synchronous=OFF")

        store.engine.dispose()
    try:
        practice = store.find_org(harness.practice_agb(0))
        decision = store.decide(harness.CARE_TYPE, harness.POSTCODE)
        for i, bsn in enumerate(harness.bsns(count, start=50_000_000)):
            msg = examples.message(ident=f"seed-{i}", bsn=bsn)
            store.accept_message(practice, msg, decision, examples.render)
        with store.session() as s:
            s.execute(update(OutboxItem).where(OutboxItem.state == "pending").values(state="done"))
    finally:
        store.engine.dispose()
    return time.perf_counter() - started


def dev_start_seconds(directory: Path) -> float:
    """``wijkbrug dev`` on an empty data directory until GET /readyz answers 200."""
    port, synapse_port = free_port(), free_port()
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "dev.log").open("ab") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            [
                WIJKBRUG,
                "dev",
                "--data-dir",
                str(directory / "data"),
                "--port",
                str(port),
                "--synapse-port",
                str(synapse_port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        harness.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=120, process=process)
        return time.perf_counter() - started
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def memory_rows(
    idle: float | None,
    baseline: float,
    with_cases: float | None,
    cases: int,
    after_e2e: float | None,
) -> list[Result]:
    """The RSS rows of the figures measured (None: not measured, no row)."""
    baseline_is = "minimal FastAPI app (accept baseline), idle"
    rows = []
    if idle is not None:
        rows.append(
            result(
                "footprint.bridge_rss_idle",
                round(idle, 1),
                "MB",
                baseline=round(baseline, 1),
                baseline_is=baseline_is,
                goal=f"< {MEMORY_GOAL_MB}",
                passed=idle < MEMORY_GOAL_MB,
            )
        )
    if after_e2e is not None:
        rows.append(
            result(
                "footprint.bridge_rss_after_endtoend",
                round(after_e2e, 1),
                "MB",
                baseline=round(baseline, 1),
                baseline_is=baseline_is,
            )
        )
    if with_cases is not None:
        rows.append(
            result(
                "footprint.bridge_rss_open_cases",
                round(with_cases, 1),
                "MB",
                baseline=round(baseline, 1),
                baseline_is=baseline_is,
                goal=f"< {MEMORY_GOAL_MB}",
                passed=with_cases < MEMORY_GOAL_MB,
                note=None if cases == 10_000 else f"{cases} open cases seeded (not 10,000)",
            )
        )
    return rows


def start_row(dev_seconds: float, synapse_seconds: float | None) -> Result:
    return result(
        "footprint.dev_start_to_ready",
        round(dev_seconds, 2),
        "s",
        baseline=None if synapse_seconds is None else round(synapse_seconds, 2),
        baseline_is="a fresh Synapse to its first 200 (same config writer)",
        goal="< 10",
        passed=dev_seconds < 10,
    )


def run(cases: int = 10_000) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="wijkbrug-bench-") as tmp:
        directory = Path(tmp)
        stack = Stack.start(directory)
        try:
            idle = bridge_rss(stack)
            baseline = baseline_rss(directory / "baseline")
            stack.site.stop()
            seed_open_cases(stack, cases)
            stack.site.start()
            with_cases = bridge_rss(stack)
        finally:
            stack.stop()
        dev = dev_start_seconds(directory / "dev")
    return [
        *memory_rows(idle, baseline, with_cases, cases, None),
        start_row(dev, stack.synapse_start_seconds),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="open cases to seed")
    args = parser.parse_args()
    rows = run(args.cases)
    harness.report(rows, "footprint")


if __name__ == "__main__":
    main()
