"""End-to-end benchmark: FHIR POST -> Wijkbrug -> Synapse -> decrypted by a nurse's client,
next to a plain matrix-nio client doing the same on the same Synapse in the same run.

    8 practice clients --POST /fhir/Communication--> wijkbrug serve --ghosts (nio)--> Synapse
    8 nio clients (baseline) --createRoom, room_send (megolm)-------------------------> Synapse
                                           Synapse --sync--> receiver (matrix-js-sdk, Rust
                                           crypto; tests/js/client.mjs), one per side

Both sides send N messages (default 1,000) with 8 concurrent senders into 200 encrypted rooms
(25 per sender; a room is created on its first message, as a case room is), each sender
working through its messages one after the other. Latency is from the start of the POST
(bridge) or of the room set-up and send (baseline) to the moment the receiver reports the
message decrypted; throughput is N over first send to last decryption. Each side first sends
one message per sender into a room of its own (the ghosts and devices exist then, as in
steady state) and waits for it to arrive; that warm-up is not timed. A side that is not
done in the time it is given (``--timeout``, from its first send; under ``make bench`` also
what the run's 10-minute budget leaves) stops there: its throughput is what arrived over
that time, a latency percentile that falls on a message still underway is that time (a
lower bound), and its goals fail.

Goals (issue 7): throughput ratio >= 0.9, p99 latency ratio <= 1.5. Runnable alone:
``python -m benchmarks.endtoend [--n 1000]``; ``make bench`` runs it with the others.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nio import AsyncClient, AsyncClientConfig, LoginResponse, RoomCreateResponse
from nio.api import RoomPreset, RoomVisibility
from nio.responses import RoomSendResponse

from benchmarks import harness
from benchmarks.harness import NURSE_PASSWORD, HttpConnection, Result, result
from bridge.config import load_settings, policy_module
from bridge.homeserver import Homeserver
from bridge.runtime import open_store
from tests.support.bridge import BridgeSite
from tests.support.jsclient import JsClient
from tests.support.synapse import SynapseInstance

CLIENTS = 8
CASES = 200
BRIDGE_NURSE = "nurse-bridge"
BASELINE_NURSE = "nurse-baseline"
SENDER_PASSWORD = "bench-sender-password"  # noqa: S105 (a throwaway Synapse)
TEXT = "Graag wondcontrole na ontslag, wond onderbeen links."
MARKER = re.compile(r"\[((?:e2e|warm)-[0-9-]+)\]")

Event = dict[str, Any]


class _Stamped(list[Event]):
    """The receiver's event list, each line stamped with the moment it was read."""

    def append(self, item: Event) -> None:
        item["_t"] = time.perf_counter()
        super().append(item)


@dataclass
class Stack:
    """A fresh Synapse (with the bridge's registration and policy module) and
    ``wijkbrug serve`` pointed at it, with the benchmark region loaded."""

    directory: Path
    homeserver: Homeserver
    synapse: SynapseInstance
    site: BridgeSite
    tokens: list[str]
    synapse_start_seconds: float
    more_workers: list[BridgeSite] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        directory: Path,
        practices: int = CLIENTS,
        *,
        database_url: str | None = None,
        workers: int = 1,
    ) -> Stack:
        """``workers`` > 1 needs ``database_url`` (PostgreSQL): further processes of the
        same installation, sharing its outbox (see ``workers`` in the config)."""
        site = BridgeSite.prepare(directory / "wijkbrug")
        site.configure("http", {"client_rate_limit": harness.UNLIMITED})
        settings = load_settings(site.config_path)
        started = time.perf_counter()
        homeserver, synapse = harness.start_synapse(
            directory / "synapse",
            appservice_files=[site.registration_path],
            modules=[policy_module(settings)],
        )
        synapse_seconds = time.perf_counter() - started
        more: list[BridgeSite] = []
        try:
            site.point_at(synapse.base_url, database_url=database_url)
            if workers > 1:
                site.configure("workers", {"count": workers, "index": 0})
            store = open_store(load_settings(site.config_path))
            tokens = harness.setup_region(store, practices, synapse.user_id(BRIDGE_NURSE))
            store.engine.dispose()
            for nurse in (BRIDGE_NURSE, BASELINE_NURSE):
                synapse.register(nurse, NURSE_PASSWORD)
            more = [
                site.another_worker(directory / f"wijkbrug-{index}", index)
                for index in range(1, workers)
            ]
            site.start()
            for worker in more:
                worker.start()
        except BaseException:
            for part in (*more, site):
                part.stop()
            homeserver.stop()
            raise
        return cls(directory, homeserver, synapse, site, tokens, synapse_seconds, more)

    def stop(self) -> None:
        for worker in (*self.more_workers, self.site):
            worker.stop()
        self.homeserver.stop()


