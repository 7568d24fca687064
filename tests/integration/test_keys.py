"""Key rotation on SQLite and PostgreSQL: `wijkbrug keys rotate` re-encrypts every sealed
column under a new key (in batches, so an interruption leaves everything readable), rows
stay bound to their row, and old keys are retired only when nothing uses them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections import Counter
from dataclasses import replace
from pathlib import Path
from uuid import uuid4

import pytest
from sqlalchemy import text

from bridge import files
from bridge.audit import Access
from bridge.canonical import CareType
from bridge.config import generate_config, load_settings
from bridge.rekey import (
    SEALED,
    key_usage,
    reencrypt,
    retire,
    rotate_keyring,
    unlisted_columns,
)
from bridge.runtime import open_store
from bridge.secretbox import ENV_VAR, Keyring, KeyringError, SecretBox, SecretBoxError
from bridge.store import Store
from tests.support.bridge import WIJKBRUG
from tests.support.examples import BSN, message, region, render

pytestmark = pytest.mark.integration

HIS = Access("client:1 his-test", "01234567", "10.0.0.7")
GHOST = "@wijkbrug_01234567_jansen:localhost"
PUSH_TOKEN = "push-secret-of-the-his"
GHOST_TOKEN = "syt_ghost_access_token"

# Written out by hand (not taken from bridge.rekey) so the check does not trust the code
# under test to say where the envelopes are.
RAW = {
    "communications.resource_enc": "SELECT resource_enc FROM communications",
    "communications.message_enc": "SELECT message_enc FROM communications",
    "inbound_events.event_enc": "SELECT event_enc FROM inbound_events",
    "ghosts.access_token_enc": "SELECT access_token_enc FROM ghosts",
    "clients.push_token_enc": "SELECT push_token_enc FROM clients",
    "attachments.title_enc": "SELECT title_enc FROM attachments",
    "attachments.data_enc": "SELECT data_enc FROM attachments",
}
PHOTO = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


class Interrupted(Exception):
    """Stands for a crash or Ctrl-C between two batches."""


@pytest.fixture
def keyring_path(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The store's keyring in a file, as `open_store` has it (the store follows the file)."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    path = tmp_path / "keys" / "keyring.json"
    store.box.keyring.save(path)
    store.box = SecretBox(Keyring.load(path))
    return path


def traffic(store: Store, messages: int = 3) -> list[str]:
    """Rows in every table with sealed columns; returns the communication ids."""
    region(store)
    store.add_client(
        "01234567", "his-push", push_url="https://his.example/fhir", push_token=PUSH_TOKEN
    )
    practice = store.find_org("01234567")
    decision = store.decide(CareType.WONDZORG, "1092AB")
    photo = replace(files.attachment("wond.png", PHOTO, "image/png"), id=str(uuid4()))
    ids = [
        store.accept_message(
            practice,
            replace(
                message(f"msg-{i}", text_=f"Wondcontrole {i}"),
                attachments=(photo,) if i == 0 else (),
            ),
            decision,
            render,
            HIS,
        )[0].id
        for i in range(messages)
    ]
    event = {
        "event_id": "$reply1",
        "room_id": "!case:localhost",
        "sender": "@nurse1:localhost",
        "type": "m.room.message",
        "content": {"body": "Ik ga er vanmiddag langs"},
    }
    assert store.store_transaction("txn-1", [event])
    store.save_ghost(GHOST, "A. Jansen", "GHOSTDEV", GHOST_TOKEN)
    return ids


def raw_kids(store: Store) -> dict[str, Counter[str]]:
    """Key ids of every stored envelope, read with plain SQL."""
    kids: dict[str, Counter[str]] = {}
    with store.session() as s:
        for column, sql in RAW.items():
            values = [v for (v,) in s.execute(text(sql)) if v is not None]
            kids[column] = Counter(json.loads(v)["kid"] for v in values)
    return kids


def all_kids(store: Store) -> set[str]:
    return {kid for counts in raw_kids(store).values() for kid in counts}


def read_everything(store: Store, ids: list[str]) -> None:
    """Open every sealed value through the store's own read paths."""
    practice = store.find_org("01234567")
    for comm_id in ids:
        stored = store.get_communication(comm_id, practice)
        assert stored is not None and stored.resource["id"] == comm_id
    page, total = store.search_communications(practice)
    assert total == len(ids) and {c.id for c in page} == set(ids)
    assert store.ghost(GHOST) == ("GHOSTDEV", GHOST_TOKEN)
    (event,) = store.due_events()
    assert event.event["content"]["body"] == "Ik ga er vanmiddag langs"
    (work,) = store.claim_outbox(lease=0)  # the case's first message; the rest wait for it
    assert work.message is not None and work.message.text == "Wondcontrole 0"
    with store.session() as s:
        ((client_id, sealed),) = s.execute(
            text("SELECT id, push_token_enc FROM clients WHERE push_token_enc IS NOT NULL")
        )
    assert store.box.open(sealed, f"clients:push_token:{client_id}").decode() == PUSH_TOKEN


