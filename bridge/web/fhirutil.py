"""Search plumbing shared by the FHIR routers: whole-number parameters and searchset Bundles.

Every search pages the same way: ``_count`` entries from ``_offset``, and a ``next`` link
that carries the query as the client sent it with the following ``_offset``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from bridge.errors import ErrorCode, Issue, WijkbrugError

DEFAULT_COUNT = 50
MAX_COUNT = 1000
MAX_OFFSET = 10_000_000


def int_param(params: QueryParams, name: str, default: int, low: int, high: int) -> int:
    """A whole-number search parameter within ``low..high``; 400 naming it otherwise."""
    raw = params.get(name)
    if raw is None:
        return default
    # isascii: str.isdigit() also accepts digits like '²' that int() refuses.
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise WijkbrugError(
            ErrorCode.VALUE,
            f"{name} must be a whole number from {low} to {high}",
            [Issue(ErrorCode.VALUE, f"{name} out of range", name)],
        )
    return int(raw)


def page_params(params: QueryParams) -> tuple[int, int]:
    """``(_count, _offset)`` of a search, with the defaults and bounds of every search."""
    count = int_param(params, "_count", DEFAULT_COUNT, 1, MAX_COUNT)
    offset = int_param(params, "_offset", 0, 0, MAX_OFFSET)
    return count, offset


def search_bundle(
    base: str,
    params: QueryParams,
    offset: int,
    total: int,
    entries: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """A ``searchset`` Bundle of one page, with ``self`` and (if more follow) ``next`` links."""
    query = [(k, v) for k, v in params.multi_items() if k != "_offset"]
    here = [*query, ("_offset", str(offset))] if offset else query
    links = [{"relation": "self", "url": f"{base}?{urlencode(here)}"}]
    if offset + len(entries) < total:
        nxt = [*query, ("_offset", str(offset + len(entries)))]
        links.append({"relation": "next", "url": f"{base}?{urlencode(nxt)}"})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": list(entries),
    }
