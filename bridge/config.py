"""Configuration: one frozen, strict pydantic model per section.

A config error names the exact key path (``database.url: ...``). Secrets (the appservice
tokens) can be given inline or, better, as ``*_path`` files; the encryption keyring is
never in the YAML (see :mod:`bridge.secretbox`).

A data directory holds everything of one installation::

    DIR/config.yaml          this file (written by ``wijkbrug generate-config`` / ``dev``)
    DIR/registration.yaml    the appservice registration the homeserver loads
    DIR/secrets/             as_token, hs_token (mode 0600)
    DIR/keys/keyring.json    encryption-at-rest keys (mode 0600)
    DIR/wijkbrug.db          SQLite database (default)
    DIR/crypto/              Matrix E2EE stores of the bot and the ghosts
    DIR/synapse/             the embedded homeserver (``wijkbrug dev`` only)
"""

from __future__ import annotations

import os
import re
import secrets
from datetime import time
from pathlib import Path
from typing import Any

import yaml
from limits import parse_many
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_DATA_DIR = "data"


class ConfigError(Exception):
    """A configuration problem; the message names the key path."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class HomeserverSection(_Section):
    url: str = "http://127.0.0.1:8008"
    server_name: str = "localhost"
    # A homeserver admin's access token (a file), for purging closed cases' rooms
    # (retention); without it their history stays on the homeserver.
    admin_token_path: str | None = None
    # Other homeservers whose users may enter case rooms (the policy module's
    # allowed_servers); None: no fixed list, the directory's Matrix IDs decide.
    allowed_servers: list[str] | None = None


class AppserviceSection(_Section):
    id: str = "wijkbrug"
    bot_localpart: str = "wijkbrug"
    # The appservice's own user. Not the bot: Synapse refuses /sync to this user.
    sender_localpart: str = "wijkbrug-appservice"
    ghost_prefix: str = "wijkbrug_"
    as_token: str | None = None
    as_token_path: str | None = None
    hs_token: str | None = None
    hs_token_path: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> AppserviceSection:
        for name in ("as_token", "hs_token"):
            if getattr(self, name) is None and getattr(self, f"{name}_path") is None:
                raise ValueError(f"give {name} or {name}_path")
        return self


class HttpSection(_Section):
    host: str = "127.0.0.1"
    port: int = 8080
    # The URL the homeserver uses to reach us, and that FHIR links are built on.
    public_url: str | None = None
    # Requests per integration client (``limits`` notation, e.g. "20/second;2000/hour"),
    # so one runaway practice system cannot crowd out the region; null: no limit.
    client_rate_limit: str | None = "20/second;5000/hour"
    # mTLS at the proxy: the header in which the proxy passes the SHA-256 fingerprint of
    # the client certificate it verified (and which it strips from what clients send).
    # Clients registered with a fingerprint must then present that certificate.
    client_certificate_header: str | None = None

    @model_validator(mode="after")
    def _rate_limit(self) -> HttpSection:
        if self.client_rate_limit is not None:
            try:
                parse_many(self.client_rate_limit)
            except ValueError:
                raise ValueError(
                    "client_rate_limit: e.g. '20/second;5000/hour' (or null for none)"
                ) from None
        return self


class DatabaseSection(_Section):
    url: str | None = None  # default: SQLite in the data dir


class DeliverySection(_Section):
    max_attempts: int = 12
    # Deliveries in flight at once per process, each for a different case (the messages
    # of one case always go out one after the other, in order).
    concurrency: int = Field(default=8, ge=1, le=64)
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 300.0
    decrypt_timeout_seconds: float = 600.0


class OfficeHoursSection(_Section):
    """When the region's GP practices are open (Amsterdam time, working days, not on Dutch
    public holidays); outside them a nurse's message also goes to the huisartsenpost."""

    opens: str = "08:00"
    closes: str = "17:00"

    @model_validator(mode="after")
    def _times(self) -> OfficeHoursSection:
        for name in ("opens", "closes"):
            try:
                time.fromisoformat(getattr(self, name))
            except ValueError:
                raise ValueError(f"{name} must be HH:MM") from None
        return self

    def window(self) -> tuple[time, time]:
        return time.fromisoformat(self.opens), time.fromisoformat(self.closes)


class EscalationSection(_Section):
    """How long an urgent message may wait for a nurse before it is offered further. The
    more urgent a priority (FHIR request-priority: ``stat``, then ``asap``, then
    ``urgent``), the shorter its wait; the outbox delivers in the same order."""

    urgent_minutes: float = Field(default=30.0, gt=0)
    asap_minutes: float = Field(default=20.0, gt=0)
    stat_minutes: float = Field(default=15.0, gt=0)
    check_interval_seconds: float = Field(default=15.0, gt=0)

    @model_validator(mode="after")
    def _most_urgent_waits_least(self) -> EscalationSection:
        if not self.stat_minutes <= self.asap_minutes <= self.urgent_minutes:
            raise ValueError(
                "stat_minutes <= asap_minutes <= urgent_minutes, as FHIR ranks them (stat "
                f"is the most urgent); got stat {self.stat_minutes:g}, asap "
                f"{self.asap_minutes:g}, urgent {self.urgent_minutes:g}"
            )
        return self

    def limit_minutes(self, priority: str) -> float | None:
        return {
            "urgent": self.urgent_minutes,
            "asap": self.asap_minutes,
            "stat": self.stat_minutes,
        }.get(priority)


