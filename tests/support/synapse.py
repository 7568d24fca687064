"""Pytest fixtures for a real Synapse (register with ``pytest_plugins``).

::

    synapse_factory(appservice_files=(reg.yaml,))   # session-scoped factory
        -> tmp dir, free port, write_synapse_config, Homeserver.start()
        -> SynapseInstance(base_url, server_name, ...)   (all stopped at session end)

    synapse   # one shared instance without appservices, built on the factory

    synapse_factory(server_name="localhost:8448", extra_listeners=[...], extra_config={...})
        -> a homeserver that federates (see tests/support/federation.py): the listeners are
           added to the client listener, the settings replace top-level keys

An appservice registration must exist before Synapse starts (Synapse reads it only at
startup), so a test needing one writes it first, then calls the factory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml

from bridge.homeserver import (
    Homeserver,
    free_port,
    register_user,
    registration_shared_secret,
    write_synapse_config,
)

SERVER_NAME = "localhost"


@dataclass(frozen=True)
class SynapseInstance:
    """A running Synapse, as tests see it."""

    base_url: str
    server_name: str
    config_path: Path
    directory: Path
    shared_secret: str

    def register(self, localpart: str, password: str, admin: bool = False) -> str:
        """Create the user (or accept that it exists); return its full user id."""
        return register_user(self.base_url, self.shared_secret, localpart, password, admin=admin)

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"


class SynapseFactory(Protocol):
    def __call__(
        self,
        appservice_files: Sequence[Path] = (),
        modules: Sequence[dict[str, Any]] = (),
        *,
        server_name: str = SERVER_NAME,
        extra_listeners: Sequence[dict[str, Any]] = (),
        extra_config: Mapping[str, Any] | None = None,
    ) -> SynapseInstance: ...


def add_to_config(
    config_path: Path,
    extra_listeners: Sequence[dict[str, Any]] = (),
    extra_config: Mapping[str, Any] | None = None,
) -> None:
    """Add listeners to a config written by ``write_synapse_config`` and set (replace)
    top-level settings, e.g. a TLS federation listener and its certificates."""
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["listeners"] = [*config["listeners"], *(dict(x) for x in extra_listeners)]
    config.update(extra_config or {})
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="session")
def synapse_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseFactory]:
    """Start a fresh Synapse per call: ``synapse_factory(appservice_files=[...])``, with
    Synapse modules if given (``modules=[policy_module(settings)]``), and under another
    server name with more listeners and settings if given (federation)."""
    started: list[Homeserver] = []

    def start(
        appservice_files: Sequence[Path] = (),
        modules: Sequence[dict[str, Any]] = (),
        *,
        server_name: str = SERVER_NAME,
        extra_listeners: Sequence[dict[str, Any]] = (),
        extra_config: Mapping[str, Any] | None = None,
    ) -> SynapseInstance:
        directory = tmp_path_factory.mktemp("synapse")
        port = free_port()
        config_path = write_synapse_config(
            directory,
            server_name=server_name,
            port=port,
            appservice_files=appservice_files,
            modules=modules,
        )
        if extra_listeners or extra_config:
            add_to_config(config_path, extra_listeners, extra_config)
        homeserver = Homeserver(config_path, f"http://127.0.0.1:{port}")
        homeserver.start()
        started.append(homeserver)
        return SynapseInstance(
            base_url=homeserver.base_url,
            server_name=server_name,
            config_path=config_path,
            directory=directory,
            shared_secret=registration_shared_secret(config_path),
        )

    yield start
    for homeserver in started:
        homeserver.stop()


@pytest.fixture(scope="session")
def synapse(synapse_factory: SynapseFactory) -> SynapseInstance:
    """One Synapse shared by the session, without appservices."""
    return synapse_factory()
