"""Checking a refusal: the issues of rejected input, which must never repeat patient data."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from bridge.errors import Issue, WijkbrugError


def rejected(parse: Callable[[], object], secrets: Iterable[str]) -> list[Issue]:
    """The issues ``parse()`` raises; none of ``secrets`` may appear in what is shown."""
    with pytest.raises(WijkbrugError) as caught:
        parse()
    error = caught.value
    shown = error.message + " ".join(f"{i.diagnostics} {i.expression}" for i in error.all_issues())
    for secret in secrets:
        assert secret not in shown
    return error.all_issues()


def only(issues: list[Issue]) -> Issue:
    assert len(issues) == 1, issues
    return issues[0]
