"""Files in a case: which may travel, and how one looks on each side.

    nurse's client  --m.image / m.file, an encrypted attachment-->  Wijkbrug
        download, decrypt (sha256 checked), check type and size, store encrypted at rest
        -->  the reply's payload: a FHIR Attachment whose url is /fhir/Binary/{id}
    practice system --payload[n].contentAttachment with data-->  Wijkbrug
        check type and size, store encrypted at rest
        -->  an encrypted attachment in the case room, sent by the GP's ghost

A file's type is what its bytes are (sniffed with the ``filetype`` library), not only
what the sender declared: a declared ``image/png`` that is a PDF, or anything outside the
region's allow-list (config ``files``), is refused and the sender is told why.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import filetype
from nio.crypto.attachments import decrypt_attachment, encrypt_attachment
from nio.exceptions import EncryptionError

from bridge.canonical import Attachment
from bridge.config import FilesSection

_NAMES = {"image/jpeg": "JPEG", "image/png": "PNG", "application/pdf": "PDF"}


def sniff(data: bytes) -> str | None:
    """The media type the contents really have (None: not recognised)."""
    kind: str | None = filetype.guess_mime(data)
    return kind


def allowed_text(policy: FilesSection) -> str:
    """The allow-list in words, e.g. ``JPEG, PNG en PDF tot 10 MB``."""
    names = [_NAMES.get(t, t) for t in policy.allowed_types]
    listed = ", ".join(names[:-1]) + f" en {names[-1]}" if len(names) > 1 else "".join(names)
    return f"{listed} tot {policy.max_bytes / (1024 * 1024):g} MB"


def problem(policy: FilesSection, declared: str | None, data: bytes) -> str | None:
    """Why a file may not travel (None: it may). Names no part of its contents."""
    if not data:
        return "the file is empty"
    if len(data) > policy.max_bytes:
        return f"the file is {len(data)} bytes; at most {policy.max_bytes} are allowed"
    actual = sniff(data)
    if actual not in policy.allowed_types:
        return f"files of this type are not allowed (allowed: {', '.join(policy.allowed_types)})"
    if declared and declared.split(";")[0].strip().lower() != actual:
        return f"the file is declared as {declared[:80]} but its contents are {actual}"
    return None


def attachment(title: str, data: bytes, content_type: str, where: str = "") -> Attachment:
    """An :class:`Attachment` for checked contents."""
    return Attachment(
        content_type=content_type,
        title=title or "bestand",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
        where=where,
    )


def fhir_attachment(att: Attachment, base_url: str) -> dict[str, Any]:
    """A stored file as an R4 ``Attachment``: what it is and where to fetch it with the
    client's own token (``base_url`` is the FHIR base the client uses); the Binary there
    carries the bytes."""
    return {
        "contentType": att.content_type,
        "url": f"{base_url}/Binary/{att.id}",
        "size": att.size,
        "title": att.title,
    }


def link_attachments(
    resource: dict[str, Any], attachments: tuple[Attachment, ...], fhir_base: str
) -> dict[str, Any]:
    """The resource with each file's ``data`` replaced by a link to its Binary (the
    attachments are ``payload[1..]`` in the order the adapter read them)."""
    by_place = {att.where: att for att in attachments}
    out = dict(resource)
    payloads = []
    for index, payload in enumerate(resource.get("payload") or []):
        att = by_place.get(f"Communication.payload[{index}].contentAttachment")
        if att is not None and isinstance(payload, dict):
            kept = {k: v for k, v in payload["contentAttachment"].items() if k != "data"}
            payload = {**payload, "contentAttachment": {**kept, **fhir_attachment(att, fhir_base)}}
        payloads.append(payload)
    if payloads:
        out["payload"] = payloads
    return out


# ---------------------------------------------------------------- Matrix side


def encrypt_for_room(data: bytes) -> tuple[bytes, dict[str, Any]]:
    """Ciphertext to upload, and the ``file`` object (without ``url``) for the event."""
    ciphertext, info = encrypt_attachment(data)
    return ciphertext, dict(info)


def room_content(att: Attachment, file_info: dict[str, Any]) -> dict[str, Any]:
    """The ``m.room.message`` content of an encrypted attachment (``file_info`` has the
    ``url`` of the uploaded ciphertext)."""
    msgtype = "m.image" if att.content_type.startswith("image/") else "m.file"
    return {
        "msgtype": msgtype,
        "body": att.title,
        "filename": att.title,
        "info": {"mimetype": att.content_type, "size": att.size},
        "file": file_info,
    }


class FileError(Exception):
    """An attachment event that cannot be read (the message says why, without contents)."""


def decrypt_from_room(ciphertext: bytes, file_info: dict[str, Any]) -> bytes:
    """The contents of an encrypted attachment; ``FileError`` if its hash or keys do not fit."""
    try:
        key = file_info["key"]["k"]
        digest = file_info["hashes"]["sha256"]
        iv = file_info["iv"]
        data: bytes = decrypt_attachment(ciphertext, key, digest, iv)
    except EncryptionError:
        raise FileError("the encrypted file does not match its hash") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise FileError(f"the encrypted file cannot be opened ({type(exc).__name__})") from None
    return data


def media_id(mxc: str) -> tuple[str, str]:
    """``(server_name, media_id)`` of an ``mxc://`` URI; ``FileError`` if it is not one."""
    if not mxc.startswith("mxc://") or mxc.count("/") != 3:
        raise FileError("the file's url is not an mxc:// URI")
    server, _, media = mxc[len("mxc://") :].partition("/")
    if not server or not media:
        raise FileError("the file's url is not an mxc:// URI")
    return server, media


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
