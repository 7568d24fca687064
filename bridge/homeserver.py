"""A real Synapse as a child process, for the embedded dev stack and for tests.

::

    write_synapse_config(dir, server_name=..., port=...)
        |  dir/homeserver.yaml      (secrets kept across re-runs)
        |  dir/<server>.signing.key (generated once)
        |  dir/log.config           -> dir/homeserver.log
        v
    Homeserver(config_path, base_url).start()
        |  python -m synapse.app.homeserver -c dir/homeserver.yaml   (cwd = dir,
        |  stdout/stderr -> dir/homeserver.out)
        |  poll GET {base_url}/_matrix/client/versions until 200
        v
    register_user(base_url, shared_secret, localpart, password)
        GET  /_synapse/admin/v1/register -> nonce
        POST /_synapse/admin/v1/register  {nonce, username, password, admin,
                                           mac = HMAC-SHA1(secret, nonce\\0user\\0pw\\0admin)}
        v
    Homeserver.stop(): SIGTERM, then SIGKILL after a grace period

Production runs Synapse on its own (see ``deploy/``); this module is only for a single
Synapse on SQLite bound to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx
import yaml
from signedjson.key import generate_signing_key, write_signing_keys

logger = logging.getLogger(__name__)

CONFIG_NAME = "homeserver.yaml"
LOG_NAME = "homeserver.log"
# Synapse's own stdout/stderr: config errors and tracebacks before logging is set up.
OUTPUT_NAME = "homeserver.out"

# Secrets that must survive a re-run: changing them would invalidate existing access
# tokens (macaroons), consent forms and scripts that hold the shared secret.
_KEPT_SECRETS = ("registration_shared_secret", "macaroon_secret_key", "form_secret")

# Tests create many users, rooms and messages within seconds; Synapse's defaults (e.g.
# 0.2 messages/s, 10 room creations per ~10 minutes) would make them flaky.
_GENEROUS = {"per_second": 1000, "burst_count": 10000}
_RATE_LIMITS: dict[str, Any] = {
    "rc_message": _GENEROUS,
    "rc_registration": _GENEROUS,
    "rc_registration_token_validity": _GENEROUS,
    "rc_login": {"address": _GENEROUS, "account": _GENEROUS, "failed_attempts": _GENEROUS},
    "rc_admin_redaction": _GENEROUS,
    "rc_joins": {"local": _GENEROUS, "remote": _GENEROUS},
    "rc_joins_per_room": _GENEROUS,
    "rc_3pid_validation": _GENEROUS,
    "rc_invites": {"per_room": _GENEROUS, "per_user": _GENEROUS, "per_issuer": _GENEROUS},
    "rc_third_party_invite": _GENEROUS,
    "rc_key_requests": _GENEROUS,
    "rc_media_create": _GENEROUS,
    "rc_presence": {"per_user": _GENEROUS},
    "rc_delayed_event_mgmt": _GENEROUS,
    "rc_room_creation": _GENEROUS,
    "rc_reports": _GENEROUS,
    "rc_user_directory": _GENEROUS,
    "rc_profile": _GENEROUS,
}


class HomeserverError(RuntimeError):
    """Synapse did not start, or an admin call to it failed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _log_config(log_file: Path) -> dict[str, Any]:
    # Synapse adds its LoggingContextFilter itself, which provides %(request)s.
    return {
        "version": 1,
        "formatters": {
            "precise": {
                "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - "
                "%(request)s - %(message)s"
            }
        },
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "precise",
                "filename": str(log_file),
                "encoding": "utf8",
            }
        },
        "loggers": {
            # One line per HTTP request and per SQL statement would drown the useful lines.
            "synapse.access": {"level": "WARNING"},
            "synapse.storage.SQL": {"level": "WARNING"},
        },
        "root": {"level": "INFO", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }


def write_signing_key(path: Path) -> None:
    """Generate a homeserver signing key at ``path`` (mode 0600); an existing key is kept."""
    if path.exists():
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as key_file:
        write_signing_keys(key_file, [generate_signing_key("a_" + secrets.token_hex(2))])


