"""What the benchmarks share: result rows, machine facts, a lean HTTP/1.1 client, memory
readings, a real Synapse, and the benchmark region (practices, provider, team, route).

Every figure is a row ``{name, value, unit, baseline, baseline_is, ratio, goal, pass}``:
``baseline`` is measured in the same run on the same machine (these machines are shared and
noisy, so the ratio is the figure to compare across runs); ``pass`` is None for a row that
is only context.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bridge.canonical import CareType
from bridge.homeserver import (
    Homeserver,
    free_port,
    registration_shared_secret,
    write_synapse_config,
)
from bridge.store import Store
from tests.support.synapse import SERVER_NAME, SynapseInstance

Result = dict[str, Any]

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"

# The machine's PostgreSQL (trust auth), as the test suite uses it.
PG_ADMIN_DSN = os.environ.get("WIJKBRUG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

# A per-client request limit that never binds: the limiter still runs on every request (its
# cost is part of the path), but the benchmark measures capacity, not the region's policy.
UNLIMITED = "1000000/second"

PROVIDER_URA = "12345678"
PRACTICE_AGB_BASE = 10_000_000
GP_AGB_BASE = 20_000_000
CARE_TYPE = CareType.WONDZORG
POSTCODE = "1092 AB"  # inside the route below
NURSE_PASSWORD = "bench-nurse-password"  # noqa: S105 (a throwaway Synapse)


def result(
    name: str,
    value: float | None,
    unit: str,
    *,
    baseline: float | None = None,
    baseline_is: str | None = None,
    ratio: float | None = None,
    goal: str = "(context)",
    passed: bool | None = None,
    note: str | None = None,
) -> Result:
    """One row; ``ratio`` defaults to value / baseline when both are there."""
    if ratio is None and value is not None and baseline:
        ratio = value / baseline
    row: Result = {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_is": baseline_is,
        "ratio": None if ratio is None else round(ratio, 3),
        "goal": goal,
        "pass": passed,
    }
    if note:
        row["note"] = note
    return row


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_mb() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024)
    return None


def machine() -> dict[str, Any]:
    """What the figures were measured on; the load average says how busy it was."""
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_mb": _memory_mb(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank ``pct``-th percentile (``inf`` entries stand for samples that never
    arrived)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def wait_http(url: str, timeout: float = 60, process: Any = None) -> float:
    """Poll ``url`` until it answers 200; returns the seconds waited."""
    start = time.perf_counter()
    deadline = start + timeout
    while time.perf_counter() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited ({process.returncode})")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return time.perf_counter() - start
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s")


# ---------------------------------------------------------------------- HTTP load


class HttpConnection:
    """One keep-alive HTTP/1.1 connection, with as little client-side work as possible:
    a Python load generator on a 2-core machine must not be what limits the server."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] = {}
    ) -> tuple[int, bytes]:
        """Send one request and read the whole answer (Content-Length bodies only)."""
        for attempt in (1, 2):
            fresh = self._writer is None
            if fresh:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            assert self._reader is not None and self._writer is not None
            head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
            head += [f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
            self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            status_line = await self._reader.readline()
            if status_line:
                return await self._answer(status_line)
            # The server closed an idle keep-alive connection: go again once on a new one.
            await self.close()
            if fresh or attempt == 2:
                break
        raise ConnectionError(f"{self.host}:{self.port} closed the connection")

    async def _answer(self, status_line: bytes) -> tuple[int, bytes]:
        assert self._reader is not None
        status = int(status_line.split()[1])
        length, close = 0, False
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value == "close":
                close = True
            elif name == "transfer-encoding":
                raise ConnectionError("chunked answers are not supported here")
        data = await self._reader.readexactly(length)
        if close:
            await self.close()
        return status, data

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


# ---------------------------------------------------------------------- services


def start_synapse(
    directory: Path,
    *,
    appservice_files: Sequence[Path] = (),
    modules: Sequence[dict[str, Any]] = (),
) -> tuple[Homeserver, SynapseInstance]:
    """A fresh Synapse on a free port, as the tests' ``synapse_factory`` starts one."""
    port = free_port()
    config_path = write_synapse_config(
        directory,
        server_name=SERVER_NAME,
        port=port,
        appservice_files=appservice_files,
        modules=modules,
    )
    homeserver = Homeserver(config_path, f"http://127.0.0.1:{port}")
    homeserver.start()
    return homeserver, SynapseInstance(
        base_url=homeserver.base_url,
        server_name=SERVER_NAME,
        config_path=config_path,
        directory=directory,
        shared_secret=registration_shared_secret(config_path),
    )


@contextlib.contextmanager
def postgres_database() -> Iterator[str | None]:
    """A throwaway database on the machine's PostgreSQL (its SQLAlchemy URL), dropped
    afterwards; None when PostgreSQL does not answer."""
    name = f"wijkbrug_bench_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error:
        yield None
        return
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------------- the region


def practice_agb(k: int) -> str:
    return f"{PRACTICE_AGB_BASE + k:08d}"


def bsns(count: int, start: int = 10_000_000) -> list[str]:
    """``count`` distinct BSNs that pass the 11-test (test numbers, nobody's)."""
    out: list[str] = []
    prefix = start
    while len(out) < count:
        digits = [int(c) for c in f"{prefix:08d}"]
        check = sum(d * w for d, w in zip(digits, range(9, 1, -1), strict=True)) % 11
        if check < 10:
            out.append(f"{prefix:08d}{check}")
        prefix += 1
    return out


def setup_region(store: Store, practices: int, nurse: str) -> list[str]:
    """One provider whose team (``nurse``) takes wondzorg in 1091-1098, and ``practices``
    practices with one integration client each; returns the clients' tokens."""
    store.add_org("provider", "Thuiszorg Bench", agb=None, ura=PROVIDER_URA)
    store.add_team(PROVIDER_URA, "Team Bench", [nurse])
    store.add_route(CARE_TYPE, 1091, 1098, PROVIDER_URA)
    tokens = []
    for k in range(practices):
        store.add_org("practice", f"Praktijk Bench {k}", agb=practice_agb(k), ura=None)
        _, token = store.add_client(practice_agb(k), f"bench-his-{k}")
        tokens.append(token)
    return tokens


def communication(practice: int, ident: str, bsn: str, text: str) -> bytes:
    """A practice's FHIR R4 Communication (contained patient and GP), as posted."""
    resource = {
        "resourceType": "Communication",
        "contained": [
            {
                "resourceType": "Patient",
                "id": "patient",
                "identifier": [{"system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": bsn}],
                "name": [{"text": "J. Bench", "family": "Bench", "given": ["J."]}],
                "birthDate": "1948-03-12",
                "address": [{"postalCode": POSTCODE}],
            },
            {
                "resourceType": "Practitioner",
                "id": "gp",
                "identifier": [
                    {
                        "system": "http://fhir.nl/fhir/NamingSystem/agb-z",
                        "value": f"{GP_AGB_BASE + practice:08d}",
                    }
                ],
                "name": [{"text": f"Dr. Bench {practice}", "family": "Bench"}],
            },
        ],
        "identifier": [
            {
                "system": f"urn:oid:2.16.528.1.1007.3.3.{practice_agb(practice)}.1",
                "value": ident,
            }
        ],
        "status": "in-progress",
        "category": [
            {
                "coding": [
                    {"system": "https://wijkbrug.nl/fhir/CodeSystem/care-type", "code": "wondzorg"}
                ]
            }
        ],
        "priority": "routine",
        "subject": {"reference": "#patient"},
        "sender": {"reference": "#gp"},
        "payload": [{"contentString": text}],
    }
    return json.dumps(resource).encode()


def fhir_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value >= 1000:
        return f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def print_table(rows: Sequence[Result]) -> None:
    """The rows as a table on stdout (notes below it)."""
    print(
        f"{'benchmark':<44} {'value':>10} {'unit':<6} {'baseline':>10} {'ratio':>7}  "
        f"{'goal':<28} result"
    )
    for r in rows:
        verdict = {True: "PASS", False: "FAIL", None: "-"}[r["pass"]]
        print(
            f"{r['name']:<44} {_cell(r['value']):>10} {r['unit']:<6} "
            f"{_cell(r.get('baseline')):>10} {_cell(r.get('ratio')):>7}  {r['goal']:<28} {verdict}"
        )
    for r in rows:
        if r.get("note"):
            print(f"  {r['name']}: {r['note']}")
    sys.stdout.flush()


def report(rows: Sequence[Result], name: str) -> None:
    """A part run alone: its table on stdout, its figures in ``results/{name}.json``."""
    print_table(rows)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(
        json.dumps({"machine": machine(), "results": list(rows)}, indent=2)
    )


def progress(message: str) -> None:
    """A progress line on stderr (the table goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
