"""The homeserver's case-room policy without a homeserver: the pure rules, the module's
callbacks over a fake module API (cache, fail closed), its config, and the bridge's
``/_wijkbrug/policy`` endpoint."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from fastapi.testclient import TestClient

from bridge.config import generate_config, load_settings, policy_module, registration
from bridge.homeserver import write_synapse_config
from bridge.service import Bridge
from bridge.web.app import create_app
from tests.support.examples import region

# Importing Synapse's module API warns about Twisted and jsonschema deprecations that are
# Synapse's business, not ours.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from synapse.module_api import NOT_SPAM, EventBase, ModuleApi
    from synapse.module_api.errors import Codes, ConfigError

    from bridge.synapse_policy import (
        NOT_INVITER,
        NOT_OPENER,
        NOT_PUBLISHER,
        NOT_REGISTERED,
        REASON_KEY,
        UNCONFIRMED,
        AnswerCache,
        PolicyConfig,
        RoomCreators,
        WijkbrugPolicy,
        invite_refusal,
        is_case_room,
        join_refusal,
        needs_check,
        opens_room,
        parse_policy_config,
        publish_refusal,
        state_refusal,
    )

BOT = "@wijkbrug:localhost"
GHOST = "@wijkbrug_agb_01000001:localhost"
NURSE = "@nurse1:localhost"
STRANGER = "@stranger:localhost"
TOKEN = "hs-token-for-tests"
CASE_ROOM = "!case:localhost"
OTHER_ROOM = "!other:localhost"


def config(cache_seconds: float = 30.0) -> PolicyConfig:
    return PolicyConfig(
        bridge_url="http://127.0.0.1:8080",
        hs_token=TOKEN,
        bot_user_id=BOT,
        ghosts=re.compile(r"@wijkbrug_.*:localhost"),
        cache_seconds=cache_seconds,
    )


# ---------------------------------------------------------------------- pure rules


def test_a_case_room_is_a_room_the_bot_created() -> None:
    assert is_case_room(BOT, BOT)
    assert not is_case_room(NURSE, BOT)
    assert not is_case_room(None, BOT)


def test_only_the_bot_invites_and_only_who_may_enter() -> None:
    assert invite_refusal(BOT, True, BOT) is None
    assert invite_refusal(BOT, False, BOT) == NOT_REGISTERED
    # Nurses and GPs cannot pull anyone in, not even a registered colleague.
    assert invite_refusal(NURSE, True, BOT) == NOT_INVITER
    assert invite_refusal(GHOST, True, BOT) == NOT_INVITER


def test_only_who_may_enter_joins() -> None:
    assert join_refusal(True) is None
    assert join_refusal(False) == NOT_REGISTERED


def test_unknown_is_refused() -> None:
    # The bridge could not say: fail closed, with a reason that says so.
    assert join_refusal(None) == UNCONFIRMED
    assert invite_refusal(BOT, None, BOT) == UNCONFIRMED
    assert invite_refusal(NURSE, None, BOT) == NOT_INVITER


@pytest.mark.parametrize(
    ("event_type", "content", "opens"),
    [
        ("m.room.join_rules", {"join_rule": "invite"}, False),
        ("m.room.join_rules", {"join_rule": "public"}, True),
        ("m.room.join_rules", {"join_rule": "knock"}, True),
        ("m.room.join_rules", {"join_rule": "restricted", "allow": []}, True),
        ("m.room.join_rules", {}, True),
        ("m.room.history_visibility", {"history_visibility": "invited"}, False),
        ("m.room.history_visibility", {"history_visibility": "joined"}, False),
        ("m.room.history_visibility", {"history_visibility": "shared"}, True),
        ("m.room.history_visibility", {"history_visibility": "world_readable"}, True),
        ("m.room.history_visibility", {}, True),  # absent means "shared"
        ("m.room.guest_access", {"guest_access": "forbidden"}, False),
        ("m.room.guest_access", {"guest_access": "can_join"}, True),
        ("m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"}, True),
        ("m.room.encryption", {"algorithm": "m.olm.v1.curve25519-aes-sha2"}, True),
        ("m.room.tombstone", {"replacement_room": "!new:localhost"}, True),
        ("m.room.topic", {"topic": "Casus WB-000042"}, False),
        ("m.room.name", {"name": "anders"}, False),
        ("m.room.power_levels", {"users": {}}, False),
    ],
)
def test_what_opens_a_room(event_type: str, content: dict[str, Any], opens: bool) -> None:
    assert opens_room(event_type, "", content) is opens


def test_only_the_room_wide_setting_counts() -> None:
    # A message (no state key) or a state event with another key is not the setting.
    assert not opens_room("m.room.join_rules", None, {"join_rule": "public"})
    assert not opens_room("m.room.join_rules", "x", {"join_rule": "public"})


def test_only_the_bot_opens_a_room() -> None:
    public = {"join_rule": "public"}
    assert state_refusal("m.room.join_rules", "", public, NURSE, BOT) == NOT_OPENER
    assert state_refusal("m.room.join_rules", "", public, GHOST, BOT) == NOT_OPENER
    assert state_refusal("m.room.join_rules", "", public, BOT, BOT) is None
    assert state_refusal("m.room.topic", "", {"topic": "t"}, NURSE, BOT) is None


def test_only_the_bot_publishes() -> None:
    assert publish_refusal(BOT, BOT) is None
    assert publish_refusal(NURSE, BOT) == NOT_PUBLISHER


def test_messages_need_no_check() -> None:
    assert not needs_check("m.room.encrypted", None)
    assert not needs_check("m.room.message", None)
    assert not needs_check("m.room.topic", "")
    assert needs_check("m.room.member", NURSE)
    assert needs_check("m.room.join_rules", "")


def test_answers_expire_and_are_bounded() -> None:
    cache = AnswerCache(ttl=30, size=2)
    cache.put(NURSE, True, now=100)
    assert cache.get(NURSE, now=129.9) is True
    assert cache.get(NURSE, now=130) is None
    cache.put("@a:x", False, now=0)
    cache.put("@b:x", True, now=0)
    cache.put("@c:x", True, now=0)
    assert cache.get("@a:x", now=1) is None  # the oldest went
    assert cache.get("@b:x", now=1) is True and cache.get("@c:x", now=1) is True
    off = AnswerCache(ttl=0)
    off.put(NURSE, True, now=0)
    assert off.get(NURSE, now=0) is None


def test_room_creators_are_bounded() -> None:
    creators = RoomCreators(size=2)
    creators.put("!a:x", BOT)
    creators.put("!b:x", NURSE)
    assert creators.get("!a:x") == BOT  # now the most recent
    creators.put("!c:x", BOT)
    assert creators.get("!b:x") is None
    assert creators.get("!a:x") == BOT and creators.get("!c:x") == BOT


# ---------------------------------------------------------------------- config


def test_config_with_a_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "hs_token"
    token_file.write_text(TOKEN + "\n")
    parsed = WijkbrugPolicy.parse_config(
        {
            "bridge_url": "http://127.0.0.1:8080/",
            "hs_token_path": str(token_file),
            "bot_user_id": BOT,
            "namespace_regex": "@wijkbrug_.*:localhost",
        }
    )
    assert parsed.hs_token == TOKEN and parsed.cache_seconds == 30
    assert TOKEN not in repr(parsed)
    assert parsed.is_bridge_user(BOT) and parsed.is_bridge_user(GHOST)
    assert not parsed.is_bridge_user(NURSE)
    assert not parsed.is_bridge_user("@wijkbrug_x:elsewhere.org")  # the whole ID must match
    assert parsed.policy_url("@a/b:localhost") == (
        "http://127.0.0.1:8080/_wijkbrug/policy/v1/users/%40a%2Fb%3Alocalhost"
    )


VALID: dict[str, Any] = {
    "bridge_url": "http://127.0.0.1:8080",
    "hs_token": TOKEN,
    "bot_user_id": BOT,
    "namespace_regex": "@wijkbrug_.*:localhost",
}


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"bridge_url": None}, "bridge_url"),
        ({"bridge_url": "127.0.0.1:8080"}, "bridge_url"),
        ({"hs_token": None}, "hs_token"),
        ({"hs_token_path": "/x"}, "hs_token"),  # both
        ({"hs_token_path": "/nonexistent/wijkbrug/hs_token", "hs_token": None}, "hs_token_path"),
        ({"namespace_regex": "@wijkbrug_(.*:localhost"}, "namespace_regex"),
        ({"bot_user_id": ""}, "bot_user_id"),
        ({"cache_seconds": -1}, "cache_seconds"),
        ({"cache_seconds": "30"}, "cache_seconds"),
        ({"cache_second": 30}, "cache_second"),
    ],
)
def test_config_errors_name_the_key(change: dict[str, Any], key: str) -> None:
    raw = {**VALID, **change}
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(ConfigError) as error:
        WijkbrugPolicy.parse_config(raw)
    assert str(error.value.msg).startswith(f"{key}:")
    assert TOKEN not in str(error.value.msg)


def test_policy_module_of_the_settings(tmp_path: Path) -> None:
    settings = load_settings(generate_config(tmp_path))
    module = policy_module(settings)
    assert module["module"] == "bridge.synapse_policy.WijkbrugPolicy"
    assert "hs_token" not in module["config"]  # a path, not the secret itself
    parsed = parse_policy_config(module["config"])
    assert parsed.hs_token == settings.secret("hs_token")
    assert parsed.bot_user_id == settings.bot_user_id
    assert parsed.bridge_url == settings.public_url
    # The module's ghosts are the registration's ghost namespace, and not the AS sender.
    ghost_regex = registration(settings)["namespaces"]["users"][1]["regex"]
    for user in (GHOST, "@wijkbrug_x.y:localhost", "@wijkbrug-appservice:localhost", BOT):
        assert (parsed.ghosts.fullmatch(user) is None) == (
            re.fullmatch(ghost_regex, user) is None
        ), user


def test_synapse_config_lists_the_modules(tmp_path: Path) -> None:
    module = {"module": "bridge.synapse_policy.WijkbrugPolicy", "config": VALID}
    path = write_synapse_config(tmp_path, server_name="localhost", port=8008, modules=[module])
    assert yaml.safe_load(path.read_text())["modules"] == [module]
    path = write_synapse_config(tmp_path, server_name="localhost", port=8008)
    assert yaml.safe_load(path.read_text())["modules"] == []


# ---------------------------------------------------------------------- the module


@dataclass
class FakeCreate:
    sender: str


@dataclass
class FakeHttp:
    """Synapse's SimpleHttpClient.get_json: answers per user, or an exception to raise."""

    answers: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, Mapping[bytes, list[bytes]]]] = field(default_factory=list)

    async def get_json(
        self, uri: str, args: Any = None, headers: Mapping[bytes, list[bytes]] | None = None
    ) -> Any:
        self.calls.append((uri, headers or {}))
        user = uri.rsplit("/", 1)[1].replace("%40", "@").replace("%3A", ":")
        answer = self.answers.get(user, {"allowed": False})
        if isinstance(answer, Exception):
            raise answer
        return answer


