"""Opening an installation's storage: engine, schema upgrade, keyring, store."""

from __future__ import annotations

from bridge import schema
from bridge.config import Settings
from bridge.db import make_engine
from bridge.secretbox import Keyring, SecretBox
from bridge.store import Store


def open_store(settings: Settings, *, upgrade: bool = True) -> Store:
    """The store of ``settings``; upgrades the schema first (refusing a newer one)."""
    settings.data_path.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    if upgrade:
        schema.upgrade(engine)
    keyring = Keyring.load_or_create(settings.keyring_path)
    store = Store(engine, SecretBox(keyring))
    store.office = settings.office_hours.window()
    return store
