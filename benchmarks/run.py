"""``make bench``: every benchmark in one run, one table on stdout, one JSON file.

    routing, dialects          CPU only, before any server runs
    accept                     wijkbrug serve vs a minimal FastAPI app, SQLite and PostgreSQL
    scaleout                   end to end on PostgreSQL with 1, then 2 bridge processes
    endtoend, footprint        one Synapse + wijkbrug serve: idle RSS, baseline (nio) and
                               Wijkbrug end to end, RSS after it, RSS over 10,000 more open
                               cases; then `wijkbrug dev` from an empty directory to ready

``python -m benchmarks.run [--n 1000]`` writes ``benchmarks/results/latest.json`` (and the
end-to-end bridge's log beside it). The whole run keeps to a budget of 595 s: an end-to-end
side that is not done in time stops there, and its figures say what arrived (and fail).
A step that breaks is reported as failed rows with the error; the others still run.
``--smoke`` runs the same code paths with tiny numbers (under a minute), writes
``benchmarks/results/smoke.json`` and fails unless every figure is in it and no step broke:
it checks the harness, never the speed. Goals that are not met do not fail the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import accept, dialects, endtoend, footprint, harness, routing, scaleout
from benchmarks.harness import Result

# Every figure a run writes, in table order.
NAMES = [
    "routing.decisions_per_s",
    "routing.decisions_per_s_from_postcode",
    "routing.index_peak_memory",
    "routing.routed_share",
    "dialect.fhir-r4.json.messages_per_s",
    "dialect.fhir-r4.xml.messages_per_s",
    "dialect.fhir-stu3.json.messages_per_s",
    "dialect.fhir-stu3.xml.messages_per_s",
    "dialect.edifact-medvri.messages_per_s",
    "accept.sqlite.requests_per_s",
    "accept.postgresql.requests_per_s",
    "scaleout.throughput_1_worker",
    "scaleout.throughput_2_workers",
    "endtoend.throughput",
    "endtoend.latency_p50",
    "endtoend.latency_p95",
    "endtoend.latency_p99",
    "footprint.bridge_rss_idle",
    "footprint.bridge_rss_after_endtoend",
    "footprint.bridge_rss_open_cases",
    "footprint.dev_start_to_ready",
]
# What runs after the end-to-end part (seeding 10,000 cases, restarts, `wijkbrug dev`): the
# end-to-end sides stop early enough to leave it this many seconds of the budget.
AFTER_ENDTOEND = 80
FIELDS = {"name", "value", "unit", "baseline", "baseline_is", "ratio", "goal", "pass"}


@dataclass(frozen=True)
class Sizes:
    n: int  # end-to-end messages per side
    clients: int  # end-to-end concurrent senders per side
    cases: int  # end-to-end rooms (cases) per side
    timeout: float  # seconds per end-to-end side, from its first send
    accept_seconds: float  # accept path: per round, side and database
    scaleout_n: int  # scale-out: messages per configuration
    scaleout_cases: int
    open_cases: int  # open cases seeded for the footprint
    routing_queries: int
    dialect_rounds: int
    dialect_seconds: float
    budget: float | None  # seconds the whole run should stay under (end to end gives way)


FULL = Sizes(
    n=1000,
    clients=endtoend.CLIENTS,
    cases=endtoend.CASES,
    timeout=300,
    accept_seconds=accept.ROUND_SECONDS,
    scaleout_n=scaleout.N,
    scaleout_cases=scaleout.CASES,
    open_cases=10_000,
    routing_queries=200_000,
    dialect_rounds=dialects.ROUNDS,
    dialect_seconds=dialects.SECONDS,
    budget=595,
)
SMOKE = Sizes(
    n=4,
    clients=2,
    cases=2,
    timeout=120,
    accept_seconds=0.2,
    scaleout_n=4,
    scaleout_cases=2,
    open_cases=20,
    routing_queries=2_000,
    dialect_rounds=1,
    dialect_seconds=0.02,
    budget=None,
)


class Failures:
    """The first error of each step that failed; the run goes on without that step."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._covered: list[tuple[tuple[str, ...], str]] = []

    @contextlib.contextmanager
    def step(self, what: str, *covers: str) -> Iterator[None]:
        """A step whose figures' names start with one of ``covers``."""
        try:
            yield
        except Exception as exc:
            message = f"{what} failed: {type(exc).__name__}: {exc}"[:400]
            harness.progress(message)
            traceback.print_exc()
            self.errors.append(message)
            self._covered.append((covers, message))

    def fill(self, rows: list[Result]) -> list[Result]:
        """Rows in NAMES order; a figure that was not measured is a failed row saying why."""
        found = {r["name"] for r in rows}
        for name in NAMES:
            if name not in found:
                why = "; ".join(m for covers, m in self._covered if name.startswith(covers))
                row = harness.result(
                    name, None, "", goal="(not measured)", passed=False, note=why or None
                )
                rows.append({**row, "error": True})
        order = {name: i for i, name in enumerate(NAMES)}
        return sorted(rows, key=lambda r: order.get(r["name"], len(order)))


