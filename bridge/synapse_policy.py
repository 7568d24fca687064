"""A Synapse module that keeps case rooms closed, enforced inside the homeserver.

The bridge sets case rooms up correctly, but a chat client is not bound by that: a nurse's
client could invite a colleague from outside the agreement, or open the room to anyone.
Synapse loads this module (``modules:`` in homeserver.yaml) and asks it before such steps::

    Synapse spam-checker callbacks               this module
    user_may_invite(inviter, invitee, room) --.
    user_may_join_room(user, room, invited) --+--> case room?  (m.room.create sent by the bot)
    check_event_for_spam(event) --------------|      no  -> NOT_SPAM: not our business
    user_may_publish_room(user, room) --------'      yes -> the pure rules below
                                                            |
      may this user enter?  server not in allowed_servers (if given) -> no, without asking
                            bot or ghost namespace -> yes, without asking
                            anyone else -> GET {bridge_url}/_wijkbrug/policy/v1/users/{id}
                                           (Bearer hs_token) -> {"allowed": bool}
                                           cached cache_seconds; no answer -> refused

Rules in a case room (outside case rooms the module does nothing):

- with ``allowed_servers`` (the homeservers of the region's care organisations), nobody
  from another homeserver is invited or joins, whoever invites and whatever the bridge
  says; this homeserver (the bot's) is always allowed. Without the list the bridge's
  directory decides alone: in effect this homeserver and those of the Matrix IDs it knows;
- only the bot invites, and only someone who may enter: the bot, a ghost, or a Matrix ID
  the bridge knows (a provider team's member, a practitioner);
- only someone who may enter joins;
- only the bot sends state that would open the room: a join rule other than ``invite``,
  a history visibility other than ``invited``/``joined``, guest access ``can_join``, any
  ``m.room.encryption``, or a ``m.room.tombstone`` (an upgrade would move everyone to a
  room the bot did not create, where none of this applies);
- only the bot publishes the room in the room directory;
- everything else (messages, topic, receipts, leaving) is allowed.

Synapse skips ``user_may_invite``/``user_may_join_room`` for its server admins, and calls
``check_event_for_spam`` for local non-membership events and every event received over
federation: membership events are checked there too, so a remote server's invite or join
is held to the same rules (a refused federated event is soft-failed).

Synapse runs the callbacks on its Twisted reactor: nothing here blocks. The token file is
read once, when Synapse parses the config; the bridge is asked through Synapse's own HTTP
client (which gives up after 60 s). Tokens and event content are never logged.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from synapse.module_api import NOT_SPAM, EventBase, ModuleApi
from synapse.module_api.errors import Codes, ConfigError

logger = logging.getLogger(__name__)

POLICY_PATH = "/_wijkbrug/policy/v1/users/"
# Why a step was refused, next to Synapse's generic error text in the client's response.
REASON_KEY = "nl.wijkbrug.reason"

CREATE = "m.room.create"
MEMBER = "m.room.member"
JOIN_RULES = "m.room.join_rules"
HISTORY_VISIBILITY = "m.room.history_visibility"
GUEST_ACCESS = "m.room.guest_access"
ENCRYPTION = "m.room.encryption"
TOMBSTONE = "m.room.tombstone"
# Only these events can change who is in a case room or who can read it.
GUARDED_TYPES = frozenset(
    {MEMBER, JOIN_RULES, HISTORY_VISIBILITY, GUEST_ACCESS, ENCRYPTION, TOMBSTONE}
)
# An absent history_visibility means "shared" (spec), so allow what is known to be closed.
CLOSED_HISTORY = frozenset({"invited", "joined"})

NOT_INVITER = "only the bridge invites to a case room"
NOT_REGISTERED = "not a registered member of a care organisation in this region"
UNCONFIRMED = "the bridge could not confirm who this is; try again later"
NOT_ALLOWED_SERVER = "this user's homeserver is not allowed in case rooms of this region"
NOT_OPENER = "only the bridge changes who can read or join a case room"
NOT_PUBLISHER = "case rooms are not published in the room directory"

Verdict = Literal["NOT_SPAM"] | tuple[Codes, dict[str, str]]


# ---------------------------------------------------------------------- config


@dataclass(frozen=True)
class PolicyConfig:
    """The module's config (``modules[].config`` in homeserver.yaml), parsed."""

    bridge_url: str
    hs_token: str = field(repr=False)
    bot_user_id: str
    ghosts: re.Pattern[str]
    cache_seconds: float = 30.0
    # The homeservers whose users may enter case rooms (besides the bot's own); None: any
    # server, the bridge's directory decides.
    allowed_servers: frozenset[str] | None = None

    def is_bridge_user(self, user_id: str) -> bool:
        """The bot or a ghost: the bridge's own users, always allowed in."""
        return user_id == self.bot_user_id or self.ghosts.fullmatch(user_id) is not None

    def policy_url(self, user_id: str) -> str:
        # A localpart may contain "/": quote everything; the bridge's route takes a path.
        return f"{self.bridge_url.rstrip('/')}{POLICY_PATH}{quote(user_id, safe='')}"


