"""Alembic migrations of the bridge database (run by ``wijkbrug db upgrade`` and at start)."""
