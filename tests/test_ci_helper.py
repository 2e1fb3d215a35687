"""CI is any truthy ``CI``: ``CI=1`` must fail a missing service, not skip it quietly."""

from __future__ import annotations

import pytest

from tests.ci import on_ci, skip_or_fail


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("1", True),
        ("yes", True),
        ("TRUE", True),
        ("", False),
        ("0", False),
        ("false", False),
        ("no", False),
    ],
)
def test_any_truthy_ci_counts(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert on_ci() is expected


def test_a_missing_part_fails_on_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="on CI it must run"):
        skip_or_fail("redis-server is not on PATH")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="redis-server is not on PATH"):
        skip_or_fail("redis-server is not on PATH")
