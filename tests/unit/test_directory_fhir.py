"""The directory as read-only FHIR: Organization, HealthcareService, PractitionerRole, Endpoint.

Every resource the API returns is validated with the R4B models (explicitly R4B: the root
of ``fhir.resources`` is R5).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.endpoint import Endpoint
from fhir.resources.R4B.healthcareservice import HealthcareService
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.practitionerrole import PractitionerRole

from bridge.canonical import CARE_TYPE_SYSTEM, CareType
from bridge.config import generate_config, load_settings
from bridge.identifiers import AGB_SYSTEM, BIG_SYSTEM, MATRIX_SYSTEM, URA_SYSTEM, UZI_SYSTEM
from bridge.service import Bridge
from bridge.web.app import create_app
from bridge.web.directory_fhir import endpoint_id, matrix_uri
from tests.support.examples import region

Api = tuple[TestClient, dict[str, str]]

MODELS: dict[str, Any] = {
    "Organization": Organization,
    "HealthcareService": HealthcareService,
    "PractitionerRole": PractitionerRole,
    "Endpoint": Endpoint,
}
TYPES = tuple(MODELS)
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
ORG_TYPE = "http://nictiz.nl/fhir/NamingSystem/organization-type"
LONG_MXID = "@" + "wijkverpleegkundige." * 4 + "noord:thuiszorg-noord.example"
ODD_MXID = "@wijk_zorg/2=b+c:zorg.example:8448"


def seed(bridge: Bridge) -> None:
    """The shared example region plus every kind of organisation, team and practitioner."""
    store = bridge.store
    region(store)  # 2 practices, Thuiszorg Oost (URA) with a team that lists nothing
    store.add_org("provider", "Zorgcoöperatie Zuid", agb="87654321", ura="23456789")
    store.add_org("hap", "Huisartsenpost Amsterdam", agb="01111111", ura=None)
    store.add_wijk("De Pijp", [(1072, 1074)])
    store.add_wijk("Watergraafsmeer", [(1097, 1098)])
    store.add_wijk("Dapperbuurt", [(1091, 1091)])
    store.add_team(
        "23456789",
        "Team Pijp",
        ["@nurse3:zorg.example", "@nurse1:localhost", ODD_MXID, LONG_MXID],
        care_types=[CareType.WONDZORG, CareType.WIJKVERPLEGING],
        pc4_ranges=[(1071, 1075), (1091, 1091)],
    )
    store.add_practitioner(
        "01234567",
        "A. Jansen",
        agb="01000001",
        uzi="123456789",
        big="19012345678",
        matrix_id="@a.jansen:huisarts.example",
    )
    store.add_practitioner("01234568", "B. de Vries", big="29012345678")
    store.add_practitioner("01111111", "Émile Özdemir", agb="01000002")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    settings = load_settings(generate_config(tmp_path))
    with TestClient(create_app(settings, run_bridge=False)) as client:
        bridge: Bridge = client.app.state.bridge  # type: ignore[attr-defined]
        seed(bridge)
        # A provider's token reads the whole directory, not only its own organisation.
        _, token = bridge.store.add_client("12345678", "ecd")
        yield client, {"Authorization": f"Bearer {token}"}


def local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def search(api: Api, path: str, **params: str) -> dict[str, Any]:
    client, headers = api
    # (httpx replaces a URL's own query by params, even empty ones.)
    resp = client.get(path, params=params or None, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/fhir+json")
    bundle: dict[str, Any] = resp.json()
    Bundle.model_validate(bundle)
    assert bundle["type"] == "searchset"
    assert bundle["total"] >= len(bundle["entry"])
    for entry in bundle["entry"]:
        resource = entry["resource"]
        MODELS[resource["resourceType"]].model_validate(resource)
        assert entry["fullUrl"].endswith(f"/fhir/{resource['resourceType']}/{resource['id']}")
        assert entry["search"] == {"mode": "match"}
    return bundle


def everything(api: Api, resource_type: str) -> list[dict[str, Any]]:
    bundle = search(api, f"/fhir/{resource_type}", _count="1000")
    assert bundle["total"] == len(bundle["entry"])
    return [e["resource"] for e in bundle["entry"]]


def ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle["entry"]]


def names(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["name"] for e in bundle["entry"]]


def references(node: Any) -> Iterator[str]:
    """Every ``reference`` anywhere in a resource."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def outcome(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


