"""Routing benchmark: decisions per second and index memory for a country-sized table.

    4,000 PC4 areas x 6 care types, three ranked providers per area (so fallbacks exist),
    some providers full (availability), two teams per provider.

Goals (issue: preferred-provider routing): >= 200,000 decisions/s on one core, index
memory < 50 MB. Prints a table and writes benchmarks/results/routing.json.
"""

from __future__ import annotations

import gc
import json
import platform
import random
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bridge.canonical import CareType
from bridge.routing import RouteRule, RoutingTable, TeamCoverage, Unavailability

AREAS = list(range(1000, 5000))  # 4,000 PC4s
PROVIDERS = 600
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
RESULTS = Path(__file__).parent / "results"


def build() -> RoutingTable:
    rng = random.Random(7)
    rules = []
    rid = 0
    for start in range(1000, 5000, 10):  # blocks of 10 PC4s, as regions agree per wijk
        for care in CareType:
            for rank in (1, 2, 3):
                rid += 1
                provider = rng.randrange(PROVIDERS)
                rules.append(
                    RouteRule(rid, care, start, start + 9, provider, f"Provider {provider}", rank)
                )
    teams = [TeamCoverage(p * 2 + k, p, f"Team {p}-{k}") for p in range(PROVIDERS) for k in (0, 1)]
    full = [
        Unavailability(
            i, rng.randrange(PROVIDERS), NOW - timedelta(days=1), NOW + timedelta(days=3)
        )
        for i in range(PROVIDERS // 10)
    ]
    return RoutingTable(rules, teams, full)


def main() -> None:
    gc.collect()
    tracemalloc.start()
    table = build()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rng = random.Random(11)
    queries = [(rng.choice(list(CareType)), rng.choice(AREAS)) for _ in range(200_000)]
    postcodes = [(c, f"{a} AB") for c, a in queries[:50_000]]
    routed = 0
    start = time.perf_counter()
    for care, area in queries:
        routed += table.route_for(care, area, NOW).routed
    by_pc4 = len(queries) / (time.perf_counter() - start)
    start = time.perf_counter()
    for care, postcode in postcodes:
        table.route_for(care, postcode, NOW)
    by_postcode = len(postcodes) / (time.perf_counter() - start)
    results = [
        {
            "name": "routing.decisions_per_s",
            "value": round(by_pc4),
            "unit": "1/s",
            "goal": ">= 200000",
            "pass": by_pc4 >= 200_000,
        },
        {
            "name": "routing.decisions_per_s_from_postcode",
            "value": round(by_postcode),
            "unit": "1/s",
            "goal": "(context)",
            "pass": True,
        },
        {
            "name": "routing.index_peak_memory",
            "value": round(peak / 2**20, 1),
            "unit": "MB",
            "goal": "< 50",
            "pass": peak < 50 * 2**20,
        },
        {
            "name": "routing.routed_share",
            "value": round(routed / len(queries), 3),
            "unit": "",
            "goal": "(context)",
            "pass": True,
        },
    ]
    for r in results:
        print(
            f"{r['name']:<42} {r['value']:>12} {r['unit']:<4} goal {r['goal']:<10} "
            f"{'PASS' if r['pass'] else 'FAIL'}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "routing.json").write_text(
        json.dumps({"machine": platform.platform(), "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
