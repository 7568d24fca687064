"""The homeserver goes away: the FHIR API keeps accepting, and every accepted message is
delivered once Synapse is back, in order, exactly once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.homeserver import (
    Homeserver,
    free_port,
    register_user,
    registration_shared_secret,
    write_synapse_config,
)
from tests.integration.test_end_to_end import communication, fhir_headers
from tests.support.bridge import BridgeSite
from tests.support.jsclient import JsClient

pytestmark = pytest.mark.integration
OUTAGE_SECONDS = 30


def during(i: int) -> str:
    return f"tijdens storing {i}"


def body_ends(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: bool(event["body"].endswith(text))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[BridgeSite, Homeserver, str]]:
    bridge = BridgeSite.prepare(tmp_path / "wijkbrug")
    port = free_port()
    config = write_synapse_config(
        tmp_path / "synapse",
        server_name="localhost",
        port=port,
        appservice_files=[bridge.registration_path],
    )
    synapse = Homeserver(config, f"http://127.0.0.1:{port}")
    synapse.start()
    bridge.point_at(synapse.base_url)
    bridge.start()
    bridge.cli("org", "add", "practice", "--agb", "01234567", "--name", "Praktijk")
    bridge.cli("org", "add", "provider", "--ura", "12345678", "--name", "Thuiszorg Oost")
    bridge.cli(
        "team", "add", "--provider", "12345678", "--name", "Team", "--member", "@nurse1:localhost"
    )
    bridge.cli(
        "route", "add", "--care-type", "wondzorg", "--pc4", "1091-1098", "--provider", "12345678"
    )
    token = bridge.cli("client", "add", "--org", "01234567", "--name", "his").stdout
    register_user(synapse.base_url, registration_shared_secret(config), "nurse1", "pw-nurse-1")
    try:
        yield bridge, synapse, token.strip().splitlines()[-1]
    finally:
        bridge.stop()
        synapse.stop()


async def test_messages_accepted_during_outage_arrive_in_order(
    stack: tuple[BridgeSite, Homeserver, str],
) -> None:
    bridge, synapse, token = stack
    nurse = await JsClient.start(synapse.base_url, "@nurse1:localhost", "pw-nurse-1")
    try:
        async with httpx.AsyncClient(base_url=bridge.url, timeout=30) as http:
            first = await http.post(
                "/fhir/Communication",
                headers=fhir_headers(token),
                content=json.dumps(communication("o-0", text="voor")),
            )
            assert first.status_code == 201
            await nurse.wait_for("message", body_ends("voor"))

            # 30 seconds without a homeserver, traffic all the while: a message a second.
            await asyncio.to_thread(synapse.stop)
            stopped = asyncio.get_running_loop().time()
            count = 0
            while asyncio.get_running_loop().time() - stopped < OUTAGE_SECONDS:
                count += 1
                resp = await http.post(
                    "/fhir/Communication",
                    headers=fhir_headers(token),
                    content=json.dumps(communication(f"o-{count}", text=during(count))),
                )
                assert resp.status_code == 201, resp.text  # the FHIR API keeps accepting
                await asyncio.sleep(1)
            ready = await http.get("/readyz")
            assert ready.status_code == 503

            await asyncio.to_thread(synapse.start)
            await nurse.wait_for("message", body_ends(during(count)), timeout=120)
            bodies = [e["body"] for e in nurse.events if e["event"] == "message"]
            arrived = [b for b in bodies if "tijdens storing" in b]
            # Every one, once, in the order they were accepted.
            assert arrived == [during(i) for i in range(1, count + 1)]
            print(f"\nhomeserver down {OUTAGE_SECONDS} s: {count} messages accepted, all delivered")
    finally:
        await nurse.close()