@dataclass
class FakeApi:
    http_client: FakeHttp = field(default_factory=FakeHttp)
    creators: dict[str, str] = field(default_factory=dict)
    callbacks: dict[str, Any] = field(default_factory=dict)
    state_reads: int = 0

    def register_spam_checker_callbacks(self, **callbacks: Any) -> None:
        self.callbacks = callbacks

    async def get_room_state(
        self, room_id: str, event_filter: list[tuple[str, str]] | None = None
    ) -> dict[tuple[str, str], FakeCreate]:
        self.state_reads += 1
        assert event_filter == [("m.room.create", "")]
        creator = self.creators.get(room_id)
        return {("m.room.create", ""): FakeCreate(creator)} if creator else {}


@dataclass
class FakeEvent:
    type: str
    sender: str
    room_id: str
    content: dict[str, Any]
    state_key: str | None = None

    def get_state_key(self) -> str | None:
        return self.state_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    policy: WijkbrugPolicy
    api: FakeApi
    clock: Clock


@pytest.fixture
def setup() -> Setup:
    api = FakeApi(creators={CASE_ROOM: BOT, OTHER_ROOM: NURSE})
    api.http_client.answers = {NURSE: {"allowed": True}}
    clock = Clock()
    return Setup(WijkbrugPolicy(config(), cast(ModuleApi, api), clock=clock), api, clock)


