"""``wijkbrug dev``: the embedded stack on one machine.

    DIR/synapse/homeserver.yaml --> Synapse (SQLite, child process, 127.0.0.1:SYNAPSE_PORT)
                                        ^   | appservice transactions
                                        |   v
                    Wijkbrug bridge (uvicorn, 127.0.0.1:PORT) <-- DIR/wijkbrug.db + demo region

Starting again reuses everything in DIR. Ctrl-C stops the bridge, then Synapse.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bridge import homeserver
from bridge.config import generate_config, load_settings, policy_module, write_registration
from bridge.demo import load_demo
from bridge.runtime import open_store
from bridge.web.app import create_app

log = logging.getLogger(__name__)


def _banner(facts: dict[str, Any], bridge_url: str, hs_url: str, data_dir: Path) -> str:
    lines = [
        "",
        "Wijkbrug embedded stack is running",
        f"  bridge       {bridge_url}   (FHIR: {bridge_url}/fhir, ready: {bridge_url}/readyz)",
        f"  homeserver   {hs_url}   (log in with any Matrix client, e.g. Element)",
        f"  data         {data_dir}",
    ]
    if facts:
        lines.append("  demo accounts (user id / password):")
        for account in facts["accounts"].values():
            lines.append(f"    {account['user_id']:<24} {account['password']}")
        lines.append("  demo practice tokens (Authorization: Bearer ...):")
        for agb, token in facts["tokens"].items():
            lines.append(f"    AGB {agb}  {token}")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


async def _wait_ready(url: str, server: uvicorn.Server, attempts: int = 240) -> bool:
    """Poll /readyz every 0.25 s (a minute by default) while the server runs."""
    async with httpx.AsyncClient() as http:
        for _ in range(attempts):
            if server.should_exit:
                return False
            try:
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.25)
    return False


async def run_dev(
    data_dir: Path, *, port: int, synapse_port: int, server_name: str, demo: bool
) -> int:
    """Run Synapse and the bridge until interrupted; returns the exit code."""
    hs_url = f"http://127.0.0.1:{synapse_port}"
    config_path = generate_config(
        data_dir, homeserver_url=hs_url, server_name=server_name, port=port, overwrite=True
    )
    settings = load_settings(config_path)
    registration = write_registration(settings)
    hs_config = homeserver.write_synapse_config(
        data_dir / "synapse",
        server_name=server_name,
        port=synapse_port,
        appservice_files=[registration],
        # The homeserver itself keeps case rooms closed (bridge.synapse_policy).
        modules=[policy_module(settings)],
    )
    store = open_store(settings)
    facts: dict[str, Any] = {}
    if demo and (store.list_orgs() == [] or (data_dir / "demo.json").exists()):
        facts = load_demo(store, data_dir, server_name)
    store.engine.dispose()

    synapse = homeserver.Homeserver(hs_config, hs_url)
    try:
        await asyncio.to_thread(synapse.start)
    except homeserver.HomeserverError as exc:
        log.error("the homeserver did not start: %s", exc)
        return 4
    try:
        secret = homeserver.registration_shared_secret(hs_config)
        for account in facts.get("accounts", {}).values():
            await asyncio.to_thread(
                homeserver.register_user,
                hs_url,
                secret,
                account["user_id"][1:].split(":")[0],
                account["password"],
                displayname=account["displayname"],
            )
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings),
                host=settings.http.host,
                port=settings.http.port,
                log_level="warning",
                access_log=False,
            )
        )
        serving = asyncio.create_task(server.serve())
        if await _wait_ready(settings.public_url, server):
            print(_banner(facts, settings.public_url, hs_url, data_dir), flush=True)
        else:
            log.error("the bridge did not become ready; see the log above")
        await serving
        return 0
    finally:
        await asyncio.to_thread(synapse.stop)
