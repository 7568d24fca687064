"""Production homeserver configuration for Wijkbrug, built from the code the dev stack uses.

::

    bridge Settings --config.registration()-----------------> wijkbrug_registration (secret)
          |        \\-config.policy_module()--.
          |                                   v
          |      homeserver.bridge_settings(registration, [module]) + retention
          |                                   |
          |                                   v
          |                              wijkbrug.yaml      (what Wijkbrug needs of Synapse)
    SynapseSite (hosts, ports, paths) --> homeserver.yaml  (a new site's base config)
                                          workers.yaml      (redis, instance_map, writers)
                                          worker-*.yaml     (one per worker process)
                                          log.yaml          (JSON lines on stdout)

``wijkbrug dev`` writes one homeserver.yaml with the same Wijkbrug part
(:func:`bridge.homeserver.write_synapse_config`); production splits Synapse into processes
that talk over HTTP replication and Redis::

    proxy --sync, federation reads--> generic_worker1 --.
    proxy --every other /_matrix----> main -------------+--> event_persister1 (events stream)
                                        |               |
                                        '--- redis -----+--> appservice1 --AS txns--> bridge

Every process loads ``homeserver.yaml``, ``wijkbrug.yaml`` and ``workers.yaml``; a worker
also its ``worker-<name>.yaml``. Secrets are never in these files: Synapse reads them from
``*_path`` files (run it with ``--no-secrets-in-config``), PostgreSQL's password comes from
libpq (``PGPASSWORD`` or peer authentication).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import bridge
from bridge import homeserver
from bridge.config import (
    AppserviceSection,
    HomeserverSection,
    HttpSection,
    Settings,
    policy_module,
    registration,
)
from bridge.secretbox import Keyring

# The processes of the production topology. ``service`` is the host name of the process
# in containers (compose service, Kubernetes Service); on one host everything is 127.0.0.1.


@dataclass(frozen=True)
class SynapseProcess:
    """One Synapse process: its worker name, host name in containers and its ports."""

    name: str
    service: str
    metrics_port: int
    # An HTTP listener for the proxy (``client``/``federation``) or just ``health``.
    http_port: int | None = None
    http_resources: tuple[str, ...] = ()
    # The HTTP replication listener other processes call (main, stream writers).
    replication_port: int | None = None

    @property
    def is_main(self) -> bool:
        return self.name == "main"

    @property
    def health_port(self) -> int:
        """Where ``GET /health`` answers (every Synapse HTTP listener serves it)."""
        port = self.http_port or self.replication_port
        assert port is not None
        return port


MAIN = SynapseProcess(
    "main",
    "synapse",
    metrics_port=9000,
    http_port=8008,
    http_resources=("client", "federation"),
    replication_port=9093,
)
GENERIC_WORKER = SynapseProcess(
    "generic_worker1",
    "synapse-generic-worker",
    metrics_port=9001,
    http_port=8083,
    http_resources=("client", "federation"),
)
EVENT_PERSISTER = SynapseProcess(
    "event_persister1", "synapse-event-persister", metrics_port=9002, replication_port=8034
)
APPSERVICE_SENDER = SynapseProcess(
    "appservice1",
    "synapse-appservice-sender",
    metrics_port=9003,
    http_port=8036,
    http_resources=("health",),
)
PROCESSES = (MAIN, GENERIC_WORKER, EVENT_PERSISTER, APPSERVICE_SENDER)
WORKERS = PROCESSES[1:]

# Requests the proxy sends to the generic worker (from Synapse's worker documentation:
# endpoints any generic worker may serve). Everything else under /_matrix goes to main.
GENERIC_WORKER_PATHS = (
    "^/_matrix/client/(r0|v3)/sync$",
    "^/_matrix/client/(api/v1|r0|v3)/events$",
    "^/_matrix/client/(api/v1|r0|v3)/initialSync$",
    "^/_matrix/client/(api/v1|r0|v3)/rooms/[^/]+/initialSync$",
    "^/_matrix/client/(r0|v3|unstable)/keys/(query|changes|claim)$",
    "^/_matrix/federation/v1/send/",
    "^/_matrix/federation/v1/(event|state|state_ids|backfill|get_missing_events|event_auth)/",
    "^/_matrix/key/v2/query",
)


def generic_worker_regex() -> str:
    """:data:`GENERIC_WORKER_PATHS` as one regular expression (Caddy's ``path_regexp``)."""
    return "^(" + "|".join(path.removeprefix("^") for path in GENERIC_WORKER_PATHS) + ")"


# Files of the secrets directory (``wijkbrug deploy secrets``). No extensions: the names
# are also compose secret names and Kubernetes Secret keys, mounted under /run/secrets.
RANDOM_SECRETS = (
    "synapse_registration_shared_secret",
    "synapse_macaroon_secret_key",
    "synapse_form_secret",
    "synapse_worker_replication_secret",
    "synapse_db_password",
    "wijkbrug_db_password",
    "redis_password",
    "wijkbrug_as_token",
    "wijkbrug_hs_token",
)
SIGNING_KEY = "synapse_signing_key"
KEYRING = "wijkbrug_keyring"
REGISTRATION = "wijkbrug_registration"
# What the Synapse processes mount (the rest is the bridge's or the databases').
SYNAPSE_SECRETS = (
    SIGNING_KEY,
    "synapse_registration_shared_secret",
    "synapse_macaroon_secret_key",
    "synapse_form_secret",
    "synapse_worker_replication_secret",
    "synapse_db_password",
    "redis_password",
    "wijkbrug_hs_token",
    REGISTRATION,
)
BRIDGE_SECRETS = ("wijkbrug_as_token", "wijkbrug_hs_token", KEYRING, "wijkbrug_db_password")

DEFAULT_RETENTION_DAYS = 365
CONFIG_FILES = ("homeserver.yaml", "wijkbrug.yaml", "workers.yaml")


@dataclass(frozen=True)
class SynapseSite:
    """Where a site's Synapse runs: names, the bridge's internal URL, paths and layout.

    ``bridge_url`` is how the homeserver reaches the bridge (appservice transactions, the
    policy module's questions): an internal address, never the public proxy, which sends
    every ``/_matrix`` path to Synapse. ``single_host``: all processes on one machine
    (systemd), on 127.0.0.1 with PostgreSQL peer authentication over its Unix socket;
    otherwise one process per container, found by its service name.
    """

    server_name: str
    bridge_url: str
    public_baseurl: str | None = None
    single_host: bool = False
    config_dir: str = "/etc/synapse"
    secrets_dir: str | None = None
    media_store: str | None = None
    retention_days: int = DEFAULT_RETENTION_DAYS
    # Below: for a site that differs from the standard layout, e.g. the scaled-out test
    # (tests/integration/test_scaled_topology.py) on free ports of one machine. They have
    # no command-line options: the ``Regenerate:`` line of such a site leaves them out.
    # The processes with their ports (the same names as PROCESSES, other ports).
    processes: tuple[SynapseProcess, ...] = PROCESSES
    # Synapse's PostgreSQL (default host by layout: the socket on one host, else the
    # ``synapse-db`` service; default port libpq's).
    database_host: str | None = None
    database_port: int | None = None
    database_user: str = "synapse"
    database_name: str = "synapse"
    # Redis (default host by layout); ``redis_password``: read from the redis_password
    # secret, or no password at all.
    redis_host: str | None = None
    redis_port: int = 6379
    redis_dbid: int | None = None
    redis_password: bool = True

    def process(self, standard: SynapseProcess) -> SynapseProcess:
        """This site's process of the same name as ``standard`` (e.g. :data:`MAIN`)."""
        for process in self.processes:
            if process.name == standard.name:
                return process
        raise KeyError(f"site has no Synapse process {standard.name!r}")

    @property
    def workers(self) -> tuple[SynapseProcess, ...]:
        return tuple(p for p in self.processes if not p.is_main)

    @property
    def baseurl(self) -> str:
        return self.public_baseurl or f"https://{self.server_name}/"

    @property
    def secrets_path(self) -> str:
        if self.secrets_dir is not None:
            return self.secrets_dir
        return f"{self.config_dir}/secrets" if self.single_host else "/run/secrets"

    @property
    def media_path(self) -> str:
        if self.media_store is not None:
            return self.media_store
        return "/var/lib/synapse/media_store" if self.single_host else "/data/media_store"

    def secret(self, name: str) -> str:
        return f"{self.secrets_path}/{name}"

    def config_file(self, name: str) -> str:
        return f"{self.config_dir}/{name}"

    def host(self, process: SynapseProcess) -> str:
        return "127.0.0.1" if self.single_host else process.service

    @property
    def bind(self) -> list[str]:
        return ["127.0.0.1"] if self.single_host else ["0.0.0.0"]  # noqa: S104 (containers)

    def options(self) -> str:
        """The command-line options that produce this site (for the generated headers)."""
        parts = [f"--server-name {self.server_name}", f"--bridge-url {self.bridge_url}"]
        defaults = SynapseSite(self.server_name, self.bridge_url)
        for name in ("public_baseurl", "config_dir", "secrets_dir", "media_store"):
            value = getattr(self, name)
            if value != getattr(defaults, name):
                parts.append(f"--{name.replace('_', '-')} {value}")
        if self.single_host:
            parts.append("--single-host")
        if self.retention_days != DEFAULT_RETENTION_DAYS:
            parts.append(f"--retention-days {self.retention_days}")
        return " ".join(parts)

    def command(self, process: SynapseProcess) -> list[str]:
        """The arguments after ``python`` that start ``process``."""
        app = "synapse.app.homeserver" if process.is_main else "synapse.app.generic_worker"
        args = ["-m", app, "--no-secrets-in-config"]
        files = [*CONFIG_FILES] if process.is_main else [*CONFIG_FILES, worker_file(process)]
        for name in files:
            args += ["-c", self.config_file(name)]
        return args


def worker_file(process: SynapseProcess) -> str:
    return f"worker-{process.name}.yaml"


def site_settings(
    site: SynapseSite,
    appservice: AppserviceSection | None = None,
    token_dir: Path | str | None = None,
) -> Settings:
    """The bridge's settings as the homeserver sees them: its ``server_name``, the bridge
    at ``bridge_url``, and the appservice section of the bridge's config (``appservice``,
    default: Wijkbrug's defaults) with the token files in ``token_dir`` (default: the
    site's secrets directory)."""
    directory = str(token_dir) if token_dir is not None else site.secrets_path
    tokens = {
        "as_token": None,
        "hs_token": None,
        "as_token_path": f"{directory}/wijkbrug_as_token",
        "hs_token_path": f"{directory}/wijkbrug_hs_token",
    }
    section = appservice or AppserviceSection(as_token_path="", hs_token_path="")
    return Settings(
        homeserver=HomeserverSection(server_name=site.server_name),
        appservice=section.model_copy(update=tokens),
        http=HttpSection(public_url=site.bridge_url),
    )


# ---------------------------------------------------------------------- the fragments


def retention(days: int) -> dict[str, Any]:
    """Synapse's message retention: events older than ``days`` are purged from the
    homeserver (clients keep what they stored; the bridge's own store is not touched)."""
    lifetime = f"{days}d"
    return {
        "enabled": True,
        "default_policy": {"min_lifetime": "1d", "max_lifetime": lifetime},
        "allowed_lifetime_min": "1d",
        "allowed_lifetime_max": lifetime,
        "purge_jobs": [{"interval": "1d"}],
    }


def wijkbrug_fragment(settings: Settings, site: SynapseSite) -> dict[str, Any]:
    """What Wijkbrug needs of the homeserver: its registration, the policy module (from
    the same functions ``wijkbrug dev`` uses) and retention."""
    module = policy_module(settings)
    # The token as Synapse reads it (its own mount), not resolved on this machine.
    module["config"].pop("hs_token", None)
    module["config"]["hs_token_path"] = site.secret("wijkbrug_hs_token")
    return {
        **homeserver.bridge_settings([site.secret(REGISTRATION)], [module]),
        "retention": retention(site.retention_days),
    }


def _listener(port: int, resources: tuple[str, ...], site: SynapseSite) -> dict[str, Any]:
    listener: dict[str, Any] = {"port": port, "bind_addresses": site.bind, "type": "http"}
    if "client" in resources:
        listener["x_forwarded"] = True  # behind the proxy: log the client's address
    listener["resources"] = [{"names": list(resources), "compress": False}]
    return listener


def _metrics(process: SynapseProcess, site: SynapseSite) -> dict[str, Any]:
    return {"port": process.metrics_port, "bind_addresses": site.bind, "type": "metrics"}


def homeserver_base(site: SynapseSite) -> dict[str, Any]:
    """A new site's homeserver.yaml: PostgreSQL, listeners for the proxy and replication,
    metrics, secrets from files. An existing homeserver keeps its own."""
    main = site.process(MAIN)
    assert main.http_port is not None and main.replication_port is not None
    database: dict[str, Any] = {
        "user": site.database_user,
        "dbname": site.database_name,
        "host": site.database_host or ("/var/run/postgresql" if site.single_host else "synapse-db"),
    }
    if site.database_port is not None:
        database["port"] = site.database_port
    database |= {"cp_min": 5, "cp_max": 10}
    return {
        "server_name": site.server_name,
        "public_baseurl": site.baseurl,
        "report_stats": False,
        "listeners": [
            _listener(main.http_port, main.http_resources, site),
            _listener(main.replication_port, ("replication",), site),
            _metrics(main, site),
        ],
        "enable_metrics": True,
        "database": {"name": "psycopg2", "args": database},
        "log_config": site.config_file("log.yaml"),
        "media_store_path": site.media_path,
        "signing_key_path": site.secret(SIGNING_KEY),
        **{
            f"{name}_path": site.secret(f"synapse_{name}")
            for name in ("registration_shared_secret", "macaroon_secret_key", "form_secret")
        },
        # /.well-known/matrix/server (port 443) and .../client, so the proxy needs no
        # copy of them.
        "serve_server_wellknown": True,
        "trusted_key_servers": [{"server_name": "matrix.org"}],
        "suppress_key_server_warning": True,
        "enable_registration": False,
        "url_preview_enabled": False,
        "allow_public_rooms_without_auth": False,
        "allow_public_rooms_over_federation": False,
    }


def workers_shared(site: SynapseSite) -> dict[str, Any]:
    """What every process must agree on: Redis, who writes events, who notifies
    appservices, and where the replication listeners are."""
    instance_map = {
        ("main" if p.is_main else p.name): {"host": site.host(p), "port": p.replication_port}
        for p in site.processes
        if p.replication_port is not None
    }
    redis: dict[str, Any] = {
        "enabled": True,
        "host": site.redis_host or ("127.0.0.1" if site.single_host else "redis"),
        "port": site.redis_port,
    }
    if site.redis_dbid is not None:
        redis["dbid"] = site.redis_dbid
    if site.redis_password:
        redis["password_path"] = site.secret("redis_password")
    return {
        "redis": redis,
        "worker_replication_secret_path": site.secret("synapse_worker_replication_secret"),
        "instance_map": instance_map,
        "stream_writers": {"events": [EVENT_PERSISTER.name]},
        "notify_appservices_from_worker": APPSERVICE_SENDER.name,
    }


def worker_config(process: SynapseProcess, site: SynapseSite) -> dict[str, Any]:
    listeners = []
    if process.http_port is not None:
        listeners.append(_listener(process.http_port, process.http_resources, site))
    if process.replication_port is not None:
        listeners.append(_listener(process.replication_port, ("replication",), site))
    listeners.append(_metrics(process, site))
    return {
        "worker_app": "synapse.app.generic_worker",
        "worker_name": process.name,
        "worker_listeners": listeners,
        "worker_log_config": site.config_file("log.yaml"),
    }


def log_config() -> dict[str, Any]:
    """One JSON object per line on stdout (journald or the container runtime keeps it)."""
    return {
        "version": 1,
        "formatters": {"json": {"class": "synapse.logging.TerseJsonFormatter"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            }
        },
        "loggers": {"synapse.storage.SQL": {"level": "WARNING"}},
        "root": {"level": "INFO", "handlers": ["console"]},
        "disable_existing_loggers": False,
    }


def example_registration(settings: Settings) -> dict[str, Any]:
    """The registration with its tokens left out: Synapse refuses it until the real one
    (``wijkbrug deploy secrets``) takes its place."""
    inline = settings.appservice.model_copy(update={"as_token": "", "hs_token": ""})
    doc = registration(settings.model_copy(update={"appservice": inline}))
    doc["as_token"] = doc["hs_token"] = None
    return doc


def _header(site: SynapseSite, lines: list[str]) -> str:
    head = [
        "# Generated by `wijkbrug deploy synapse-fragments` (bridge/deployment.py): do not edit.",
        f"# Regenerate: wijkbrug deploy synapse-fragments --out DIR {site.options()}",
    ]
    return "\n".join([*head, *(f"# {line}" if line else "#" for line in lines)]) + "\n"


def _yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=100)


