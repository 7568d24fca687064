"""Versioned schema upgrades (Alembic), and the refusal to run on a newer database.

wijkbrug db upgrade  ->  upgrade(engine)  ->  alembic upgrade head
wijkbrug serve/dev   ->  upgrade(engine)  (refuses if the database is ahead of the code)
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaTooNewError(RuntimeError):
    """The database was upgraded by a newer Wijkbrug than this one."""


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Bring the database to the code's schema; returns the revision it is at."""
    cfg = _config()
    script = ScriptDirectory.from_config(cfg)
    current = current_revision(engine)
    if current is not None and script.get_revision(current) is None:
        raise SchemaTooNewError(
            f"database schema revision {current} is newer than this Wijkbrug "
            f"(knows up to {head_revision()}); upgrade Wijkbrug"
        )
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    head = head_revision()
    if current != head:
        log.info("database schema upgraded from %s to %s", current, head)
    return head
