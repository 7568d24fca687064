"""The admin JSON API and the admin page's HTTP contract (SQLite and PostgreSQL): tokens,
reads, edits within each role's scope, refusals recorded, bad input answered with the
field that is wrong (never a 500), and the page's session cookie and CSRF token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bridge.canonical import CareType, Priority
from bridge.config import generate_config, load_settings
from bridge.store import Store
from bridge.web.app import create_app
from tests.support.examples import region

pytestmark = pytest.mark.integration

HEADER = "care_type,pc4_from,pc4_to_or_wijk,provider_ura,rank,valid_from,valid_to\n"
OOST_URA, WEST_URA = "12345678", "87654321"


@dataclass
class Api:
    client: TestClient
    store: Store
    region_admin: str
    coordinator: str
    org_admin: str

    def get(self, path: str, token: str | None = None, **params: Any) -> Any:
        response = self.client.get(f"/admin/api/{path}", params=params, headers=auth(token))
        assert response.status_code == 200, response.text
        return response.json()


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def seed(store: Store) -> None:
    """The example region, a second provider, and three wijken."""
    region(store)  # Thuiszorg Oost (12345678), a team, wondzorg 1091-1098
    store.add_org("provider", "Buurtzorg West", agb=None, ura=WEST_URA)
    store.add_team(WEST_URA, "Team West", ["@nurse3:localhost"])
    store.add_wijk("Oost", [(1091, 1094)])
    store.add_wijk("Watergraafsmeer", [(1095, 1098)])
    store.add_wijk("West", [(1051, 1058)])


@pytest.fixture
def api(tmp_path: Path, database_url: str) -> Iterator[Api]:
    settings = load_settings(generate_config(tmp_path, database_url=database_url))
    with TestClient(create_app(settings, run_bridge=False)) as client:
        store: Store = client.app.state.bridge.store  # type: ignore[attr-defined]
        seed(store)
        _, region_admin = store.add_admin_token("anna", "region-admin")
        _, coordinator = store.add_admin_token("bram", "wijk-coordinator", ["Oost"])
        _, org_admin = store.add_admin_token("carla", "org-admin", [WEST_URA])
        yield Api(client, store, region_admin, coordinator, org_admin)


def gaps_of(api: Api, token: str, care_type: str) -> set[int]:
    coverage = api.get("coverage", token)
    return {g["pc4"] for g in coverage["gaps"] if g["care_type"] == care_type}


def latest_change(api: Api) -> dict[str, Any]:
    change: dict[str, Any] = api.store.changes(1)[0]
    return change


# ---------------------------------------------------------------------- tokens and reads

READS = [
    "organisations",
    "teams",
    "wijken",
    "routes",
    "availability",
    "coverage",
    "decisions",
    "changes",
    "explain?care_type=wondzorg&postcode=1092AB",
]


def test_every_call_needs_an_admin_token(api: Api) -> None:
    _, client_token = api.store.add_client("01234567", "his")
    for path in [*READS, "routes/import"]:
        method = api.client.post if path == "routes/import" else api.client.get
        for headers in (
            {},
            auth("wba_not-a-token"),
            auth(client_token),  # an integration client's token is no admin token
            {"Authorization": f"Basic {api.region_admin}"},
        ):
            response = method(f"/admin/api/{path}", headers=headers)
            assert response.status_code == 401, (path, headers.keys())
            assert response.json()["error"] == "login"


def test_every_admin_reads_the_region(api: Api) -> None:
    for token in (api.region_admin, api.coordinator, api.org_admin):
        orgs = api.get("organisations", token)
        assert {o["name"] for o in orgs} >= {"Thuiszorg Oost", "Buurtzorg West"}
        teams = api.get("teams", token)
        assert [t["name"] for t in teams] == ["Team Watergraafsmeer", "Team West"]
        assert teams[0]["provider"]["code"] == OOST_URA
        wijken = {w["name"]: w["pc4"] for w in api.get("wijken", token)}
        assert wijken["Oost"] == [1091, 1092, 1093, 1094]
        routes = api.get("routes", token)
        assert [(r["care_type"], r["area"], r["provider"]["code"]) for r in routes] == [
            ("wondzorg", "PC4 1091-1098", OOST_URA)
        ]
        coverage = api.get("coverage", token)
        assert coverage["areas"][0] == 1051 and coverage["areas"][-1] == 1098
        assert {"pc4": 1092, "care_type": "wijkverpleging"} in coverage["gaps"]
        assert {"pc4": 1092, "care_type": "wondzorg"} not in coverage["gaps"]
        assert api.get("availability", token) == []
        assert api.get("changes", token, limit=3)[0]["action"] == "admin.add"


def test_coverage_can_be_asked_for_other_areas_and_moments(api: Api) -> None:
    coverage = api.get("coverage", api.region_admin, pc4="1092", at="2030-01-01")
    assert coverage["areas"] == [1092]
    assert coverage["at"].startswith("2030-01-01T00:00:00")
    assert len(coverage["gaps"]) == len(CareType) - 1


def test_decisions_show_what_was_routed(api: Api) -> None:
    decision = api.store.decide(CareType.WONDZORG, "1092AB")
    api.store.record_decision(decision, Priority.ROUTINE, None)
    api.store.record_decision(api.store.decide(CareType.GGZ, "1092AB"), Priority.URGENT, None)
    latest, earlier = api.get("decisions", api.coordinator)
    assert (latest["care_type"], latest["routed"], latest["priority"]) == ("ggz", False, "urgent")
    assert (earlier["provider"], earlier["pc4"]) == ("Thuiszorg Oost", 1092)


def test_explain_gives_the_decision_and_reasons_of_route_explain(api: Api) -> None:
    at = "2030-03-04T10:00:00+01:00"
    body = api.get(
        "explain", api.org_admin, care_type="wondzorg", postcode="1092 ab", at=at, priority="asap"
    )
    expected = api.store.explain(
        CareType.WONDZORG, "1092AB", datetime.fromisoformat(at), Priority.ASAP
    )
    assert body["reasons"] == list(expected.reasons)
    assert body["reasons"][-1].endswith("the nurse's answers go to the practice")
    assert body["routed"] is True and body["provider"]["name"] == "Thuiszorg Oost"
    assert (body["postcode"], body["pc4"], body["priority"]) == ("1092AB", 1092, "asap")
    assert body["at"] == "2030-03-04T09:00:00+00:00"
    unroutable = api.get("explain", api.org_admin, care_type="ggz", postcode="1092AB")
    assert unroutable["routed"] is False and unroutable["provider"] is None
    assert unroutable["reasons"][0] == "no route for ggz in PC4 1092"


# ---------------------------------------------------------------------- edits


def test_region_admin_adds_and_removes_a_route_and_the_change_is_recorded(api: Api) -> None:
    assert 1092 in gaps_of(api, api.region_admin, "wijkverpleging")
    response = api.client.post(
        "/admin/api/routes",
        json={
            "care_type": "wijkverpleging",
            "pc4": "1091-1098",
            "provider": OOST_URA,
            "valid_from": "2020-01-01",
        },
        headers=auth(api.region_admin),
    )
    assert response.status_code == 201, response.text
    route = response.json()
    assert (route["area"], route["rank"], route["valid_to"]) == ("PC4 1091-1098", 1, None)
    assert route["valid_from"] == "2020-01-01T00:00:00+00:00"
    assert 1092 not in gaps_of(api, api.region_admin, "wijkverpleging")
    change = latest_change(api)
    assert (change["actor"], change["action"]) == ("admin:anna", "route.add")
    assert change["before"] is None and change["after"]["area"] == "1091-1098"

    removed = api.client.delete(f"/admin/api/routes/{route['id']}", headers=auth(api.region_admin))
    assert removed.status_code == 204
    assert 1092 in gaps_of(api, api.region_admin, "wijkverpleging")
    change = latest_change(api)
    assert (change["actor"], change["action"]) == ("admin:anna", "route.remove")
    assert change["before"]["care_type"] == "wijkverpleging" and change["after"] is None
    again = api.client.delete(f"/admin/api/routes/{route['id']}", headers=auth(api.region_admin))
    assert again.status_code == 404
    assert again.json()["message"].startswith("route_id: ")


def test_availability_full_and_clear_change_the_coverage(api: Api) -> None:
    until = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    response = api.client.post(
        "/admin/api/availability",
        json={"provider": OOST_URA, "until": until, "care_type": "wondzorg", "note": "vol"},
        headers=auth(api.region_admin),
    )
    assert response.status_code == 201, response.text
    block = response.json()
    assert block["active"] is True and block["provider"]["code"] == OOST_URA
    assert block["care_type"] == "wondzorg" and block["team"] is None
    assert 1092 in gaps_of(api, api.region_admin, "wondzorg")
    assert [b["id"] for b in api.get("availability", api.coordinator)] == [block["id"]]
    assert latest_change(api)["action"] == "availability.full"

    cleared = api.client.delete(
        f"/admin/api/availability/{block['id']}", headers=auth(api.region_admin)
    )
    assert cleared.status_code == 204
    assert 1092 not in gaps_of(api, api.region_admin, "wondzorg")
    assert latest_change(api)["action"] == "availability.open"


def test_team_is_added(api: Api) -> None:
    response = api.client.post(
        "/admin/api/teams",
        json={
            "provider": WEST_URA,
            "name": "Team Palliatief",
            "members": ["@nurse4:localhost", "@nurse5:localhost"],
            "care_types": ["palliatieve-zorg"],
            "pc4": ["1051-1054", "1058"],
        },
        headers=auth(api.org_admin),
    )
    assert response.status_code == 201, response.text
    team = response.json()
    assert team["members"] == ["@nurse4:localhost", "@nurse5:localhost"]
    assert (team["care_types"], team["pc4"]) == (["palliatieve-zorg"], ["1051-1054", "1058"])
    change = latest_change(api)
    assert (change["actor"], change["action"]) == ("admin:carla", "team.add")


# ---------------------------------------------------------------------- scope


def refused(api: Api, token: str, method: str, path: str, **kwargs: Any) -> str:
    before = len(api.store.route_rules())
    response = api.client.request(method, f"/admin/api/{path}", headers=auth(token), **kwargs)
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"] == "forbidden"
    assert len(api.store.route_rules()) == before
    message: str = body["message"]
    return message


def test_coordinator_changes_routes_only_in_their_wijken(api: Api) -> None:
    token = api.coordinator
    route = {"care_type": "wijkverpleging", "provider": OOST_URA}
    by_pc4 = api.client.post(
        "/admin/api/routes", json={**route, "pc4": "1091-1094"}, headers=auth(token)
    )
    assert by_pc4.status_code == 201, by_pc4.text
    by_wijk = api.client.post(
        "/admin/api/routes", json={**route, "wijk": "Oost", "rank": 2}, headers=auth(token)
    )
    assert by_wijk.status_code == 201, by_wijk.text
    assert latest_change(api)["actor"] == "admin:bram"

    message = refused(api, token, "POST", "routes", json={**route, "pc4": "1091-1096"})
    assert message == "pc4: PC4 1091-1096 lies outside your wijken (Oost): 1095-1096"
    denial = latest_change(api)
    assert (denial["actor"], denial["action"]) == ("admin:bram", "denied:route.add")
    assert denial["after"] == {"reason": message}
    message = refused(api, token, "POST", "routes", json={**route, "wijk": "Watergraafsmeer"})
    assert message.startswith("wijk: wijk Watergraafsmeer lies outside your wijken")
    # The region's wondzorg route runs over 1091-1098: not only Oost.
    region_route = next(r["id"] for r in api.get("routes", token) if r["care_type"] == "wondzorg")
    message = refused(api, token, "DELETE", f"routes/{region_route}")
    assert message.startswith("pc4: ")
    assert latest_change(api)["action"] == "denied:route.remove"
    # Teams and availability belong to the organisations.
    assert refused(api, token, "POST", "teams", json={"provider": OOST_URA, "name": "X"})
    until = "2031-01-01"
    refused(api, token, "POST", "availability", json={"provider": OOST_URA, "until": until})
    assert latest_change(api)["action"] == "denied:availability.full"


def test_coordinator_imports_only_rows_in_their_wijken(api: Api) -> None:
    sheet = HEADER + f"ggz,1091,1094,{OOST_URA},1,,\nggz,1095,1098,{OOST_URA},1,,\n"
    response = api.client.post(
        "/admin/api/routes/import", content=sheet, headers=auth(api.coordinator)
    )
    assert response.status_code == 403
    body = response.json()
    assert body["message"] == "sheet: 1 row(s) outside your wijken"
    assert body["errors"] == [
        "line 3: pc4: PC4 1095-1098 lies outside your wijken (Oost): 1095-1098"
    ]
    assert latest_change(api)["action"] == "denied:route.import"
    ok = api.client.post(
        "/admin/api/routes/import",
        content=HEADER + f"ggz,,Oost,{OOST_URA},1,,\n",
        headers=auth(api.coordinator),
    )
    assert ok.status_code == 200 and ok.json() == {"added": 1, "rows": 1}


def test_org_admin_manages_only_their_organisation(api: Api) -> None:
    token = api.org_admin
    mine = api.client.post(
        "/admin/api/availability",
        json={"provider": WEST_URA, "team": "Team West", "until": "2031-01-01"},
        headers=auth(token),
    )
    assert mine.status_code == 201, mine.text
    assert mine.json()["team"]["name"] == "Team West"
    theirs = refused(
        api, token, "POST", "availability", json={"provider": OOST_URA, "until": "2031-01-01"}
    )
    assert theirs == f"provider: {OOST_URA} is not your organisation ({WEST_URA})"
    assert refused(api, token, "POST", "teams", json={"provider": OOST_URA, "name": "Team X"})
    assert latest_change(api)["action"] == "denied:team.add"
    route = {"care_type": "ggz", "pc4": "1051", "provider": WEST_URA}
    assert refused(api, token, "POST", "routes", json=route).startswith("role: ")
    assert refused(api, token, "POST", "routes/import", content=HEADER).startswith("role: ")
    # A block of another organisation cannot be cleared by them.
    other = api.store.add_unavailability(
        OOST_URA, datetime.now(UTC), datetime.now(UTC) + timedelta(days=1)
    )
    assert refused(api, token, "DELETE", f"availability/{other}").startswith("provider: ")
    cleared = api.client.delete(f"/admin/api/availability/{mine.json()['id']}", headers=auth(token))
    assert cleared.status_code == 204


# ---------------------------------------------------------------------- bad input

ROUTE = {"care_type": "wijkverpleging", "pc4": "1051-1058", "provider": WEST_URA}

BAD: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("POST", "routes", {"json": {**ROUTE, "pc4": "10x"}}, 400, "pc4:"),
    ("POST", "routes", {"json": {**ROUTE, "pc4": "999-1005"}}, 400, "pc4:"),
    ("POST", "routes", {"json": {**ROUTE, "pc4": "1058-1051"}}, 400, "pc4:"),
    ("POST", "routes", {"json": {**ROUTE, "wijk": "West"}}, 400, "pc4:"),
    ("POST", "routes", {"json": {**ROUTE, "pc4": None}}, 400, "pc4:"),
    ("POST", "routes", {"json": {**ROUTE, "pc4": None, "wijk": "Nergens"}}, 404, "wijk:"),
    ("POST", "routes", {"json": {**ROUTE, "care_type": "kapper"}}, 400, "care_type:"),
    ("POST", "routes", {"json": {**ROUTE, "care_type": None}}, 400, "care_type:"),
    ("POST", "routes", {"json": {**ROUTE, "provider": "99999999"}}, 404, "provider:"),
    ("POST", "routes", {"json": {**ROUTE, "provider": "01234567"}}, 400, "provider:"),
    ("POST", "routes", {"json": {**ROUTE, "provider": ["x"]}}, 400, "provider:"),
    ("POST", "routes", {"json": {**ROUTE, "rank": 0}}, 400, "rank:"),
    ("POST", "routes", {"json": {**ROUTE, "rank": "２"}}, 400, "rank:"),
    ("POST", "routes", {"json": {**ROUTE, "rank": 10**12}}, 400, "rank:"),
    ("POST", "routes", {"json": {**ROUTE, "valid_from": "gisteren"}}, 400, "valid_from:"),
    (
        "POST",
        "routes",
        {"json": {**ROUTE, "valid_from": "2030-01-01", "valid_to": "2029-01-01"}},
        400,
        "valid_to:",
    ),
    ("POST", "routes", {"json": {**ROUTE, "pc4": "1091-1098", "care_type": "wondzorg"}}, 409, ""),
    ("POST", "routes", {"json": {**ROUTE, "colour": "red"}}, 400, "colour:"),
    ("POST", "routes", {"json": ["not", "an", "object"]}, 400, "body:"),
    ("POST", "routes", {"content": b"{not json"}, 400, "body:"),
    ("POST", "routes", {"content": b"\xff\xfe"}, 400, "body:"),
    ("DELETE", "routes/abc", {}, 400, "route_id:"),
    ("DELETE", "routes/99999999999999999999", {}, 400, "route_id:"),
    ("DELETE", "routes/4242", {}, 404, "route_id:"),
    ("POST", "availability", {"json": {"provider": WEST_URA}}, 400, "until:"),
    ("POST", "availability", {"json": {"provider": WEST_URA, "until": "x"}}, 400, "until:"),
    (
        "POST",
        "availability",
        {"json": {"provider": WEST_URA, "from": "2031-01-02", "until": "2031-01-01"}},
        400,
        "until:",
    ),
    (
        "POST",
        "availability",
        {"json": {"provider": WEST_URA, "until": "9999-12-31T23:00:00-05:00"}},
        400,
        "until:",
    ),
    (
        "POST",
        "availability",
        {"json": {"provider": WEST_URA, "until": "2031-01-01", "team": "Geen"}},
        404,
        "team:",
    ),
    (
        "POST",
        "availability",
        {"json": {"provider": WEST_URA, "until": "2031-01-01", "note": "x" * 201}},
        400,
        "note:",
    ),
    ("POST", "availability", {"json": {"until": "2031-01-01"}}, 400, "provider:"),
    ("DELETE", "availability/0", {}, 400, "availability_id:"),
    ("DELETE", "availability/77", {}, 404, "availability_id:"),
    ("POST", "teams", {"json": {"provider": WEST_URA, "name": " "}}, 400, "name:"),
    ("POST", "teams", {"json": {"provider": WEST_URA, "name": "x" * 201}}, 400, "name:"),
    ("POST", "teams", {"json": {"provider": WEST_URA, "name": "Team West"}}, 409, "name:"),
    (
        "POST",
        "teams",
        {"json": {"provider": WEST_URA, "name": "N", "members": ["nurse"]}},
        400,
        "member",
    ),
    ("POST", "teams", {"json": {"provider": WEST_URA, "name": "N", "members": "@a:b"}}, 400, "m"),
    ("POST", "teams", {"json": {"provider": WEST_URA, "name": "N", "pc4": ["12"]}}, 400, "pc4:"),
    (
        "POST",
        "teams",
        {"json": {"provider": WEST_URA, "name": "N", "care_types": ["x"]}},
        400,
        "care_types:",
    ),
    ("GET", "changes?limit=0", {}, 400, "limit:"),
    ("GET", "decisions?limit=abc", {}, 400, "limit:"),
    ("GET", "coverage?pc4=12", {}, 400, "pc4:"),
    ("GET", "coverage?pc4=1000-9999&pc4=1000-9999", {}, 400, "pc4:"),
    ("GET", "coverage?at=morgen", {}, 400, "at:"),
    ("GET", "explain?postcode=1092AB", {}, 400, "care_type:"),
    ("GET", "explain?care_type=wondzorg", {}, 400, "postcode:"),
    ("GET", "explain?care_type=wondzorg&postcode=10", {}, 400, "postcode:"),
    ("GET", "explain?care_type=wondzorg&postcode=1092AB&priority=now", {}, 400, "priority:"),
    ("GET", "explain?care_type=x&postcode=1092AB", {}, 400, "care_type:"),
    ("GET", "nothing-here", {}, 404, ""),
]


def test_bad_input_names_the_field_and_changes_nothing(api: Api) -> None:
    # One test over every case (a database per case would make the suite slow).
    changes = len(api.store.changes(500))
    for method, path, kwargs, status, field in BAD:
        response = api.client.request(
            method, f"/admin/api/{path}", headers=auth(api.region_admin), **kwargs
        )
        case = f"{method} {path} {kwargs}"
        assert response.status_code == status, (case, response.text)
        body = response.json()
        assert set(body) == {"error", "message"}, case
        assert body["message"].startswith(field), (case, body)
        if status == 409:
            assert body["error"] == "conflict" and re.match(r"^\w+: ", body["message"]), case
    assert len(api.store.changes(500)) == changes


def test_import_is_all_or_nothing_with_every_bad_line(api: Api) -> None:
    good = HEADER + f"ggz,1091,1098,{OOST_URA},1,,\nggz,,West,{WEST_URA},1,,\n"
    first = api.client.post(
        "/admin/api/routes/import", content=good.encode(), headers=auth(api.region_admin)
    )
    assert first.status_code == 200 and first.json() == {"added": 2, "rows": 2}
    assert latest_change(api)["actor"] == "admin:anna"
    again = api.client.post(
        "/admin/api/routes/import", content=good.encode(), headers=auth(api.region_admin)
    )
    assert again.json() == {"added": 0, "rows": 2}

    routes = len(api.store.route_rules())
    bad = (
        HEADER
        + f"medicatie,1091,1098,{OOST_URA},1,,\n"
        + f"kapper,1091,1098,{OOST_URA},1,,\n"
        + f"medicatie,,Nergens,{OOST_URA},1,,\n"
    )
    response = api.client.post(
        "/admin/api/routes/import", content=bad.encode(), headers=auth(api.region_admin)
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "value"
    assert body["message"] == "sheet: 2 bad row(s), nothing imported"
    assert [e.split(":")[0] for e in body["errors"]] == ["line 3", "line 4"]
    assert "care_type" in body["errors"][0] and "wijk" in body["errors"][1]
    assert len(api.store.route_rules()) == routes
    for content, field in ((b"", "sheet:"), (b"\xff", "body:")):
        response = api.client.post(
            "/admin/api/routes/import", content=content, headers=auth(api.region_admin)
        )
        assert response.status_code == 400 and response.json()["message"].startswith(field)


# ---------------------------------------------------------------------- the page's contract


def login(api: Api, token: str) -> str:
    response = api.client.post("/admin/login", data={"token": token}, follow_redirects=False)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    assert token not in cookie
    page = api.client.get("/admin")
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert match, "the page carries a CSRF token"
    return match.group(1)


def test_page_login_logout_and_bad_tokens(api: Api) -> None:
    first = api.client.get("/admin")
    assert 'name="token"' in first.text
    assert "frame-ancestors 'none'" in first.headers["content-security-policy"]
    assert first.headers["cache-control"] == "no-store"
    wrong = api.client.post("/admin/login", data={"token": "wba_wrong"})
    assert wrong.status_code == 401 and "Onbekend of ingetrokken beheertoken" in wrong.text
    assert "wba_wrong" not in wrong.text  # a token is never echoed
    login(api, api.region_admin)
    page = api.client.get("/admin")
    assert "Ingelogd als <strong>anna</strong>" in page.text
    out = api.client.post("/admin/logout", follow_redirects=False)
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    api.client.cookies.clear()
    assert 'name="token"' in api.client.get("/admin?uit=1").text


def test_page_refuses_forged_cookies_and_forms_without_csrf(api: Api) -> None:
    api.client.cookies.set("wijkbrug_admin", "eyJhIjoxfQ.forged.signature", path="/admin")
    assert 'name="token"' in api.client.get("/admin").text
    api.client.cookies.clear()
    form = {"care_type": "ggz", "pc4": "1051", "provider": WEST_URA}
    anonymous = api.client.post("/admin/routes", data=form)
    assert anonymous.status_code == 401
    csrf = login(api, api.region_admin)
    stale = api.client.post("/admin/routes", data={**form, "csrf": "0" * 64})
    assert stale.status_code == 403 and "verouderd" in stale.text
    added = api.client.post("/admin/routes", data={**form, "csrf": csrf}, follow_redirects=False)
    assert added.status_code == 303 and "klaar=route-added" in added.headers["location"]
    assert latest_change(api)["actor"] == "admin:anna"


def test_page_keeps_input_and_names_the_field(api: Api) -> None:
    csrf = login(api, api.coordinator)
    form = {"csrf": csrf, "care_type": "ggz", "pc4": "10x9", "provider": OOST_URA, "rank": "1"}
    bad = api.client.post("/admin/routes", data=form)
    assert bad.status_code == 400
    assert "PC4 of bereik: ‘10x9’ is geen PC4" in bad.text
    assert 'value="10x9"' in bad.text and 'aria-invalid="true"' in bad.text
    outside = api.client.post("/admin/routes", data={**form, "pc4": "1095"})
    assert outside.status_code == 403
    assert (
        "niet toegestaan voor jouw rol" in outside.text
        and "ligt buiten jouw wijken" in outside.text
    )
    assert latest_change(api)["action"] == "denied:route.add"
    # A coordinator sees no team or availability forms; an org admin no route form.
    assert 'id="team-form"' not in bad.text and 'id="route-form"' in bad.text
    api.client.cookies.clear()
    login(api, api.org_admin)
    page = api.client.get("/admin").text
    assert 'id="team-form"' in page and 'id="full-form"' in page and 'id="route-form"' not in page


def test_page_team_form_explain_and_coverage_on_a_day(api: Api) -> None:
    csrf = login(api, api.org_admin)
    form = {
        "csrf": csrf,
        "provider": WEST_URA,
        "name": "Team Noord",
        "members": "@nurse6:localhost\nnurse7",
        "care_types": ["ggz", "wondzorg"],
        "pc4": "1051-1054, 1058",
    }
    bad = api.client.post("/admin/teams", data=form)
    assert bad.status_code == 400
    assert "Leden: ‘nurse7’ is geen Matrix-ID" in bad.text
    assert "@nurse6:localhost\nnurse7</textarea>" in bad.text  # the input is kept
    assert bad.text.count("checked") == 2
    good = api.client.post(
        "/admin/teams", data={**form, "members": "@nurse6:localhost"}, follow_redirects=False
    )
    assert good.status_code == 303 and "klaar=team-added" in good.headers["location"]
    team = next(t for t in api.store.list_teams() if t.name == "Team Noord")
    assert team.pc4_ranges == ((1051, 1054), (1058, 1058))
    assert {c.value for c in team.care_types} == {"ggz", "wondzorg"}
    page = api.client.get(good.headers["location"])
    assert f"Team #{team.id} is toegevoegd." in page.text
    duplicate = api.client.post("/admin/teams", data={**form, "members": ""})
    assert duplicate.status_code == 409 and "Naam: botst met wat er al is" in duplicate.text

    explained = api.client.get(
        "/admin", params={"uitleg_zorgsoort": "wondzorg", "uitleg_postcode": "1092 AB"}
    )
    assert "→ Thuiszorg Oost" in explained.text and "matched route #" in explained.text
    wrong = api.client.get(
        "/admin", params={"uitleg_zorgsoort": "wondzorg", "uitleg_postcode": "x"}
    )
    assert "Postcode: ‘x’ is geen Nederlandse postcode" in wrong.text
    # A route that starts later shows up in the coverage of a later day only.
    api.store.add_route(
        CareType.GGZ, 1091, 1098, OOST_URA, valid_from=datetime(2040, 1, 1, tzinfo=UTC)
    )
    today = api.client.get("/admin").text
    later = api.client.get("/admin", params={"datum": "2040-06-01"}).text
    assert today.count('data-gap="1"') - later.count('data-gap="1"') == 1


def test_page_dates_out_of_range_are_refused_not_crashed(api: Api) -> None:
    csrf = login(api, api.region_admin)
    full = {"csrf": csrf, "provider": OOST_URA, "until": "9999-12-31"}
    response = api.client.post("/admin/availability", data=full)
    assert response.status_code == 400 and "Vol tot en met: ‘9999-12-31’" in response.text
    route = {"csrf": csrf, "care_type": "ggz", "pc4": "1051", "provider": WEST_URA}
    response = api.client.post("/admin/routes", data={**route, "valid_from": "0001-01-01"})
    assert response.status_code == 400 and "Geldig vanaf: ‘0001-01-01’" in response.text
    assert api.client.get("/admin", params={"datum": "0001-01-01"}).status_code == 200
