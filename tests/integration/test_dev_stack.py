"""``wijkbrug dev`` (what ``make run`` starts): Synapse + bridge + demo region, Ctrl-C stops
everything, and a second start reuses the data (same accounts and tokens)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from bridge.homeserver import free_port
from tests.support.bridge import WIJKBRUG

pytestmark = pytest.mark.integration


def start_dev(data_dir: Path, port: int, synapse_port: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            WIJKBRUG,
            "dev",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--synapse-port",
            str(synapse_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    out: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        out.append(line)
        if line.startswith("Press Ctrl-C"):
            return proc, "".join(out)
    proc.kill()
    raise AssertionError("dev stack did not come up:\n" + "".join(out))


def stop_dev(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    return rest


def test_dev_stack_starts_serves_stops_and_restarts(tmp_path: Path) -> None:
    port, synapse_port = free_port(), free_port()
    data = tmp_path / "data"
    proc, banner = start_dev(data, port, synapse_port)
    try:
        assert f"http://127.0.0.1:{port}" in banner and f"http://127.0.0.1:{synapse_port}" in banner
        facts = json.loads((data / "demo.json").read_text())
        for account in facts["accounts"].values():
            assert account["user_id"] in banner and account["password"] in banner
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        token = facts["tokens"]["01234567"]
        search = httpx.get(
            f"http://127.0.0.1:{port}/fhir/Communication",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert search.status_code == 200 and search.json()["total"] == 0
        # A demo account can log in to the homeserver with the printed password.
        nurse = facts["accounts"]["nurse1"]
        login = httpx.post(
            f"http://127.0.0.1:{synapse_port}/_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "user": nurse["user_id"],
                "password": nurse["password"],
            },
        )
        assert login.status_code == 200, login.text
        assert (data / "synapse" / "homeserver.yaml").exists()
    finally:
        stop_dev(proc)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{synapse_port}/_matrix/client/versions", timeout=2)

    proc, banner_again = start_dev(data, port, synapse_port)
    try:
        assert facts["tokens"]["01234567"] in banner_again
        explain = subprocess.run(
            [
                WIJKBRUG,
                "--data-dir",
                str(data),
                "route",
                "explain",
                "--care-type",
                "wondzorg",
                "--postcode",
                "1092 AB",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "Thuiszorg Oost" in explain.stdout
    finally:
        stop_dev(proc)