async def check(policy: WijkbrugPolicy, event: FakeEvent) -> Any:
    """check_event_for_spam with a fake event (it reads only what FakeEvent has)."""
    return await policy.check_event_for_spam(cast(EventBase, event))


def is_refusal(verdict: Any, reason: str) -> bool:
    return bool(verdict == (Codes.FORBIDDEN, {REASON_KEY: reason}))


def test_registers_the_callbacks(setup: Setup) -> None:
    assert set(setup.api.callbacks) == {
        "user_may_invite",
        "user_may_join_room",
        "check_event_for_spam",
        "user_may_publish_room",
    }


async def test_outside_case_rooms_nothing_is_checked(setup: Setup) -> None:
    policy = setup.policy
    assert await policy.user_may_invite(NURSE, STRANGER, OTHER_ROOM) is NOT_SPAM
    assert await policy.user_may_join_room(STRANGER, OTHER_ROOM, False) is NOT_SPAM
    assert await policy.user_may_join_room(STRANGER, "!unknown:elsewhere", False) is NOT_SPAM
    public = FakeEvent("m.room.join_rules", NURSE, OTHER_ROOM, {"join_rule": "public"}, "")
    assert await check(policy, public) is NOT_SPAM
    assert await policy.user_may_publish_room(NURSE, OTHER_ROOM) is NOT_SPAM
    assert setup.api.http_client.calls == []


