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

            await asyncio.to_thread(synapse.stop)
            for i in range(1, 4):
                resp = await http.post(
                    "/fhir/Communication",
                    headers=fhir_headers(token),
                    content=json.dumps(communication(f"o-{i}", text=f"tijdens storing {i}")),
                )
                assert resp.status_code == 201, resp.text
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            await asyncio.sleep(3)  # let delivery fail and back off

            await asyncio.to_thread(synapse.start)
            for i in range(1, 4):
                await nurse.wait_for("message", body_ends(f"tijdens storing {i}"), timeout=90)
            bodies = [e["body"] for e in nurse.events if e["event"] == "message"]
            during = [b for b in bodies if "tijdens storing" in b]
            assert during == [f"tijdens storing {i}" for i in range(1, 4)]
    finally:
        await nurse.close()
