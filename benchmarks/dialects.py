"""Dialect benchmark: normalisation throughput per dialect and format over a small corpus of
realistic messages, next to plain parsing of the same input measured in the same run
(fhir.resources models for FHIR JSON and XML, pydifact for EDIFACT).

The corpus per FHIR dialect and format: for R4 the example Communication (its Patient and
PractitionerRole contained) and a transaction and a message Bundle built around the public
Nictiz zib2020 examples (tests/support/bundles.py); for STU3 the two zib2017 messages of
tests/data/stu3. EDIFACT: the MEDVRI interchanges of tests/data/edifact that pydifact can
read (it rejects ``TXT:1+...``, which our adapter takes).

Goal (issue: practice-system dialects): the adapter costs at most 25% on top of plain
parsing, i.e. ratio = adapter msgs/s / plain msgs/s >= 0.8. A row's rate is for one pass
over its corpus (the sum of each message's time, each timed on its own); its note gives
the ratio per message, so a large message cannot hide a small one. Run alone it prints a
table and writes benchmarks/results/dialects.json; ``make bench`` calls ``run()``.
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fhir.resources.R4B.bundle import Bundle as R4Bundle
from fhir.resources.R4B.communication import Communication as R4Communication
from fhir.resources.STU3.communication import Communication as Stu3Communication
from pydifact.segmentcollection import Interchange

from adapters import edifact_medvri, fhir_r4, fhir_stu3
from benchmarks import harness
from tests.support import bundles

REPO = Path(__file__).resolve().parents[1]
ROUNDS = 5
SECONDS = 0.15  # per message, round and side
JSON, XML = "application/fhir+json", "application/fhir+xml"
EDIFACT = "application/edifact"


@dataclass(frozen=True)
class Sample:
    """One message of a corpus: how our adapter reads it, and how plain parsing does."""

    name: str
    ours: Callable[[], object]
    plain: Callable[[], object]


@dataclass(frozen=True)
class Corpus:
    name: str  # "fhir-r4.json"
    baseline_is: str
    samples: list[Sample]


def corpora() -> list[Corpus]:
    # pydifact 0.2.3 ships no segment directories and warns on every segment it builds.
    warnings.filterwarnings("ignore", module="pydifact")
    example = (REPO / "fhir/examples/Communication-wondzorg-example.json").read_bytes()
    kinds = ("transaction", "message")
    r4_json = {"Communication": example} | {
        f"{kind} Bundle": bundles.as_json(bundles.bundle(kind)) for kind in kinds
    }
    r4_xml = {"Communication": fhir_r4.to_xml(json.loads(example))} | {
        f"{kind} Bundle": bundles.xml_bundle(kind) for kind in kinds
    }
    stu3 = REPO / "tests/data/stu3"
    stu3_names = ("Communication-wondzorg-practitioner", "Communication-palliatieve-zorg-role")
    edifact = ("normal", "hard-wrapped", "two-messages", "una-release", "unoc-latin1")

    def r4(body: bytes, media: str, name: str) -> Sample:
        model = R4Bundle if "Bundle" in name else R4Communication
        plain = (
            (lambda: model.model_validate_xml(body))
            if media == XML
            else (lambda: model.model_validate(json.loads(body)))
        )
        return Sample(name, lambda: fhir_r4.parse_communication(body, media), plain)

    def stu3_sample(name: str, media: str) -> Sample:
        body = (stu3 / f"{name}.{'xml' if media == XML else 'json'}").read_bytes()
        plain = (
            (lambda: Stu3Communication.model_validate_xml(body))
            if media == XML
            else (lambda: Stu3Communication.model_validate(json.loads(body)))
        )
        return Sample(name, lambda: fhir_stu3.parse_communication(body, media), plain)

    def edi(name: str) -> Sample:
        body = (REPO / f"tests/data/edifact/medvri-{name}.edi").read_bytes()
        return Sample(
            name,
            lambda: edifact_medvri.parse_interchange(body, EDIFACT),
            lambda: list(Interchange.from_str(body.decode("latin-1")).segments),
        )

    return [
        Corpus("fhir-r4.json", "fhir.resources", [r4(b, JSON, n) for n, b in r4_json.items()]),
        Corpus("fhir-r4.xml", "fhir.resources XML", [r4(b, XML, n) for n, b in r4_xml.items()]),
        Corpus("fhir-stu3.json", "fhir.resources", [stu3_sample(n, JSON) for n in stu3_names]),
        Corpus("fhir-stu3.xml", "fhir.resources XML", [stu3_sample(n, XML) for n in stu3_names]),
        Corpus("edifact-medvri", "pydifact parsing", [edi(n) for n in edifact]),
    ]


def seconds_per_call(work: Callable[[], object], seconds: float) -> float:
    """Mean seconds of one call of ``work``, over about ``seconds``."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        work()
        count += 1
    return elapsed / count


def compare(corpus: Corpus, rounds: int, seconds: float) -> tuple[float, float, list[float]]:
    """Messages/s over one pass of the corpus, ours and plain, and the ratio per message.

    Each message is timed on its own, ours and plain in alternating rounds (a noisy
    neighbour slows both sides alike), and the median of the rounds is its time."""
    ours, plain = [], []
    for sample in corpus.samples:
        for _ in range(3):
            sample.ours(), sample.plain()
        measured = [
            (seconds_per_call(sample.ours, seconds), seconds_per_call(sample.plain, seconds))
            for _ in range(rounds)
        ]
        ours.append(statistics.median(m[0] for m in measured))
        plain.append(statistics.median(m[1] for m in measured))
    count = len(corpus.samples)
    ratios = [p / o for o, p in zip(ours, plain, strict=True)]
    return count / sum(ours), count / sum(plain), ratios


def run(rounds: int = ROUNDS, seconds: float = SECONDS) -> list[harness.Result]:
    """One row per dialect and format: its adapter's rate next to plain parsing."""
    results = []
    for corpus in corpora():
        ours, baseline, ratios = compare(corpus, rounds, seconds)
        each = ", ".join(f"{s.name} {r:.2f}" for s, r in zip(corpus.samples, ratios, strict=True))
        results.append(
            harness.result(
                f"dialect.{corpus.name}.messages_per_s",
                round(ours),
                "1/s",
                baseline=round(baseline),
                baseline_is=corpus.baseline_is,
                ratio=ours / baseline,
                goal="ratio >= 0.8",
                passed=ours / baseline >= 0.8,
                note=f"{len(corpus.samples)} messages; ratio per message: {each}",
            )
        )
    return results


def main() -> None:
    harness.report(run(), "dialects")


if __name__ == "__main__":
    main()
