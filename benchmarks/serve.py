"""The baseline server of the accept-path benchmark, in the bridge's own server stack:

    python -m benchmarks.serve DATABASE_URL PORT

a minimal FastAPI app under uvicorn, started the way ``wijkbrug serve`` starts the bridge
(same logging set-up, ``log_level="info"``, no access log), whose ``POST /rows`` reads the
body and commits it as one row (engine from ``bridge.db.make_engine``: the same SQLite
pragmas and PostgreSQL pool as the bridge), answering 201. ``GET /healthz`` answers 200.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Column, Integer, LargeBinary, MetaData, Table

from bridge.db import make_engine


def baseline_app(database_url: str) -> FastAPI:
    engine = make_engine(database_url)
    metadata = MetaData()
    rows = Table(
        "bench_rows",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("body", LargeBinary, nullable=False),
    )
    metadata.create_all(engine)

    def insert(body: bytes) -> int:
        with engine.begin() as conn:
            key = conn.execute(rows.insert().values(body=body)).inserted_primary_key
            assert key is not None
            return int(key[0])

    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/rows")
    async def create_row(request: Request) -> JSONResponse:
        row_id = await asyncio.to_thread(insert, await request.body())
        return JSONResponse({"id": row_id}, status_code=201)

    return app


def main() -> None:
    database_url, port = sys.argv[1], int(sys.argv[2])
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        baseline_app(database_url),
        host="127.0.0.1",
        port=port,
        log_level="info",
        access_log=False,
    )


if __name__ == "__main__":
    main()
