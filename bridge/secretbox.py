"""Encryption at rest: AES-256-GCM envelopes bound to the row they live in.

    plaintext --AESGCM(key[kid], nonce, aad="table:column:row")--> {"v","kid","alg","n","ct"}

The envelope names its key id and algorithm so that keys can rotate: old rows stay
readable while new rows use the current key. The associated data binds a ciphertext to
its row, so copying one row's ciphertext into another fails to decrypt.

Keys come from a key file (created on first use, mode 0600) or from the
``WIJKBRUG_KEYRING`` environment variable, never from the config YAML. The same keyring
holds a separate key for keyed hashes (``index``), used to find a case by BSN without
storing the BSN.

Rotation (``wijkbrug keys rotate``, see :mod:`bridge.rekey`)::

    add_current_key(file)    new kid becomes current, old kids stay for reading
    re-encrypt every row     (bridge.rekey, in batches)
    retire_keys(file, kids)  drop kids no envelope uses any more

A running bridge notices the rewritten file (its inode and mtime change) before its next
seal and before giving up on an envelope with an unknown kid, so it writes under the new
key and reads what the rotation re-encrypted without a restart. The ``index`` key never
rotates: patient pseudonyms, the audit trail's patient column, the crypto stores' pickle
keys and the admin session secret are all derived from it.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ALGORITHM = "A256GCM"
ENV_VAR = "WIJKBRUG_KEYRING"

log = logging.getLogger(__name__)


class SecretBoxError(Exception):
    """A ciphertext that cannot be opened: wrong row, unknown key, or tampered."""


class KeyringError(SecretBoxError):
    """A keyring change that cannot be made (the message says what to do instead)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def envelope_kid(envelope: str) -> str | None:
    """The key id an envelope names (None: not an envelope)."""
    try:
        kid = json.loads(envelope)["kid"]
    except (ValueError, KeyError, TypeError):
        return None
    return kid if isinstance(kid, str) else None


def _new_kid(taken: Iterable[str] = ()) -> str:
    used = set(taken)
    while (kid := "k" + secrets.token_hex(4)) in used:
        pass
    return kid


