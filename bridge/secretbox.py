"""Encryption at rest: AES-256-GCM envelopes bound to the row they live in.

    plaintext --AESGCM(key[kid], nonce, aad="table:column:row")--> {"v","kid","alg","n","ct"}

The envelope names its key id and algorithm so that keys can rotate: old rows stay
readable while new rows use the current key. The associated data binds a ciphertext to
its row, so copying one row's ciphertext into another fails to decrypt.

Keys come from a key file (created on first use, mode 0600) or from the
``WIJKBRUG_KEYRING`` environment variable, never from the config YAML. The same keyring
holds a separate key for keyed hashes (``index``), used to find a case by BSN without
storing the BSN.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ALGORITHM = "A256GCM"
ENV_VAR = "WIJKBRUG_KEYRING"


class SecretBoxError(Exception):
    """A ciphertext that cannot be opened: wrong row, unknown key, or tampered."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Keyring:
    """Data keys by id (one of them current) and the index key for keyed hashes."""

    current: str
    keys: dict[str, bytes]
    index_key: bytes

    @classmethod
    def generate(cls) -> Keyring:
        kid = "k" + secrets.token_hex(4)
        return cls(current=kid, keys={kid: AESGCM.generate_key(256)}, index_key=os.urandom(32))

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
            return cls.from_json(path.read_text())
        ring = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(ring.to_json())
        return ring


class SecretBox:
    """Seal and open row-bound envelopes; compute keyed hashes for lookups."""

    def __init__(self, keyring: Keyring) -> None:
        self._ring = keyring

    def seal(self, plaintext: bytes, aad: str) -> str:
        kid = self._ring.current
        nonce = os.urandom(12)
        ct = AESGCM(self._ring.keys[kid]).encrypt(nonce, plaintext, aad.encode())
        env = {"v": 1, "kid": kid, "alg": ALGORITHM, "n": _b64(nonce), "ct": _b64(ct)}
        return json.dumps(env, separators=(",", ":"))

    def open(self, envelope: str, aad: str) -> bytes:
        try:
            env = json.loads(envelope)
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