class FilesSection(_Section):
    """Which files may travel between a case room and a practice system (wound photos,
    letters); anything else is refused, and the sender is told why."""

    # 7 MiB: its base64 form stays under libxml2's 10 MB limit on one XML text node.
    max_bytes: int = 7 * 1024 * 1024
    allowed_types: list[str] = ["image/jpeg", "image/png", "application/pdf"]


class RetentionSection(_Section):
    """How long a closed case is kept (AVG): then its messages, files and stored events
    are deleted, the room's history is purged on the homeserver (with ``admin_token``)
    and the bridge forgets the room's keys; the audit trail stays."""

    closed_case_days: float = 90.0
    check_interval_seconds: float = 3600.0


class WorkersSection(_Section):
    """Several bridge processes sharing one PostgreSQL database: each delivers the messages
    of its own share of the GPs' ghosts (an E2EE device lives in one process only), and
    process 0 also runs the bot (its device, incoming events, chat, escalations)."""

    count: int = 1
    index: int = 0

    @model_validator(mode="after")
    def _index(self) -> WorkersSection:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError("index must be 0 .. count - 1")
        return self

    @property
    def primary(self) -> bool:
        return self.index == 0


PERMISSION_LEVELS = ("none", "user", "start")


class Settings(_Section):
    data_dir: str = DEFAULT_DATA_DIR
    homeserver: HomeserverSection = HomeserverSection()
    appservice: AppserviceSection
    http: HttpSection = HttpSection()
    database: DatabaseSection = DatabaseSection()
    delivery: DeliverySection = DeliverySection()
    escalation: EscalationSection = EscalationSection()
    office_hours: OfficeHoursSection = OfficeHoursSection()
    files: FilesSection = FilesSection()
    workers: WorkersSection = WorkersSection()
    retention: RetentionSection = RetentionSection()
    # Who may do what in chat, by Matrix ID, homeserver, or "*" (the most specific key
    # wins), like the mautrix bridges' permissions: "none" (the bot ignores them),
    # "user" (room commands, answers), "start" (also start cases from chat; a GP must
    # also be in the directory). The directory and allowed_servers still apply.
    permissions: dict[str, str] = {"*": "start"}

    @model_validator(mode="after")
    def _permissions(self) -> Settings:
        for key, level in self.permissions.items():
            if level not in PERMISSION_LEVELS:
                raise ValueError(
                    f"permissions[{key}]: one of {', '.join(PERMISSION_LEVELS)}, not {level}"
                )
        return self

    def permission(self, user_id: str) -> str:
        """The chat permission level of a Matrix user (see ``permissions``)."""
        server = user_id.partition(":")[2]
        for key in (user_id, server, "*"):
            if key in self.permissions:
                return self.permissions[key]
        return "none"

    @model_validator(mode="after")
    def _shared_database(self) -> Settings:
        if self.workers.count > 1 and self.database_url.startswith("sqlite"):
            raise ValueError("workers.count > 1 needs PostgreSQL (database.url)")
        return self

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{(self.data_path / 'wijkbrug.db').resolve()}"

    @property
    def public_url(self) -> str:
        return self.http.public_url or f"http://{self.http.host}:{self.http.port}"

    @property
    def keyring_path(self) -> Path:
        return self.data_path / "keys" / "keyring.json"

    @property
    def crypto_path(self) -> Path:
        return self.data_path / "crypto"

    @property
    def bot_user_id(self) -> str:
        return f"@{self.appservice.bot_localpart}:{self.homeserver.server_name}"

    def secret(self, name: str) -> str:
        """``as_token`` or ``hs_token``, from the inline value or its ``*_path`` file."""
        value = getattr(self.appservice, name)
        if value is not None:
            return str(value)
        path = Path(getattr(self.appservice, f"{name}_path"))
        if not path.is_absolute():
            path = self.data_path / path
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"appservice.{name}_path: cannot read {path}: {exc}") from exc

    def homeserver_admin_token(self) -> str | None:
        """The homeserver admin token for retention purges (None: not configured)."""
        if self.homeserver.admin_token_path is None:
            return None
        path = Path(self.homeserver.admin_token_path)
        if not path.is_absolute():
            path = self.data_path / path
        try:
            return path.read_text().strip() or None
        except OSError as exc:
            raise ConfigError(f"homeserver.admin_token_path: cannot read {path}: {exc}") from exc