def bridge_settings(
    appservice_files: Sequence[Path | str], modules: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The part of a homeserver config that Wijkbrug needs, for the dev stack and for
    production alike (:mod:`bridge.deployment`): the appservice registration files, the
    modules (the policy module), and the MSC flags for an appservice doing its own E2EE."""
    return {
        "app_service_config_files": [str(p) for p in appservice_files],
        "modules": [dict(m) for m in modules],
        # Needed by an appservice that does its own E2EE (the bridge's bot device): to-device
        # messages (MSC2409) and device-list changes / one-time-key counts (MSC3202) in AS
        # transactions. Inert unless a registration opts in (org.matrix.msc3202 etc.).
        "experimental_features": {
            "msc2409_to_device_messages_enabled": True,
            "msc3202_transaction_extensions": True,
        },
    }


def write_synapse_config(
    directory: Path,
    *,
    server_name: str,
    port: int,
    public_baseurl: str | None = None,
    appservice_files: Sequence[Path] = (),
    registration_shared_secret: str | None = None,
    modules: Sequence[dict[str, Any]] = (),
) -> Path:
    """Write ``directory/homeserver.yaml`` (and signing key, log config); return its path.

    ``modules`` are Synapse modules (``{"module": ..., "config": ...}``), e.g.
    :func:`bridge.config.policy_module`.

    Re-running rewrites the file with the new arguments but keeps the existing secrets
    and signing key, so access tokens and the database stay valid.
    """
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / CONFIG_NAME

    old: dict[str, Any] = {}
    if config_path.exists():
        loaded = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            old = loaded
    kept = {key: old.get(key) or secrets.token_urlsafe(32) for key in _KEPT_SECRETS}
    if registration_shared_secret is not None:
        kept["registration_shared_secret"] = registration_shared_secret

    signing_key_path = directory / f"{server_name}.signing.key"
    write_signing_key(signing_key_path)

    log_config_path = directory / "log.config"
    log_config_path.write_text(
        yaml.safe_dump(_log_config(directory / LOG_NAME), sort_keys=False), encoding="utf-8"
    )

    config: dict[str, Any] = {
        "server_name": server_name,
        "public_baseurl": public_baseurl or f"http://127.0.0.1:{port}/",
        "report_stats": False,
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                # "client" also serves /_synapse/admin (register_user); "keys" serves the
                # server's public key document, which names the server (register_user).
                "resources": [{"names": ["client", "keys"], "compress": False}],
            }
        ],
        "database": {
            "name": "sqlite3",
            "args": {"database": str(directory / "homeserver.db")},
        },
        "log_config": str(log_config_path),
        "media_store_path": str(directory / "media_store"),
        "signing_key_path": str(signing_key_path),
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "enable_registration": False,
        "url_preview_enabled": False,
        "enable_metrics": False,
        "presence": {"enabled": False},
        **bridge_settings([Path(p).resolve() for p in appservice_files], modules),
        **kept,
        **_RATE_LIMITS,
    }
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    config_path.chmod(0o600)  # holds the shared secret
    logger.info("wrote Synapse config %s for %s on port %d", config_path, server_name, port)
    return config_path


def registration_shared_secret(config_path: Path) -> str:
    """The ``registration_shared_secret`` of a config written by :func:`write_synapse_config`."""
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    secret = config.get("registration_shared_secret") if isinstance(config, dict) else None
    if not isinstance(secret, str) or not secret:
        raise HomeserverError(f"{config_path} has no registration_shared_secret")
    return secret


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Homeserver:
    """One Synapse child process, started from a config written by write_synapse_config."""

    def __init__(self, config_path: Path, base_url: str) -> None:
        self.config_path = config_path.resolve()
        self.base_url = base_url.rstrip("/")
        self.directory = self.config_path.parent
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60) -> None:
        """Launch Synapse and return once the client API answers; raise HomeserverError."""
        if self.running:
            return
        self._output = (self.directory / OUTPUT_NAME).open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )
        logger.info("started Synapse pid %d for %s", self._process.pid, self.base_url)
        deadline = time.monotonic() + timeout
        url = f"{self.base_url}/_matrix/client/versions"
        with httpx.Client(timeout=2) as http:
            while True:
                if self._process.poll() is not None:
                    code = self._process.returncode
                    self._close_output()
                    raise HomeserverError(f"Synapse exited with {code}\n{self._logs()}")
                with contextlib.suppress(httpx.TransportError):
                    if http.get(url).status_code == 200:
                        logger.info("Synapse answers on %s", self.base_url)
                        return
                if time.monotonic() > deadline:
                    self.stop()
                    raise HomeserverError(
                        f"Synapse did not answer on {url} within {timeout:.0f}s\n{self._logs()}"
                    )
                time.sleep(0.1)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL if Synapse has not exited after ``timeout`` seconds."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("Synapse pid %d ignored SIGTERM; killing it", process.pid)
                process.kill()
                process.wait()
            logger.info("stopped Synapse pid %d", process.pid)
        self._process = None
        self._close_output()

    def _close_output(self) -> None:
        if self._output is not None:
            self._output.close()
            self._output = None

    def _logs(self) -> str:
        parts = []
        for name in (OUTPUT_NAME, LOG_NAME):
            tail = _tail(self.directory / name)
            if tail:
                parts.append(f"--- last lines of {self.directory / name} ---\n{tail}")
        return "\n".join(parts) or "(no Synapse output)"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def register_user(
    base_url: str,
    shared_secret: str,
    localpart: str,
    password: str,
    *,
    admin: bool = False,
    displayname: str | None = None,
) -> str:
    """Create a user with the shared-secret admin API; return its user id.

    An existing user is fine (its password and admin flag are left as they are).
    """
    url = f"{base_url.rstrip('/')}/_synapse/admin/v1/register"
    with httpx.Client(timeout=30) as http:
        nonce_response = http.get(url)
        if nonce_response.status_code != 200:
            raise HomeserverError(f"GET {url}: {nonce_response.status_code}")
        nonce: str = nonce_response.json()["nonce"]
        mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode()]))
        mac.update(b"\x00admin" if admin else b"\x00notadmin")
        body: dict[str, Any] = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        if displayname is not None:
            body["displayname"] = displayname
        response = http.post(url, json=body)
        if response.status_code == 200:
            user_id: str = response.json()["user_id"]
            logger.info("registered %s", user_id)
            return user_id
        error = response.json() if response.content else {}
        if error.get("errcode") == "M_USER_IN_USE":
            return _existing_user_id(http, base_url, localpart)
        # The error body names the problem (bad mac, invalid username); it holds no secret.
        raise HomeserverError(f"registering {localpart!r} failed: {response.status_code} {error}")


def _existing_user_id(http: httpx.Client, base_url: str, localpart: str) -> str:
    # The M_USER_IN_USE error does not name the server; its public key document does
    # (served by the "keys" listener resource), and needs no credentials.
    response = http.get(f"{base_url.rstrip('/')}/_matrix/key/v2/server")
    if response.status_code != 200:
        raise HomeserverError(f"cannot tell the server name of {base_url}: {response.status_code}")
    return f"@{localpart}:{response.json()['server_name']}"
