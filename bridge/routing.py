"""Preferred-provider routing: pure decisions over the region's agreements.

    RoutingTable(rules, teams, availability)          built once per change of the tables
        .route_for(care type, postcode, at, priority)  -> Decision(provider, team, reasons)
        .gaps(pc4s, at)                                -> (pc4, care type) with no provider
    gp_route_for(practice, hap, at)                    -> the practice in office hours,
                                                          the huisartsenpost outside them

No I/O here: the caller loads the rules and hands in the moment (``at``), so tests use a
fake clock. The same explanation is printed by ``wijkbrug route explain``, returned by the
admin API and put in the FHIR error for an unroutable message.

The table is an index from (care type, PC4) to the candidate rules, best first, so one
decision is a dictionary lookup and a walk over a few candidates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from bridge.canonical import CareType, Priority
from bridge.identifiers import normalise_postcode, pc4

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
PC4_MIN, PC4_MAX = 1000, 9999


@dataclass(frozen=True)
class RouteRule:
    """Care type x area -> provider, with a rank (1 = preferred) and validity.

    The area is a PC4 range, or a named wijk whose PC4s are listed in ``pc4s``.
    """

    id: int
    care_type: CareType
    pc4_from: int
    pc4_to: int
    provider_id: int
    provider_name: str
    rank: int = 1
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    wijk: str | None = None
    pc4s: frozenset[int] = frozenset()
    provider_code: str = ""  # URA (or AGB) of the provider, for sheets and explanations

    def areas(self) -> Iterable[int]:
        return sorted(self.pc4s) if self.wijk else range(self.pc4_from, self.pc4_to + 1)

    def covers(self, area: int) -> bool:
        if self.wijk:
            return area in self.pc4s
        return self.pc4_from <= area <= self.pc4_to

    def valid_at(self, at: datetime) -> bool:
        if self.valid_from is not None and at < self.valid_from:
            return False
        return not (self.valid_to is not None and at >= self.valid_to)

    def area_text(self) -> str:
        if self.wijk:
            return f"wijk {self.wijk}"
        if self.pc4_from == self.pc4_to:
            return f"PC4 {self.pc4_from}"
        return f"PC4 {self.pc4_from}-{self.pc4_to}"

    def describe(self) -> str:
        return (
            f"route #{self.id}: {self.care_type.value} in {self.area_text()} "
            f"-> {self.provider_name} (rank {self.rank})"
        )


@dataclass(frozen=True)
class TeamCoverage:
    """A provider's team (a HealthcareService): the care types and PC4s it serves.

    Empty ``care_types`` or ``pc4_ranges`` mean "all"."""

    id: int
    provider_id: int
    name: str
    care_types: frozenset[CareType] = frozenset()
    pc4_ranges: tuple[tuple[int, int], ...] = ()

    def serves(self, care_type: CareType, area: int) -> bool:
        return self.serves_care(care_type) and self.serves_area(area)

    def serves_care(self, care_type: CareType) -> bool:
        return not self.care_types or care_type in self.care_types

    def serves_area(self, area: int) -> bool:
        return not self.pc4_ranges or any(lo <= area <= hi for lo, hi in self.pc4_ranges)


@dataclass(frozen=True)
class Unavailability:
    """A provider (or one of its teams) is full for a care type (or all) for a period."""

    id: int
    provider_id: int
    start: datetime
    end: datetime
    care_type: CareType | None = None
    team_id: int | None = None
    note: str = ""

    def blocks(self, care_type: CareType, at: datetime) -> bool:
        in_period = self.start <= at < self.end
        return in_period and (self.care_type is None or self.care_type is care_type)


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
    fallbacks: tuple[int, ...] = ()  # later-ranked usable providers, for escalation

    @property
    def routed(self) -> bool:
        return self.provider_id is not None and self.team_id is not None


class RoutingTable:
    """The region's routes as an index; immutable once built."""

    def __init__(
        self,
        rules: Iterable[RouteRule],
        teams: Iterable[TeamCoverage] = (),
        unavailable: Iterable[Unavailability] = (),
    ) -> None:
        self.rules = tuple(rules)
        index: dict[tuple[CareType, int], list[RouteRule]] = defaultdict(list)
        for rule in self.rules:
            for area in rule.areas():
                index[(rule.care_type, area)].append(rule)
        # Best first: rank, then the most specific area, then the oldest rule.
        self._index = {
            key: tuple(sorted(rules, key=lambda r: (r.rank, _size(r), r.id)))
            for key, rules in index.items()
        }
        teams_by_provider: dict[int, list[TeamCoverage]] = defaultdict(list)
        for team in sorted(teams, key=lambda t: t.id):
            teams_by_provider[team.provider_id].append(team)
        self._teams = {k: tuple(v) for k, v in teams_by_provider.items()}
        # The hot path looks teams up per (provider, care type) and reuses rule texts.
        self._teams_for_care = {
            (provider, care): tuple(t for t in provider_teams if t.serves_care(care))
            for provider, provider_teams in self._teams.items()
            for care in CareType
        }
        self._describe = {rule.id: rule.describe() for rule in self.rules}
        blocks: dict[int, list[Unavailability]] = defaultdict(list)
        for block in unavailable:
            blocks[block.provider_id].append(block)
        self._blocks = {k: tuple(v) for k, v in blocks.items()}

    def route_for(
        self,
        care_type: CareType,
        postcode: str | int,
        at: datetime,
        priority: Priority = Priority.ROUTINE,
        *,
        with_fallbacks: bool = False,
    ) -> Decision:
        """Choose the provider and team for a case; explain why, including what was skipped.

        ``with_fallbacks`` also lists the later-ranked providers that could take the case
        (for escalation); without it the walk stops at the first usable route."""
        if isinstance(postcode, int):
            area = postcode
        else:
            normal = normalise_postcode(postcode)
            if normal is None:
                return Decision(care_type, None, None, None, None, None, ("postcode is not Dutch",))
            area = pc4(normal)
        candidates = self._index.get((care_type, area), ())
        if not candidates:
            reason = f"no route for {care_type.value} in PC4 {area}"
            return Decision(care_type, area, None, None, None, None, (reason,))
        reasons: list[str] = []
        if priority is not Priority.ROUTINE:
            reasons.append(f"priority {priority.value}: escalates if not acknowledged in time")
        chosen: tuple[RouteRule, TeamCoverage] | None = None
        fallbacks: list[int] = []
        for rule in candidates:
            verdict = self._usable(rule, care_type, area, at)
            if isinstance(verdict, str):
                if chosen is None:
                    reasons.append(f"skipped {self._describe[rule.id]}: {verdict}")
                continue
            if chosen is None:
                chosen = (rule, verdict)
                reasons.append(f"matched {self._describe[rule.id]}, team {verdict.name}")
                if not with_fallbacks:
                    break
            elif rule.provider_id != chosen[0].provider_id and rule.provider_id not in fallbacks:
                fallbacks.append(rule.provider_id)
        if chosen is None:
            reasons.append(f"no usable route for {care_type.value} in PC4 {area}")
            return Decision(care_type, area, None, None, None, None, tuple(reasons))
        rule, team = chosen
        if rule.rank > 1:
            reasons.append("fallback: the preferred provider cannot take this case now")
        return Decision(
            care_type,
            area,
            rule.provider_id,
            rule.provider_name,
            team.id,
            rule.id,
            tuple(reasons),
            tuple(fallbacks),
        )

    def _usable(
        self, rule: RouteRule, care_type: CareType, area: int, at: datetime
    ) -> TeamCoverage | str:
        """The team that takes the case under ``rule``, or why the rule cannot be used."""
        if not rule.valid_at(at):
            return f"not valid at {at.isoformat()}"
        teams = [
            t
            for t in self._teams_for_care.get((rule.provider_id, care_type), ())
            if t.serves_area(area)
        ]
        if not teams:
            return "provider has no team for this care type and area"
        blocks = self._blocks.get(rule.provider_id)
        if not blocks:
            return teams[0]
        for block in blocks:
            if block.team_id is None and block.blocks(care_type, at):
                note = f" ({block.note})" if block.note else ""
                return f"provider is full until {block.end.isoformat()}{note}"
        for team in teams:
            if not any(b.team_id == team.id and b.blocks(care_type, at) for b in blocks):
                return team
        return "every team of the provider is full for this care type now"

    def chosen(
        self,
        care_type: CareType,
        postcode: str,
        provider_id: int,
        provider_name: str,
        at: datetime,
    ) -> Decision:
        """The sender named the provider (``recipient``): no preferred-provider lookup, but
        the provider still needs a team that can take the case now."""
        normal = normalise_postcode(postcode)
        area = pc4(normal) if normal else None
        reason = f"the sender chose {provider_name} as recipient"
        team = self.team_for(provider_id, care_type, area, at) if area is not None else None
        if team is None:
            why = "but it has no team that can take this care type and area now"
            return Decision(care_type, area, None, None, None, None, (f"{reason}, {why}",))
        return Decision(
            care_type,
            area,
            provider_id,
            provider_name,
            team.id,
            None,
            (f"{reason}; team {team.name}",),
        )

    def team_for(
        self, provider_id: int, care_type: CareType, area: int, at: datetime
    ) -> TeamCoverage | None:
        """The provider's team that can take a case of this care type and area now."""
        rule = RouteRule(0, care_type, area, area, provider_id, "", valid_from=None)
        verdict = self._usable(rule, care_type, area, at)
        return None if isinstance(verdict, str) else verdict

    def gaps(self, areas: Iterable[int], at: datetime) -> list[tuple[int, CareType]]:
        """The (PC4, care type) pairs in ``areas`` that no usable route covers at ``at``."""
        out = []
        for area in areas:
            for care_type in CareType:
                if not self.route_for(care_type, area, at).routed:
                    out.append((area, care_type))
        return out

    def covered_areas(self) -> set[int]:
        return {area for (_, area) in self._index}