def test_every_sealed_column_is_known_to_the_rotation() -> None:
    assert unlisted_columns() == []
    assert {c.key for c in SEALED} == set(RAW)


def test_rotate_reencrypts_every_envelope_under_the_new_key(
    store: Store, keyring_path: Path
) -> None:
    ids = traffic(store)
    old = store.box.current
    pseudonym = store.box.keyed_hash("patient", BSN)
    before = raw_kids(store)
    assert all(counts == Counter({old: sum(counts.values())}) for counts in before.values())
    assert all(before.values()), "every sealed column needs a row, or the check is empty"

    ring = rotate_keyring(store, keyring_path)
    assert ring.current != old and set(ring.keys) == {old, ring.current}
    reports = reencrypt(store, batch_size=2)
    assert [e.action for e in store.audit_entries()][-2:] == ["keys.rotate", "keys.reencrypt"]

    after = raw_kids(store)
    assert after == {
        column: Counter({ring.current: sum(n.values())}) for column, n in before.items()
    }
    by_table = {r.table: r for r in reports}
    assert by_table["communications"].rows == 3
    assert by_table["communications"].reencrypted == 6
    assert all(not r.unreadable and not r.changed_meanwhile for r in reports)
    read_everything(store, ids)
    # A restarted bridge (a fresh keyring read from the file) reads it all too.
    read_everything(Store(store.engine, SecretBox(Keyring.load(keyring_path))), ids)
    # The index key did not rotate: the patient's pseudonym (and so her audit log) holds.
    assert store.box.keyed_hash("patient", BSN) == pseudonym
    hers = [e.action for e in store.audit_entries(patient=pseudonym)]
    assert hers[:3] == ["message.create"] * 3 and "message.read" in hers
    assert store.verify_audit() == []

    again = reencrypt(store)  # nothing left to do
    assert sum(r.reencrypted for r in again) == 0
    assert sum(r.current for r in again) == sum(sum(n.values()) for n in after.values())


def test_envelope_swapped_between_rows_still_fails_to_open(
    store: Store, keyring_path: Path
) -> None:
    first, second, third = traffic(store)
    rotate_keyring(store, keyring_path)
    reencrypt(store)
    swap = (
        "UPDATE communications SET resource_enc = "
        "(SELECT resource_enc FROM communications WHERE id = :other) WHERE id = :id"
    )
    with store.session() as s:
        s.execute(text(swap), {"id": first, "other": second})
    practice = store.find_org("01234567")
    with pytest.raises(SecretBoxError):
        store.get_communication(first, practice)
    assert store.get_communication(second, practice) is not None
    assert store.get_communication(third, practice) is not None


def test_rotation_does_not_launder_a_row_moved_before_it(store: Store, keyring_path: Path) -> None:
    """An envelope copied into another row before the rotation is not re-bound to that row:
    it does not open there, stays under its old key, and keeps that key from retiring."""
    first, second, _ = traffic(store)
    old = store.box.current
    with store.session() as s:
        s.execute(
            text(
                "UPDATE communications SET resource_enc = "
                "(SELECT resource_enc FROM communications WHERE id = :other) WHERE id = :id"
            ),
            {"id": first, "other": second},
        )
    rotate_keyring(store, keyring_path)
    (comms, *_) = reencrypt(store)
    assert comms.table == "communications" and comms.unreadable == [first]
    assert raw_kids(store)["communications.resource_enc"][old] == 1
    with pytest.raises(SecretBoxError):
        store.get_communication(first, store.find_org("01234567"))
    with pytest.raises(KeyringError, match=f"{old} \\(1 value"):
        retire(store, keyring_path)


