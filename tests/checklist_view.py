"""A client's view of a room's checklist, built only from frames (as the web client does)."""

from __future__ import annotations

from typing import Any

from realtime.checklist.model import Checklist, Item


class ChecklistView:
    def __init__(self, welcome: dict[str, Any]) -> None:
        items = [Item(**raw) for raw in welcome["checklist"]["items"]]
        self.list = Checklist(items)
        self.seq = welcome["seq"]  # the snapshot holds every event up to here

    def feed(self, frame: dict[str, Any]) -> None:
        if frame["type"].startswith("checklist.") and frame["seq"] > self.seq:
            op = frame["type"].removeprefix("checklist.")
            data = {
                k: v for k, v in frame.items() if k not in ("type", "seq", "id", "author", "ts")
            }
            self.list.apply(op, data, frame["author"]["user_id"], frame["ts"])
        if "seq" in frame:
            self.seq = max(self.seq, frame["seq"])

    def state(self) -> dict[str, Any]:
        return self.list.snapshot()