def parse_policy_config(
    raw: Mapping[str, Any], read_text: Callable[[Path], str] = Path.read_text
) -> PolicyConfig:
    """Check and parse the module config; a ValueError names the key."""

    def text(key: str) -> str:
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{key}: a non-empty string is required")
        return value.strip()

    unknown = set(raw) - {
        "bridge_url",
        "hs_token",
        "hs_token_path",
        "bot_user_id",
        "namespace_regex",
        "cache_seconds",
        "allowed_servers",
    }
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]}: unknown key")
    bridge_url = text("bridge_url")
    if not bridge_url.startswith(("http://", "https://")):
        raise ValueError("bridge_url: must be an http(s) URL")
    if ("hs_token" in raw) == ("hs_token_path" in raw):
        raise ValueError("hs_token: give hs_token or hs_token_path (one of them)")
    if "hs_token" in raw:
        token = text("hs_token")
    else:
        path = Path(text("hs_token_path"))
        try:
            token = read_text(path).strip()
        except OSError as exc:
            raise ValueError(f"hs_token_path: cannot read {path}: {exc.strerror}") from None
        if not token:
            raise ValueError(f"hs_token_path: {path} is empty")
    try:
        ghosts = re.compile(text("namespace_regex"))
    except re.error as exc:
        raise ValueError(f"namespace_regex: not a regular expression ({exc})") from None
    cache_seconds = raw.get("cache_seconds", 30)
    if isinstance(cache_seconds, bool) or not isinstance(cache_seconds, int | float):
        raise ValueError("cache_seconds: a number is required")
    if cache_seconds < 0:
        raise ValueError("cache_seconds: must not be negative")
    allowed: frozenset[str] | None = None
    if "allowed_servers" in raw:
        servers = raw["allowed_servers"]
        if not isinstance(servers, list) or not all(
            isinstance(s, str) and s and not any(c.isspace() for c in s) for s in servers
        ):
            raise ValueError("allowed_servers: a list of server names is required")
        allowed = frozenset(servers)
    return PolicyConfig(
        bridge_url, token, text("bot_user_id"), ghosts, float(cache_seconds), allowed
    )


# ---------------------------------------------------------------------- pure rules


def server_of(user_id: str) -> str:
    """The server name of a Matrix ID (``@local:server``, the server may have a port)."""
    return user_id.partition(":")[2]


def server_refusal(
    user_id: str, allowed_servers: frozenset[str] | None, own_server: str
) -> str | None:
    """Why the user's homeserver keeps them out of case rooms, or None when it does not
    (no list: every server; the homeserver itself is always allowed)."""
    if allowed_servers is None:
        return None
    server = server_of(user_id)
    return None if server == own_server or server in allowed_servers else NOT_ALLOWED_SERVER


def is_case_room(creator: str | None, bot_user_id: str) -> bool:
    """Case rooms are the rooms the bot created (the sender of m.room.create)."""
    return creator == bot_user_id


def invite_refusal(inviter: str, invitee_may_enter: bool | None, bot_user_id: str) -> str | None:
    """Why an invite into a case room is refused, or None when it is allowed.

    ``invitee_may_enter`` is None when the bridge could not say: refused (fail closed).
    """
    if inviter != bot_user_id:
        return NOT_INVITER
    return join_refusal(invitee_may_enter)


def join_refusal(user_may_enter: bool | None) -> str | None:
    """Why a join of a case room is refused, or None when it is allowed (None: unknown)."""
    if user_may_enter is None:
        return UNCONFIRMED
    return None if user_may_enter else NOT_REGISTERED


