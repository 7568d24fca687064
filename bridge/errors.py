"""One error type for everything a client can get wrong.

A :class:`WijkbrugError` carries a code from :class:`ErrorCode` (which fixes the HTTP
status), a message meant for the client, and optional :class:`Issue` rows that say
*where* in the input the problem is (a FHIRPath-like expression). The FHIR facade renders
it as an ``OperationOutcome``; the admin API as JSON; the CLI as a line on stderr.

Nothing in here may hold patient data: messages say what is wrong, not what was sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class ErrorCode(Enum):
    """What went wrong, as a stable code. The value is the FHIR ``IssueType`` code."""

    INVALID = "invalid"  # malformed syntax or a structure rule broken
    REQUIRED = "required"  # a required element is missing
    VALUE = "value"  # an element has a wrong value (BSN 11-test, unknown care type)
    NOT_SUPPORTED = "not-supported"  # media type, resource type, interaction
    NOT_FOUND = "not-found"
    NO_ROUTE = "business-rule"  # no preferred provider for the area and care type
    UNAUTHORIZED = "login"
    FORBIDDEN = "forbidden"
    CONFLICT = "conflict"
    TOO_LARGE = "too-costly"
    THROTTLED = "throttled"  # a client over its rate limit
    UNAVAILABLE = "transient"


STATUS_FOR: dict[ErrorCode, int] = {
    ErrorCode.INVALID: 400,
    ErrorCode.REQUIRED: 400,
    ErrorCode.VALUE: 400,
    ErrorCode.NOT_SUPPORTED: 415,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.NO_ROUTE: 422,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.CONFLICT: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.THROTTLED: 429,
    ErrorCode.UNAVAILABLE: 503,
}


@dataclass(frozen=True)
class Issue:
    """One problem in the input and where it is (FHIRPath-like: ``Communication.category[0]``)."""

    code: ErrorCode
    diagnostics: str
    expression: str | None = None
    severity: str = "error"


@dataclass
class WijkbrugError(Exception):
    """An error whose message is safe to show to the client that caused it."""

    code: ErrorCode
    message: str
    issues: list[Issue] = field(default_factory=list)
    # Extra machine-readable detail for the client (never patient data).
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def status(self) -> int:
        return STATUS_FOR[self.code]

    def all_issues(self) -> list[Issue]:
        """The issues, or one issue made of the message when none were given."""
        return self.issues or [Issue(self.code, self.message)]

    @classmethod
    def from_issues(cls, issues: list[Issue]) -> WijkbrugError:
        """Several input problems at once; the first issue's code sets the status."""
        if not issues:
            raise ValueError("from_issues needs at least one issue")
        summary = issues[0].diagnostics if len(issues) == 1 else f"{len(issues)} problems"
        return cls(issues[0].code, summary, list(issues))


# What XML 1.0 cannot hold (FHIR XML answers too): C0 controls but tab, LF and CR,
# surrogates, U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def printable(text: str) -> str:
    """``text`` with what XML cannot hold shown as U+FFFD: an error that names a client's
    input can then be answered in FHIR XML as well as JSON."""
    return _NOT_XML.sub("\ufffd", text)


def operation_outcome(error: WijkbrugError) -> dict[str, Any]:
    """The FHIR R4 ``OperationOutcome`` for an error."""
    out: list[dict[str, Any]] = []
    for issue in error.all_issues():
        entry: dict[str, Any] = {
            "severity": issue.severity,
            "code": issue.code.value,
            "diagnostics": printable(issue.diagnostics),
        }
        if issue.expression:
            entry["expression"] = [printable(issue.expression)]
        out.append(entry)
    return {"resourceType": "OperationOutcome", "issue": out}