def synapse_fragments(settings: Settings, site: SynapseSite) -> dict[str, str]:
    """Every file of a ``deploy/synapse`` directory, by name.

    ``settings``: the bridge's settings as the homeserver sees them (:func:`site_settings`).
    """
    files = {
        "homeserver.yaml": (
            [
                "A new site's base configuration (an existing homeserver keeps its own and",
                "adds wijkbrug.yaml and workers.yaml). Secrets are read from files; the",
                "database password comes from libpq: PGPASSWORD or peer authentication.",
            ],
            homeserver_base(site),
        ),
        "wijkbrug.yaml": (
            [
                "What Wijkbrug needs of the homeserver: its appservice registration, the",
                "policy module bridge.synapse_policy (importable by every Synapse process,",
                "e.g. PYTHONPATH with bridge/__init__.py and bridge/synapse_policy.py) and",
                "message retention. Synapse replaces, not merges, top-level keys: if your",
                "homeserver.yaml has modules: or experimental_features:, merge by hand.",
            ],
            wijkbrug_fragment(settings, site),
        ),
        "workers.yaml": (
            [
                "Shared by the main process and every worker: Redis, the replication",
                "listeners (instance_map), the event persister and the appservice sender.",
                "Restart every Synapse process after changing it.",
            ],
            workers_shared(site),
        ),
        "log.yaml": (["Logging of every Synapse process: JSON lines on stdout."], log_config()),
        "wijkbrug-registration.example.yaml": (
            [
                "The appservice registration WITHOUT its tokens, to read: Synapse refuses",
                "it. The real one is written by `wijkbrug deploy secrets` into the secrets",
                f"directory as {REGISTRATION} (it holds as_token and hs_token).",
            ],
            example_registration(settings),
        ),
    }
    for process in site.workers:
        files[worker_file(process)] = (
            [f"Worker {process.name}; start: python {' '.join(site.command(process))}"],
            worker_config(process, site),
        )
    rendered = {name: _header(site, lines) + _yaml(doc) for name, (lines, doc) in files.items()}
    rendered["README.md"] = _readme(site)
    return dict(sorted(rendered.items()))