# ---------------------------------------------------------------- every resource


@pytest.mark.parametrize("resource_type", TYPES)
def test_every_resource_validates_and_reads_back(api: Api, resource_type: str) -> None:
    client, headers = api
    resources = everything(api, resource_type)
    assert resources
    for resource in resources:
        assert FHIR_ID.match(resource["id"])
        resp = client.get(f"/fhir/{resource_type}/{resource['id']}", headers=headers)
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/fhir+json")
        assert resp.json() == resource
        MODELS[resource_type].model_validate(resp.json())
        # dom-3: every contained resource is referenced from its container.
        local_refs = set(references(resource))
        assert {f"#{c['id']}" for c in resource.get("contained", [])} <= local_refs


def test_logical_ids_are_stable(api: Api) -> None:
    first = {t: [r["id"] for r in everything(api, t)] for t in TYPES}
    assert first == {t: [r["id"] for r in everything(api, t)] for t in TYPES}
    assert first["Organization"] == [f"org-{n}" for n in range(1, 6)]
    assert first["HealthcareService"] == ["team-1", "team-2"]
    assert first["PractitionerRole"] == ["role-1", "role-2", "role-3"]
    assert "endpoint-nurse1--localhost" in first["Endpoint"]


# ---------------------------------------------------------------- Organization


def test_organizations_of_every_kind(api: Api) -> None:
    by_name = {o["name"]: o for o in everything(api, "Organization")}
    kinds = {name: o["type"][0]["coding"][0] for name, o in by_name.items()}
    assert kinds["Huisartsenpraktijk De Pijp"]["code"] == "Z3"
    assert kinds["Thuiszorg Oost"]["code"] == "T2"
    assert kinds["Huisartsenpost Amsterdam"]["code"] == "N6"
    assert {c["system"] for c in kinds.values()} == {ORG_TYPE}
    assert by_name["Huisartsenpraktijk De Pijp"]["identifier"] == [
        {"system": AGB_SYSTEM, "value": "01234567"}
    ]
    assert by_name["Thuiszorg Oost"]["identifier"] == [{"system": URA_SYSTEM, "value": "12345678"}]
    assert by_name["Zorgcoöperatie Zuid"]["identifier"] == [
        {"system": URA_SYSTEM, "value": "23456789"},
        {"system": AGB_SYSTEM, "value": "87654321"},
    ]


def test_search_organizations_by_identifier(api: Api) -> None:
    path = "/fhir/Organization"
    assert names(search(api, path, identifier=f"{URA_SYSTEM}|12345678")) == ["Thuiszorg Oost"]
    assert names(search(api, path, identifier="87654321")) == ["Zorgcoöperatie Zuid"]
    # An OID system (STU3-era senders) means the same NamingSystem.
    oid = "urn:oid:2.16.840.1.113883.2.4.6.1|01234567"
    assert names(search(api, path, identifier=oid)) == ["Huisartsenpraktijk De Pijp"]
    # Wrong system for the value, no system, any value of a system, and OR by comma.
    assert search(api, path, identifier=f"{AGB_SYSTEM}|12345678")["total"] == 0
    assert search(api, path, identifier="|12345678")["total"] == 0
    assert search(api, path, identifier=f"{URA_SYSTEM}|")["total"] == 2
    both = search(api, path, identifier="01234567,01111111")
    assert names(both) == ["Huisartsenpraktijk De Pijp", "Huisartsenpost Amsterdam"]


def test_search_organizations_by_name_and_type(api: Api) -> None:
    path = "/fhir/Organization"
    practices = ["Huisartsenpraktijk De Pijp", "Huisartsenpraktijk Oost"]
    assert names(search(api, path, name="huisartsenPRAKTIJK")) == practices
    assert search(api, path, name="pijp")["total"] == 0  # starts-with, not contains
    assert names(search(api, path, **{"name:contains": "pijp"})) == practices[:1]
    assert names(search(api, path, name="zorgcooperatie")) == ["Zorgcoöperatie Zuid"]
    assert search(api, path, **{"name:exact": "thuiszorg oost"})["total"] == 0
    assert names(search(api, path, **{"name:exact": "Thuiszorg Oost"})) == ["Thuiszorg Oost"]
    providers = search(api, path, type=f"{ORG_TYPE}|T2")
    assert names(providers) == ["Thuiszorg Oost", "Zorgcoöperatie Zuid"]
    # Two parameters must both hold.
    assert names(search(api, path, type="T2", name="thuis")) == ["Thuiszorg Oost"]
    assert search(api, path, _id="org-2")["entry"][0]["resource"]["name"] == practices[1]


