"""The outbox worker's scheduling, with the real store and a stand-in for the Matrix side:
deliveries of different cases run at once (up to ``delivery.concurrency``), those of one
case strictly one after the other and in order; and the homeserver's echoes of what our
own users sent are settled when they are stored, not handled one by one."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import yaml
from fastapi.testclient import TestClient
from sqlalchemy import text

from bridge.audit import SYSTEM
from bridge.config import generate_config, load_settings
from bridge.service import Bridge
from bridge.store import OutboxWork
from bridge.web.app import create_app
from tests.support.examples import message, region, render

PATIENTS = ["999911120", "999911132", "999911144", "999911156"]  # pass the 11-test
PER_CASE = 3


def test_cases_are_delivered_concurrently_and_each_case_in_order(tmp_path: Path) -> None:
    path = generate_config(tmp_path)
    config = yaml.safe_load(path.read_text())
    config["delivery"] = {"concurrency": 3}
    path.write_text(yaml.safe_dump(config))
    with TestClient(create_app(load_settings(path), run_bridge=False)) as client:
        bridge: Bridge = client.app.state.bridge  # type: ignore[attr-defined]
        store = bridge.store
        region(store)
        practice = store.find_org("01234567")
        posted: dict[int, list[str]] = defaultdict(list)  # case -> communications, in order
        for round_ in range(PER_CASE):
            for bsn in PATIENTS:
                msg = message(f"{bsn}-{round_}", bsn=bsn)
                decision = store.decide(msg.care_type, msg.patient.postcode)
                stored, _ = store.accept_message(practice, msg, decision, render, SYSTEM)
                posted[stored.case_id].append(stored.id)
        assert len(posted) == len(PATIENTS)

        in_flight: set[int] = set()
        most = 0
        delivered: dict[int, list[str]] = defaultdict(list)
        overlap_in_a_case: list[int] = []
        done = asyncio.Event()

        async def deliver(item: OutboxWork) -> None:
            nonlocal most
            case = item.case.id
            if case in in_flight:
                overlap_in_a_case.append(case)
            in_flight.add(case)
            most = max(most, len(in_flight))
            await asyncio.sleep(0.05)  # a homeserver round trip
            in_flight.discard(case)
            delivered[case].append(item.communication_id)
            await asyncio.to_thread(
                store.outbox_done, item.item_id, f"${item.item_id}", context_sent=True
            )
            if sum(map(len, delivered.values())) == PER_CASE * len(PATIENTS):
                done.set()

        bridge._deliver = deliver  # type: ignore[method-assign]

        async def run() -> None:
            worker = asyncio.create_task(bridge._outbox_loop())
            try:
                await asyncio.wait_for(done.wait(), timeout=30)
            finally:
                # Stopping must stop it (asyncio.wait_for in the loop once swallowed this).
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker

        asyncio.run(run())
        assert dict(delivered) == dict(posted)  # every message once, each case in order
        assert overlap_in_a_case == []
        assert most == 3  # several cases at once, never more than configured


def test_echoes_of_our_own_users_are_settled_on_arrival(tmp_path: Path) -> None:
    with TestClient(create_app(load_settings(generate_config(tmp_path)), run_bridge=False)) as c:
        bridge: Bridge = c.app.state.bridge  # type: ignore[attr-defined]
        ghost = f"@{bridge.settings.appservice.ghost_prefix}agb_01000001:localhost"
        senders = {"$echo": ghost, "$bot": bridge.bot.user_id, "$nurse": "@nurse:localhost"}
        events = [
            {"event_id": event_id, "room_id": "!r:localhost", "sender": sender, "type": kind}
            for (event_id, sender), kind in zip(
                senders.items(),
                ["m.room.encrypted", "m.room.message", "m.room.encrypted"],
                strict=True,
            )
        ]
        assert bridge.on_transaction("t1", events)
        assert [e.event_id for e in bridge.store.due_events()] == ["$nurse"]
        with bridge.store.session() as s:
            states: dict[str, str] = dict(
                s.execute(text("SELECT event_id, state FROM inbound_events")).all()
            )
        assert states == {"$echo": "ignored", "$bot": "ignored", "$nurse": "pending"}


def test_a_nurse_who_joined_the_team_is_invited_with_the_cases_next_message(
    tmp_path: Path,
) -> None:
    """The case room is prepared once per sender and then remembered; a nurse added to
    the team after that is invited when the case's next message is delivered, and a team
    that did not change costs no homeserver request at all."""
    calls: list[tuple[str, str]] = []
    in_room: dict[str, str] = {"@ghost:localhost": "join", "@anna:localhost": "join"}

    class Homeserver:
        async def members(self, room_id: str) -> dict[str, str]:
            calls.append(("members", room_id))
            return dict(in_room)

        async def invite(self, room_id: str, user_id: str) -> None:
            calls.append(("invite", user_id))
            in_room[user_id] = "invite"

        async def join(self, room_id: str, user_id: str) -> None:  # pragma: no cover
            raise AssertionError("the ghost is in the room already")

        async def close(self) -> None:
            pass

    def work(*members: str) -> OutboxWork:
        case = SimpleNamespace(room_id="!case:localhost", number="C-1")
        return cast(OutboxWork, SimpleNamespace(case=case, members=members))

    with TestClient(create_app(load_settings(generate_config(tmp_path)), run_bridge=False)) as c:
        bridge: Bridge = c.app.state.bridge  # type: ignore[attr-defined]
        bridge.api = Homeserver()  # type: ignore[assignment]

        async def deliveries() -> list[list[str]]:
            ghost = "@ghost:localhost"
            return [
                (await bridge._prepare_room(work("@anna:localhost"), ghost))[1],
                (await bridge._prepare_room(work("@anna:localhost"), ghost))[1],
                (await bridge._prepare_room(work("@anna:localhost", "@bea:localhost"), ghost))[1],
            ]

        first, same_team, grown = asyncio.run(deliveries())
    assert first == same_team == ["@anna:localhost"]
    assert grown == ["@anna:localhost", "@bea:localhost"]
    room = "!case:localhost"
    assert calls == [("members", room), ("members", room), ("invite", "@bea:localhost")]
