"""axe-core in the pages (the copy that ``axe-playwright-python`` ships, a dev dependency):
the accessibility rules a page must pass with no serious or critical violation, WCAG 2.x A
and AA (colour contrast included)."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from tests.ci import skip_or_fail

if TYPE_CHECKING:
    from playwright.async_api import Page

TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
BLOCKING = ("serious", "critical")


def _axe_script() -> str:
    if importlib.util.find_spec("axe_playwright_python") is None:
        skip_or_fail("the accessibility tests need axe-playwright-python (pip install -e '.[dev]')")
    from axe_playwright_python.base import AXE_SCRIPT

    return str(AXE_SCRIPT)


async def violations(page: Page, include: str | list[str] | None = None) -> list[dict[str, Any]]:
    """The serious and critical violations axe-core finds in the page (or within `include`,
    CSS selectors), as shown now."""
    await page.evaluate(_axe_script())
    options = {"runOnly": {"type": "tag", "values": TAGS}, "resultTypes": ["violations"]}
    selectors = [include] if isinstance(include, str) else include
    context = {"include": [[s] for s in selectors]} if selectors else None
    result: dict[str, Any] = await page.evaluate(
        "([context, options]) => axe.run(context || document, options)", [context, options]
    )
    return [v for v in result["violations"] if v.get("impact") in BLOCKING]


async def blocking(page: Page, include: str | list[str] | None = None) -> str:
    """``report()`` of ``violations()``: empty when the page passes."""
    return report(await violations(page, include))


def report(found: list[dict[str, Any]]) -> str:
    """The violations, one line per element, for an assertion's message."""
    lines = []
    for v in found:
        for node in v["nodes"]:
            lines.append(
                f"{v['impact']} {v['id']}: {node['target']} — {node.get('failureSummary', '')}"
            )
    return "\n".join(lines)