async def test_the_bot_invites_registered_users_and_ghosts(setup: Setup) -> None:
    policy, http = setup.policy, setup.api.http_client
    assert await policy.user_may_invite(BOT, GHOST, CASE_ROOM) is NOT_SPAM
    assert http.calls == []  # ghosts are known without asking
    assert await policy.user_may_invite(BOT, NURSE, CASE_ROOM) is NOT_SPAM
    [(url, headers)] = http.calls
    assert url == "http://127.0.0.1:8080/_wijkbrug/policy/v1/users/%40nurse1%3Alocalhost"
    assert headers == {b"Authorization": [f"Bearer {TOKEN}".encode()]}
    verdict = await policy.user_may_invite(BOT, STRANGER, CASE_ROOM)
    assert is_refusal(verdict, NOT_REGISTERED)


async def test_nobody_else_invites(setup: Setup) -> None:
    policy, http = setup.policy, setup.api.http_client
    for inviter in (NURSE, GHOST, STRANGER):
        verdict = await policy.user_may_invite(inviter, NURSE, CASE_ROOM)
        assert is_refusal(verdict, NOT_INVITER)
    assert http.calls == []  # refused without asking the bridge


async def test_joins(setup: Setup) -> None:
    policy = setup.policy
    assert await policy.user_may_join_room(NURSE, CASE_ROOM, True) is NOT_SPAM
    assert await policy.user_may_join_room(GHOST, CASE_ROOM, True) is NOT_SPAM
    assert is_refusal(await policy.user_may_join_room(STRANGER, CASE_ROOM, True), NOT_REGISTERED)


async def test_answers_are_cached_for_a_while(setup: Setup) -> None:
    policy, http = setup.policy, setup.api.http_client
    for _ in range(3):
        assert await policy.user_may_join_room(NURSE, CASE_ROOM, True) is NOT_SPAM
    assert len(http.calls) == 1
    setup.clock.now += 31  # past cache_seconds: asked again, and now she left the team
    http.answers[NURSE] = {"allowed": False}
    assert is_refusal(await policy.user_may_join_room(NURSE, CASE_ROOM, True), NOT_REGISTERED)
    assert len(http.calls) == 2
    # The room's creator is read once.
    assert setup.api.state_reads == 1


