"""A client's view of a room's checklist, built only from frames (as the web client does), by
the rules of docs/protocol.md (``menteo_testkit.checklist_model``), never by the server's code."""

from __future__ import annotations

from typing import Any

from menteo_testkit.checklist_model import EventView


class ChecklistView(EventView):
    def __init__(self, welcome: dict[str, Any]) -> None:
        super().__init__(welcome["checklist"]["items"], welcome["seq"])
