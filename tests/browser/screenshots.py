"""Screenshots of the pages for the README (docs/img/), taken by the browser tests.

Every call renders the page to an image (so a page that cannot be drawn fails the test);
the image replaces docs/img/DOCS_NAME only with ``MENTEO_SCREENSHOTS=1``, so an ordinary test
run leaves the working tree alone:

    MENTEO_SCREENSHOTS=1 .venv/bin/python -m pytest tests/browser
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.async_api import Page

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


async def screenshot(page: Page, docs_name: str | None = None) -> bytes:
    """The page as shown (the viewport), as PNG; also docs/img/DOCS_NAME when asked to."""
    image = await page.screenshot(animations="disabled", caret="hide")
    if docs_name is not None and os.environ.get("MENTEO_SCREENSHOTS") == "1":
        (DOCS_IMG / docs_name).write_bytes(image)
    return image