@dataclass
class Side:
    """What one side of the comparison measured."""

    sent: dict[str, float] = field(default_factory=dict)  # marker -> start of its send
    received: dict[str, float] = field(default_factory=dict)  # marker -> decrypted
    errors: list[str] = field(default_factory=list)  # failed sends: the side fails
    warnings: list[str] = field(default_factory=list)  # e.g. a sync round that failed
    undecryptable: int = 0
    gave_up_at: float | None = None  # the deadline, when not everything arrived by then
    senders: int = 0
    allowed: float = 0.0  # seconds it was given, from its first send

    @property
    def complete(self) -> bool:
        return self.gave_up_at is None and not self.errors

    def latencies_ms(self) -> list[float]:
        """Per message sent, POST (or send) to decrypted; ``inf`` for what never arrived."""
        return [
            (self.received[m] - t) * 1000 if m in self.received else math.inf
            for m, t in self.sent.items()
        ]

    def window(self) -> float:
        """First send to last decryption (or to the deadline, when given up)."""
        end = self.gave_up_at or max(self.received.values(), default=min(self.sent.values()))
        return end - min(self.sent.values())

    def throughput(self) -> float:
        window = self.window() if self.sent else 0.0
        return len(self.received) / window if window > 0 else 0.0


def plan(n: int, clients: int = CLIENTS, cases: int = CASES) -> list[list[tuple[str, int]]]:
    """Per client, its messages in order: (marker, case index within the client). Message
    m goes to client m % clients; a client cycles through its cases, so each client's first
    messages open its cases."""
    per_client = max(1, cases // clients)
    out: list[list[tuple[str, int]]] = [[] for _ in range(clients)]
    for m in range(n):
        k = m % clients
        seq = len(out[k])
        out[k].append((f"e2e-{k}-{seq}", seq % per_client))
    return out


async def _collect(receiver: JsClient, side: Side, wanted: set[str], allowed: float) -> None:
    """Note when each wanted marker arrives decrypted, until all did or ``allowed`` seconds
    passed."""
    position = 0
    deadline = time.perf_counter() + allowed
    while time.perf_counter() < deadline:
        events = receiver.events
        while position < len(events):
            ev = events[position]
            position += 1
            if ev.get("event") == "message":
                found = MARKER.search(str(ev.get("body") or ""))
                if found and found.group(1) in wanted:
                    side.received.setdefault(found.group(1), ev["_t"])
            elif ev.get("event") == "undecryptable":
                side.undecryptable += 1
        if wanted <= side.received.keys():
            return
        if receiver.process.returncode is not None:
            break
        await asyncio.sleep(0.02)
    side.gave_up_at = time.perf_counter()


async def _receiver(synapse: SynapseInstance, localpart: str) -> JsClient:
    client = await JsClient.start(synapse.base_url, synapse.user_id(localpart), NURSE_PASSWORD)
    client.events = _Stamped(client.events)
    return client


async def _run_side(
    receiver: JsClient,
    senders: Sequence[Callable[[str, int], Any]],
    schedule: list[list[tuple[str, int]]],
    allowed: float,
    until: float | None = None,
) -> Side:
    """Warm up (one message per sender, case -1), then send ``schedule`` and collect for
    ``allowed`` seconds at most (and not past ``until``, a perf_counter moment, if given;
    at least 30 s). A failed send is noted and the run goes on."""
    side = Side(senders=len(senders))
    warm = Side()

    async def warm_up(k: int) -> None:
        try:
            await senders[k](f"warm-{k}", -1)
        except Exception as exc:
            side.errors.append(f"warm-{k}: {exc}")

    await asyncio.gather(*(warm_up(k) for k in range(len(senders))))
    await _collect(receiver, warm, {f"warm-{k}" for k in range(len(senders))}, allowed=120)
    if warm.gave_up_at is not None:
        side.errors.append(f"warm-up: {len(warm.received)} of {len(senders)} arrived")
    if until is not None:
        allowed = max(30.0, min(allowed, until - time.perf_counter()))
    side.allowed = allowed

    async def sender(k: int) -> None:
        for marker, case in schedule[k]:
            side.sent[marker] = time.perf_counter()
            try:
                await senders[k](marker, case)
            except Exception as exc:
                side.errors.append(f"{marker}: {exc}")

    wanted = {marker for messages in schedule for marker, _ in messages}
    # The deadline counts from the first send; at the deadline, sending stops too.
    sending = [asyncio.create_task(sender(k)) for k in range(len(senders))]
    await _collect(receiver, side, wanted, allowed)
    for task in sending:
        task.cancel()
    await asyncio.gather(*sending, return_exceptions=True)
    for marker in wanted - side.sent.keys():  # never sent: counts as never arrived
        side.sent[marker] = side.gave_up_at or time.perf_counter()
    return side


# ---------------------------------------------------------------------- the bridge side


async def bridge_side(
    stack: Stack, schedule: list[list[tuple[str, int]]], allowed: float, until: float | None
) -> Side:
    clients = len(schedule)
    per_client = 1 + max(case for messages in schedule for _, case in messages)
    patients = harness.bsns(clients * (per_client + 1))
    receiver = await _receiver(stack.synapse, BRIDGE_NURSE)
    connections = [HttpConnection("127.0.0.1", stack.site.port) for _ in range(clients)]

    def poster(k: int) -> Callable[[str, int], Any]:
        headers = harness.fhir_headers(stack.tokens[k])

        async def post(marker: str, case: int) -> None:
            # case -1 (warm-up) is a patient of its own.
            bsn = patients[k * (per_client + 1) + case + 1]
            body = harness.communication(k, marker, bsn, f"{TEXT} [{marker}]")
            status, answer = await connections[k].request(
                "POST", "/fhir/Communication", body, headers
            )
            if status != 201:
                raise RuntimeError(f"HTTP {status}: {answer[:200]!r}")

        return post

    try:
        return await _run_side(
            receiver, [poster(k) for k in range(clients)], schedule, allowed, until
        )
    finally:
        for connection in connections:
            await connection.close()
        await receiver.close()


# ---------------------------------------------------------------------- the baseline side


class NioSender:
    """A plain matrix-nio client with E2EE: a sync loop in the background, rooms created
    with the receiver invited, messages sent with ``room_send`` (megolm)."""

    def __init__(self, synapse: SynapseInstance, localpart: str, store: Path) -> None:
        self.synapse = synapse
        self.localpart = localpart
        store.mkdir(parents=True, exist_ok=True)
        self.client = AsyncClient(
            synapse.base_url,
            synapse.user_id(localpart),
            store_path=str(store),
            config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True),
        )
        self.rooms: dict[int, str] = {}
        self.sync_errors: list[str] = []
        self._sync: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await asyncio.to_thread(self.synapse.register, self.localpart, SENDER_PASSWORD)
        login = await self.client.login(SENDER_PASSWORD, device_name="bench baseline")
        if not isinstance(login, LoginResponse):
            raise RuntimeError(f"baseline login failed: {login}")
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        self._sync = asyncio.create_task(self._sync_loop())

    async def _sync_loop(self) -> None:
        """Long-poll sync and the key work after it, as nio's ``sync_forever`` does, but a
        failed round (e.g. a key query that ``room_send`` already made) does not end it."""
        client = self.client
        while True:
            try:
                await client.sync(timeout=30_000, set_presence="offline")
                await client.send_to_device_messages()
                if client.should_upload_keys:
                    await client.keys_upload()
                if client.should_query_keys:
                    await client.keys_query()
                if client.should_claim_keys:
                    await client.keys_claim(client.get_users_for_key_claiming())
            except Exception as exc:
                self.sync_errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.2)

    async def send(self, receiver: str, case: int, body: str) -> None:
        client = self.client
        room_id = self.rooms.get(case)
        if room_id is None:
            created = await client.room_create(
                visibility=RoomVisibility.private,
                name=f"Bench {self.localpart} {case}",
                preset=RoomPreset.private_chat,
                invite=[receiver],
                initial_state=[
                    {
                        "type": "m.room.encryption",
                        "state_key": "",
                        "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                    },
                    {
                        "type": "m.room.history_visibility",
                        "state_key": "",
                        "content": {"history_visibility": "invited"},
                    },
                ],
            )
            if not isinstance(created, RoomCreateResponse):
                raise RuntimeError(f"createRoom: {created}")
            room_id = self.rooms[case] = created.room_id
            # nio encrypts only for the members it knows: wait for its sync to show them.
            for _ in range(3000):
                room = client.rooms.get(room_id)
                if room is not None and room.encrypted and receiver in room.users:
                    break
                await asyncio.sleep(0.01)
            else:
                raise RuntimeError(f"{room_id} never showed up in the sync")
        sent = await client.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": body},
            ignore_unverified_devices=True,
        )
        if not isinstance(sent, RoomSendResponse):
            raise RuntimeError(f"send: {sent}")

    async def close(self) -> None:
        if self._sync is not None:
            self._sync.cancel()
            await asyncio.gather(self._sync, return_exceptions=True)
        await self.client.close()


