"""Run the real bridge (``wijkbrug serve``) and its CLI as child processes, as a user would.

::

    BridgeSite.prepare(tmp) -> config.yaml + registration.yaml (before Synapse starts)
    site.point_at(synapse)  -> config names the homeserver's URL
    site.start()            -> `wijkbrug --config ... serve`, waits for GET /readyz == 200
    site.cli(...)           -> `wijkbrug --config ... <args>` (the pinned admin commands)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from bridge.config import WORKER_INDEX_ENV, generate_config, load_settings, write_registration
from bridge.homeserver import free_port
from bridge.secretbox import Keyring

WIJKBRUG = shutil.which("wijkbrug", path=str(Path(sys.executable).parent)) or "wijkbrug"


@dataclass
class BridgeSite:
    """One Wijkbrug installation in a temporary directory."""

    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)
    # The environment of its processes beyond ours ($WIJKBRUG_WORKER_INDEX, as deploy/ sets it).
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir / "bridge.log"

    @classmethod
    def prepare(cls, data_dir: Path, database_url: str | None = None) -> BridgeSite:
        port = free_port()
        generate_config(data_dir, port=port, database_url=database_url)
        write_registration(load_settings(data_dir / "config.yaml"))
        return cls(data_dir, port)

    def another_worker(
        self, data_dir: Path, index: int, *, index_from_environment: bool = False
    ) -> BridgeSite:
        """A further process of this installation (same database, tokens and keys; its
        own port and crypto stores): worker ``index`` of the ``workers.count`` set here.
        ``index_from_environment``: the index comes from $WIJKBRUG_WORKER_INDEX, as in
        deploy/, rather than from its config file."""
        config = yaml.safe_load(self.config_path.read_text())
        data_dir.mkdir(parents=True)
        Keyring.load_or_create(self.data_dir / "keys" / "keyring.json")  # one for all
        for shared in ("keys", "secrets"):
            shutil.copytree(self.data_dir / shared, data_dir / shared)
        port = free_port()
        config.setdefault("http", {})["port"] = port
        workers = config.setdefault("workers", {})
        env = {}
        if index_from_environment:
            workers.pop("index", None)
            env[WORKER_INDEX_ENV] = str(index)
        else:
            workers["index"] = index
        (data_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        return BridgeSite(data_dir, port, env=env)

    @property
    def config_path(self) -> Path:
        return self.data_dir / "config.yaml"

    @property
    def registration_path(self) -> Path:
        return self.data_dir / "registration.yaml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def point_at(self, homeserver_url: str, database_url: str | None = None) -> None:
        self.configure("homeserver", {"url": homeserver_url})
        if database_url is not None:
            self.configure("database", {"url": database_url})

    def configure(self, section: str, values: dict[str, Any]) -> None:
        """Change one section of config.yaml (before ``start``)."""
        config = yaml.safe_load(self.config_path.read_text())
        config.setdefault(section, {}).update(values)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [WIJKBRUG, "--config", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, **self.env},
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"wijkbrug {' '.join(args)} exited {result.returncode}: {result.stderr}"
            )
        return result

    def start(self, timeout: float = 60) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [WIJKBRUG, "--config", str(self.config_path), "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"bridge exited early:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"bridge not ready after {timeout}s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
