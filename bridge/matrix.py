"""The Matrix edge: appservice HTTP calls, and E2EE devices for the bot and the ghosts.

    MatrixApi   thin client-server API with the appservice token; masquerades as any
                user in our namespace (``?user_id=``) for room set-up and profiles.
    Device      one nio client with its own olm account and crypto store per Matrix user
                (the bot, each ghost). Logs in with the appservice login type, so no
                passwords exist; its device and token are kept (encrypted) in the database
                so a restart keeps the same device and Synapse dedupes retried sends.

nio's ``Response | Error`` unions stay in this module: they become :class:`MatrixError`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ForwardedRoomKeyEvent,
    MegolmEvent,
    RoomKeyEvent,
)
from nio.exceptions import EncryptionError
from nio.responses import ErrorResponse, RoomSendResponse, SyncResponse
from nio.store.models import MegolmInboundSessions

from bridge.files import FileError, media_id
from bridge.store import Store

log = logging.getLogger(__name__)

MEGOLM = "m.megolm.v1.aes-sha2"
# What a ghost's sync leaves out: the room messages themselves (the bridge has them from
# the appservice transactions, and a ghost reads none), receipts, typing and presence.
# Room state (members, encryption) and to-device messages (keys) still come.
QUIET_SYNC: dict[str, Any] = {
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
    "room": {
        "timeline": {"not_types": ["m.room.encrypted", "m.room.message", "m.reaction"]},
        "ephemeral": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
    },
}
# How old a device's view of its rooms (members, their devices) may be for a send without
# syncing first; a normal client's view lags about as much behind its long-poll sync.
FRESH_SECONDS = 1.0


class MatrixError(Exception):
    """A homeserver call failed; ``retriable`` says whether trying later may help."""

    def __init__(self, message: str, *, status: int | None = None, errcode: str | None = None):
        super().__init__(message)
        self.status = status
        self.errcode = errcode

    @property
    def retriable(self) -> bool:
        return self.status is None or self.status >= 500 or self.status == 429


class MatrixApi:
    """Client-server API calls made with the appservice token.

    Calls act as ``bot_user_id`` unless told otherwise. The bot is a user of our
    namespace, not the appservice's ``sender_localpart`` user, because Synapse refuses
    ``/sync`` to the sender, and the bot needs a syncing device for its E2EE keys.
    """

    def __init__(
        self, base_url: str, as_token: str, bot_user_id: str, timeout: float = 30.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.bot_user_id = bot_user_id
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {as_token}"},
            timeout=timeout,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        as_user: str | None = None,
        masquerade: bool = True,
        ok_errcodes: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        params = {"user_id": as_user or self.bot_user_id} if masquerade else None
        try:
            resp = await self._http.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise MatrixError(f"{method} {path}: {type(exc).__name__}") from exc
        body: dict[str, Any] = {}
        if resp.content:
            try:
                body = resp.json()
            except ValueError:
                body = {}
        if resp.status_code >= 400:
            errcode = body.get("errcode")
            if errcode in ok_errcodes:
                return body
            # Synapse's error text names users and rooms, never message content.
            raise MatrixError(
                f"{method} {path.split('?')[0]}: {resp.status_code} {errcode} "
                f"{str(body.get('error', ''))[:200]}",
                status=resp.status_code,
                errcode=errcode,
            )
        return body

    async def upload(self, data: bytes, *, as_user: str | None = None) -> str:
        """Put bytes (an encrypted attachment's ciphertext) in the media repository;
        returns the ``mxc://`` URI."""
        params = {"user_id": as_user or self.bot_user_id}
        try:
            resp = await self._http.post(
                "/_matrix/media/v3/upload",
                content=data,
                params=params,
                headers={"Content-Type": "application/octet-stream"},
            )
        except httpx.HTTPError as exc:
            raise MatrixError(f"upload: {type(exc).__name__}") from exc
        if resp.status_code >= 400:
            raise MatrixError(f"upload: {resp.status_code}", status=resp.status_code)
        uri = resp.json().get("content_uri")
        if not isinstance(uri, str) or not uri.startswith("mxc://"):
            raise MatrixError("upload: no content_uri in the answer")
        return uri

    async def download(self, mxc: str, max_bytes: int) -> bytes:
        """The bytes behind an ``mxc://`` URI (authenticated media), at most ``max_bytes``."""
        try:
            server, media = media_id(mxc)
        except FileError as exc:
            raise MatrixError(f"download: {exc}") from None
        path = f"/_matrix/client/v1/media/download/{quote(server)}/{quote(media)}"
        chunks: list[bytes] = []
        size = 0
        try:
            async with self._http.stream("GET", path, params={"user_id": self.bot_user_id}) as resp:
                if resp.status_code >= 400:
                    raise MatrixError(f"download: {resp.status_code}", status=resp.status_code)
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise MatrixError(f"download: larger than {max_bytes} bytes")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise MatrixError(f"download: {type(exc).__name__}") from exc
        return b"".join(chunks)

    async def purge_room(self, room_id: str, admin_token: str) -> None:
        """Delete a room and its history from the homeserver (Synapse admin API; needs a
        server admin's token). Waits until the homeserver reports it done."""
        path = f"/_synapse/admin/v2/rooms/{quote(room_id)}"
        headers = {"Authorization": f"Bearer {admin_token}"}
        try:
            resp = await self._http.request(
                "DELETE", path, json={"purge": True, "block": False}, headers=headers
            )
            if resp.status_code >= 400:
                raise MatrixError(f"room purge: {resp.status_code}", status=resp.status_code)
            delete_id = resp.json().get("delete_id")
            for _ in range(120):
                status = await self._http.get(
                    f"/_synapse/admin/v2/rooms/delete_status/{quote(str(delete_id))}",
                    headers=headers,
                )
                state = status.json().get("status") if status.status_code == 200 else None
                if state == "complete":
                    return
                if state == "failed":
                    raise MatrixError("room purge: the homeserver reports it failed")
                await asyncio.sleep(0.5)
        except httpx.HTTPError as exc:
            raise MatrixError(f"room purge: {type(exc).__name__}") from exc
        raise MatrixError("room purge: not done after a minute")

    async def versions(self) -> dict[str, Any]:
        return await self._call("GET", "/_matrix/client/versions", masquerade=False)

    async def whoami(self, as_user: str | None = None) -> str:
        body = await self._call("GET", "/_matrix/client/v3/account/whoami", as_user=as_user)
        return str(body["user_id"])

    async def ping(self, appservice_id: str) -> None:
        """Ask the homeserver to call our ``/_matrix/app/v1/ping`` (proves both ways)."""
        await self._call(
            "POST",
            f"/_matrix/client/v1/appservice/{quote(appservice_id)}/ping",
            json={},
            masquerade=False,
        )

    async def ensure_registered(self, localpart: str) -> None:
        await self._call(
            "POST",
            "/_matrix/client/v3/register",
            json={"type": "m.login.application_service", "username": localpart},
            masquerade=False,
            ok_errcodes=("M_USER_IN_USE",),
        )

    async def login(self, user_id: str, device_name: str) -> tuple[str, str]:
        """Appservice login: a new device for ``user_id``; returns (device_id, token)."""
        body = await self._call(
            "POST",
            "/_matrix/client/v3/login",
            json={
                "type": "m.login.application_service",
                "identifier": {"type": "m.id.user", "user": user_id},
                "initial_device_display_name": device_name,
            },
            masquerade=False,
        )
        return str(body["device_id"]), str(body["access_token"])

    async def set_displayname(self, user_id: str, name: str) -> None:
        await self._call(
            "PUT",
            f"/_matrix/client/v3/profile/{quote(user_id)}/displayname",
            json={"displayname": name},
            as_user=user_id,
        )

    async def displayname(self, user_id: str) -> str | None:
        try:
            body = await self._call(
                "GET", f"/_matrix/client/v3/profile/{quote(user_id)}/displayname"
            )
        except MatrixError as exc:
            if exc.status == 404:
                return None
            raise
        name = body.get("displayname")
        return str(name) if name else None

    async def create_room(
        self,
        *,
        name: str,
        topic: str,
        invite: list[str],
        power_users: dict[str, int],
    ) -> str:
        """A private, invite-only, end-to-end encrypted room, never in the directory."""
        body = await self._call(
            "POST",
            "/_matrix/client/v3/createRoom",
            json={
                "visibility": "private",
                "preset": "private_chat",
                "name": name,
                "topic": topic,
                "invite": invite,
                "is_direct": False,
                "initial_state": [
                    {
                        "type": "m.room.encryption",
                        "state_key": "",
                        "content": {"algorithm": MEGOLM},
                    },
                    # Members see history from their invite on (TI-Messenger A_25481's
                    # default), so a nurse who accepts later still reads the first message;
                    # nobody outside the room ever does.
                    {
                        "type": "m.room.history_visibility",
                        "state_key": "",
                        "content": {"history_visibility": "invited"},
                    },
                    {
                        "type": "m.room.join_rules",
                        "state_key": "",
                        "content": {"join_rule": "invite"},
                    },
                    {
                        "type": "m.room.guest_access",
                        "state_key": "",
                        "content": {"guest_access": "forbidden"},
                    },
                ],
                "power_level_content_override": {"users": power_users, "invite": 50},
            },
        )
        return str(body["room_id"])

    async def invite(self, room_id: str, user_id: str) -> None:
        await self._call(
            "POST",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/invite",
            json={"user_id": user_id},
        )

    async def join(self, room_id: str, as_user: str) -> None:
        await self._call(
            "POST", f"/_matrix/client/v3/join/{quote(room_id)}", json={}, as_user=as_user
        )

    async def leave(self, room_id: str, as_user: str) -> None:
        await self._call(
            "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/leave", json={}, as_user=as_user
        )

    async def make_read_only(self, room_id: str) -> None:
        """Only the bot (the creator) may still send: a closed case's room stays readable."""
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/state/m.room.power_levels/"
        levels = await self._call("GET", path)
        levels["events_default"] = 100
        levels["users"] = {}
        await self._call("PUT", path, json=levels)

    async def members(self, room_id: str) -> dict[str, str]:
        """user_id -> membership of everyone in the room's member list."""
        body = await self._call("GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/members")
        return {
            str(ev["state_key"]): str(ev["content"].get("membership"))
            for ev in body.get("chunk", [])
        }


class Device:
    """One Matrix user's E2EE device, backed by nio (vodozemac) and a store on disk."""

    def __init__(
        self,
        api: MatrixApi,
        store: Store,
        user_id: str,
        crypto_dir: Path,
        *,
        display_name: str,
        quiet: bool = False,
    ) -> None:
        """``quiet``: sync with :data:`QUIET_SYNC` (a ghost, which only sends)."""
        self.api = api
        self._filter = QUIET_SYNC if quiet else None
        self.user_id = user_id
        self.display_name = display_name
        self._store = store
        self._dir = crypto_dir / user_id.lstrip("@").replace(":", "_")
        self._client: AsyncClient | None = None
        self.lock = asyncio.Lock()
        self._synced_once = False
        self._synced_at = -math.inf

    @property
    def client(self) -> AsyncClient:
        assert self._client is not None, "device not opened"
        return self._client

    async def open(self) -> None:
        """Log in (or reuse the stored device) and upload device keys if needed."""
        if self._client is not None:
            return
        device_id, token = self._store.ghost(self.user_id)
        if device_id is not None and not (self._dir / f"{self.user_id}_{device_id}.db").exists():
            # The device's keys live in another process's (or a lost) crypto store: using
            # its id here would publish a second identity key for it. A new device instead.
            log.info("no local crypto store for %s's device; a new device", self.user_id)
            device_id = token = None
        if device_id is None or token is None:
            device_id, token = await self.api.login(self.user_id, "Wijkbrug")
            self._store.save_ghost(self.user_id, self.display_name, device_id, token)
            log.info("new device %s for %s", device_id, self.user_id)
        self._dir.mkdir(parents=True, exist_ok=True)
        config = AsyncClientConfig(
            encryption_enabled=True,
            store_sync_tokens=True,
            # Never nio's default pickle key: derive one per user from our keyring.
            pickle_key=self._store.box.derive(f"pickle:{self.user_id}"),
        )
        client = AsyncClient(
            self.api.base_url,
            self.user_id,
            device_id=device_id,
            store_path=str(self._dir),
            config=config,
        )
        client.restore_login(self.user_id, device_id, token)
        self._client = client
        if client.should_upload_keys:
            self._check(await client.keys_upload(), "keys upload")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @staticmethod
    def _check(resp: Any, what: str) -> Any:
        if isinstance(resp, ErrorResponse):
            status = int(resp.status_code) if str(resp.status_code).isdigit() else None
            raise MatrixError(f"{what}: {resp.status_code} {resp.message}", status=status)
        return resp

    async def sync(self, timeout_ms: int = 0) -> int:
        """One sync round, then the key work nio leaves to its caller; returns how many
        megolm keys arrived (so that messages waiting for one are tried again now)."""
        client = self.client
        resp = await client.sync(
            timeout=timeout_ms,
            sync_filter=self._filter,
            full_state=not self._synced_once,
            set_presence="offline",
        )
        if not isinstance(resp, SyncResponse):
            self._check(resp, "sync")
            raise MatrixError(f"sync: unexpected {type(resp).__name__}")
        self._synced_once = True
        await self.maintain_keys()
        self._synced_at = time.monotonic()
        return sum(
            isinstance(e, RoomKeyEvent | ForwardedRoomKeyEvent) for e in resp.to_device_events
        )

    async def maintain_keys(self) -> None:
        client = self.client
        await client.send_to_device_messages()
        if client.should_upload_keys:
            self._check(await client.keys_upload(), "keys upload")
        if client.should_query_keys:
            self._check(await client.keys_query(), "keys query")
        if client.should_claim_keys:
            self._check(await client.keys_claim(client.get_users_for_key_claiming()), "keys claim")

    async def send(
        self,
        room_id: str,
        content: dict[str, Any],
        txn_id: str,
        *,
        expect_members: Collection[str] = (),
    ) -> str:
        """Send an encrypted ``m.room.message``; ``txn_id`` makes a retry idempotent.

        The megolm key goes to the members (and their devices) this device knows of, so it
        syncs until the members we just invited (``expect_members``) show up in its view
        of the room. A view at most ``FRESH_SECONDS`` old that already shows them is used
        as it is: a burst of messages does not cost a sync each.
        """
        async with self.lock:
            client = self.client
            for attempt in range(20):
                fresh = time.monotonic() - self._synced_at < FRESH_SECONDS
                if attempt or not fresh or not self._sees(room_id, expect_members):
                    await self.sync()
                if self._sees(room_id, expect_members):
                    break
                await asyncio.sleep(0.25)
            else:
                raise MatrixError(f"{self.user_id} does not see the room's members yet")
            self._reshare_for_newcomers(room_id)
            resp = await client.room_send(
                room_id,
                "m.room.message",
                content,
                tx_id=txn_id,
                ignore_unverified_devices=True,
            )
            if not isinstance(resp, RoomSendResponse):
                self._check(resp, "send")
                raise MatrixError(f"send: unexpected {type(resp).__name__}")
            return str(resp.event_id)

    def _sees(self, room_id: str, members: Collection[str]) -> bool:
        room = self.client.rooms.get(room_id)
        return room is not None and all(m in room.users for m in members)

    def _reshare_for_newcomers(self, room_id: str) -> None:
        """nio shares a megolm session once; someone invited later (an escalation) would
        never get its key. Start a new session when a member has not had the current one."""
        client = self.client
        olm = client.olm
        room = client.rooms.get(room_id)
        session = olm.outbound_group_sessions.get(room_id) if olm is not None else None
        if olm is None or room is None or session is None:
            return
        had_key = {user for user, _device in session.users_shared_with}
        if any(user != self.user_id and user not in had_key for user in room.users):
            olm.outbound_group_sessions.pop(room_id, None)

    def decrypt(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The decrypted ``{"type", "content"}`` of a megolm event, or None without the key."""
        megolm = MegolmEvent.from_dict(event)
        if not isinstance(megolm, MegolmEvent):
            raise MatrixError("not a megolm event")
        try:
            decrypted = self.client.decrypt_event(megolm)
        except EncryptionError:
            return None
        source = getattr(decrypted, "source", None)
        if not isinstance(source, dict):
            return None
        return source

    def forget_room(self, room_id: str) -> int:
        """Retention: drop this device's megolm keys of a room (stored and in memory), so
        nothing of a purged case stays readable here. Returns how many were stored."""
        if self._client is None or self._client.olm is None:
            return 0
        store = self._client.store
        with store.database.bind_ctx(store.models):
            removed = int(
                MegolmInboundSessions.delete()
                .where(MegolmInboundSessions.room_id == room_id)
                .execute()
            )
        olm = self._client.olm
        olm.inbound_group_store._entries.pop(room_id, None)  # nio keeps no public remover
        olm.outbound_group_sessions.pop(room_id, None)
        return removed

    async def request_key(self, event: dict[str, Any]) -> None:
        """Ask for a megolm key we were not given (late sharing). nio's own request goes
        to our other devices only, and registers the request so that a forwarded key is
        accepted; the same request (same id) also goes to the sending device itself."""
        megolm = MegolmEvent.from_dict(event)
        if not isinstance(megolm, MegolmEvent):
            return
        try:
            await self.client.request_room_key(megolm)
        except Exception as exc:  # a request already in flight is not an error for us
            log.debug("room key request not sent: %s", type(exc).__name__)
            return
        assert self.client.device_id is not None
        to_sender = megolm.as_key_request(
            megolm.sender, self.client.device_id, device_id=megolm.device_id or None
        )
        resp = await self.client.to_device(to_sender)
        if isinstance(resp, ErrorResponse):
            log.info("room key request to the sender not sent: %s", resp.status_code)
