"""Scale-out benchmark: end to end on PostgreSQL with one bridge process, then with two
processes of the same installation sharing its outbox (``workers`` in the config), each
on a fresh Synapse and a throwaway database of its own.

    8 practice clients --POST--> worker 0 --PostgreSQL outbox--> worker 0 and worker 1
                                 (each delivers the messages of its own ghosts) --> Synapse

The figure is the throughput with two processes, next to that with one (ratio = the gain),
and where the time went: the CPU seconds Synapse and the bridge processes used while the
messages were underway, as shares of the wall time. Synapse is one Python process, so at
about 1.0 it is the bottleneck whatever the bridge does; on a 2-core machine a second
bridge process also competes with Synapse for the second core. Runnable alone:
``python -m benchmarks.scaleout [--n 200]``; ``make bench`` runs it with the others.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import endtoend, harness
from benchmarks.harness import Result, result

N = 80
CASES = 20


@dataclass(frozen=True)
class Run:
    """One configuration's figures."""

    workers: int
    side: endtoend.Side
    cpu_share: dict[str, float]  # process -> CPU seconds / wall seconds


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(workers: int, n: int, clients: int, cases: int, timeout: float) -> Run:
    with harness.postgres_database() as url:
        if url is None:
            raise RuntimeError("PostgreSQL does not answer: the scale-out needs it")
        with tempfile.TemporaryDirectory(prefix="wijkbrug-scaleout-") as tmp:
            stack = endtoend.Stack.start(Path(tmp), clients, database_url=url, workers=workers)
            try:
                assert stack.homeserver.pid is not None
                pids = {"synapse": stack.homeserver.pid}
                for index, site in enumerate([stack.site, *stack.more_workers]):
                    assert site.process is not None
                    pids[f"bridge{index}"] = site.process.pid
                before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                started = time.perf_counter()
                schedule = endtoend.plan(n, clients, cases)
                side = asyncio.run(endtoend.bridge_side(stack, schedule, timeout, None))
                wall = time.perf_counter() - started
                share = {
                    name: round((cpu_seconds(pid) - before[name]) / wall, 2)
                    for name, pid in pids.items()
                }
            finally:
                stack.stop()
    harness.progress(
        f"scaleout {workers} worker(s): {len(side.received)}/{n} decrypted, "
        f"{side.throughput():.2f} msg/s, CPU per wall second {share}"
    )
    return Run(workers, side, share)


def figures(one: Run, two: Run) -> list[Result]:
    def note(run: Run) -> str:
        parts = [f"CPU/wall: {', '.join(f'{k} {v}' for k, v in run.cpu_share.items())}"]
        if not run.side.complete:
            parts.append(f"{len(run.side.received)} arrived within {run.side.allowed:.0f}s")
        return "; ".join(parts)

    single, double = one.side.throughput(), two.side.throughput()
    return [
        result(
            "scaleout.throughput_1_worker",
            round(single, 2),
            "msg/s",
            goal="(context)",
            note=note(one),
        ),
        result(
            "scaleout.throughput_2_workers",
            round(double, 2),
            "msg/s",
            baseline=round(single, 2),
            baseline_is="1 bridge process, same run",
            goal="(report the gain)",
            note=note(two),
        ),
    ]


def run(
    n: int = N, clients: int = endtoend.CLIENTS, cases: int = CASES, timeout: float = 180
) -> list[Result]:
    """Both configurations, one after the other; ``timeout`` seconds each from its first
    send."""
    endtoend.quiet_nio()
    one = measure(1, n, clients, cases, timeout)
    two = measure(2, n, clients, cases, timeout)
    return figures(one, two)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=N, help="messages per configuration")
    parser.add_argument("--timeout", type=float, default=180, help="seconds per configuration")
    args = parser.parse_args()
    rows = run(args.n, timeout=args.timeout)
    harness.report(rows, "scaleout")


if __name__ == "__main__":
    main()
