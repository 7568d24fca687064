"""The policy module's allow-list of homeservers (``allowed_servers``), without a homeserver:
the pure rule, the config (module and bridge), and the callbacks over the fake module API
of ``test_synapse_policy``. The two-homeserver test is ``integration/test_federation.py``."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from bridge.config import ConfigError, generate_config, load_settings, policy_module
from tests.unit.test_synapse_policy import (
    BOT,
    CASE_ROOM,
    GHOST,
    NURSE,
    TOKEN,
    VALID,
    Clock,
    FakeApi,
    FakeEvent,
    check,
    is_refusal,
)

with warnings.catch_warnings():  # Synapse's import-time deprecation warnings
    warnings.simplefilter("ignore", DeprecationWarning)
    from synapse.module_api import NOT_SPAM, ModuleApi
    from synapse.module_api.errors import ConfigError as SynapseConfigError

    from bridge.synapse_policy import (
        NOT_ALLOWED_SERVER,
        NOT_INVITER,
        NOT_REGISTERED,
        PolicyConfig,
        WijkbrugPolicy,
        parse_policy_config,
        server_of,
        server_refusal,
    )

PROVIDER_NURSE = "@nurse9:zorg.example"  # on the provider's own, allowed homeserver
PORTED_NURSE = "@nurse8:zorg.example:8448"  # the same host, another server (port)
OUTSIDER = "@outsider:elders.example"  # a homeserver nobody allowed
ALLOWED = frozenset({"zorg.example"})


# ---------------------------------------------------------------------- pure rule


def test_the_server_of_a_matrix_id_keeps_its_port() -> None:
    assert server_of("@nurse:zorg.example") == "zorg.example"
    assert server_of("@nurse:localhost:8448") == "localhost:8448"


def test_without_a_list_every_server_may_enter() -> None:
    assert server_refusal(OUTSIDER, None, "localhost") is None


def test_with_a_list_only_listed_servers_and_the_own_server() -> None:
    assert server_refusal(NURSE, ALLOWED, "localhost") is None  # the homeserver itself
    assert server_refusal(PROVIDER_NURSE, ALLOWED, "localhost") is None
    assert server_refusal(OUTSIDER, ALLOWED, "localhost") == NOT_ALLOWED_SERVER
    # A server name is host and port: another port is another server.
    assert server_refusal(PORTED_NURSE, ALLOWED, "localhost") == NOT_ALLOWED_SERVER
    assert server_refusal(PORTED_NURSE, frozenset({"zorg.example:8448"}), "x") is None
    assert server_refusal(OUTSIDER, frozenset(), "localhost") == NOT_ALLOWED_SERVER


# ---------------------------------------------------------------------- config


def test_module_config_lists_allowed_servers() -> None:
    parsed = WijkbrugPolicy.parse_config({**VALID, "allowed_servers": ["zorg.example"]})
    assert parsed.allowed_servers == ALLOWED
    assert WijkbrugPolicy.parse_config(dict(VALID)).allowed_servers is None
    nobody = WijkbrugPolicy.parse_config({**VALID, "allowed_servers": []})
    assert nobody.allowed_servers == frozenset()  # only the homeserver itself


@pytest.mark.parametrize(
    "servers", ["zorg.example", [""], ["zorg example"], [8448], None, {"zorg.example": 1}]
)
def test_module_config_refuses_a_bad_list(servers: Any) -> None:
    with pytest.raises(SynapseConfigError) as error:
        WijkbrugPolicy.parse_config({**VALID, "allowed_servers": servers})
    assert str(error.value.msg).startswith("allowed_servers:")
    assert TOKEN not in str(error.value.msg)


def _settings_with(tmp_path: Path, homeserver: dict[str, Any]) -> Path:
    path = generate_config(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["homeserver"].update(homeserver)
    path.write_text(yaml.safe_dump(doc))
    return path


def test_bridge_config_passes_the_list_to_the_module(tmp_path: Path) -> None:
    path = _settings_with(tmp_path, {"allowed_servers": ["zorg.example", "localhost:8448"]})
    module = policy_module(load_settings(path))
    assert module["config"]["allowed_servers"] == ["zorg.example", "localhost:8448"]
    parsed = parse_policy_config(module["config"])
    assert parsed.allowed_servers == frozenset({"zorg.example", "localhost:8448"})


def test_without_a_list_the_module_config_is_unchanged(tmp_path: Path) -> None:
    # Generated homeserver configs (deploy/synapse) stay as they were.
    module = policy_module(load_settings(generate_config(tmp_path)))
    assert "allowed_servers" not in module["config"]


def test_bridge_config_refuses_a_bad_list(tmp_path: Path) -> None:
    path = _settings_with(tmp_path, {"allowed_servers": "zorg.example"})
    with pytest.raises(ConfigError, match=r"homeserver\.allowed_servers"):
        load_settings(path)


# ---------------------------------------------------------------------- the module


def policy(allowed: frozenset[str] | None) -> tuple[WijkbrugPolicy, FakeApi]:
    """The module in a case room, with every user registered in the bridge's directory:
    whatever is refused below is refused by the allow-list."""
    api = FakeApi(creators={CASE_ROOM: BOT})
    api.http_client.answers = {
        user: {"allowed": True} for user in (NURSE, PROVIDER_NURSE, PORTED_NURSE, OUTSIDER)
    }
    config = PolicyConfig(
        bridge_url="http://127.0.0.1:8080",
        hs_token=TOKEN,
        bot_user_id=BOT,
        ghosts=re.compile(r"@wijkbrug_.*:localhost"),
        allowed_servers=allowed,
    )
    return WijkbrugPolicy(config, cast(ModuleApi, api), clock=Clock()), api


async def test_the_bot_invites_only_from_allowed_servers() -> None:
    module, api = policy(ALLOWED)
    assert await module.user_may_invite(BOT, PROVIDER_NURSE, CASE_ROOM) is NOT_SPAM
    assert await module.user_may_invite(BOT, NURSE, CASE_ROOM) is NOT_SPAM
    assert await module.user_may_invite(BOT, GHOST, CASE_ROOM) is NOT_SPAM
    asked = len(api.http_client.calls)
    # Registered in the directory or not: a server off the list stays out, unasked.
    for user in (OUTSIDER, PORTED_NURSE):
        assert is_refusal(await module.user_may_invite(BOT, user, CASE_ROOM), NOT_ALLOWED_SERVER)
    assert len(api.http_client.calls) == asked


async def test_joins_only_from_allowed_servers() -> None:
    module, api = policy(ALLOWED)
    assert await module.user_may_join_room(PROVIDER_NURSE, CASE_ROOM, True) is NOT_SPAM
    verdict = await module.user_may_join_room(OUTSIDER, CASE_ROOM, True)
    assert is_refusal(verdict, NOT_ALLOWED_SERVER)
    assert all("outsider" not in url for url, _ in api.http_client.calls)


async def test_membership_over_federation_from_other_servers() -> None:
    module, _ = policy(ALLOWED)

    def member(sender: str, target: str, membership: str) -> FakeEvent:
        return FakeEvent("m.room.member", sender, CASE_ROOM, {"membership": membership}, target)

    # A provider's nurse (a member, on her own server) invites someone: whom decides why.
    verdict = await check(module, member(PROVIDER_NURSE, OUTSIDER, "invite"))
    assert is_refusal(verdict, NOT_ALLOWED_SERVER)
    assert is_refusal(await check(module, member(PROVIDER_NURSE, NURSE, "invite")), NOT_INVITER)
    # The outsider's join or knock (sent through a server that let him in) is refused.
    for membership in ("join", "knock"):
        event = member(OUTSIDER, OUTSIDER, membership)
        assert is_refusal(await check(module, event), NOT_ALLOWED_SERVER)
    assert await check(module, member(PROVIDER_NURSE, PROVIDER_NURSE, "join")) is NOT_SPAM
    # Leaving, and being kicked or banned, are always allowed.
    assert await check(module, member(OUTSIDER, OUTSIDER, "leave")) is NOT_SPAM
    assert await check(module, member(BOT, OUTSIDER, "ban")) is NOT_SPAM


async def test_without_a_list_the_directory_decides_alone() -> None:
    module, api = policy(None)
    assert await module.user_may_invite(BOT, OUTSIDER, CASE_ROOM) is NOT_SPAM
    module, api = policy(None)
    api.http_client.answers[OUTSIDER] = {"allowed": False}
    verdict = await module.user_may_join_room(OUTSIDER, CASE_ROOM, True)
    assert is_refusal(verdict, NOT_REGISTERED)
