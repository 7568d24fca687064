"""Routing benchmark: decisions per second and index memory for a country-sized table.

    4,000 PC4 areas x 6 care types, three ranked providers per area (so fallbacks exist),
    some providers full (availability), two teams per provider.

Goals (issue: preferred-provider routing): >= 200,000 decisions/s on one core, index
memory < 50 MB. Baselines from the same run: a dict lookup of the same answers (the
floor any index has), and the memory of the index's input (rules, teams, availability).
The goals are absolute; the ratios say how a noisy machine moved both. Prints a table
and writes benchmarks/results/routing.json; ``make bench`` calls ``run()``.
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


def inputs() -> tuple[list[RouteRule], list[TeamCoverage], list[Unavailability]]:
    """What the index is built from: the rules, the teams, the availability."""
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
    return rules, teams, full


def build() -> RoutingTable:
    return RoutingTable(*inputs())


def run(queries: int = 200_000) -> list[dict[str, object]]:
    """The routing figures (``queries`` decisions by PC4, a quarter of them from postcodes),
    each next to a plain dict lookup of the same answers measured in this run (the floor:
    what any index costs at least), and the index's memory next to that of its input."""
    gc.collect()
    tracemalloc.start()
    table = build()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    gc.collect()
    tracemalloc.start()
    given = inputs()
    input_size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del given
    rng = random.Random(11)
    asked = [(rng.choice(list(CareType)), rng.choice(AREAS)) for _ in range(queries)]
    postcodes = [(c, f"{a} AB") for c, a in asked[: max(1, queries // 4)]]
    answers = {(c, a): table.route_for(c, a, NOW).provider_id for c in CareType for a in AREAS}
    routed = 0
    start = time.perf_counter()
    for care, area in asked:
        routed += table.route_for(care, area, NOW).routed
    by_pc4 = len(asked) / (time.perf_counter() - start)
    start = time.perf_counter()
    for care, area in asked:
        answers[care, area]
    plain = len(asked) / (time.perf_counter() - start)
    start = time.perf_counter()
    for care, postcode in postcodes:
        table.route_for(care, postcode, NOW)
    by_postcode = len(postcodes) / (time.perf_counter() - start)
    floor = "dict lookup of precomputed answers"
    return [
        {
            "name": "routing.decisions_per_s",
            "value": round(by_pc4),
            "unit": "1/s",
            "baseline": round(plain),
            "baseline_is": floor,
            "ratio": round(by_pc4 / plain, 3),
            "goal": ">= 200000",
            "pass": by_pc4 >= 200_000,
        },
        {
            "name": "routing.decisions_per_s_from_postcode",
            "value": round(by_postcode),
            "unit": "1/s",
            "baseline": round(plain),
            "baseline_is": floor,
            "ratio": round(by_postcode / plain, 3),
            "goal": "(context)",
            "pass": None,
        },
        {
            "name": "routing.index_peak_memory",
            "value": round(peak / 2**20, 1),
            "unit": "MB",
            "baseline": round(input_size / 2**20, 1),
            "baseline_is": "its input (rules, teams, availability)",
            "ratio": round(peak / input_size, 3),
            "goal": "< 50",
            "pass": peak < 50 * 2**20,
        },
        {
            "name": "routing.routed_share",
            "value": round(routed / len(asked), 3),
            "unit": "",
            "baseline": None,
            "baseline_is": None,
            "ratio": None,
            "goal": "(context)",
            "pass": None,
        },
    ]


def main() -> None:
    results = run()
    for r in results:
        verdict = {True: "PASS", False: "FAIL", None: "-"}[r["pass"]]  # type: ignore[index]
        print(f"{r['name']:<42} {r['value']:>12} {r['unit']:<4} goal {r['goal']:<10} {verdict}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "routing.json").write_text(
        json.dumps({"machine": platform.platform(), "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