# ---------------------------------------------------------------- HealthcareService


def test_team_with_care_types_areas_and_members(api: Api) -> None:
    client, headers = api
    team = client.get("/fhir/HealthcareService/team-2", headers=headers).json()
    assert team["name"] == "Team Pijp"
    assert team["providedBy"] == {
        "reference": "Organization/org-4",
        "display": "Zorgcoöperatie Zuid",
    }
    codes = [c["coding"][0] for c in team["type"]]
    assert {c["system"] for c in codes} == {CARE_TYPE_SYSTEM}
    assert [c["code"] for c in codes] == ["wijkverpleging", "wondzorg"]
    assert codes[0]["display"] == CareType.WIJKVERPLEGING.display
    areas = {loc["id"]: loc for loc in team["contained"]}
    assert [a["reference"] for a in team["coverageArea"]] == ["#pc4-1071-1075", "#pc4-1091-1091"]
    pijp = areas["pc4-1071-1075"]
    assert pijp["resourceType"] == "Location" and pijp["name"] == "PC4 1071-1075"
    assert pijp["extension"] == [
        {
            "url": "https://wijkbrug.nl/fhir/StructureDefinition/pc4-range",
            "valueString": "1071-1075",
        }
    ]
    assert pijp["description"] == "Wijken: De Pijp"  # wholly inside the range
    assert "alias" not in pijp  # but not the same area
    assert pijp["physicalType"]["coding"][0]["code"] == "area"
    assert pijp["address"] == {"country": "NL"}
    assert areas["pc4-1091-1091"]["address"] == {"postalCode": "1091", "country": "NL"}
    assert areas["pc4-1091-1091"]["alias"] == ["Dapperbuurt"]  # exactly this area
    members = ["@nurse1:localhost", "@nurse3:zorg.example", LONG_MXID, ODD_MXID]
    assert team["endpoint"] == [
        {"reference": f"Endpoint/{endpoint_id(m)}", "display": m} for m in sorted(members)
    ]


def test_team_that_lists_nothing_serves_every_care_type_and_area(api: Api) -> None:
    client, headers = api
    team = client.get("/fhir/HealthcareService/team-1", headers=headers).json()
    assert [c["coding"][0]["code"] for c in team["type"]] == [c.value for c in CareType]
    assert "coverageArea" not in team and "contained" not in team
    assert "Thuiszorg Oost" in team["comment"]


def test_search_teams(api: Api) -> None:
    path = "/fhir/HealthcareService"
    assert ids(search(api, path, name="team p")) == ["team-2"]
    # Team 1 lists no care type, so it gives them all.
    assert ids(search(api, path, **{"service-type": f"{CARE_TYPE_SYSTEM}|wondzorg"})) == [
        "team-1",
        "team-2",
    ]
    assert ids(search(api, path, **{"service-type": "ggz"})) == ["team-1"]
    assert ids(search(api, path, organization="Organization/org-4")) == ["team-2"]
    assert ids(search(api, path, organization="org-3")) == ["team-1"]
    by_ura = search(api, path, **{"organization.identifier": f"{URA_SYSTEM}|23456789"})
    assert ids(by_ura) == ["team-2"]
    assert ids(search(api, path, **{"organization.identifier": "87654321"})) == ["team-2"]


# ---------------------------------------------------------------- PractitionerRole


def test_practitioner_roles(api: Api) -> None:
    client, headers = api
    role = client.get("/fhir/PractitionerRole/role-1", headers=headers).json()
    (person,) = role["contained"]
    assert person["resourceType"] == "Practitioner"
    assert role["practitioner"] == {"reference": f"#{person['id']}", "display": "A. Jansen"}
    assert person["name"] == [{"text": "A. Jansen"}]
    assert person["identifier"] == [
        {"system": AGB_SYSTEM, "value": "01000001"},
        {"system": UZI_SYSTEM, "value": "123456789"},
        {"system": BIG_SYSTEM, "value": "19012345678"},
    ]
    assert role["organization"]["reference"] == "Organization/org-1"
    assert role["endpoint"] == [
        {"reference": "Endpoint/endpoint-a.jansen--huisarts.example", "display": "A. Jansen"}
    ]
    without = client.get("/fhir/PractitionerRole/role-2", headers=headers).json()
    assert "endpoint" not in without
    assert without["contained"][0]["identifier"] == [{"system": BIG_SYSTEM, "value": "29012345678"}]