async def baseline_side(
    stack: Stack, schedule: list[list[tuple[str, int]]], allowed: float, until: float | None
) -> Side:
    receiver = await _receiver(stack.synapse, BASELINE_NURSE)
    receiver_id = stack.synapse.user_id(BASELINE_NURSE)
    senders = [
        NioSender(stack.synapse, f"bench-sender-{k}", stack.directory / "nio" / str(k))
        for k in range(len(schedule))
    ]
    try:
        await asyncio.gather(*(s.open() for s in senders))

        def sending(k: int) -> Callable[[str, int], Any]:
            async def send(marker: str, case: int) -> None:
                await senders[k].send(receiver_id, case, f"{TEXT} [{marker}]")

            return send

        side = await _run_side(
            receiver, [sending(k) for k in range(len(senders))], schedule, allowed, until
        )
        side.warnings += [f"sync: {e}" for s in senders for e in s.sync_errors]
        return side
    finally:
        await asyncio.gather(*(s.close() for s in senders))
        await receiver.close()


def quiet_nio() -> None:
    """nio warns for every device it has no olm session with yet (then makes one)."""
    logging.getLogger("nio").setLevel(logging.ERROR)


# ---------------------------------------------------------------------- figures


def figures(n: int, ours: Side, base: Side) -> list[Result]:
    """Throughput and latency percentiles, each next to the baseline's. A side that did not
    get everything decrypted in the time it was allowed fails; its throughput is what
    arrived over that time, and a percentile that falls on a message that never arrived is
    given as that time (a lower bound: the real figure is higher)."""
    complete = ours.complete and base.complete
    notes = []
    for what, side in (("Wijkbrug", ours), ("baseline", base)):
        if side.warnings:
            notes.append(f"{what}: {len(side.warnings)} warnings ({side.warnings[0][:120]})")
        if not side.complete:
            notes.append(
                f"{what}: {len(side.received)}/{n} decrypted within {side.allowed:.0f}s, "
                f"{len(side.errors)} send errors, {side.undecryptable} undecryptable"
                + (f" (first error: {side.errors[0][:160]})" if side.errors else "")
            )
    baseline_is = f"matrix-nio, {base.senders} senders, same Synapse"
    rate, base_rate = ours.throughput(), base.throughput()
    rows = [
        result(
            "endtoend.throughput",
            round(rate, 2),
            "msg/s",
            baseline=round(base_rate, 2),
            baseline_is=baseline_is,
            ratio=rate / base_rate if base_rate else None,
            goal="ratio >= 0.9",
            passed=complete and base_rate > 0 and rate / base_rate >= 0.9,
            note="; ".join(notes) or None,
        )
    ]
    ours_ms, base_ms = ours.latencies_ms(), base.latencies_ms()
    for pct in (50, 95, 99):
        value = harness.percentile(ours_ms, pct)
        baseline = harness.percentile(base_ms, pct)
        bounds = [
            what
            for what, x, side in (("Wijkbrug", value, ours), ("baseline", baseline, base))
            if math.isinf(x) and side.gave_up_at is not None
        ]
        if math.isinf(value):
            value = ours.window() * 1000
        if math.isinf(baseline):
            baseline = base.window() * 1000
        rows.append(
            result(
                f"endtoend.latency_p{pct}",
                round(value, 1),
                "ms",
                baseline=round(baseline, 1),
                baseline_is=baseline_is,
                ratio=value / baseline if baseline else None,
                goal="ratio <= 1.5" if pct == 99 else "(context)",
                passed=(complete and bool(baseline) and value / baseline <= 1.5)
                if pct == 99
                else None,
                note=f"lower bound for {' and '.join(bounds)}: not all arrived" if bounds else None,
            )
        )
    return rows