def stack_benchmarks(
    sizes: Sizes, directory: Path, failures: Failures, until: float | None, log_copy: Path
) -> list[Result]:
    """End to end and footprint on one Synapse + bridge, then `wijkbrug dev`."""
    rows: list[Result] = []
    idle = baseline_rss = after = with_cases = None
    synapse_seconds = None
    with failures.step("starting Synapse and the bridge", "endtoend", "footprint.bridge"):
        stack = endtoend.Stack.start(directory)
        synapse_seconds = stack.synapse_start_seconds
        try:
            with failures.step("footprint (idle)", "footprint.bridge"):
                idle = footprint.bridge_rss(stack)
                baseline_rss = footprint.baseline_rss(directory / "baseline-rss")
                harness.progress(
                    f"footprint: bridge idle {idle:.0f} MB, baseline {baseline_rss:.0f} MB"
                )
            with failures.step("endtoend", "endtoend", "footprint.bridge_rss_after"):
                rows += asyncio.run(
                    endtoend.measure(
                        stack, sizes.n, sizes.timeout, sizes.clients, sizes.cases, until
                    )
                )
                after = footprint.bridge_rss(stack, settle=0)
            with failures.step("footprint (open cases)", "footprint.bridge_rss_open"):
                stack.site.stop()
                seconds = footprint.seed_open_cases(stack, sizes.open_cases)
                harness.progress(
                    f"footprint: {sizes.open_cases} open cases seeded in {seconds:.0f}s"
                )
                stack.site.start()
                with_cases = footprint.bridge_rss(stack)
        finally:
            stack.stop()
            with contextlib.suppress(OSError):
                shutil.copyfile(stack.site.log_path, log_copy)
    if baseline_rss is not None:
        rows += footprint.memory_rows(idle, baseline_rss, with_cases, sizes.open_cases, after)
    with failures.step("wijkbrug dev", "footprint.dev"):
        dev = footprint.dev_start_seconds(directory / "dev")
        harness.progress(f"footprint: wijkbrug dev ready in {dev:.1f}s")
        rows.append(footprint.start_row(dev, synapse_seconds))
    return rows


def run(sizes: Sizes, log_copy: Path) -> tuple[list[Result], list[str]]:
    """Every benchmark; returns the rows (in NAMES order) and the errors of failed steps."""
    started = time.perf_counter()
    until = None if sizes.budget is None else started + sizes.budget - AFTER_ENDTOEND
    endtoend.quiet_nio()
    failures = Failures()
    rows: list[Result] = []
    with failures.step("routing", "routing"):
        rows += routing.run(sizes.routing_queries)
        harness.progress("routing done")
    with failures.step("dialects", "dialect"):
        rows += dialects.run(sizes.dialect_rounds, sizes.dialect_seconds)
        harness.progress("dialects done")
    with failures.step("accept", "accept"):
        rows += accept.run(sizes.accept_seconds)
    with failures.step("scaleout", "scaleout"):
        rows += scaleout.run(sizes.scaleout_n, sizes.clients, sizes.scaleout_cases)
    with tempfile.TemporaryDirectory(prefix="wijkbrug-bench-") as tmp:
        rows += stack_benchmarks(sizes, Path(tmp), failures, until, log_copy)
    return failures.fill(rows), failures.errors


def problems(document: dict[str, Any]) -> list[str]:
    """What a results file lacks: every name of NAMES, measured, each row with every field."""
    rows = document.get("results", [])
    found = {r.get("name") for r in rows}
    missing = [f"missing figure {name}" for name in NAMES if name not in found]
    incomplete = [
        f"{r.get('name')}: missing {sorted(FIELDS - r.keys())}" for r in rows if FIELDS - r.keys()
    ]
    unmeasured = [f"{r.get('name')}: not measured" for r in rows if r.get("error")]
    return (
        missing + incomplete + unmeasured + [f"no {k}" for k in ("machine",) if k not in document]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny numbers; check the harness")
    parser.add_argument("--n", type=int, help="end-to-end messages per side (default 1000)")
    parser.add_argument(
        "--timeout", type=float, help="seconds per end-to-end side, from its first send"
    )
    parser.add_argument("--out", type=Path, help="results file (default results/latest.json)")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    if args.n is not None:
        sizes = dataclasses.replace(sizes, n=args.n)
    if args.timeout is not None:
        sizes = dataclasses.replace(sizes, timeout=args.timeout)
    out = args.out or harness.RESULTS / ("smoke.json" if args.smoke else "latest.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    machine = harness.machine()
    rows, errors = run(sizes, out.with_name(out.stem + "-bridge.log"))
    machine["loadavg_after"] = harness.machine()["loadavg"]
    document = {
        "mode": "smoke" if args.smoke else "full",
        "started": started_at.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "sizes": sizes.__dict__,
        "machine": machine,
        "summary": {
            "pass": sum(r["pass"] is True for r in rows),
            "fail": sum(r["pass"] is False for r in rows),
            "context": sum(r["pass"] is None for r in rows),
        },
        "errors": errors,
        "results": rows,
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    harness.print_table(rows)
    print(f"\n{document['summary']} in {document['seconds']:.0f}s; written to {out}")
    if args.smoke:
        found = problems(json.loads(out.read_text())) + errors
        for problem in found:
            print(f"bench-smoke: {problem}", file=sys.stderr)
        return 1 if found else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