@dataclass(frozen=True)
class Keyring:
    """Data keys by id (one of them current) and the index key for keyed hashes.

    ``path`` is the file it was read from (None: generated, or from ``$WIJKBRUG_KEYRING``);
    a :class:`SecretBox` over a file's keyring follows changes to that file."""

    current: str
    keys: dict[str, bytes]
    index_key: bytes
    path: Path | None = field(default=None, compare=False, repr=False)

    @classmethod
    def generate(cls) -> Keyring:
        kid = _new_kid()
        return cls(current=kid, keys={kid: AESGCM.generate_key(256)}, index_key=os.urandom(32))

    def with_new_key(self) -> Keyring:
        """This keyring with a fresh current key; the old keys stay, for reading. The
        index key is kept as it is: patient pseudonyms (and everything else derived from
        it) must not change."""
        kid = _new_kid(self.keys)
        return replace(self, current=kid, keys={**self.keys, kid: AESGCM.generate_key(256)})

    def without(self, kids: Iterable[str]) -> Keyring:
        """This keyring without ``kids`` (never the current key)."""
        drop = set(kids)
        if self.current in drop:
            raise KeyringError(f"key {self.current} is the current key and cannot be retired")
        return replace(self, keys={k: v for k, v in self.keys.items() if k not in drop})

    def save(self, path: Path) -> None:
        """Write to ``path`` atomically (a temporary file, fsync, rename) with mode 0600:
        a crash leaves either the old or the new keyring, never half of one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(self.to_json())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a power cut
        finally:
            os.close(dir_fd)

    @classmethod
    def load(cls, path: Path) -> Keyring:
        """The keyring in ``path`` (which must exist)."""
        return replace(cls.from_json(path.read_text()), path=path)

    def to_json(self) -> str:
        return json.dumps(
            {
                "current": self.current,
                "keys": {kid: _b64(k) for kid, k in self.keys.items()},
                "index": _b64(self.index_key),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Keyring:
        data = json.loads(text)
        keys = {kid: _unb64(k) for kid, k in data["keys"].items()}
        if data["current"] not in keys or any(len(k) != 32 for k in keys.values()):
            raise SecretBoxError("keyring: current key missing or a key is not 256 bits")
        return cls(current=data["current"], keys=keys, index_key=_unb64(data["index"]))

    @classmethod
    def load_or_create(cls, path: Path) -> Keyring:
        """The keyring from ``$WIJKBRUG_KEYRING`` or ``path``; creates ``path`` if neither."""
        if env := os.environ.get(ENV_VAR):
            return cls.from_json(env)
        if path.exists():
            return cls.load(path)
        ring = replace(cls.generate(), path=path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(ring.to_json())
        return ring


def keyring_in_environment() -> bool:
    """Whether keys come from ``$WIJKBRUG_KEYRING`` (which wins over the file)."""
    return bool(os.environ.get(ENV_VAR))


ROTATE_BY_HAND = (
    "run `wijkbrug keys rotate --print-keyring`, put its output in the variable (for the "
    "bridge and for this command), restart the bridge, then run "
    "`wijkbrug keys rotate --no-new-key` to re-encrypt"
)
RETIRE_BY_HAND = "run `wijkbrug keys retire --print-keyring` and put its output in the variable"


def require_file_keyring(instead: str) -> None:
    """Refuse to change the keyring when it comes from ``$WIJKBRUG_KEYRING``: wijkbrug
    cannot rewrite a variable; ``instead`` tells the operator what to do."""
    if keyring_in_environment():
        raise KeyringError(
            f"the keyring comes from ${ENV_VAR}, which wijkbrug cannot rewrite; {instead}"
        )


@contextmanager
def _keyring_lock(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the keyring file between wijkbrug processes, so two
    rotations at once cannot lose a key that rows were already sealed with."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _load_existing(path: Path) -> Keyring:
    if not path.exists():
        raise KeyringError(f"no keyring at {path}")
    return Keyring.load(path)


def add_current_key(path: Path) -> Keyring:
    """Add a fresh current key to the keyring file at ``path`` and return the new keyring.

    Old keys stay (rows sealed with them still open); the index key does not change, since
    patient pseudonyms depend on it. Refused when the keyring comes from
    ``$WIJKBRUG_KEYRING``: print one with :meth:`Keyring.with_new_key` and let the operator
    put it where the variable comes from."""
    require_file_keyring(ROTATE_BY_HAND)
    with _keyring_lock(path):
        ring = _load_existing(path).with_new_key()
        ring.save(path)
    log.info("keyring %s: new current key %s", path, ring.current)
    return ring


def retire_keys(path: Path, kids: Iterable[str]) -> Keyring:
    """Remove ``kids`` from the keyring file at ``path`` (the caller has checked that no
    envelope uses them any more) and return the new keyring."""
    require_file_keyring(RETIRE_BY_HAND)
    kids = set(kids)
    with _keyring_lock(path):
        ring = _load_existing(path).without(kids)
        ring.save(path)
    log.info("keyring %s: retired %s", path, ", ".join(sorted(kids)) or "nothing")
    return ring


def _file_state(path: Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class SecretBox:
    """Seal and open row-bound envelopes; compute keyed hashes for lookups."""

    def __init__(self, keyring: Keyring) -> None:
        self._ring = keyring
        self._seen = _file_state(keyring.path)

    @property
    def keyring(self) -> Keyring:
        self._follow_file()
        return self._ring

    @property
    def current(self) -> str:
        """The key id new envelopes are sealed with."""
        return self.keyring.current

    def _follow_file(self) -> None:
        """Take up the keyring file if `wijkbrug keys` rewrote it since we read it."""
        path = self._ring.path
        state = _file_state(path)
        if path is None or state is None or state == self._seen:
            return
        self._seen = state  # a bad file is reported once, not at every seal
        try:
            ring = Keyring.load(path)
        except (OSError, ValueError, KeyError, TypeError, SecretBoxError) as exc:
            log.error(
                "keyring %s unreadable (%s); keeping the keys in memory", path, type(exc).__name__
            )
            return
        if not hmac.compare_digest(ring.index_key, self._ring.index_key):
            log.error("keyring %s has another index key; keeping the keys in memory", path)
            return
        if ring.current != self._ring.current or ring.keys.keys() != self._ring.keys.keys():
            log.info("keyring %s changed: current key %s", path, ring.current)
        self._ring = ring

    def seal(self, plaintext: bytes, aad: str) -> str:
        ring = self.keyring
        kid = ring.current
        nonce = os.urandom(12)
        ct = AESGCM(ring.keys[kid]).encrypt(nonce, plaintext, aad.encode())
        env = {"v": 1, "kid": kid, "alg": ALGORITHM, "n": _b64(nonce), "ct": _b64(ct)}
        return json.dumps(env, separators=(",", ":"))

    def open(self, envelope: str, aad: str) -> bytes:
        try:
            env = json.loads(envelope)
            if env["kid"] not in self._ring.keys:
                self._follow_file()  # perhaps rotated by `wijkbrug keys rotate` meanwhile
            key = self._ring.keys[env["kid"]]
            if env["alg"] != ALGORITHM:
                raise SecretBoxError(f"unsupported algorithm {env['alg']}")
            return AESGCM(key).decrypt(_unb64(env["n"]), _unb64(env["ct"]), aad.encode())
        except SecretBoxError:
            raise
        except Exception as exc:  # InvalidTag, KeyError, bad JSON: all mean "cannot open"
            raise SecretBoxError(f"cannot open envelope ({type(exc).__name__})") from exc

    def seal_json(self, value: Any, aad: str) -> str:
        return self.seal(json.dumps(value, separators=(",", ":")).encode(), aad)

    def open_json(self, envelope: str, aad: str) -> Any:
        return json.loads(self.open(envelope, aad))

    def keyed_hash(self, purpose: str, value: str) -> str:
        """HMAC-SHA256 of ``value`` under the index key, separated per purpose."""
        msg = f"{purpose}\x00{value}".encode()
        return hmac.new(self._ring.index_key, msg, hashlib.sha256).hexdigest()

    def derive(self, purpose: str) -> str:
        """A stable secret derived from the index key (e.g. a crypto-store pickle key)."""
        return self.keyed_hash("derive", purpose)
