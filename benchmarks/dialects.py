"""Dialect benchmark: normalisation throughput per dialect, next to plain parsing of the
same input measured in the same run (fhir.resources models for FHIR, pydifact for EDIFACT).

Goal (issue: practice-system dialects): the adapter costs at most 25% on top of plain
parsing, i.e. ratio = adapter msgs/s / plain msgs/s >= 0.8. Prints a table and writes
benchmarks/results/dialects.json; ``make bench`` calls ``run()``.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from fhir.resources.R4B.communication import Communication as R4Communication
from fhir.resources.STU3.communication import Communication as Stu3Communication
from pydifact.segmentcollection import Interchange

from adapters import edifact_medvri, fhir_r4, fhir_stu3

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
ROUNDS = 7
SECONDS = 0.3  # per round and side


def rate(work: Callable[[], object], seconds: float = SECONDS) -> float:
    """Calls per second of ``work`` over about ``seconds``."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        work()
        count += 1
    return count / elapsed


def compare(
    ours: Callable[[], object],
    plain: Callable[[], object],
    rounds: int = ROUNDS,
    seconds: float = SECONDS,
) -> tuple[float, float]:
    """Median rates of the two, measured in alternating rounds so that a noisy neighbour
    on a shared machine slows both sides alike rather than one of them."""
    for _ in range(20):
        ours(), plain()
    measured = [(rate(ours, seconds), rate(plain, seconds)) for _ in range(rounds)]
    return statistics.median(r[0] for r in measured), statistics.median(r[1] for r in measured)


def run(rounds: int = ROUNDS, seconds: float = SECONDS) -> list[dict[str, object]]:
    """One row per dialect: its adapter's rate next to plain parsing of the same input."""
    # pydifact 0.2.3 ships no segment directories and warns on every segment it builds.
    warnings.filterwarnings("ignore", module="pydifact")
    r4 = (REPO / "fhir/examples/Communication-wondzorg-example.json").read_bytes()
    stu3 = (REPO / "tests/data/stu3/Communication-wondzorg-practitioner.json").read_bytes()
    edi = (REPO / "tests/data/edifact/medvri-normal.edi").read_bytes()
    cases = [
        (
            "fhir-r4",
            lambda: fhir_r4.parse_communication(r4, "application/fhir+json"),
            lambda: R4Communication.model_validate(json.loads(r4)),
        ),
        (
            "fhir-stu3",
            lambda: fhir_stu3.parse_communication(stu3, "application/fhir+json"),
            lambda: Stu3Communication.model_validate(json.loads(stu3)),
        ),
        (
            "edifact-medvri",
            lambda: edifact_medvri.parse_interchange(edi, "application/edifact"),
            lambda: list(Interchange.from_str(edi.decode("latin-1")).segments),
        ),
    ]
    results = []
    for name, adapter, plain in cases:
        ours, baseline = compare(adapter, plain, rounds, seconds)
        ratio = ours / baseline
        results.append(
            {
                "name": f"dialect.{name}.messages_per_s",
                "value": round(ours),
                "unit": "1/s",
                "baseline": round(baseline),
                "baseline_is": "pydifact parsing" if name == "edifact-medvri" else "fhir.resources",
                "ratio": round(ratio, 3),
                "goal": "ratio >= 0.8",
                "pass": ratio >= 0.8,
            }
        )
    return results


def main() -> None:
    results = run()
    for r in results:
        print(
            f"{r['name']:<40} {r['value']:>8} /s   plain {r['baseline']:>8} /s   "
            f"ratio {r['ratio']:<5} {'PASS' if r['pass'] else 'FAIL'}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dialects.json").write_text(
        json.dumps({"machine": platform.platform(), "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