def _readme(site: SynapseSite) -> str:
    rows = "\n".join(
        f"| `{p.name}` | `{site.host(p)}` | "
        + ", ".join(
            f"{port} {what}"
            for port, what in (
                (p.http_port, "/".join(p.http_resources)),
                (p.replication_port, "replication"),
                (p.metrics_port, "metrics (`/_synapse/metrics`)"),
            )
            if port is not None
        )
        + " |"
        for p in site.processes
    )
    starts = "\n".join(f"python {' '.join(site.command(p))}" for p in site.processes)
    paths = "\n".join(GENERIC_WORKER_PATHS)
    return f"""# Synapse configuration for Wijkbrug ({site.server_name})

Generated by `wijkbrug deploy synapse-fragments` (`bridge/deployment.py`) from the same
functions as `wijkbrug dev` (`registration`, `policy_module`, `bridge_settings`); a unit
test regenerates it and compares, so do not edit these files by hand. Regenerate with

    wijkbrug deploy synapse-fragments --out DIR {site.options()}

| file | what |
|---|---|
| `homeserver.yaml` | a new site's base config (PostgreSQL, listeners, secrets as files) |
| `wijkbrug.yaml` | registration, policy module, retention ({site.retention_days} days) |
| `workers.yaml` | Redis, `instance_map`, event persister, appservice sender |
| `worker-*.yaml` | one per worker process |
| `log.yaml` | JSON lines on stdout |
| `wijkbrug-registration.example.yaml` | the registration without tokens (Synapse refuses it) |

Secrets live in `{site.secrets_path}` (written by `wijkbrug deploy secrets`), never here.
The registration Synapse loads is `{site.secret(REGISTRATION)}`.

## Processes

| worker | host | ports |
|---|---|---|
{rows}

Start them (main first: it migrates Synapse's database), with `bridge.synapse_policy`
importable (e.g. `PYTHONPATH` holding `bridge/__init__.py` and `bridge/synapse_policy.py`)
and, for the containers' PostgreSQL, `PGPASSWORD` from `{site.secret("synapse_db_password")}`:

```
{starts}
```

## What the proxy sends where

The generic worker takes these paths; every other `/_matrix` and `/_synapse/client` path
goes to the main process. Nothing else of Synapse (replication, metrics, `/_synapse/admin`)
is public.

```
{paths}
```

The bridge (`{site.bridge_url}`) must be reachable from every Synapse process (the
appservice sender delivers transactions; any process may ask the policy module).
"""


