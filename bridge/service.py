"""The running bridge: accepts messages, delivers them to case rooms, brings replies back.

    POST /fhir/Communication --accept()--> [communications + outbox] (committed, then 201)
                                                   |
                                       outbox worker (retry with backoff)
                                                   v
                 case room (created on first message) <-- ghost Device sends, encrypted
                                                   |
    homeserver --AS transaction--> on_transaction() --> [inbound_events] (stored, then 200)
                                                   |
                                event worker: bot Device decrypts (waits for late keys)
                                                   v
                       [communications] reply for the practice (GET /fhir/Communication)

Three asyncio tasks run while the bridge serves: the outbox worker, the event worker and
the bot's sync loop (which receives the megolm keys the nurses' clients share with it).
Database calls run in worker threads so they never block the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from adapters import fhir_r4
from bridge import cases, chat, dialects, files
from bridge.audit import Access
from bridge.canonical import Attachment, CaseMessage, Party, Patient, Reply
from bridge.config import Settings
from bridge.directory import ClientRef, OrgRef
from bridge.errors import ErrorCode, Issue, WijkbrugError, printable
from bridge.identifiers import CASE_SYSTEM, pc4
from bridge.matrix import Device, MatrixApi, MatrixError
from bridge.observability import DELIVERY
from bridge.routing import Decision, gp_route_for
from bridge.store import (
    NO_KEY_YET,
    CaseRef,
    EscalationWork,
    OutboxWork,
    PendingEvent,
    PushWork,
    Store,
    StoredCommunication,
    latest_message,
)

log = logging.getLogger(__name__)


class Bridge:
    """Everything that runs: the store, the homeserver connection and the workers."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.workers = settings.workers
        self.store = store
        self.api = MatrixApi(
            settings.homeserver.url, settings.secret("as_token"), settings.bot_user_id
        )
        self.bot = Device(
            self.api,
            store,
            settings.bot_user_id,
            settings.crypto_path,
            display_name="Wijkbrug",
        )
        self._ghosts: dict[str, Device] = {}
        self._ghost_lock = asyncio.Lock()
        self._profiles_set: set[tuple[str, str]] = set()
        # (room, sender) -> (whom the room was prepared for, who of them is in it)
        self._prepared: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
        self._haps_invited: set[tuple[str, int]] = set()
        self._key_requested: set[str] = set()
        self._outbox_wake = asyncio.Event()
        self._events_wake = asyncio.Event()
        self._push_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = False
        self.last_error: str | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.store.engine.dialect.name == "sqlite":
            released = await asyncio.to_thread(self.store.release_leases)
            if released:
                log.info("resuming %d delivery(ies) a previous run had started", released)
        self._tasks = [
            asyncio.create_task(self._connect_then_run(), name="wijkbrug-matrix"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for device in [self.bot, *self._ghosts.values()]:
            await device.close()
        await self.api.close()

    async def _connect_then_run(self) -> None:
        """Reach the homeserver (retrying), then run the workers."""
        delay = 0.5
        while True:
            try:
                if not self.workers.primary:
                    await self.api.versions()  # the bot is process 0's, not ours
                    break
                await self.api.ensure_registered(self.settings.appservice.bot_localpart)
                await self.bot.open()
                await self._ensure_profile(self.bot.user_id, "Wijkbrug")
                await self.bot.sync()
                break
            except MatrixError as exc:
                self.last_error = str(exc)
                log.warning("homeserver not reachable yet (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        self.ready = True
        self.last_error = None
        if not self.workers.primary:
            log.info(
                "connected to the homeserver as worker %d of %d (delivery and push only)",
                self.workers.index,
                self.workers.count,
            )
            await asyncio.gather(self._outbox_loop(), self._push_loop())
            return
        log.info("connected to the homeserver as %s", self.bot.user_id)
        await asyncio.gather(
            self._bot_sync_loop(),
            self._outbox_loop(),
            self._event_loop(),
            self._escalation_loop(),
            self._push_loop(),
            self._retention_loop(),
        )

    async def _retention_loop(self) -> None:
        """Closed cases past their retention lose their messages, files and keys here, and
        their rooms on the homeserver (with the homeserver admin token)."""
        policy = self.settings.retention
        admin_token = self.settings.homeserver_admin_token()
        if admin_token is None:
            log.warning(
                "no homeserver.admin_token_path: closed cases' rooms stay on the homeserver"
            )
        while True:
            cutoff = datetime.now(UTC) - timedelta(days=policy.closed_case_days)
            purged = await asyncio.to_thread(self.store.purge_closed_cases, cutoff)
            for case in purged:
                if case.room_id:
                    forgotten = sum(
                        d.forget_room(case.room_id) for d in [self.bot, *self._ghosts.values()]
                    )
                    log.info("case %s purged; %d room key(s) forgotten", case.number, forgotten)
            if admin_token is not None:
                for case in await asyncio.to_thread(self.store.rooms_to_erase):
                    assert case.room_id is not None
                    try:
                        await self.api.purge_room(case.room_id, admin_token)
                    except MatrixError as exc:
                        log.warning("room of case %s not purged yet: %s", case.number, exc)
                        continue
                    await asyncio.to_thread(self.store.room_erased, case.id)
            if not purged:
                await asyncio.sleep(policy.check_interval_seconds)

    def wake(self) -> None:
        self._outbox_wake.set()
        self._events_wake.set()

    async def check_ready(self) -> bool:
        """Ready when the workers run and the homeserver confirms our registration."""
        if not self.ready:
            return False
        try:
            await self.api.ping(self.settings.appservice.id)
        except MatrixError as exc:
            self.last_error = str(exc)
            return False
        return True

    # ------------------------------------------------------------------ accepting

    def accept(
        self, client: ClientRef, body: bytes, content_type: str, access: Access
    ) -> list[tuple[StoredCommunication, bool]]:
        """Parse (in the client's dialect), route and durably store a practice's messages
        (blocking; call in a thread). An EDIFACT interchange may carry several; if any of
        them cannot be routed, none is stored. Returns each stored message and whether it
        is new (False: a re-post of an identifier we have)."""
        if client.org.kind == "provider":
            return [self.accept_provider_reply(client, body, content_type, access)]
        if client.org.kind != "practice":
            raise WijkbrugError(
                ErrorCode.FORBIDDEN, "only a practice's client can start or continue a case"
            )
        messages = [self._with_files(m) for m in dialects.parse(client.dialect, body, content_type)]
        plans: list[tuple[CaseMessage, StoredCommunication | None, Decision | None]] = []
        for number, msg in enumerate(messages, start=1):
            # A routed message is checked for a re-post inside the transaction that
            # stores it; one that cannot be routed may still be a re-post of one that
            # could be when it was first sent.
            decision: Decision | None = None
            refusal: WijkbrugError | None = None
            try:
                decision = self._decide(msg)
            except WijkbrugError as exc:
                refusal = exc
            if decision is None or not decision.routed:
                existing = self.store.find_by_identifier(client.org.id, msg.identifier, access)
                if existing is not None:
                    plans.append((msg, existing, None))
                    continue
            if refusal is not None:
                raise refusal
            assert decision is not None
            if not decision.routed:
                self.store.record_decision(decision, msg.priority, client.org.id)
                where = "Communication.subject.resolve().address.postalCode"
                if len(messages) > 1:
                    where = f"message {number}: {where}"
                raise WijkbrugError(
                    ErrorCode.NO_ROUTE,
                    "no preferred provider for this care type and area",
                    [
                        Issue(
                            ErrorCode.NO_ROUTE,
                            "no preferred provider: " + "; ".join(decision.reasons),
                            where,
                        )
                    ],
                )
            plans.append((msg, None, decision))
        return [
            (existing, False)
            if existing is not None
            else self._store_new(client, msg, decision, access)
            for msg, existing, decision in plans
        ]

    def accept_provider_reply(
        self, client: ClientRef, body: bytes, content_type: str, access: Access
    ) -> tuple[StoredCommunication, bool]:
        """A nurse's answer from her care record system (ECD): stored for the case room
        (sent by her ghost) and for the practice (blocking; call in a thread)."""
        if client.dialect != fhir_r4.NAME:
            raise WijkbrugError(
                ErrorCode.NOT_SUPPORTED,
                f"a provider's system answers in {fhir_r4.NAME}; this client speaks "
                f"{client.dialect}",
            )
        answer = fhir_r4.parse_provider_reply(body, content_type)
        policy = self.settings.files
        refused = [
            Issue(ErrorCode.VALUE, why, att.where)
            for att in answer.attachments
            if (why := files.problem(policy, att.content_type, att.data))
        ]
        if refused:
            raise WijkbrugError.from_issues(refused)
        answer = replace(
            answer,
            attachments=tuple(replace(a, id=str(uuid.uuid4())) for a in answer.attachments),
        )
        files_base = self.settings.public_url + "/fhir"

        def render(comm_id: str, reply: Reply, now: datetime) -> dict[str, Any]:
            resource = fhir_r4.render_reply(reply, last_updated=now, files_base=files_base)
            resource["status"] = "in-progress"  # completed once it is in the room
            return resource

        shard = self._ghost_shard(answer.sender)
        stored, created = self.store.accept_provider_reply(client, answer, render, access, shard)
        if created:
            # Her answer means the team has seen it: acknowledged (no escalation), and the
            # practice's messages delivered so far are received.
            self.store.seen_by_team(stored.case_id, access, datetime.now(UTC))
            log.info("accepted a reply %s from client %s", stored.id, client.id)
            self._push_wake.set()
        return stored, created

    def _with_files(self, msg: CaseMessage) -> CaseMessage:
        """Check a message's files against the region's policy (refusing the message, with
        where and why, if one is not allowed), give each an id, and link them in the
        stored resource instead of carrying their contents twice."""
        if not msg.attachments:
            return msg
        policy = self.settings.files
        refused = [
            Issue(
                ErrorCode.TOO_LARGE if att.size > policy.max_bytes else ErrorCode.VALUE,
                why,
                att.where,
            )
            for att in msg.attachments
            if (why := files.problem(policy, att.content_type, att.data))
        ]
        if refused:
            raise WijkbrugError.from_issues(refused)
        attachments = tuple(replace(att, id=str(uuid.uuid4())) for att in msg.attachments)
        resource = files.link_attachments(
            msg.resource, attachments, self.settings.public_url + "/fhir"
        )
        return replace(msg, attachments=attachments, resource=resource)

    def _decide(self, msg: CaseMessage) -> Decision:
        """The preferred provider, or the provider the sender named as recipient."""
        if msg.recipient_ura is None:
            return self.store.decide(msg.care_type, msg.patient.postcode, priority=msg.priority)
        try:
            provider = self.store.find_org(msg.recipient_ura)
        except WijkbrugError:
            provider = None
        if provider is None or provider.kind != "provider":
            raise WijkbrugError(
                ErrorCode.NO_ROUTE,
                "the recipient is not a home-care provider known in this region",
                [
                    Issue(
                        ErrorCode.NO_ROUTE,
                        "unknown recipient provider (URA); leave recipient out to route to "
                        "the preferred provider",
                        "Communication.recipient",
                    )
                ],
            )
        return self.store.routing_table().chosen(
            msg.care_type, msg.patient.postcode, provider.id, provider.name, datetime.now(UTC)
        )

    def _store_new(
        self, client: ClientRef, msg: CaseMessage, decision: Decision | None, access: Access
    ) -> tuple[StoredCommunication, bool]:
        assert decision is not None
        return self._store_new_for(client.org, msg, decision, access, client.id)

    def _store_new_for(
        self,
        practice: OrgRef,
        msg: CaseMessage,
        decision: Decision,
        access: Access,
        client_id: int | None,
    ) -> tuple[StoredCommunication, bool]:

        def render(comm_id: str, number: str, now: datetime) -> dict[str, Any]:
            return fhir_r4.communication_for_case_message(
                msg, id=comm_id, status="in-progress", last_updated=now, case_number=number
            )

        stored, created = self.store.accept_message(
            practice, msg, decision, render, access, client_id=client_id, shard=self._shard(msg)
        )
        if created:
            log.info("accepted communication %s (case %s)", stored.id, stored.case_id)
        return stored, created

    # ------------------------------------------------------------------ outbox

    async def _outbox_loop(self) -> None:
        """Deliver due outbox items, up to ``delivery.concurrency`` at once. A claim holds
        at most one item per case, and not one of a case with an older item still pending
        (in flight included), so the messages of a case keep their order."""
        running: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            self._outbox_wake.set()  # a slot is free, and the case's next item may be due
            if not task.cancelled() and (exc := task.exception()) is not None:
                # The item's lease runs out and it is tried again; nothing is lost.
                log.error("delivery failed unexpectedly: %r", exc, exc_info=exc)

        try:
            while True:
                self._outbox_wake.clear()
                free = self.settings.delivery.concurrency - len(running)
                work = []
                if free > 0:
                    work = await asyncio.to_thread(
                        self.store.claim_outbox,
                        limit=free,
                        workers=(self.workers.index, self.workers.count),
                    )
                for item in work:
                    task = asyncio.create_task(self._deliver(item), name=f"deliver-{item.item_id}")
                    running.add(task)
                    task.add_done_callback(finished)
                if not work or len(running) >= self.settings.delivery.concurrency:
                    await nap(self._outbox_wake, 1.0)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _deliver(self, item: OutboxWork) -> None:
        delivery = self.settings.delivery
        try:
            if item.reply is not None:  # a nurse's answer from her ECD, by her ghost
                sender = await self._ghost_for(item.reply.sender)
                room_id, team = await self._prepare_room(item, sender.user_id)
                content: dict[str, Any] = {"msgtype": "m.text", "body": item.reply.text}
                attachments = item.reply.attachments
            else:
                assert item.message is not None
                chat_user = item.message.sender.matrix_id
                # A case started from chat is posted by the bot; the GP herself is invited.
                sender = self.bot if chat_user else await self._ghost_for(item.message.sender)
                room_id, team = await self._prepare_room(item, sender.user_id, chat_user)
                first = not item.case.context_sent
                content = cases.message_content(
                    item.message, item.case.number, item.communication_id, first=first
                )
                if chat_user:
                    content["body"] = f"{item.message.sender.name} schrijft:\n" + content["body"]
                attachments = item.message.attachments
            event_id = await sender.send(
                room_id,
                content,
                txn_id=f"wijkbrug-out-{item.item_id}",
                expect_members=team,
            )
            for number, att in enumerate(attachments):
                await self._send_file(sender, room_id, att, f"wijkbrug-out-{item.item_id}-{number}")
        except MatrixError as exc:
            attempts = item.attempts + 1
            # An unreachable homeserver is an outage, not a verdict on this message: keep
            # trying. A homeserver that refuses (4xx) or keeps failing (5xx) is given up on.
            give_up = not exc.retriable or (
                exc.status is not None and attempts >= delivery.max_attempts
            )
            delay = min(
                delivery.backoff_initial_seconds * 2**item.attempts,
                delivery.backoff_max_seconds,
            )
            log.warning(
                "delivery of communication %s failed (attempt %d, %s): %s",
                item.communication_id,
                attempts,
                "giving up" if give_up else f"retry in {delay:.0f}s",
                exc,
            )
            await asyncio.to_thread(
                self.store.outbox_retry, item.item_id, str(exc), delay, give_up=give_up
            )
            if give_up and item.message is not None and item.message.reply_room:
                # A practice system sees `not-done`; a GP in chat is told where she asked.
                await self._say(
                    item.message.reply_room,
                    f"Uw bericht in casus {item.case.number} kon niet worden afgeleverd bij "
                    f"{item.case.provider.name}. Neem zo nodig telefonisch contact op.",
                    f"wijkbrug-undeliverable-{item.item_id}",
                )
            return
        await asyncio.to_thread(self.store.outbox_done, item.item_id, event_id, context_sent=True)
        if item.queued_at is not None:
            DELIVERY.observe((datetime.now(UTC) - item.queued_at).total_seconds())
        log.info("delivered communication %s as %s", item.communication_id, event_id)

    async def _send_file(self, sender: Device, room_id: str, att: Attachment, txn_id: str) -> None:
        """A stored file into the room as an encrypted attachment (the homeserver keeps
        only ciphertext). A retry uploads again; the send itself is idempotent."""
        stored = await asyncio.to_thread(self.store.file_contents, att.id)
        ciphertext, info = files.encrypt_for_room(stored.data)
        mxc = await self.api.upload(ciphertext, as_user=sender.user_id)
        await sender.send(room_id, files.room_content(stored, {**info, "url": mxc}), txn_id=txn_id)

    def _shard(self, msg: CaseMessage) -> int:
        """Which process sends ``msg`` (see ``workers`` in the config): a case from chat is
        posted by the bot (shard 0, process 0); a GP's ghost always lands on the same
        process, so its E2EE device lives in one place only."""
        if msg.sender.matrix_id:
            return 0
        return self._ghost_shard(msg.sender)

    def _ghost_shard(self, sender: Party) -> int:
        return 1 + zlib.crc32(self._ghost_localpart(sender).encode()) % 65521

    def _ghost_localpart(self, sender: Party) -> str:
        prefix = self.settings.appservice.ghost_prefix
        if sender.agb:
            return f"{prefix}agb_{sender.agb}"
        key = "|".join(f"{i.system}|{i.value}" for i in sender.identifiers) or sender.name
        return f"{prefix}h_{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    async def _ghost_for(self, sender: Party) -> Device:
        localpart = self._ghost_localpart(sender)
        user_id = f"@{localpart}:{self.settings.homeserver.server_name}"
        display = cases.ghost_display_name(sender)
        device = self._ghosts.get(user_id)
        if device is None:
            # Deliveries run concurrently: one device per ghost, however many ask at once.
            async with self._ghost_lock:
                device = self._ghosts.get(user_id)
                if device is None:
                    await self.api.ensure_registered(localpart)
                    device = Device(
                        self.api,
                        self.store,
                        user_id,
                        self.settings.crypto_path,
                        display_name=display,
                        quiet=True,
                    )
                    await device.open()
                    self._ghosts[user_id] = device
        await self._ensure_profile(user_id, display)
        return device

    async def _ensure_profile(self, user_id: str, display: str) -> None:
        if (user_id, display) in self._profiles_set:
            return
        await self.api.set_displayname(user_id, display)
        self._profiles_set.add((user_id, display))

    async def _create_room(self, item: OutboxWork, speaker_id: str, invite: list[str]) -> str:
        """Create the case room (private, encrypted); ``speaker_id`` is the GP's ghost or,
        for a case from chat, the GP's own account. ``invite``: only our own ghost, whose
        invite cannot fail; a failed invite would fail the creation of a room that then
        exists all the same."""
        case = item.case
        room_id = await self.api.create_room(
            name=cases.room_name(case.number, case.care_type),
            topic=cases.room_topic(
                case.number, case.care_type, case.practice.name, case.provider.name
            ),
            invite=invite,
            # The bot creates the room and so holds its top power level (in room
            # version 12 a creator must not be listed in the power levels at all).
            power_users={speaker_id: 50},
        )
        # Persist at once: the room is the case's from now on, whatever happens next.
        await asyncio.to_thread(self.store.set_case_room, case.id, room_id)
        log.info("created room %s for case %s", room_id, case.number)
        return room_id

    async def _prepare_room(
        self, item: OutboxWork, sender_id: str, chat_user: str | None = None
    ) -> tuple[str, list[str]]:
        """The case room with the sending ghost joined and the team (and, for a case from
        chat, the GP) invited, also after a crash between those steps; returns the room
        and the people in it who must be able to read the message."""
        room_id = item.case.room_id
        wanted = list(dict.fromkeys([*item.members, *([chat_user] if chat_user else [])]))
        if room_id is None:
            ghost = [sender_id] if sender_id != self.bot.user_id else []
            room_id = await self._create_room(item, chat_user or sender_id, ghost)
            members = dict.fromkeys(ghost, "invite")  # a new room: nobody else yet
        else:
            known = self._prepared.get((room_id, sender_id))
            # The team as it was when the room was last prepared: a nurse who joined the
            # team since is invited with the case's next message.
            if known is not None and known[0] == wanted:
                return room_id, known[1]
            members = await self.api.members(room_id)
        if sender_id != self.bot.user_id and members.get(sender_id) != "join":
            if members.get(sender_id) != "invite":
                await self.api.invite(room_id, sender_id)
            await self.api.join(room_id, sender_id)

        async def invite(member: str) -> bool:
            try:
                await self.api.invite(room_id, member)
            except MatrixError as exc:
                log.warning("could not invite a team member to %s: %s", room_id, exc)
                return False
            return True

        # A nurse who left or was removed (any other state) is not pulled back in.
        missing = [m for m in wanted if members.get(m) is None]
        invited = await asyncio.gather(*(invite(m) for m in missing))
        ok = {m for m, done in zip(missing, invited, strict=True) if done}
        present = [m for m in wanted if members.get(m) in ("join", "invite") or m in ok]
        if not any(member in present for member in item.members):
            # A message in a room no nurse of the team is in reaches nobody: a failure
            # to retry (the team may be filled in), and in the end to report.
            raise MatrixError(
                f"case {item.case.number}: no member of the team could be invited", status=503
            )
        self._prepared[(room_id, sender_id)] = (wanted, present)
        return room_id, present

    # ------------------------------------------------------------------ transactions

    def on_transaction(
        self,
        txn_id: str,
        events: Sequence[dict[str, Any]],
        ephemeral: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Store a homeserver transaction (blocking); False if it was seen before.

        Read receipts (ephemeral) are stored as one pseudo-event per reader and event, so
        they are handled durably like room events. Our own users' events (the echoes of
        what the bot and the ghosts sent, their receipts) ask nothing of us: they are
        stored as settled, in the same transaction, instead of being handled one by one."""
        stored = [*events, *receipt_events(ephemeral)]
        echoes = {
            str(ev.get("event_id"))
            for ev in stored
            if isinstance(ev.get("sender"), str) and self._is_ours(ev["sender"])
        }
        return self.store.store_transaction(txn_id, stored, settled=echoes)

    async def _bot_sync_loop(self) -> None:
        delay = 1.0
        outage = False
        while True:
            try:
                async with self.bot.lock:
                    keys = await self.bot.sync(timeout_ms=5000)
                if keys:
                    await asyncio.to_thread(self.store.keys_arrived)
            except MatrixError as exc:
                outage = True
                self.ready = False
                self.last_error = str(exc)
                log.warning("bot sync failed (%s); retrying in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 1.0
            if outage:
                # The homeserver is back: what waited out the outage goes now, not after
                # its backoff.
                outage = False
                self.ready = True
                self.last_error = None
                moved = await asyncio.to_thread(self.store.outbox_retry_now)
                log.info("homeserver reachable again; %d queued message(s) resume", moved)
                self._outbox_wake.set()
            self._events_wake.set()

    async def _event_loop(self) -> None:
        while True:
            events = await asyncio.to_thread(self.store.due_events)
            for ev in events:
                await self._handle_event(ev)
            if not events:
                self._events_wake.clear()
                await nap(self._events_wake, 1.0)

    def _is_ours(self, user_id: str) -> bool:
        localpart, _, server = user_id[1:].partition(":")
        if server != self.settings.homeserver.server_name:
            return False
        appservice = self.settings.appservice
        return localpart in (
            appservice.bot_localpart,
            appservice.sender_localpart,
        ) or localpart.startswith(appservice.ghost_prefix)

    def _server_allowed(self, user_id: str) -> bool:
        """Whether a user's homeserver may take part (``homeserver.allowed_servers``; no
        list: every server, and the directory decides who)."""
        allowed = self.settings.homeserver.allowed_servers
        if allowed is None:
            return True
        server = user_id.partition(":")[2]
        return server == self.settings.homeserver.server_name or server in allowed

    async def _handle_event(self, ev: PendingEvent) -> None:
        if not self._server_allowed(ev.sender) or (
            not self._is_ours(ev.sender) and self.settings.permission(ev.sender) == "none"
        ):
            # Someone of a server the region does not allow, or whom the permissions
            # leave out: not a party to any case.
            log.info("event %s from someone not permitted; ignored", ev.event_id)
            await asyncio.to_thread(self.store.event_done, ev.event_id, "ignored")
            return
        if ev.type == "m.room.member":
            content = ev.event.get("content") or {}
            if (
                ev.event.get("state_key") == self.bot.user_id
                and content.get("membership") == "invite"
                and not self._is_ours(ev.sender)
            ):
                await self._on_bot_invite(ev)
            await asyncio.to_thread(self.store.event_done, ev.event_id)
            return
        handled = ("m.room.encrypted", "m.room.message", RECEIPT)
        if self._is_ours(ev.sender) or ev.type not in handled:
            await asyncio.to_thread(self.store.event_done, ev.event_id, "ignored")
            return
        case = await asyncio.to_thread(self.store.case_for_room, ev.room_id)
        if ev.type == RECEIPT:
            # Reading the room (which needs joining it) acknowledges what is in it.
            if case is not None and await self._is_team_member(ev.sender):
                ts = ev.event.get("content", {}).get("ts")
                at = datetime.fromtimestamp(ts / 1000, UTC) if isinstance(ts, int) else None
                received = await asyncio.to_thread(
                    self.store.seen_by_team,
                    case.id,
                    Access(f"matrix:{ev.sender}", None, "matrix"),
                    at or datetime.now(UTC),
                )
                if received:
                    self._push_wake.set()
            await asyncio.to_thread(self.store.event_done, ev.event_id)
            return
        if ev.type == "m.room.encrypted":
            decrypted = self.bot.decrypt(ev.event)
            if decrypted is None:
                await self._await_key(ev)
                return
        else:
            decrypted = {"type": ev.type, "content": ev.event.get("content", {})}
        content = decrypted.get("content") or {}
        if (
            decrypted.get("type") == "m.room.message"
            and content.get("msgtype") in FILE_MSGTYPES
            and case is not None
            and not await asyncio.to_thread(self.store.practitioner_by_matrix_id, ev.sender)
        ):
            await self._on_file(case, ev, content)
            return
        if decrypted.get("type") != "m.room.message" or content.get("msgtype") not in (
            "m.text",
            "m.notice",
            "m.emote",
        ):
            await asyncio.to_thread(self.store.event_done, ev.event_id, "ignored")
            return
        body = printable(str(content.get("body", "")))  # XML answers must be able to hold it
        if case is None:
            await self._on_direct_message(ev, body)
        elif body.strip().startswith("!"):
            await self._on_case_command(case, ev, body.strip())
        elif await asyncio.to_thread(self.store.practitioner_by_matrix_id, ev.sender):
            # The GP chatting in her own case room: the nurses read it there.
            await asyncio.to_thread(self.store.event_done, ev.event_id, "gp-message")
        else:
            await self._store_reply(case, ev, body)

    async def _await_key(self, ev: PendingEvent) -> None:
        """The key has not arrived: ask for it, retry soon, and give up loudly at the end."""
        age = (datetime.now(UTC) - ev.received_at).total_seconds()
        if age > self.settings.delivery.decrypt_timeout_seconds:
            log.warning("event %s stays undecryptable; giving up", ev.event_id)
            await asyncio.to_thread(self.store.event_done, ev.event_id, "failed", "undecryptable")
            # The bridge's most common failure, said where the sender sees it.
            await self._say(
                ev.room_id,
                f"Dit bericht van {ev.sender} kon Wijkbrug niet ontsleutelen en is dus niet "
                "doorgestuurd naar het praktijksysteem. Stuur het opnieuw; staat uw app zo "
                "ingesteld dat hij alleen met geverifieerde apparaten sleutels deelt, zet dat "
                "dan uit voor deze ruimte.",
                f"wijkbrug-undecryptable-{ev.event_id}",
                reply_to=ev.event_id,  # which message, when she sent several
            )
            return
        if ev.event_id not in self._key_requested and ev.attempts >= 3:
            self._key_requested.add(ev.event_id)
            await self.bot.request_key(ev.event)
        delay = min(0.5 * 2**ev.attempts, 30.0)
        await asyncio.to_thread(self.store.event_retry, ev.event_id, NO_KEY_YET, delay)

    async def _on_file(self, case: CaseRef, ev: PendingEvent, content: dict[str, Any]) -> None:
        """A nurse's photo or PDF: fetched, decrypted, checked, and passed on as a reply
        with the file; a file that may not travel stays in the room, and she is told why."""
        policy = self.settings.files
        title = str(content.get("body") or content.get("filename") or "bestand")[:200]
        info = content.get("info")
        info = info if isinstance(info, dict) else {}
        declared = info.get("mimetype") if isinstance(info.get("mimetype"), str) else None
        try:
            size = info.get("size")
            if isinstance(size, int) and size > policy.max_bytes:
                raise files.FileError(f"the file is {size} bytes; at most {policy.max_bytes}")
            file_info = content.get("file")
            if isinstance(file_info, dict):
                ciphertext = await self.api.download(
                    str(file_info.get("url", "")), policy.max_bytes + 1024
                )
                data = files.decrypt_from_room(ciphertext, file_info)
            else:  # an unencrypted room (case rooms never are, but a file is a file)
                data = await self.api.download(str(content.get("url", "")), policy.max_bytes)
            why = files.problem(policy, declared, data)
            if why:
                raise files.FileError(why)
        except (files.FileError, MatrixError) as exc:
            log.info("file event %s not passed on: %s", ev.event_id, exc)
            await asyncio.to_thread(self.store.event_done, ev.event_id, "refused", str(exc)[:300])
            await self._say(
                ev.room_id,
                f"Het bestand van {ev.sender} is niet doorgestuurd naar het praktijksysteem "
                f"({exc}). Toegestaan: {files.allowed_text(policy)}.",
                f"wijkbrug-file-refused-{ev.event_id}",
            )
            return
        att = files.attachment(title, data, files.sniff(data) or "application/octet-stream")
        await self._store_reply(
            case, ev, f"Bijlage: {title}", (replace(att, id=str(uuid.uuid4())),)
        )

    async def _store_reply(
        self,
        case: CaseRef,
        ev: PendingEvent,
        text: str,
        attachments: tuple[Attachment, ...] = (),
    ) -> None:
        org = await asyncio.to_thread(self.store.organisation_of_member, ev.sender)
        org = org or case.provider
        name = await self.api.displayname(ev.sender) or ev.sender
        original = await asyncio.to_thread(latest_message, self.store, case.id)
        ts = ev.event.get("origin_server_ts")
        sent = datetime.fromtimestamp(ts / 1000, UTC) if isinstance(ts, int) else ev.received_at
        sender = Party(
            name=name,
            organisation_name=org.name,
            organisation_ura=org.ura,
            organisation_agb=org.agb,
            matrix_id=ev.sender,
        )

        def render(
            comm_id: str, in_response_to: str | None, now: datetime
        ) -> tuple[Reply, dict[str, Any]]:
            reply = Reply(
                id=comm_id,
                in_response_to=in_response_to or "",
                case_number=case.number,
                care_type=case.care_type,
                sender=sender,
                text=text,
                sent=sent,
                patient=original.patient if original else None,
                attachments=attachments,
            )
            files_base = self.settings.public_url + "/fhir"
            return reply, fhir_r4.render_reply(reply, last_updated=now, files_base=files_base)

        access = Access(f"matrix:{ev.sender}", org.code, "matrix")
        hap = await self._out_of_hours_hap(case, sent)
        stored = await asyncio.to_thread(
            self.store.add_reply, case, ev.event_id, org, render, access, hap.id if hap else None
        )
        if stored is not None and hap is not None:
            question = f"{name} ({org.name}): {text}"
            await self._bring_in_hap(case, hap, question, original.patient if original else None)
        await asyncio.to_thread(self.store.seen_by_team, case.id, access, sent)
        await asyncio.to_thread(self.store.event_done, ev.event_id)
        if stored is not None:
            log.info("reply %s stored for case %s", stored.id, case.number)
            self._push_wake.set()

    async def _out_of_hours_hap(self, case: CaseRef, at: datetime) -> OrgRef | None:
        """The huisartsenpost, if a nurse's message at ``at`` falls outside office hours."""
        haps = await asyncio.to_thread(self.store.list_orgs, "hap")
        opens, closes = self.settings.office_hours.window()
        decision = gp_route_for(
            (case.practice.id, case.practice.name),
            (haps[0].id, haps[0].name) if haps else None,
            at,
            opens,
            closes,
        )
        if decision.in_office_hours or decision.org_id is None:
            return None
        return haps[0]

    async def _bring_in_hap(
        self, case: CaseRef, hap: OrgRef, question: str, patient: Patient | None
    ) -> None:
        """Out of hours, the huisartsenpost's doctors (those with a Matrix ID) are invited
        to the case room, and the bot forwards the patient context and the nurse's message
        (they could not decrypt what was sent before); once per room."""
        if case.room_id is None or (case.room_id, hap.id) in self._haps_invited:
            return
        self._haps_invited.add((case.room_id, hap.id))
        doctors = [
            p.matrix_id
            for p in await asyncio.to_thread(self.store.list_practitioners)
            if p.org.id == hap.id and p.matrix_id
        ]
        members = await self.api.members(case.room_id)
        for doctor in doctors:
            if members.get(doctor) not in ("join", "invite"):
                try:
                    await self.api.invite(case.room_id, doctor)
                except MatrixError as exc:
                    log.warning("could not invite the huisartsenpost to %s: %s", case.room_id, exc)
        lines = [
            f"Buiten praktijkuren: berichten van de wijkverpleging gaan ook naar {hap.name}.",
            f"Casus {case.number} · {case.care_type.display} · praktijk {case.practice.name}",
        ]
        if patient is not None:
            lines += cases.patient_context_lines(patient)
        lines += ["", question]
        notice = {"msgtype": "m.notice", "body": "\n".join(lines)}
        try:
            await self.bot.send(case.room_id, notice, txn_id=f"wijkbrug-hap-{case.id}-{hap.id}")
        except MatrixError as exc:
            log.warning("could not tell room %s about the huisartsenpost: %s", case.room_id, exc)

    async def _is_team_member(self, user_id: str) -> bool:
        return await asyncio.to_thread(self.store.organisation_of_member, user_id) is not None

    # ------------------------------------------------------------------ escalation

    async def _escalation_loop(self) -> None:
        config = self.settings.escalation
        limits = {
            p: m for p in ("urgent", "asap", "stat") if (m := config.limit_minutes(p)) is not None
        }
        while True:
            await asyncio.sleep(config.check_interval_seconds)
            due = await asyncio.to_thread(self.store.due_escalations, limits, datetime.now(UTC))
            for work in due:
                try:
                    await self._escalate(work)
                except MatrixError as exc:
                    log.warning("escalation of case %s failed: %s", work.case.number, exc)

    async def _escalate(self, work: EscalationWork) -> None:
        """Offer an unacknowledged urgent message to the next provider, and say so."""
        case, msg = work.case, work.message
        now = datetime.now(UTC)
        area = pc4(msg.patient.postcode)
        table = await asyncio.to_thread(self.store.routing_table)
        decision = table.route_for(msg.care_type, area, now, with_fallbacks=True)
        candidates = [p for p in (decision.provider_id, *decision.fallbacks) if p is not None]
        target: tuple[int, str, list[str]] | None = None
        for provider_id in candidates:
            if provider_id == case.provider.id:
                continue
            team = table.team_for(provider_id, msg.care_type, area, now)
            if team is None:
                continue
            members = await asyncio.to_thread(self.store.team_members, team.id)
            if members:
                name = next(r.provider_name for r in table.rules if r.provider_id == provider_id)
                target = (provider_id, name, members)
                break
        minutes = f"{work.limit_minutes:g}"
        if target is None:
            reason = (
                f"Spoedbericht niet binnen {minutes} min bevestigd; "
                "geen andere aanbieder beschikbaar in deze wijk"
            )
        else:
            reason = (
                f"Spoedbericht niet binnen {minutes} min bevestigd; ook aangeboden aan {target[1]}"
            )
        room_id = case.room_id
        if room_id is not None and target is not None:
            for member in target[2]:
                try:
                    await self.api.invite(room_id, member)
                except MatrixError as exc:
                    log.warning("escalation: could not invite to %s: %s", room_id, exc)
            # The newcomers could not read what was sent before: the GP's ghost forwards
            # the message with the patient context, encrypted for everyone now in the room.
            ghost = await self._ghost_for(msg.sender)
            content = cases.message_content(msg, case.number, work.communication_id, first=True)
            content["body"] = "Doorgestuurd spoedbericht (escalatie)\n" + content["body"]
            await ghost.send(
                room_id,
                content,
                txn_id=f"wijkbrug-esc-{work.communication_id}",
                expect_members=target[2],
            )
        if room_id is not None:
            notice = {"msgtype": "m.notice", "body": reason}
            await self.bot.send(room_id, notice, txn_id=f"wijkbrug-escn-{work.communication_id}")
        await asyncio.to_thread(
            self.store.record_escalation, work, target[0] if target else None, reason
        )
        log.info("escalated case %s", case.number)

    # ------------------------------------------------------------------ push

    async def _push_loop(self) -> None:
        async with httpx.AsyncClient(timeout=15.0) as http:
            while True:
                work = await asyncio.to_thread(self.store.claim_push)
                for item in work:
                    await self._push(http, item)
                if not work:
                    self._push_wake.clear()
                    await nap(self._push_wake, 1.0)

    async def _push(self, http: httpx.AsyncClient, item: PushWork) -> None:
        """Send a reply (POST) or a status update (PUT) to the practice system; back off
        on failure. After the last try at a reply, tell the case room that the practice
        system did not get it. A status update the endpoint refuses (4xx) is not retried:
        the practice system can still read the status with a GET."""
        if item.reply is not None:
            out = dialects.render_push(
                item.client.dialect,
                item.reply,
                item.case.practice,
                datetime.now(UTC),
                files_base=self.settings.public_url + "/fhir",
            )
        else:
            assert item.status is not None
            out = dialects.render_status(
                item.client.dialect, item.status.resource, item.status.identifier
            )
        headers = {"Content-Type": out.content_type, **out.headers}
        if item.token:
            headers["Authorization"] = f"Bearer {item.token}"
        refused = False
        try:
            resp = await http.request(
                out.method, item.url.rstrip("/") + out.path, content=out.body, headers=headers
            )
            error = None if resp.is_success else f"HTTP {resp.status_code}"
            refused = resp.is_client_error
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        if error is None:
            await asyncio.to_thread(self.store.push_done, item.item_id)
            log.info("pushed %s to client %s", item.what, item.client.id)
            return
        delivery = self.settings.delivery
        attempts = item.attempts + 1
        give_up = attempts >= delivery.max_attempts or (item.status is not None and refused)
        delay = min(
            delivery.backoff_initial_seconds * 2**item.attempts, delivery.backoff_max_seconds
        )
        log.warning(
            "push of %s to client %s failed (attempt %d, %s): %s",
            item.what,
            item.client.id,
            attempts,
            "giving up" if give_up else f"retry in {delay:.0f}s",
            error,
        )
        await asyncio.to_thread(self.store.push_retry, item.item_id, error, delay, give_up=give_up)
        if give_up and item.reply is not None and item.case.room_id:
            notice = {
                "msgtype": "m.notice",
                "body": (
                    f"Het antwoord kon niet worden afgeleverd bij het praktijksysteem van "
                    f"{item.case.practice.name} ({error}). Neem zo nodig telefonisch contact op."
                ),
            }
            try:
                await self.bot.send(
                    item.case.room_id, notice, txn_id=f"wijkbrug-pushfail-{item.item_id}"
                )
            except MatrixError as exc:
                log.warning(
                    "could not tell room %s about a failed push: %s", item.case.room_id, exc
                )

    # ------------------------------------------------------------------ chat

    async def _say(
        self, room_id: str, text: str, txn_id: str, *, reply_to: str | None = None
    ) -> None:
        """A notice from the bot (encrypted where the room is), optionally as a reply."""
        content: dict[str, Any] = {"msgtype": "m.notice", "body": text}
        if reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        try:
            await self.bot.send(room_id, content, txn_id=txn_id)
        except MatrixError as exc:
            log.warning("the bot could not answer in %s: %s", room_id, exc)

    async def _on_bot_invite(self, ev: PendingEvent) -> None:
        """Someone invites the bot (usually to a direct chat): join; help a GP or nurse of
        the region, refuse anyone else politely."""
        gp = await asyncio.to_thread(self.store.practitioner_by_matrix_id, ev.sender)
        nurse = await self._is_team_member(ev.sender)
        try:
            await self.api.join(ev.room_id, self.bot.user_id)
        except MatrixError as exc:
            log.warning("could not accept an invite to %s: %s", ev.room_id, exc)
            return
        if gp is not None:
            greeting = f"Goedendag {gp.name}. " + chat.DM_HELP
        elif nurse:
            greeting = "Goedendag. U vindt uw casussen in de casusruimtes. " + chat.CASE_HELP
        else:
            greeting = chat.REFUSAL
        await self._say(ev.room_id, greeting, f"wijkbrug-hello-{ev.event_id}")
        if gp is None and not nurse:
            with contextlib.suppress(MatrixError):
                await self.api.leave(ev.room_id, self.bot.user_id)

    async def _on_direct_message(self, ev: PendingEvent, body: str) -> None:
        """A direct chat with the bot: ``!nieuw`` starts a case, ``!help`` explains."""
        await asyncio.to_thread(self.store.event_done, ev.event_id, "command")
        txn = f"wijkbrug-dm-{ev.event_id}"
        gp = await asyncio.to_thread(self.store.practitioner_by_matrix_id, ev.sender)
        if gp is None:
            await self._say(ev.room_id, chat.REFUSAL, txn)
            return
        text = body.strip()
        if not text.startswith("!nieuw"):
            await self._say(ev.room_id, chat.DM_HELP, txn)
            return
        if self.settings.permission(ev.sender) != "start":
            await self._say(ev.room_id, chat.NOT_PERMITTED, txn)
            return
        try:
            new = chat.parse_new_case(text)
        except chat.CommandError as exc:
            await self._say(ev.room_id, str(exc), txn)
            return
        sender = Party(
            name=gp.name,
            organisation_name=gp.org.name,
            agb=gp.agb,
            organisation_agb=gp.org.agb,
            matrix_id=gp.matrix_id,
        )
        msg = replace(
            chat.case_message(new, sender, ev.event_id, datetime.now(UTC)), reply_room=ev.room_id
        )
        access = Access(f"matrix:{ev.sender}", gp.org.code, "matrix")
        answer = await asyncio.to_thread(self._start_chat_case, gp.org, msg, access)
        await self._say(ev.room_id, answer, txn)
        self.wake()

    def _start_chat_case(self, practice: OrgRef, msg: CaseMessage, access: Access) -> str:
        """Route and store a case from chat (blocking); the answer for the GP."""
        decision = self._decide(msg)
        if not decision.routed:
            self.store.record_decision(decision, msg.priority, practice.id)
            return "Geen voorkeursaanbieder gevonden: " + "; ".join(decision.reasons)
        stored, created = self._store_new_for(practice, msg, decision, access, None)
        number = stored.resource.get("identifier", [{}])
        case_number = next((i["value"] for i in number if i.get("system") == CASE_SYSTEM), "nieuw")
        if not created:
            return f"Deze casus bestaat al ({case_number})."
        return (
            f"Casus {case_number} gestart bij {decision.provider_name}. U wordt uitgenodigd in "
            "de versleutelde casusruimte; de wijkverpleging ook."
        )

    async def _on_case_command(self, case: CaseRef, ev: PendingEvent, body: str) -> None:
        """``!help``, ``!status``, ``!route``, ``!sluit`` in a case room."""
        await asyncio.to_thread(self.store.event_done, ev.event_id, "command")
        txn = f"wijkbrug-cmd-{ev.event_id}"
        room_id = ev.room_id
        word = body.split()[0].lower()
        if word == "!status":
            members = await self.api.members(room_id)
            joined = sorted(u for u, m in members.items() if m == "join" and not self._is_ours(u))
            invited = sorted(u for u, m in members.items() if m == "invite")
            escalated = await asyncio.to_thread(self.store.case_escalations, case.id)
            lines = [
                f"Casus {case.number} · {case.care_type.display} · {case.status}",
                f"Doet mee: {', '.join(joined) or 'nog niemand'}",
                f"Uitgenodigd: {', '.join(invited) or 'niemand'}",
                f"Escalaties: {len(escalated)}",
            ]
            await self._say(room_id, "\n".join(lines), txn)
        elif word == "!route":
            reasons = await asyncio.to_thread(self.store.case_routing, case.id)
            text = "\n".join(f"- {r}" for r in reasons) or "Geen routering vastgelegd."
            await self._say(room_id, f"Waarom {case.provider.name}:\n{text}", txn)
        elif word == "!sluit":
            await self._close_case(case, ev, txn)
        else:
            await self._say(room_id, chat.CASE_HELP, txn)

    async def _close_case(self, case: CaseRef, ev: PendingEvent, txn: str) -> None:
        """Close a case: the practice systems get a final status, the room turns read-only,
        everyone is told. Only the case's own GP or nurses may close it."""
        gp = await asyncio.to_thread(self.store.practitioner_by_matrix_id, ev.sender)
        org = await asyncio.to_thread(self.store.organisation_of_member, ev.sender)
        allowed = (gp is not None and gp.org.id == case.practice.id) or (
            org is not None and org.id == case.provider.id
        )
        if not allowed:
            await self._say(
                ev.room_id,
                "Alleen de huisarts of de wijkverpleging van deze casus kan hem sluiten.",
                txn,
            )
            return
        await asyncio.to_thread(self.store.close_case, case.id, f"matrix:{ev.sender}")
        try:
            await self.api.make_read_only(ev.room_id)
        except MatrixError as exc:
            log.warning("could not make room %s read-only: %s", ev.room_id, exc)
        await self._say(
            ev.room_id,
            f"Casus {case.number} is gesloten door {ev.sender}. De ruimte blijft leesbaar, "
            "maar er kan niet meer in geschreven worden.",
            txn,
        )


RECEIPT = "wijkbrug.receipt"
FILE_MSGTYPES = ("m.image", "m.file")


async def nap(wake: asyncio.Event, seconds: float) -> None:
    """Wait until ``wake`` is set or ``seconds`` have passed. Not ``asyncio.wait_for``:
    on Python 3.11 it can swallow a cancellation that arrives as the event is set, and a
    worker loop would then outlive ``Bridge.stop``."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wake.wait()


def receipt_events(ephemeral: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One pseudo-event per (reader, event) of the ``m.receipt`` ephemeral events."""
    out = []
    for ev in ephemeral:
        if ev.get("type") != "m.receipt" or not isinstance(ev.get("content"), dict):
            continue
        room_id = str(ev.get("room_id", ""))
        for event_id, kinds in ev["content"].items():
            if not isinstance(kinds, dict):
                continue
            for kind in ("m.read", "m.read.private"):
                readers = kinds.get(kind)
                if not isinstance(readers, dict):
                    continue
                for user_id, data in readers.items():
                    ts = data.get("ts") if isinstance(data, dict) else None
                    out.append(
                        {
                            "event_id": f"~receipt:{room_id}:{user_id}:{event_id}",
                            "type": RECEIPT,
                            "room_id": room_id,
                            "sender": user_id,
                            "content": {"event_id": event_id, "ts": ts},
                        }
                    )
    return out
