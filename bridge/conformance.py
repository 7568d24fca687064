"""Wijkbrug's FHIR conformance resources (the ``fhir/`` folder), loaded as data.

The folder ships as package data under the import name ``wijkbrug_fhir`` (a package
named ``fhir`` would shadow ``fhir.resources``). In a source checkout that is not
installed, it is the ``fhir/`` folder next to the ``bridge/`` package.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
from datetime import UTC, datetime
from functools import cache
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

CAPABILITY_STATEMENT = "CapabilityStatement-wijkbrug"
CARE_TYPE_CODESYSTEM = "CodeSystem-care-type"


@cache
def folder() -> Traversable:
    """The conformance folder: the installed package data, else the source checkout's."""
    try:
        found = importlib.resources.files("wijkbrug_fhir")
        if found.joinpath(f"{CAPABILITY_STATEMENT}.json").is_file():
            return found
    except (ModuleNotFoundError, NotADirectoryError, TypeError):
        # Not installed, or an editable install's namespace path the loader cannot list.
        pass
    return Path(__file__).resolve().parent.parent / "fhir"


@cache
def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(folder().joinpath(f"{name}.json").read_text("utf-8"))
    return data


def resource(name: str) -> dict[str, Any]:
    """A resource by file name without ``.json`` (``"examples/Communication-..."`` too).

    Returns a copy: callers may change it.
    """
    if name.startswith("/") or ".." in name.split("/"):
        raise ValueError("a resource name is a path inside the conformance folder")
    return copy.deepcopy(_load(name))


def names() -> list[str]:
    """The names of the resources in the folder (examples excluded)."""
    return sorted(
        entry.name.removesuffix(".json")
        for entry in folder().iterdir()
        if entry.is_file() and entry.name.endswith(".json")
    )


def capability_statement(base_url: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The CapabilityStatement of the server at ``base_url`` (the ``/fhir`` root)."""
    statement = resource(CAPABILITY_STATEMENT)
    statement["implementation"]["url"] = base_url.rstrip("/")
    moment = now or datetime.now(UTC)
    statement["date"] = moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return statement


def capability_statement_stu3(base_url: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The STU3 CapabilityStatement of the ``/fhir/stu3`` endpoint."""
    statement = resource("stu3/CapabilityStatement-wijkbrug-stu3")
    statement["implementation"]["url"] = base_url.rstrip("/")
    moment = now or datetime.now(UTC)
    statement["date"] = moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return statement


def care_type_codesystem() -> dict[str, Any]:
    """The CodeSystem of care types."""
    return resource(CARE_TYPE_CODESYSTEM)
