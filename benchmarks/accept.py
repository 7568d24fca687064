"""Accept-path benchmark: FHIR POST to a durable 201 (parsing, validation, routing, one
transaction with case, communication, outbox row and audit record) with delivery paused,
next to a minimal FastAPI endpoint that only commits one row, in the same server stack.

    8 keep-alive connections --POST /fhir/Communication--> `wijkbrug serve` (uvicorn), its
                                                           homeserver unreachable: nothing
                                                           is delivered, everything is stored
    8 keep-alive connections --POST /rows (same bodies)--> benchmarks.serve (uvicorn + FastAPI
                                                           + bridge.db engine, one INSERT)

On SQLite (the data directory's file) and on the machine's PostgreSQL (a throwaway
database). The two servers run side by side and are loaded in alternating rounds (3 x 5 s
each, after a short warm-up), so a noisy neighbour slows both alike. The per-client rate
limit is lifted (the limiter still runs); messages cycle over 25 patients per practice, so
most of them join an open case.

Goal (issue 7): ratio >= 0.5 on both, and >= 500 requests/s on SQLite. Runnable alone:
``python -m benchmarks.accept [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks import harness
from benchmarks.harness import HttpConnection, Result, result
from bridge.config import load_settings
from bridge.homeserver import free_port
from bridge.runtime import open_store
from tests.support.bridge import WIJKBRUG, BridgeSite

CLIENTS = 8
PATIENTS_PER_CLIENT = 25
ROUNDS = 3
ROUND_SECONDS = 5.0
TEXT = "Graag wondcontrole na ontslag, wond onderbeen links."


def start_bridge(site: BridgeSite) -> subprocess.Popen[bytes]:
    """``wijkbrug serve`` as an operator runs it; ready for HTTP once /healthz answers (it
    is never /readyz-ready: its homeserver does not answer)."""
    with site.log_path.open("ab") as log:
        process = subprocess.Popen(
            [WIJKBRUG, "--config", str(site.config_path), "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    harness.wait_http(f"{site.url}/healthz", process=process)
    return process


def start_baseline(database_url: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.serve", database_url, str(port)],
            cwd=harness.REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    harness.wait_http(f"http://127.0.0.1:{port}/healthz", process=process)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def load(
    port: int,
    path: str,
    body: Callable[[int, int], bytes],
    headers: Sequence[dict[str, str]],
    seconds: float,
) -> tuple[int, float, Counter[int]]:
    """Each client posts ``body(client, i)`` for i = 0, 1, ..., one after the other, all
    clients at once, until ``seconds`` have passed; returns how many were answered, the
    time that took and the status codes."""
    statuses: Counter[int] = Counter()
    connections = [HttpConnection("127.0.0.1", port) for _ in headers]
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            status, _ = await connections[k].request("POST", path, body(k, i), headers[k])
            statuses[status] += 1
            i += 1

    started = time.perf_counter()
    try:
        await asyncio.gather(*(client(k) for k in range(len(headers))))
        return sum(statuses.values()), time.perf_counter() - started, statuses
    finally:
        for connection in connections:
            await connection.close()


def measure(directory: Path, kind: str, database_url: str | None, seconds: float) -> Result:
    """Both servers on one database, loaded in alternating rounds of ``seconds`` each."""
    name = f"accept.{kind}.requests_per_s"
    goal = "ratio >= 0.5 and >= 500/s" if kind == "sqlite" else "ratio >= 0.5"
    baseline_is = "FastAPI endpoint committing one row, same stack and database"
    site = BridgeSite.prepare(directory / f"accept-{kind}", database_url=database_url)
    site.configure("http", {"client_rate_limit": harness.UNLIMITED})
    site.point_at(f"http://127.0.0.1:{free_port()}")  # nobody listens: delivery paused
    store = open_store(load_settings(site.config_path))
    tokens = harness.setup_region(store, CLIENTS, "@nurse:localhost")
    store.engine.dispose()
    baseline_url = database_url or f"sqlite:///{(site.data_dir / 'baseline.db').resolve()}"
    baseline_port = free_port()
    patients = harness.bsns(CLIENTS * PATIENTS_PER_CLIENT)
    headers = [harness.fhir_headers(t) for t in tokens]

    def bodies(tag: str) -> Callable[[int, int], bytes]:
        def body(k: int, i: int) -> bytes:
            bsn = patients[k * PATIENTS_PER_CLIENT + i % PATIENTS_PER_CLIENT]
            return harness.communication(k, f"acc-{tag}-{k}-{i}", bsn, TEXT)

        return body

    bridge = start_bridge(site)
    baseline = start_baseline(baseline_url, baseline_port, site.data_dir / "baseline.log")
    answered = {"wijkbrug": 0, "baseline": 0}
    took = {"wijkbrug": 0.0, "baseline": 0.0}
    statuses: dict[str, Counter[int]] = {"wijkbrug": Counter(), "baseline": Counter()}
    targets = {"wijkbrug": (site.port, "/fhir/Communication"), "baseline": (baseline_port, "/rows")}

    async def alternate() -> None:
        for side, (port, path) in targets.items():  # warm-up, not counted
            await load(port, path, bodies(f"warm-{side}"), headers, min(seconds, 1.0))
        for r in range(ROUNDS):
            for side, (port, path) in targets.items():
                count, elapsed, codes = await load(
                    port, path, bodies(f"{side}-{r}"), headers, seconds
                )
                answered[side] += count
                took[side] += elapsed
                statuses[side] += codes

    try:
        asyncio.run(alternate())
    finally:
        stop(bridge)
        stop(baseline)
    rate = answered["wijkbrug"] / took["wijkbrug"]
    base_rate = answered["baseline"] / took["baseline"]
    ratio = rate / base_rate
    ok = all(set(codes) == {201} for codes in statuses.values())
    passed = ok and ratio >= 0.5 and (kind != "sqlite" or rate >= 500)
    harness.progress(f"accept {kind}: {rate:.0f}/s, baseline {base_rate:.0f}/s")
    return result(
        name,
        round(rate),
        "req/s",
        baseline=round(base_rate),
        baseline_is=baseline_is,
        ratio=ratio,
        goal=goal,
        passed=passed,
        note=None if ok else f"answers: { {k: dict(v) for k, v in statuses.items()} }",
    )


def run(seconds: float = ROUND_SECONDS) -> list[Result]:
    """Both databases, ``ROUNDS`` rounds of ``seconds`` per side."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="wijkbrug-bench-") as tmp:
        rows.append(measure(Path(tmp), "sqlite", None, seconds))
        with harness.postgres_database() as url:
            if url is None:
                rows.append(
                    result(
                        "accept.postgresql.requests_per_s",
                        None,
                        "req/s",
                        goal="ratio >= 0.5",
                        passed=False,
                        note=f"PostgreSQL did not answer at {harness.PG_ADMIN_DSN}",
                    )
                )
            else:
                rows.append(measure(Path(tmp), "postgresql", url, seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=ROUND_SECONDS, help="per round, side and database"
    )
    args = parser.parse_args()
    rows = run(args.seconds)
    harness.report(rows, "accept")


if __name__ == "__main__":
    main()