def _size(rule: RouteRule) -> int:
    return len(rule.pc4s) if rule.wijk else rule.pc4_to - rule.pc4_from + 1


# ---------------------------------------------------------------------- the other direction

OFFICE_OPENS, OFFICE_CLOSES = time(8, 0), time(17, 0)


@dataclass(frozen=True)
class GpDecision:
    """Where a nurse's question to a GP goes: the practice, or the huisartsenpost."""

    org_id: int | None
    org_name: str | None
    in_office_hours: bool
    reasons: tuple[str, ...]


@lru_cache(maxsize=8)
def _dutch_holidays(year: int) -> dict[date, str]:
    """The Dutch public holidays of a year (built once per year: it is not cheap)."""
    return dict(holidays.country_holidays("NL", years=year).items())


def office_hours(
    at: datetime, opens: time = OFFICE_OPENS, closes: time = OFFICE_CLOSES
) -> tuple[bool, str]:
    """Whether ``at`` is within GP office hours (Mon-Fri, by default 08:00-17:00 Amsterdam
    time, not a Dutch public holiday), and why not."""
    local = at.astimezone(AMSTERDAM)
    holiday = _dutch_holidays(local.year).get(local.date())
    if holiday:
        return False, f"{local.date().isoformat()} is a public holiday ({holiday})"
    if local.weekday() >= 5:
        return False, f"{local.strftime('%A')} is weekend"
    if not opens <= local.time() < closes:
        hours = f"{opens.strftime('%H:%M')}-{closes.strftime('%H:%M')}"
        return False, f"{local.strftime('%H:%M')} is outside office hours ({hours})"
    return True, f"{local.strftime('%A %H:%M')} is within office hours"


def gp_route_for(
    practice: tuple[int, str],
    hap: tuple[int, str] | None,
    at: datetime,
    opens: time = OFFICE_OPENS,
    closes: time = OFFICE_CLOSES,
) -> GpDecision:
    """A nurse's question goes to the patient's practice in office hours, else to the HAP."""
    open_now, why = office_hours(at, opens, closes)
    if open_now:
        return GpDecision(practice[0], practice[1], True, (why, f"-> practice {practice[1]}"))
    if hap is None:
        return GpDecision(None, None, False, (why, "no huisartsenpost configured for the region"))
    return GpDecision(hap[0], hap[1], False, (why, f"-> huisartsenpost {hap[1]}"))