def test_search_practitioner_roles(api: Api) -> None:
    path = "/fhir/PractitionerRole"
    assert ids(search(api, path, identifier=f"{AGB_SYSTEM}|01000001")) == ["role-1"]
    assert ids(search(api, path, identifier=f"{UZI_SYSTEM}|123456789")) == ["role-1"]
    assert ids(search(api, path, identifier="29012345678")) == ["role-2"]
    assert ids(search(api, path, name="emile")) == ["role-3"]  # accents do not matter
    assert ids(search(api, path, **{"name:contains": "vries"})) == ["role-2"]
    assert ids(search(api, path, **{"organization.identifier": "01111111"})) == ["role-3"]


# ---------------------------------------------------------------- Endpoint


def test_endpoints_of_nurses_and_practitioners(api: Api) -> None:
    endpoints = {e["identifier"][0]["value"]: e for e in everything(api, "Endpoint")}
    assert sorted(endpoints) == sorted(
        [
            "@a.jansen:huisarts.example",
            "@nurse1:localhost",
            "@nurse2:localhost",
            "@nurse3:zorg.example",
            LONG_MXID,
            ODD_MXID,
        ]
    )
    for mxid, endpoint in endpoints.items():
        assert endpoint["identifier"] == [{"system": MATRIX_SYSTEM, "value": mxid}]
        assert endpoint["status"] == "active"
        assert endpoint["connectionType"]["system"] == (
            "https://wijkbrug.nl/fhir/CodeSystem/endpoint-connection-type"
        )
        assert endpoint["connectionType"]["code"] == "matrix"
        assert endpoint["payloadType"] == [{"text": "Matrix messages"}]
        # The Matrix URI of a user: the sigil "@" becomes "u/", the rest percent-encoded.
        address = endpoint["address"]
        assert address.startswith("matrix:u/") and "@" not in address
        assert "@" + unquote(address.removeprefix("matrix:u/")) == mxid
    assert endpoints["@nurse1:localhost"]["address"] == "matrix:u/nurse1:localhost"
    assert endpoints[ODD_MXID]["address"] == "matrix:u/wijk_zorg%2F2=b+c:zorg.example:8448"
    jansen = endpoints["@a.jansen:huisarts.example"]
    assert jansen["name"] == "A. Jansen"
    assert jansen["managingOrganization"]["reference"] == "Organization/org-1"
    # A nurse in two providers' teams is managed by her first team's provider.
    assert endpoints["@nurse1:localhost"]["managingOrganization"]["reference"] == (
        "Organization/org-3"
    )
    assert endpoints["@nurse3:zorg.example"]["managingOrganization"]["display"] == (
        "Zorgcoöperatie Zuid"
    )
    assert endpoints["@nurse3:zorg.example"]["name"] == "@nurse3:zorg.example"


def test_search_endpoints(api: Api) -> None:
    path = "/fhir/Endpoint"
    by_mxid = search(api, path, identifier=f"{MATRIX_SYSTEM}|@nurse2:localhost")
    assert [e["resource"]["address"] for e in by_mxid["entry"]] == ["matrix:u/nurse2:localhost"]
    assert search(api, path, identifier="@nurse2:localhost")["total"] == 1
    assert [e["resource"]["name"] for e in search(api, path, name="a. jan")["entry"]] == [
        "A. Jansen"
    ]
    org4 = search(api, path, organization="Organization/org-4")
    assert {e["resource"]["identifier"][0]["value"] for e in org4["entry"]} == {
        "@nurse3:zorg.example",
        LONG_MXID,
        ODD_MXID,
    }
    assert search(api, path, **{"organization.identifier": f"{URA_SYSTEM}|12345678"})["total"] == 2