# ---------------------------------------------------------------------- Kubernetes


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so a ConfigMap reads like the files."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def module_sources() -> dict[str, str]:
    """The files Synapse needs to import ``bridge.synapse_policy`` (it imports only
    Synapse and the standard library)."""
    package = Path(bridge.__file__).parent
    names = ("__init__.py", "synapse_policy.py")
    return {name: (package / name).read_text(encoding="utf-8") for name in names}


def configmaps(fragments: dict[str, str], site: SynapseSite, namespace: str) -> str:
    """Kubernetes ConfigMaps: the Synapse config files and the policy module's sources."""
    config = {
        name: text
        for name, text in fragments.items()
        if name.endswith(".yaml") and not name.endswith(".example.yaml")
    }
    docs = [
        _configmap("synapse-config", namespace, config),
        _configmap("wijkbrug-synapse-module", namespace, module_sources()),
    ]
    head = (
        "# Generated by `wijkbrug deploy synapse-fragments --configmap FILE`\n"
        "# (bridge/deployment.py) from the files of deploy/synapse and\n"
        "# bridge/synapse_policy.py: do not edit.\n"
        f"# Regenerate: wijkbrug deploy synapse-fragments --out DIR --configmap FILE "
        f"--namespace {namespace} {site.options()}\n"
    )
    return head + "---\n".join(
        yaml.dump(doc, Dumper=_BlockDumper, sort_keys=False, width=1000) for doc in docs
    )