async def measure(
    stack: Stack,
    n: int,
    allowed: float,
    clients: int = CLIENTS,
    cases: int = CASES,
    until: float | None = None,
) -> list[Result]:
    """Baseline first, then Wijkbrug, on the same Synapse: ``n`` messages from ``clients``
    concurrent senders into ``cases`` rooms each; each side gets ``allowed`` seconds from
    its first send, and none goes on past ``until`` (a perf_counter moment) if given."""
    schedule = plan(n, clients, cases)
    for what, side in (("baseline", baseline_side), ("wijkbrug", bridge_side)):
        started = time.perf_counter()
        measured = await side(stack, schedule, allowed, until)
        harness.progress(
            f"endtoend {what}: {len(measured.received)}/{n} decrypted, "
            f"{time.perf_counter() - started:.0f}s"
        )
        if what == "baseline":
            base = measured
        else:
            ours = measured
    return figures(n, ours, base)


def run(n: int = 1000, timeout: float = 300) -> list[Result]:
    """The end-to-end figures on a stack of their own; ``timeout`` seconds per side, from its
    first send."""
    quiet_nio()
    with tempfile.TemporaryDirectory(prefix="wijkbrug-bench-") as tmp:
        stack = Stack.start(Path(tmp))
        try:
            return asyncio.run(measure(stack, n, timeout))
        finally:
            stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="messages per side")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per side")
    args = parser.parse_args()
    rows = run(args.n, args.timeout)
    harness.report(rows, "endtoend")


if __name__ == "__main__":
    main()
