"""Preferred-provider routing: pure decisions over the region's route table.

    (care type, postcode, moment) --route_for--> Decision(provider, reasons)

No I/O here: the caller loads the rules (:class:`RouteRule`) and the providers' teams,
and this module decides and explains. The same explanation is printed by
``wijkbrug route explain`` and returned in the FHIR error for an unroutable message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bridge.canonical import CareType
from bridge.identifiers import normalise_postcode, pc4


@dataclass(frozen=True)
class RouteRule:
    """Care type x PC4 range -> provider, with a rank (1 = preferred) and validity."""

    id: int
    care_type: CareType
    pc4_from: int
    pc4_to: int
    provider_id: int
    provider_name: str
    rank: int = 1
    valid_from: datetime | None = None
    valid_to: datetime | None = None

    def covers(self, area: int) -> bool:
        return self.pc4_from <= area <= self.pc4_to

    def valid_at(self, at: datetime) -> bool:
        if self.valid_from is not None and at < self.valid_from:
            return False
        return not (self.valid_to is not None and at >= self.valid_to)

    def describe(self) -> str:
        area = (
            f"PC4 {self.pc4_from}"
            if self.pc4_from == self.pc4_to
            else f"PC4 {self.pc4_from}-{self.pc4_to}"
        )
        return f"route #{self.id}: {self.care_type.value} in {area} -> {self.provider_name}"


@dataclass(frozen=True)
class Decision:
    """The outcome of routing, with every reason that led to it."""

    care_type: CareType
    pc4: int | None
    provider_id: int | None
    provider_name: str | None
    team_id: int | None
    rule_id: int | None
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def routed(self) -> bool:
        return self.provider_id is not None and self.team_id is not None


def route_for(
    care_type: CareType,
    postcode: str,
    rules: Iterable[RouteRule],
    teams_by_provider: Mapping[int, Sequence[int]],
    at: datetime,
) -> Decision:
    """Choose the provider and team for a case; explain why, including what was skipped."""
    reasons: list[str] = []
    normal = normalise_postcode(postcode)
    if normal is None:
        return Decision(care_type, None, None, None, None, None, ("postcode is not Dutch",))
    area = pc4(normal)
    candidates = sorted(
        (r for r in rules if r.care_type is care_type and r.covers(area)),
        key=lambda r: (r.rank, r.pc4_to - r.pc4_from, r.id),
    )
    if not candidates:
        reasons.append(f"no route for {care_type.value} in PC4 {area}")
        return Decision(care_type, area, None, None, None, None, tuple(reasons))
    for rule in candidates:
        if not rule.valid_at(at):
            reasons.append(f"skipped {rule.describe()}: not valid at {at.isoformat()}")
            continue
        teams = teams_by_provider.get(rule.provider_id, ())
        if not teams:
            reasons.append(f"skipped {rule.describe()}: provider has no team")
            continue
        reasons.append(f"matched {rule.describe()} (rank {rule.rank})")
        return Decision(
            care_type,
            area,
            rule.provider_id,
            rule.provider_name,
            teams[0],
            rule.id,
            tuple(reasons),
        )
    reasons.append(f"no usable route for {care_type.value} in PC4 {area}")
    return Decision(care_type, area, None, None, None, None, tuple(reasons))
