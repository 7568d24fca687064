"""Synapse scaled out as in production, started here without containers: the main process
and its workers from the configuration ``bridge/deployment.py`` generates (the code behind
``deploy/synapse``), on free ports, this machine's PostgreSQL and Redis.

::

    synapse_database(admin_dsn)        CREATE DATABASE ... LC_COLLATE 'C' TEMPLATE template0
        -> PostgresTarget                (dropped afterwards)
    scaled_site(server_name, bridge_url, conf, secrets, media, database, ...)
        -> SynapseSite with every process of PROCESSES on its own free ports
    cluster = SynapseCluster(site, dir)
    cluster.write_secrets()            deployment.write_secrets (as `wijkbrug deploy secrets`)
    cluster.write_config(settings)     the registration + deployment.synapse_fragments
    cluster.start()                    main first (it migrates the database), then the
                                       workers together; each until GET /health == 200
    cluster.register(...), cluster.metrics(process), cluster.stop()

    python -m synapse.app.homeserver       -c homeserver.yaml -c wijkbrug.yaml -c workers.yaml
    python -m synapse.app.generic_worker   ... -c worker-<name>.yaml   (site.command(process))
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, TypeAlias
from urllib.parse import urlsplit

import httpx
import psycopg

from bridge import deployment
from bridge.config import Settings
from bridge.deployment import MAIN, PROCESSES, SynapseProcess, SynapseSite
from bridge.homeserver import HomeserverError, free_port, register_user


@dataclass(frozen=True)
class PostgresTarget:
    host: str
    port: int
    user: str
    dbname: str


@contextlib.contextmanager
def synapse_database(admin_dsn: str) -> Iterator[PostgresTarget]:
    """A fresh database as Synapse requires it (C collation, from template0), dropped
    afterwards. ``admin_dsn``: ``postgresql://user@host:port/db`` with trust auth."""
    name = f"synapse_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
            "TEMPLATE template0"
        )
    url = urlsplit(admin_dsn)
    try:
        yield PostgresTarget(
            url.hostname or "127.0.0.1", url.port or 5432, url.username or "", name
        )
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def scaled_site(
    server_name: str,
    bridge_url: str,
    *,
    directory: Path,
    database: PostgresTarget,
    redis_host: str,
    redis_port: int,
    redis_dbid: int | None,
    public_baseurl: str,
) -> SynapseSite:
    """The production topology (every process of :data:`PROCESSES`) on one host, with free
    ports instead of the standard ones and this machine's PostgreSQL and Redis (no
    password). Config in ``directory/conf``, secrets in ``directory/secrets``."""
    processes: list[SynapseProcess] = []
    for standard in PROCESSES:
        http, replication, metrics = _free_ports(3)
        processes.append(
            replace(
                standard,
                metrics_port=metrics,
                http_port=http if standard.http_port is not None else None,
                replication_port=replication if standard.replication_port is not None else None,
            )
        )
    return SynapseSite(
        server_name,
        bridge_url,
        public_baseurl=public_baseurl,
        single_host=True,
        config_dir=str(directory / "conf"),
        secrets_dir=str(directory / "secrets"),
        media_store=str(directory / "media_store"),
        processes=tuple(processes),
        database_host=database.host,
        database_port=database.port,
        database_user=database.user,
        database_name=database.dbname,
        redis_host=redis_host,
        redis_port=redis_port,
        redis_dbid=redis_dbid,
        redis_password=False,
    )