async def test_fails_closed_when_the_bridge_is_down(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    policy, http = setup.policy, setup.api.http_client
    http.answers[NURSE] = ConnectionRefusedError("connection refused")
    with caplog.at_level(logging.INFO, logger="bridge.synapse_policy"):
        verdict = await policy.user_may_invite(BOT, NURSE, CASE_ROOM)
    assert is_refusal(verdict, UNCONFIRMED)
    assert "did not answer for @nurse1:localhost (ConnectionRefusedError)" in caplog.text
    assert "refused invite of @nurse1:localhost" in caplog.text
    assert TOKEN not in caplog.text
    # A failure is not cached: once the bridge is back she gets in.
    http.answers[NURSE] = {"allowed": True}
    assert await policy.user_may_invite(BOT, NURSE, CASE_ROOM) is NOT_SPAM
    # The bot and the ghosts need no answer, so the bridge's own steps go on.
    http.answers.clear()
    http.answers[GHOST] = ConnectionRefusedError()
    assert await policy.user_may_join_room(GHOST, CASE_ROOM, True) is NOT_SPAM


@pytest.mark.parametrize("answer", [{"allowed": "yes"}, {}, ["allowed"], None])
async def test_an_unclear_answer_refuses(setup: Setup, answer: Any) -> None:
    setup.api.http_client.answers[NURSE] = answer
    verdict = await setup.policy.user_may_join_room(NURSE, CASE_ROOM, True)
    assert is_refusal(verdict, UNCONFIRMED)


async def test_state_that_opens_the_room(setup: Setup) -> None:
    policy = setup.policy
    public = {"join_rule": "public"}
    nurse_opens = FakeEvent("m.room.join_rules", NURSE, CASE_ROOM, public, "")
    assert is_refusal(await check(policy, nurse_opens), NOT_OPENER)
    readable = {"history_visibility": "world_readable"}
    nurse_reads = FakeEvent("m.room.history_visibility", NURSE, CASE_ROOM, readable, "")
    assert is_refusal(await check(policy, nurse_reads), NOT_OPENER)
    bot_opens = FakeEvent("m.room.join_rules", BOT, CASE_ROOM, public, "")
    assert await check(policy, bot_opens) is NOT_SPAM
    topic = FakeEvent("m.room.topic", NURSE, CASE_ROOM, {"topic": "t"}, "")
    assert await check(policy, topic) is NOT_SPAM


async def test_messages_cost_nothing(setup: Setup) -> None:
    message = FakeEvent("m.room.encrypted", NURSE, CASE_ROOM, {"ciphertext": "..."})
    assert await check(setup.policy, message) is NOT_SPAM
    assert setup.api.state_reads == 0 and setup.api.http_client.calls == []


async def test_membership_over_federation(setup: Setup) -> None:
    policy = setup.policy
    remote = "@nurse9:zorg.example"
    setup.api.http_client.answers[remote] = {"allowed": True}

    def member(sender: str, target: str, membership: str) -> FakeEvent:
        return FakeEvent("m.room.member", sender, CASE_ROOM, {"membership": membership}, target)

    assert await check(policy, member(BOT, remote, "invite")) is NOT_SPAM
    assert await check(policy, member(remote, remote, "join")) is NOT_SPAM
    assert is_refusal(await check(policy, member(remote, STRANGER, "invite")), NOT_INVITER)
    assert is_refusal(await check(policy, member(STRANGER, STRANGER, "join")), NOT_REGISTERED)
    assert await check(policy, member(STRANGER, STRANGER, "leave")) is NOT_SPAM


async def test_publication(setup: Setup) -> None:
    assert await setup.policy.user_may_publish_room(BOT, CASE_ROOM) is NOT_SPAM
    verdict = await setup.policy.user_may_publish_room(NURSE, CASE_ROOM)
    assert is_refusal(verdict, NOT_PUBLISHER)


# ---------------------------------------------------------------------- the bridge's endpoint


@pytest.fixture
def bridge_api(tmp_path: Path) -> Iterator[tuple[TestClient, Bridge]]:
    settings = load_settings(generate_config(tmp_path))
    with TestClient(create_app(settings, run_bridge=False)) as client:
        bridge: Bridge = client.app.state.bridge  # type: ignore[attr-defined]
        region(bridge.store)
        bridge.store.add_practitioner(
            "01234567", "A. Jansen", agb="01000001", matrix_id="@gp/jansen:localhost"
        )
        yield client, bridge


def test_endpoint_answers_from_the_directory(bridge_api: tuple[TestClient, Bridge]) -> None:
    client, bridge = bridge_api
    auth = {"Authorization": f"Bearer {bridge.settings.secret('hs_token')}"}
    base = "/_wijkbrug/policy/v1/users/"
    for user, allowed in (
        (NURSE, True),  # a team member
        ("@gp/jansen:localhost", True),  # a practitioner; "/" in a localpart
        (STRANGER, False),
        (BOT, False),  # the module decides on the bridge's own users
    ):
        quoted = re.sub(r"[@:/]", lambda m: f"%{ord(m.group()):02X}", user)
        response = client.get(base + quoted, headers=auth)
        assert response.status_code == 200, user
        assert response.json() == {"allowed": allowed}, user


def test_endpoint_needs_the_hs_token(bridge_api: tuple[TestClient, Bridge]) -> None:
    client, bridge = bridge_api
    url = "/_wijkbrug/policy/v1/users/%40nurse1%3Alocalhost"
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 403
    as_token = bridge.settings.secret("as_token")
    assert client.get(url, headers={"Authorization": f"Bearer {as_token}"}).status_code == 403
    token = bridge.settings.secret("hs_token")
    # Only the header: the deprecated access_token query parameter is not accepted.
    assert client.get(url, params={"access_token": token}).status_code == 401