def opens_room(event_type: str, state_key: str | None, content: Mapping[str, Any]) -> bool:
    """Whether a state event would change who can join or read the room."""
    if state_key != "":
        return False  # not state, or not the room-wide setting Matrix reads
    if event_type == JOIN_RULES:
        return content.get("join_rule") != "invite"
    if event_type == HISTORY_VISIBILITY:
        return content.get("history_visibility") not in CLOSED_HISTORY
    if event_type == GUEST_ACCESS:
        return content.get("guest_access") == "can_join"
    return event_type in (ENCRYPTION, TOMBSTONE)


def state_refusal(
    event_type: str,
    state_key: str | None,
    content: Mapping[str, Any],
    sender: str,
    bot_user_id: str,
) -> str | None:
    """Why a (non-membership) event in a case room is refused, or None."""
    if sender != bot_user_id and opens_room(event_type, state_key, content):
        return NOT_OPENER
    return None


def publish_refusal(user_id: str, bot_user_id: str) -> str | None:
    """Why publishing a case room in the room directory is refused, or None."""
    return None if user_id == bot_user_id else NOT_PUBLISHER


def needs_check(event_type: str, state_key: str | None) -> bool:
    """Whether an event can matter at all (most events are messages: no database look-up)."""
    return state_key is not None and event_type in GUARDED_TYPES


# ---------------------------------------------------------------------- caches