def test_retire_refuses_while_old_rows_exist_and_succeeds_after(
    store: Store, keyring_path: Path
) -> None:
    ids = traffic(store)
    old = store.box.current
    ring = rotate_keyring(store, keyring_path)
    with pytest.raises(KeyringError, match="still in use") as refused:
        retire(store, keyring_path)
    assert old in str(refused.value)
    assert set(Keyring.load(keyring_path).keys) == {old, ring.current}  # nothing removed
    read_everything(store, ids)

    reencrypt(store)
    assert retire(store, keyring_path) == {old}
    on_disk = Keyring.load(keyring_path)
    assert set(on_disk.keys) == {ring.current} and on_disk.current == ring.current
    assert stat.S_IMODE(keyring_path.stat().st_mode) == 0o600
    read_everything(Store(store.engine, SecretBox(on_disk)), ids)
    assert retire(store, keyring_path) == set()  # nothing old left
    assert "keys.retire" in [e.action for e in store.audit_entries()]
    with pytest.raises(KeyringError, match="current key"):
        on_disk.without([ring.current])


def test_keyring_file_stays_private_and_is_replaced_whole(store: Store, keyring_path: Path) -> None:
    before = Keyring.load(keyring_path)
    old_umask = os.umask(0)  # a careless umask must not make the new file readable
    try:
        ring = rotate_keyring(store, keyring_path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(keyring_path.stat().st_mode) == 0o600
    on_disk = Keyring.load(keyring_path)
    assert on_disk == ring
    assert on_disk.index_key == before.index_key  # pseudonyms depend on it
    assert {kid: on_disk.keys[kid] for kid in before.keys} == before.keys
    leftovers = {p.name for p in keyring_path.parent.iterdir()}
    assert leftovers <= {"keyring.json", "keyring.json.lock"}


def test_interrupted_rotation_leaves_everything_readable(store: Store, keyring_path: Path) -> None:
    ids = traffic(store, messages=5)
    old = store.box.current
    ring = rotate_keyring(store, keyring_path)

    batches: list[int] = []

    def crash_after_first_batch(rows: int) -> None:
        batches.append(rows)
        raise Interrupted

    with pytest.raises(Interrupted):
        reencrypt(store, batch_size=2, progress=crash_after_first_batch)
    assert batches == [2]
    resources = raw_kids(store)["communications.resource_enc"]
    assert resources == Counter({ring.current: 2, old: 3})  # half done, committed
    read_everything(store, ids)
    restarted = Store(store.engine, SecretBox(Keyring.load(keyring_path)))
    read_everything(restarted, ids)

    # A crash inside a batch rolls that batch back: no row of it changes key.
    box = SecretBox(Keyring.load(keyring_path))
    seals = 0
    real_seal = box.seal

    def seal_then_crash(plaintext: bytes, aad: str) -> str:
        nonlocal seals
        seals += 1
        if seals == 3:  # the second row of the batch
            raise Interrupted
        return real_seal(plaintext, aad)

    box.seal = seal_then_crash  # type: ignore[method-assign]
    with store.session() as s:
        first_old = s.scalar(
            text("SELECT min(id) FROM communications WHERE resource_enc LIKE :kid"),
            {"kid": f'%"kid":"{old}"%'},
        )
    with pytest.raises(Interrupted):
        reencrypt(store, box, batch_size=2)
    assert raw_kids(store)["communications.resource_enc"] == Counter({ring.current: 2, old: 3})
    with store.session() as s:
        still = s.scalar(
            text("SELECT resource_enc FROM communications WHERE id = :id"), {"id": first_old}
        )
    assert json.loads(still)["kid"] == old
    read_everything(restarted, ids)

    reports = reencrypt(store, batch_size=2)  # `keys rotate --no-new-key`: finish the job
    assert sum(r.reencrypted for r in reports) == 3 * 2 + 1 + 1 + 1 + 2  # 2: the file
    assert all_kids(store) == {ring.current}
    assert retire(store, keyring_path) == {old}
    read_everything(store, ids)


def test_a_running_bridge_follows_the_rotated_keyring(store: Store, keyring_path: Path) -> None:
    """The bridge read its keyring at start; `keys rotate` runs beside it. It must read
    what was re-encrypted and seal new rows under the new key, so the old key can retire."""
    ids = traffic(store)
    running = Store(store.engine, SecretBox(Keyring.load(keyring_path)))
    ring = rotate_keyring(store, keyring_path)
    reencrypt(store)
    read_everything(running, ids)
    running.save_ghost(GHOST, "A. Jansen", "GHOSTDEV2", "syt_new_token")
    assert raw_kids(store)["ghosts.access_token_enc"] == Counter({ring.current: 1})
    retire(store, keyring_path)
    assert running.ghost(GHOST) == ("GHOSTDEV2", "syt_new_token")


def test_keyring_from_the_environment_is_not_rewritten(
    store: Store, keyring_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    traffic(store)
    monkeypatch.setenv(ENV_VAR, keyring_path.read_text())
    before = keyring_path.read_text()
    with pytest.raises(KeyringError, match="--print-keyring"):
        rotate_keyring(store, keyring_path)
    with pytest.raises(KeyringError, match=ENV_VAR):
        retire(store, keyring_path)
    assert keyring_path.read_text() == before
    assert key_usage(store)["communications.resource_enc"] == Counter({store.box.current: 3})


def test_cli_status_rotate_and_retire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    store = open_store(load_settings(generate_config(data)))
    ids = traffic(store)
    old = store.box.current
    store.engine.dispose()
    keyring = data / "keys" / "keyring.json"

    def wijkbrug(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [WIJKBRUG, "--data-dir", str(data), "keys", *args],
            capture_output=True,
            text=True,
            check=False,
            env={**env, **extra},
        )

    status = wijkbrug("status")
    assert status.returncode == 0, status.stderr
    # 3 x 2 + event + ghost + push + a file's title and contents
    assert f"{old}\tcurrent\t11 value(s)" in status.stdout
    assert "communications.resource_enc\t" + f"{old} 3" in status.stdout

    rotated = wijkbrug("rotate", "--batch-size", "2")
    assert rotated.returncode == 0, rotated.stderr
    new = Keyring.load(keyring).current
    assert new != old and f"new current key {new}" in rotated.stdout
    assert "communications\t3 row(s)\t6 re-encrypted" in rotated.stdout
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o600

    status = wijkbrug("status")
    assert f"{new}\tcurrent\t11 value(s)" in status.stdout
    assert f"{old}\told\t0 value(s)" in status.stdout

    # A key added behind the CLI's back with rows left under the previous one: refused.
    store = open_store(load_settings(data / "config.yaml"))
    rotate_keyring(store, keyring)
    store.engine.dispose()
    refused = wijkbrug("retire")
    assert refused.returncode == 1 and "still in use" in refused.stderr
    assert f"{new} (11 value(s))" in refused.stderr
    assert set(Keyring.load(keyring).keys) >= {old, new}

    finished = wijkbrug("rotate", "--no-new-key", "--retire")
    assert finished.returncode == 0, finished.stderr
    newest = Keyring.load(keyring)
    assert set(newest.keys) == {newest.current}
    assert f"retired {', '.join(sorted({old, new}))}" in finished.stdout
    assert wijkbrug("retire").stdout.strip() == "retired nothing"

    store = open_store(load_settings(data / "config.yaml"))
    read_everything(store, ids)
    actions = [e.action for e in store.audit_entries()]
    assert actions.count("keys.rotate") == 2 and "keys.retire" in actions
    assert store.verify_audit() == []
    store.engine.dispose()


def test_cli_with_the_keyring_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's path when keys come from $WIJKBRUG_KEYRING: wijkbrug prints the
    new keyring, the operator puts it in the variable, then re-encrypts and retires."""
    data = tmp_path / "data"
    monkeypatch.delenv(ENV_VAR, raising=False)
    store = open_store(load_settings(generate_config(data)))
    ids = traffic(store)
    store.engine.dispose()
    keyring = data / "keys" / "keyring.json"
    first = Keyring.load(keyring)
    env = {**os.environ, ENV_VAR: keyring.read_text()}

    def wijkbrug(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [WIJKBRUG, "--data-dir", str(data), "keys", *args],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )

    refused = wijkbrug("rotate")
    assert refused.returncode == 1
    assert ENV_VAR in refused.stderr and "--print-keyring" in refused.stderr
    assert Keyring.load(keyring) == first  # the file was not touched either

    printed = wijkbrug("rotate", "--print-keyring")
    assert printed.returncode == 0, printed.stderr
    second = Keyring.from_json(printed.stdout)
    assert second.current != first.current and second.index_key == first.index_key
    assert second.keys[first.current] == first.keys[first.current]

    env[ENV_VAR] = printed.stdout  # what the operator does (and restarts the bridge)
    done = wijkbrug("rotate", "--no-new-key")
    assert done.returncode == 0, done.stderr
    assert "communications\t3 row(s)\t6 re-encrypted" in done.stdout

    assert wijkbrug("retire").returncode == 1
    trimmed = wijkbrug("retire", "--print-keyring")
    assert trimmed.returncode == 0, trimmed.stderr
    third = Keyring.from_json(trimmed.stdout)
    assert set(third.keys) == {second.current}

    monkeypatch.setenv(ENV_VAR, trimmed.stdout)
    store = open_store(load_settings(data / "config.yaml"))
    read_everything(store, ids)
    assert all_kids(store) == {second.current}
    store.engine.dispose()