@dataclass
class SynapseCluster:
    """The Synapse processes of one site, as child processes of the test."""

    site: SynapseSite
    directory: Path
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Seconds from launch to a healthy process, by worker name.
    startup_seconds: dict[str, float] = field(default_factory=dict)
    _launched: dict[str, float] = field(default_factory=dict)

    @property
    def secrets(self) -> Path:
        return Path(self.site.secrets_path)

    def write_secrets(self) -> None:
        """The site's secrets, as ``wijkbrug deploy secrets`` writes them (the appservice
        tokens among them: the bridge reads the same files)."""
        deployment.write_secrets(self.secrets)

    def write_config(self, settings: Settings) -> dict[str, str]:
        """The registration (``wijkbrug deploy secrets``) and the config files
        (``wijkbrug deploy synapse-fragments``) for ``settings`` (:func:`site_settings`)."""
        deployment.write_registration_secret(self.secrets, settings)
        fragments = deployment.synapse_fragments(settings, self.site)
        deployment.write_fragments(Path(self.site.config_dir), fragments)
        return fragments

    def url(self, process: SynapseProcess) -> str:
        return f"http://127.0.0.1:{self.site.process(process).health_port}"

    @property
    def main_url(self) -> str:
        return self.url(MAIN)

    def log_path(self, process: SynapseProcess) -> Path:
        return self.directory / f"{process.name}.log"

    def log(self, process: SynapseProcess) -> str:
        path = self.log_path(process)
        return path.read_text(errors="replace") if path.exists() else ""

    def _spawn(self, process: SynapseProcess) -> None:
        workdir = self.directory / process.name
        workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path(process).open("ab") as out:
            self.children[process.name] = subprocess.Popen(
                [sys.executable, *self.site.command(process)],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self._launched[process.name] = time.monotonic()

    def _wait_healthy(self, processes: list[SynapseProcess], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(processes)
        with httpx.Client(timeout=2) as http:
            while waiting:
                for process in list(waiting):
                    child = self.children[process.name]
                    if child.poll() is not None:
                        raise HomeserverError(
                            f"Synapse {process.name} exited with {child.returncode}:\n"
                            + self.log(process)[-4000:]
                        )
                    with contextlib.suppress(httpx.TransportError):
                        if http.get(f"{self.url(process)}/health").status_code == 200:
                            waiting.remove(process)
                            took = time.monotonic() - self._launched[process.name]
                            self.startup_seconds[process.name] = took
                if waiting and time.monotonic() > deadline:
                    names = ", ".join(p.name for p in waiting)
                    tails = "\n".join(f"--- {p.name}\n{self.log(p)[-2000:]}" for p in waiting)
                    raise HomeserverError(f"{names}: no /health within {timeout:.0f}s\n{tails}")
                time.sleep(0.2)

    def start(self, timeout: float = 120) -> None:
        """Main first (it creates or migrates the database schema), then every worker."""
        main = self.site.process(MAIN)
        try:
            self._spawn(main)
            self._wait_healthy([main], timeout)
            for worker in self.site.workers:
                self._spawn(worker)
            self._wait_healthy(list(self.site.workers), timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 15) -> None:
        """Workers first, then main: SIGTERM, SIGKILL after ``grace`` seconds."""
        order = [*self.site.workers, self.site.process(MAIN)]
        children = [self.children.pop(p.name) for p in order if p.name in self.children]
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(grace)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def register(self, localpart: str, password: str) -> str:
        secret = (self.secrets / "synapse_registration_shared_secret").read_text().strip()
        return register_user(self.main_url, secret, localpart, password)

    def metrics(self, process: SynapseProcess) -> str:
        port = self.site.process(process).metrics_port
        response = httpx.get(f"http://127.0.0.1:{port}/_synapse/metrics", timeout=10)
        response.raise_for_status()
        return response.text


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` (Prometheus text format) with these labels."""
    total = 0.0
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$")
    for line in text.splitlines():
        found = pattern.match(line)
        if not found:
            continue
        sample_labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', found.group(1) or ""))
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            total += float(found.group(2))
    return total


# A RESP reply: simple or bulk string, integer, or array.
RespValue: TypeAlias = bytes | int | list["RespValue"]


def redis_command(host: str, port: int, *args: str, db: int | None = None) -> RespValue:
    """One Redis command over RESP (no client library needed for a check or two), in
    database ``db`` if given."""

    def encode(*words: str) -> bytes:
        return f"*{len(words)}\r\n".encode() + b"".join(
            f"${len(w.encode())}\r\n".encode() + w.encode() + b"\r\n" for w in words
        )

    with (
        socket.create_connection((host, port), timeout=5) as sock,
        sock.makefile("rb") as reader,
    ):
        if db is not None:
            sock.sendall(encode("SELECT", str(db)))
            _read_resp(reader)
        sock.sendall(encode(*args))
        return _read_resp(reader)


def _read_resp(reader: BinaryIO) -> RespValue:
    line = reader.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(f"redis: {rest.decode()}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return b"" if size < 0 else reader.read(size + 2)[:-2]
    if kind == b"*":
        return [_read_resp(reader) for _ in range(int(rest))]
    raise RuntimeError(f"redis: unexpected reply {line!r}")
