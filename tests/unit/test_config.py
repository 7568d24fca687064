"""Configuration: errors name the key path; secrets come from files; registration matches."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bridge.config import (
    ConfigError,
    generate_config,
    load_settings,
    parse_settings,
    registration,
)


def test_generated_config_reads_tokens_from_private_files(tmp_path: Path) -> None:
    path = generate_config(tmp_path, port=9999)
    settings = load_settings(path)
    assert settings.http.port == 9999
    token_file = tmp_path / "secrets" / "as_token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert settings.secret("as_token") == token_file.read_text()
    assert settings.secret("as_token") not in path.read_text()
    assert settings.database_url.startswith("sqlite:///") and str(tmp_path) in settings.database_url


def test_regenerating_keeps_the_tokens(tmp_path: Path) -> None:
    first = load_settings(generate_config(tmp_path)).secret("hs_token")
    again = load_settings(generate_config(tmp_path, port=1234, overwrite=True))
    assert again.secret("hs_token") == first and again.http.port == 1234


def test_errors_name_the_key_path() -> None:
    with pytest.raises(ConfigError, match=r"http\.port"):
        parse_settings({"appservice": {"as_token": "a", "hs_token": "b"}, "http": {"port": "x"}})
    with pytest.raises(ConfigError, match="appservice"):
        parse_settings({"appservice": {"as_token": "a"}})
    with pytest.raises(ConfigError, match=r"database\.uri"):
        parse_settings({"appservice": {"as_token": "a", "hs_token": "b"}, "database": {"uri": "x"}})


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(bad)


def test_the_worker_index_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One config file for every replica (a StatefulSet, two compose services): each
    process takes its ``workers.index`` from $WIJKBRUG_WORKER_INDEX."""
    path = generate_config(tmp_path, database_url="postgresql+psycopg://wijkbrug@db/wijkbrug")
    path.write_text(path.read_text() + "workers:\n  count: 2\n")
    assert load_settings(path).workers.index == 0
    monkeypatch.setenv("WIJKBRUG_WORKER_INDEX", "1")
    settings = load_settings(path)
    assert (settings.workers.count, settings.workers.index, settings.workers.primary) == (
        2,
        1,
        False,
    )
    monkeypatch.setenv("WIJKBRUG_WORKER_INDEX", "2")  # past count: the usual range error
    with pytest.raises(ConfigError, match=r"workers.*index must be 0 \.\. count - 1"):
        load_settings(path)
    monkeypatch.setenv("WIJKBRUG_WORKER_INDEX", "one")
    with pytest.raises(ConfigError, match="WIJKBRUG_WORKER_INDEX: expected a whole number"):
        load_settings(path)


def test_registration_claims_the_ghost_namespace_exclusively() -> None:
    settings = parse_settings(
        {"appservice": {"as_token": "a", "hs_token": "b"}, "homeserver": {"server_name": "zorg.nl"}}
    )
    reg = registration(settings)
    assert reg["sender_localpart"] == "wijkbrug-appservice" and reg["rate_limited"] is False
    assert reg["namespaces"]["users"] == [
        {"exclusive": True, "regex": r"@wijkbrug:zorg\.nl"},
        {"exclusive": True, "regex": r"@wijkbrug_.*:zorg\.nl"},
    ]
    assert reg["as_token"] == "a" and reg["hs_token"] == "b"


def test_escalation_limits_follow_fhir_priority_order() -> None:
    """stat is more urgent than asap, asap more than urgent (FHIR request-priority, the
    order the outbox delivers in): a more urgent message never waits longer."""
    base = {"appservice": {"as_token": "a", "hs_token": "b"}}
    limits = parse_settings(base).escalation  # the defaults the README gives
    assert [limits.limit_minutes(p) for p in ("stat", "asap", "urgent", "routine")] == [
        15,
        20,
        30,
        None,
    ]
    with pytest.raises(ConfigError, match=r"escalation.*asap_minutes <= urgent_minutes"):
        parse_settings({**base, "escalation": {"urgent_minutes": 30, "asap_minutes": 60}})
    with pytest.raises(ConfigError, match=r"escalation\.stat_minutes"):
        parse_settings({**base, "escalation": {"stat_minutes": 0}})
    with pytest.raises(ConfigError, match="got stat 15, asap 5, urgent 5"):
        parse_settings({**base, "escalation": {"urgent_minutes": 5, "asap_minutes": 5}})
    tight = {"urgent_minutes": 5, "asap_minutes": 5, "stat_minutes": 2}
    assert parse_settings({**base, "escalation": tight}).escalation.limit_minutes("stat") == 2


def test_office_hours_are_checked() -> None:
    base = {"appservice": {"as_token": "a", "hs_token": "b"}}
    settings = parse_settings({**base, "office_hours": {"opens": "07:30", "closes": "18:00"}})
    assert [t.isoformat() for t in settings.office_hours.window()] == ["07:30:00", "18:00:00"]
    with pytest.raises(ConfigError, match=r"office_hours"):
        parse_settings({**base, "office_hours": {"opens": "half acht"}})