def _configmap(name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "wijkbrug"},
        },
        "data": data,
    }


# ---------------------------------------------------------------------- secrets


def write_secrets(directory: Path) -> list[str]:
    """Create the site's missing secret files in ``directory`` (mode 0600, the directory
    0700); existing ones are kept. Returns the names written."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    written = []
    for name in RANDOM_SECRETS:
        if _write_new(directory / name, secrets.token_urlsafe(32)):
            written.append(name)
    if not (directory / SIGNING_KEY).exists():
        homeserver.write_signing_key(directory / SIGNING_KEY)
        written.append(SIGNING_KEY)
    if _write_new(directory / KEYRING, Keyring.generate().to_json()):
        written.append(KEYRING)
    return written


def write_registration_secret(directory: Path, settings: Settings) -> Path:
    """The real registration (with the tokens of ``settings``) as ``directory/REGISTRATION``
    (mode 0600); rewritten each time, since it follows the token files."""
    path = directory / REGISTRATION
    text = (
        "# Generated by `wijkbrug deploy secrets`: the appservice registration Synapse loads.\n"
        "# It holds as_token and hs_token: treat it as a secret.\n"
    ) + _yaml(registration(settings))
    path.unlink(missing_ok=True)
    _write_new(path, text)
    return path


def _write_new(path: Path, text: str) -> bool:
    if path.exists():
        return False
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return True


def write_fragments(out: Path, fragments: dict[str, str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in fragments.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