class AnswerCache:
    """The bridge's answers per user, each kept for ``ttl`` seconds, at most ``size`` users."""

    def __init__(self, ttl: float, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._answers: OrderedDict[str, tuple[float, bool]] = OrderedDict()

    def get(self, user_id: str, now: float) -> bool | None:
        entry = self._answers.get(user_id)
        if entry is None:
            return None
        expires, allowed = entry
        if now >= expires:
            del self._answers[user_id]
            return None
        return allowed

    def put(self, user_id: str, allowed: bool, now: float) -> None:
        if self.ttl <= 0:
            return
        self._answers.pop(user_id, None)
        self._answers[user_id] = (now + self.ttl, allowed)
        while len(self._answers) > self.size:
            self._answers.popitem(last=False)  # the oldest answer


class RoomCreators:
    """Who created each room (it never changes), for at most ``size`` recent rooms."""

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self._creators: OrderedDict[str, str] = OrderedDict()

    def get(self, room_id: str) -> str | None:
        creator = self._creators.get(room_id)
        if creator is not None:
            self._creators.move_to_end(room_id)
        return creator

    def put(self, room_id: str, creator: str) -> None:
        self._creators[room_id] = creator
        self._creators.move_to_end(room_id)
        while len(self._creators) > self.size:
            self._creators.popitem(last=False)


def refused(reason: str | None) -> Verdict:
    """A rule's answer as Synapse wants it: NOT_SPAM, or M_FORBIDDEN with our reason."""
    if reason is None:
        return NOT_SPAM  # Synapse compares by identity: its own object, not a copy
    return Codes.FORBIDDEN, {REASON_KEY: reason}


# ---------------------------------------------------------------------- the module


class WijkbrugPolicy:
    """Synapse module: only the bridge's users and registered care workers enter case rooms."""

    def __init__(
        self,
        config: PolicyConfig,
        api: ModuleApi,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._api = api
        self._clock = clock
        self._answers = AnswerCache(config.cache_seconds)
        self._creators = RoomCreators()
        api.register_spam_checker_callbacks(
            user_may_invite=self.user_may_invite,
            user_may_join_room=self.user_may_join_room,
            check_event_for_spam=self.check_event_for_spam,
            user_may_publish_room=self.user_may_publish_room,
        )
        logger.info(
            "Wijkbrug policy guards the case rooms of %s (bridge %s)",
            config.bot_user_id,
            config.bridge_url,
        )

    @staticmethod
    def parse_config(config: dict[str, Any]) -> PolicyConfig:
        try:
            return parse_policy_config(config)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    # ------------------------------------------------------------------ callbacks

    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> Verdict:
        if not await self._is_case_room(room_id):
            return refused(None)
        reason = self._server_refusal(invitee)
        if reason is None:
            bot = self._config.bot_user_id
            # Ask the bridge only when the inviter is the bot: nobody else may invite anyway.
            may_enter = await self.may_enter(invitee) if inviter == bot else False
            reason = invite_refusal(inviter, may_enter, bot)
        self._log_refusal(reason, "invite of %s by %s into %s", invitee, inviter, room_id)
        return refused(reason)

    async def user_may_join_room(self, user_id: str, room_id: str, is_invited: bool) -> Verdict:
        if not await self._is_case_room(room_id):
            return refused(None)
        reason = self._server_refusal(user_id) or join_refusal(await self.may_enter(user_id))
        self._log_refusal(reason, "join of %s to %s", user_id, room_id)
        return refused(reason)

    async def check_event_for_spam(self, event: EventBase) -> Verdict:
        state_key: str | None = event.get_state_key()
        if not needs_check(event.type, state_key) or not await self._is_case_room(event.room_id):
            return refused(None)
        reason: str | None
        if event.type == MEMBER:
            reason = await self._membership_refusal(event.sender, str(state_key), event.content)
        else:
            reason = state_refusal(
                event.type, state_key, event.content, event.sender, self._config.bot_user_id
            )
        self._log_refusal(reason, "%s from %s in %s", event.type, event.sender, event.room_id)
        return refused(reason)

    async def user_may_publish_room(self, user_id: str, room_id: str) -> Verdict:
        if not await self._is_case_room(room_id):
            return refused(None)
        reason = publish_refusal(user_id, self._config.bot_user_id)
        self._log_refusal(reason, "publication of %s by %s", room_id, user_id)
        return refused(reason)

    # ------------------------------------------------------------------ helpers

    async def _membership_refusal(
        self, sender: str, target: str, content: Mapping[str, Any]
    ) -> str | None:
        # Reached for membership events over federation (local ones go through the
        # user_may_* callbacks); leaving, kicks and bans are always allowed.
        membership = content.get("membership")
        bot = self._config.bot_user_id
        if membership in ("invite", "join", "knock") and (reason := self._server_refusal(target)):
            return reason
        if membership == "invite":
            may_enter = await self.may_enter(target) if sender == bot else False
            return invite_refusal(sender, may_enter, bot)
        if membership in ("join", "knock"):
            return join_refusal(await self.may_enter(target))
        return None

    def _server_refusal(self, user_id: str) -> str | None:
        """Refused before anything else, without asking the bridge."""
        config = self._config
        return server_refusal(user_id, config.allowed_servers, server_of(config.bot_user_id))

    async def may_enter(self, user_id: str) -> bool | None:
        """The bot, a ghost, or a user the bridge says is registered (cached); None when
        the bridge cannot say, which the rules refuse (fail closed)."""
        if self._config.is_bridge_user(user_id):
            return True
        cached = self._answers.get(user_id, self._clock())
        if cached is not None:
            return cached
        allowed = await self._ask_bridge(user_id)
        if allowed is not None:  # a failure is not cached: the next attempt asks again
            self._answers.put(user_id, allowed, self._clock())
        return allowed

    async def _ask_bridge(self, user_id: str) -> bool | None:
        token = self._config.hs_token.encode()
        try:
            body = await self._api.http_client.get_json(
                self._config.policy_url(user_id),
                headers={b"Authorization": [b"Bearer " + token]},
            )
        except Exception as exc:  # any failure refuses; the type says enough, never the token
            logger.warning(
                "Wijkbrug policy: bridge %s did not answer for %s (%s); refusing",
                self._config.bridge_url,
                user_id,
                type(exc).__name__,
            )
            return None
        allowed = body.get("allowed") if isinstance(body, dict) else None
        if not isinstance(allowed, bool):
            logger.warning(
                "Wijkbrug policy: bridge %s gave no yes/no for %s; refusing",
                self._config.bridge_url,
                user_id,
            )
            return None
        return allowed

    async def _is_case_room(self, room_id: str) -> bool:
        creator = self._creators.get(room_id)
        if creator is None:
            state = await self._api.get_room_state(room_id, [(CREATE, "")])
            create = state.get((CREATE, ""))
            if create is None:
                return False  # a room this server does not know (yet): not one of ours
            creator = str(create.sender)
            self._creators.put(room_id, creator)
        return is_case_room(creator, self._config.bot_user_id)

    @staticmethod
    def _log_refusal(reason: str | None, what: str, *args: str) -> None:
        if reason is not None:
            logger.info("Wijkbrug policy refused " + what + ": %s", *args, reason)
