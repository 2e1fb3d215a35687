"""axe-core (through axe-playwright-python, which ships it) on a page as it is shown: the
serious and critical violations, described well enough to fix from the failure message."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.ci import skip_or_fail

if TYPE_CHECKING:
    from playwright.async_api import Page

BLOCKING = ("serious", "critical")
# WCAG 2.0/2.1 A and AA, and axe's best practices (landmarks, headings, region).
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


async def blocking_violations(page: Page) -> list[str]:
    """``"rule: help (selector, ...)"`` for each serious or critical violation on the page."""
    try:
        from axe_playwright_python.async_playwright import Axe
    except ImportError:
        skip_or_fail("the accessibility tests need axe-playwright-python (pip install -e .[dev])")
    options = {"runOnly": {"type": "tag", "values": TAGS}, "resultTypes": ["violations"]}
    results = await Axe().run(page, options=options)
    found: list[str] = []
    violation: dict[str, Any]
    for violation in results.response["violations"]:
        if violation.get("impact") in BLOCKING:
            targets = [", ".join(map(str, node["target"])) for node in violation["nodes"]]
            found.append(
                f"{violation['id']} ({violation['impact']}): {violation['help']} {targets}"
            )
    return found
