"""Shared fixtures: databases (SQLite and the machine's PostgreSQL) and stores."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bridge.db import make_engine
from bridge.schema import upgrade
from bridge.secretbox import Keyring, SecretBox
from bridge.store import Store

pytest_plugins = ["tests.support.synapse"]

# The machine's PostgreSQL (trust auth); CI starts it if it is not running.
PG_ADMIN_DSN = os.environ.get("WIJKBRUG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    name = f"wijkbrug_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs on both supported databases."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'wijkbrug.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield Store(engine, SecretBox(Keyring.generate()))
    engine.dispose()
