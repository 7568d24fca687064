"""Encryption at rest: envelopes are bound to their row, keys rotate, files are private."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bridge.secretbox import Keyring, SecretBox, SecretBoxError


def test_seal_and_open_round_trip_without_plaintext_in_envelope() -> None:
    box = SecretBox(Keyring.generate())
    env = box.seal(b"BSN 999911120 wondcontrole", "communications:resource:1")
    assert b"999911120" not in env.encode() and "wondcontrole" not in env
    assert json.loads(env)["alg"] == "A256GCM"
    assert box.open(env, "communications:resource:1") == b"BSN 999911120 wondcontrole"


def test_envelope_moved_to_another_row_does_not_open() -> None:
    box = SecretBox(Keyring.generate())
    env = box.seal(b"secret", "communications:resource:1")
    with pytest.raises(SecretBoxError):
        box.open(env, "communications:resource:2")


def test_tampered_envelope_does_not_open() -> None:
    box = SecretBox(Keyring.generate())
    env = json.loads(box.seal(b"secret", "row"))
    env["ct"] = env["ct"][:-2] + ("A" if env["ct"][-2] != "A" else "B") + env["ct"][-1]
    with pytest.raises(SecretBoxError):
        box.open(json.dumps(env), "row")


def test_old_key_still_opens_after_rotation() -> None:
    ring = Keyring.generate()
    old_env = SecretBox(ring).seal(b"old", "row")
    new_ring = Keyring(
        current="k2", keys={**ring.keys, "k2": bytes(range(32))}, index_key=ring.index_key
    )
    box = SecretBox(new_ring)
    assert box.open(old_env, "row") == b"old"
    assert json.loads(box.seal(b"new", "row"))["kid"] == "k2"


def test_keyed_hash_depends_on_key_and_purpose() -> None:
    a, b = SecretBox(Keyring.generate()), SecretBox(Keyring.generate())
    assert a.keyed_hash("patient", "999911120") == a.keyed_hash("patient", "999911120")
    assert a.keyed_hash("patient", "999911120") != b.keyed_hash("patient", "999911120")
    assert a.keyed_hash("patient", "x") != a.keyed_hash("other", "x")


def test_keyring_file_is_created_private_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WIJKBRUG_KEYRING", raising=False)
    path = tmp_path / "keys" / "keyring.json"
    ring = Keyring.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keyring.load_or_create(path) == ring


def test_keyring_from_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ring = Keyring.generate()
    monkeypatch.setenv("WIJKBRUG_KEYRING", ring.to_json())
    assert Keyring.load_or_create(tmp_path / "absent.json") == ring
    assert not (tmp_path / "absent.json").exists()