def _format_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)


def parse_settings(data: dict[str, Any]) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None


def load_settings(path: Path) -> Settings:
    """Read a config file; relative ``data_dir`` is taken relative to the file."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    _worker_index_from_environment(data)
    data_dir = Path(str(data.get("data_dir", path.parent)))
    if not data_dir.is_absolute():
        data_dir = (path.parent / data_dir).resolve()
    data["data_dir"] = str(data_dir)
    return parse_settings(data)


WORKER_INDEX_ENV = "WIJKBRUG_WORKER_INDEX"


def _worker_index_from_environment(data: dict[str, Any]) -> None:
    """``$WIJKBRUG_WORKER_INDEX`` sets ``workers.index``: the replicas of one deployment
    (a Kubernetes StatefulSet, two compose services) share one config file and differ in
    this number only."""
    raw = os.environ.get(WORKER_INDEX_ENV)
    if raw is None:
        return
    if not raw.strip().isdigit():
        raise ConfigError(f"${WORKER_INDEX_ENV}: expected a whole number, got {raw[:20]!r}")
    workers = data.get("workers")
    if workers is None:
        workers = data["workers"] = {}
    if not isinstance(workers, dict):
        raise ConfigError("workers: expected a mapping")
    workers["index"] = int(raw)


def _write_secret(path: Path) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(32))


def generate_config(
    data_dir: Path,
    *,
    homeserver_url: str = "http://127.0.0.1:8008",
    server_name: str = "localhost",
    port: int = 8080,
    database_url: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``DIR/config.yaml`` and fresh token files; an existing config is kept unless
    ``overwrite`` (the tokens are always kept: they live in their own files)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in ("as_token", "hs_token"):
        _write_secret(data_dir / "secrets" / name)
    path = data_dir / "config.yaml"
    if path.exists() and not overwrite:
        return path
    doc: dict[str, Any] = {
        "homeserver": {"url": homeserver_url, "server_name": server_name},
        "appservice": {
            "as_token_path": "secrets/as_token",
            "hs_token_path": "secrets/hs_token",
        },
        "http": {"host": "127.0.0.1", "port": port},
        "database": {"url": database_url},
    }
    path.write_text(
        "# Wijkbrug configuration. Secrets live in the files named by *_path;\n"
        "# encryption keys in keys/keyring.json or $WIJKBRUG_KEYRING, never here.\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )
    return path


def settings_for_data_dir(data_dir: Path) -> Settings:
    """The settings of a data directory (its config.yaml, generated if absent)."""
    return load_settings(generate_config(data_dir))


def registration(settings: Settings) -> dict[str, Any]:
    """The appservice registration the homeserver loads (``app_service_config_files``)."""
    server = settings.homeserver.server_name.replace(".", r"\.")
    prefix = settings.appservice.ghost_prefix
    return {
        "id": settings.appservice.id,
        "url": settings.public_url,
        "as_token": settings.secret("as_token"),
        "hs_token": settings.secret("hs_token"),
        "sender_localpart": settings.appservice.sender_localpart,
        "rate_limited": False,
        # Read receipts reach us as ephemeral events: they acknowledge urgent messages.
        "receive_ephemeral": True,
        "namespaces": {
            "users": [
                {"exclusive": True, "regex": f"@{settings.appservice.bot_localpart}:{server}"},
                {"exclusive": True, "regex": f"@{prefix}.*:{server}"},
            ],
            "aliases": [{"exclusive": True, "regex": f"#{prefix}.*:{server}"}],
            "rooms": [],
        },
    }


def write_registration(settings: Settings, path: Path | None = None) -> Path:
    target = path or settings.data_path / "registration.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(yaml.safe_dump(registration(settings), sort_keys=False))
    return target


def policy_module(settings: Settings) -> dict[str, Any]:
    """The homeserver's ``modules:`` entry for :mod:`bridge.synapse_policy`: only the
    bridge's users and registered care workers enter case rooms (asked of this bridge)."""
    appservice = settings.appservice
    server = re.escape(settings.homeserver.server_name)
    config: dict[str, Any] = {
        "bridge_url": settings.public_url,
        "bot_user_id": settings.bot_user_id,
        # The ghosts of the registration's user namespace (see registration()).
        "namespace_regex": f"@{re.escape(appservice.ghost_prefix)}.*:{server}",
        "cache_seconds": 30,
    }
    if settings.homeserver.allowed_servers is not None:
        config["allowed_servers"] = list(settings.homeserver.allowed_servers)
    if appservice.hs_token_path is not None:
        path = Path(appservice.hs_token_path)
        if not path.is_absolute():
            path = settings.data_path / path
        config["hs_token_path"] = str(path.resolve())
    else:
        config["hs_token"] = settings.secret("hs_token")
    return {"module": "bridge.synapse_policy.WijkbrugPolicy", "config": config}
