"""The JS test client's encrypted attachments, on a real Synapse with no Wijkbrug involved.

Two matrix-js-sdk clients in an E2EE room: alice sends a wound photo and a PDF as the spec's
encrypted attachments (matrix-encrypt-attachment, as Element Web), bob receives the events,
downloads the ciphertext through the authenticated media API and decrypts it.
"""

from __future__ import annotations

import base64
import hashlib
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.jsclient import Event, JsClient, JsClientError
from tests.support.synapse import SynapseInstance

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# 40 KB that look like a PNG: no compressible pattern, so the ciphertext reveals nothing.
PHOTO = PNG_SIGNATURE + random.Random(20240501).randbytes(40 * 1024 - len(PNG_SIGNATURE))
PDF = (
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
    b"trailer << /Root 1 0 R >>\n%%EOF\n"
)


@pytest.fixture
async def alice_and_bob(synapse: SynapseInstance) -> AsyncIterator[tuple[JsClient, JsClient]]:
    suffix = uuid.uuid4().hex[:8]
    alice_id = synapse.register(f"alice_{suffix}", PASSWORD)
    bob_id = synapse.register(f"bob_{suffix}", PASSWORD)
    alice = await JsClient.start(synapse.base_url, alice_id, PASSWORD, auto_join=False)
    try:
        bob = await JsClient.start(synapse.base_url, bob_id, PASSWORD, auto_join=True)
        try:
            yield alice, bob
        finally:
            await bob.close()
    finally:
        await alice.close()


async def _encrypted_room(alice: JsClient, bob: JsClient) -> str:
    created = await alice.command(
        {"cmd": "create_room", "invite": [bob.user_id], "encrypted": True, "name": "Casus 7"}
    )
    room_id = str(created["roomId"])
    await bob.wait_for("joined", lambda e: e.get("roomId") == room_id)
    return room_id


def _unpadded_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _assert_encrypted_attachment(
    message: Event, msgtype: str, name: str, mimetype: str, data: bytes
) -> dict[str, Any]:
    assert message["encrypted"] is True
    assert message["type"] == "m.room.message"
    content = message["content"]
    assert content["msgtype"] == msgtype
    assert content["body"] == name
    assert content["info"] == {"mimetype": mimetype, "size": len(data)}
    assert "url" not in content  # an encrypted attachment has only file.url
    file: dict[str, Any] = content["file"]
    assert file["url"].startswith("mxc://")
    assert file["v"] == "v2"
    assert file["key"]["kty"] == "oct"
    assert file["key"]["alg"] == "A256CTR"
    assert set(file["key"]["key_ops"]) >= {"encrypt", "decrypt"}
    assert file["key"]["ext"] is True
    assert len(base64.b64decode(file["iv"] + "==")) == 16
    assert file["hashes"]["sha256"]
    return file


async def test_encrypted_image_and_pdf_round_trip(
    alice_and_bob: tuple[JsClient, JsClient],
) -> None:
    alice, bob = alice_and_bob
    room_id = await _encrypted_room(alice, bob)

    photo_id = await alice.send_file(room_id, "wond-links-enkel.png", "image/png", PHOTO)
    pdf_id = await alice.send_file(room_id, "wondzorgplan.pdf", "application/pdf", PDF)

    photo_event = await bob.wait_for("message", lambda e: e["eventId"] == photo_id)
    pdf_event = await bob.wait_for("message", lambda e: e["eventId"] == pdf_id)
    assert photo_event["sender"] == pdf_event["sender"] == alice.user_id
    photo_file = _assert_encrypted_attachment(
        photo_event, "m.image", "wond-links-enkel.png", "image/png", PHOTO
    )
    pdf_file = _assert_encrypted_attachment(
        pdf_event, "m.file", "wondzorgplan.pdf", "application/pdf", PDF
    )

    assert await bob.fetch_file(photo_file) == PHOTO
    assert await bob.fetch_file(pdf_file) == PDF

    # What the homeserver holds is the ciphertext: as long as the plaintext (AES-CTR), but
    # not the plaintext, and with the sha256 that the event gives.
    stored = await bob.fetch_url(photo_file["url"])
    assert len(stored) == len(PHOTO)
    assert stored != PHOTO
    assert PNG_SIGNATURE not in stored
    assert _unpadded_b64(hashlib.sha256(stored).digest()) == photo_file["hashes"]["sha256"]

    assert not [e for e in alice.events + bob.events if e["event"] == "undecryptable"]


async def test_fetch_fails_when_the_ciphertext_hash_does_not_match(
    alice_and_bob: tuple[JsClient, JsClient],
) -> None:
    alice, bob = alice_and_bob
    room_id = await _encrypted_room(alice, bob)
    photo_id = await alice.send_file(room_id, "wond.png", "image/png", PHOTO)
    pdf_id = await alice.send_file(room_id, "plan.pdf", "application/pdf", PDF)
    photo = (await bob.wait_for("message", lambda e: e["eventId"] == photo_id))["content"]
    pdf = (await bob.wait_for("message", lambda e: e["eventId"] == pdf_id))["content"]

    # The photo's key and hash, but the PDF's ciphertext (media swapped on the server).
    swapped = {**photo["file"], "url": pdf["file"]["url"]}
    with pytest.raises(JsClientError, match="sha256"):
        await bob.fetch_file(swapped)

    # The photo's ciphertext with a hash that is not its own.
    wrong_hash = {
        **photo["file"],
        "hashes": {"sha256": _unpadded_b64(hashlib.sha256(PDF).digest())},
    }
    with pytest.raises(JsClientError, match="sha256"):
        await bob.fetch_file(wrong_hash)

    # The client keeps working after a failed fetch.
    assert await bob.fetch_file(photo["file"]) == PHOTO