def test_endpoint_ids_are_valid_distinct_and_stable() -> None:
    tricky = [
        "@nurse1:localhost",
        "@nurse1:localhost:8448",
        "@nurse-1:localhost",
        "@nurse.1:localhost",
        "@nurse_1:localhost",
        "@nurse--1:localhost",
        "@nurse:1:localhost",
        "@a-3ab:c",
        "@a:b-3ac",
        "@a=2f:b",
        "@a/:b",
        LONG_MXID,
        LONG_MXID.replace("noord", "zuid"),
        "@" + "x" * 250 + ":s",
    ]
    made = [endpoint_id(m) for m in tricky]
    assert len(set(made)) == len(made)
    assert all(FHIR_ID.match(i) for i in made)
    assert made == [endpoint_id(m) for m in tricky]
    assert endpoint_id("@nurse_1:zorg.example") == "endpoint-nurse-5f1--zorg.example"
    assert len(endpoint_id(LONG_MXID)) == 64  # too long to read: a hash
    assert matrix_uri("@nurse1:localhost") == "matrix:u/nurse1:localhost"


# ---------------------------------------------------------------- paging


@pytest.mark.parametrize("resource_type", TYPES)
def test_paging_follows_next_links(api: Api, resource_type: str) -> None:
    expected = [r["id"] for r in everything(api, resource_type)]
    seen: list[str] = []
    url: str | None = f"/fhir/{resource_type}?_count=2"
    pages = 0
    while url:
        bundle = search(api, url)
        pages += 1
        assert bundle["total"] == len(expected)
        assert len(bundle["entry"]) <= 2
        seen += ids(bundle)
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert "_count=2" in links["self"]
        url = local(links["next"]) if "next" in links else None
    assert seen == expected
    assert pages == (len(expected) + 1) // 2


def test_page_past_the_end_is_empty(api: Api) -> None:
    bundle = search(api, "/fhir/Organization", _count="2", _offset="100")
    assert bundle["total"] == 5 and bundle["entry"] == []
    assert [link["relation"] for link in bundle["link"]] == ["self"]
    assert "_offset=100" in bundle["link"][0]["url"]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("/fhir/Organization?address-city=Amsterdam", "address-city"),
        ("/fhir/Organization?name:fuzzy=oost", "name:fuzzy"),
        ("/fhir/Organization?identifier:of-type=x", "identifier:of-type"),
        ("/fhir/Endpoint?connection-type=matrix", "connection-type"),
        ("/fhir/PractitionerRole?specialty=01.015", "specialty"),
        ("/fhir/HealthcareService?identifier=123", "identifier"),
    ],
)
def test_unsupported_parameters_are_400_naming_them(api: Api, path: str, where: str) -> None:
    client, headers = api
    body = outcome(client.get(path, headers=headers), 400)
    (issue,) = body["issue"]
    assert issue["code"] == "not-supported" and issue["expression"] == [where]


def test_every_unsupported_parameter_is_named(api: Api) -> None:
    client, headers = api
    resp = client.get("/fhir/Endpoint?foo=1&name=x&bar=2", headers=headers)
    body = outcome(resp, 400)
    assert [i["expression"] for i in body["issue"]] == [["foo"], ["bar"]]
    hint = outcome(client.get("/fhir/HealthcareService?identifier=1", headers=headers), 400)
    assert "organization.identifier" in hint["issue"][0]["diagnostics"]


@pytest.mark.parametrize("query", ["_count=0", "_count=abc", "_count=1001", "_offset=-1"])
def test_bad_paging_is_400(api: Api, query: str) -> None:
    client, headers = api
    body = outcome(client.get(f"/fhir/Organization?{query}", headers=headers), 400)
    assert body["issue"][0]["expression"] == [query.split("=")[0]]


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/Organization/org-999",
        "/fhir/Organization/team-1",
        "/fhir/HealthcareService/team-999",
        "/fhir/PractitionerRole/role-999",
        "/fhir/Endpoint/endpoint-nobody--localhost",
        "/fhir/Endpoint/%3Cscript%3E",
    ],
)
def test_unknown_ids_are_404(api: Api, path: str) -> None:
    client, headers = api
    body = outcome(client.get(path, headers=headers), 404)
    assert body["issue"][0]["code"] == "not-found"
    assert "<script>" not in str(body)


@pytest.mark.parametrize("path", ["/fhir/Organization", "/fhir/Endpoint/endpoint-x"])
def test_directory_needs_a_token(api: Api, path: str) -> None:
    client, _ = api
    for headers in ({}, {"Authorization": "Bearer wbt_unknown"}):
        body = outcome(client.get(path, headers=headers), 401)
        assert body["issue"][0]["code"] == "login"


def test_empty_parameters_are_ignored_and_format_json_accepted(api: Api) -> None:
    assert search(api, "/fhir/Organization", name="", _format="json")["total"] == 5
