"""A room's checklist: the state, the rules that turn an operation into an event, and the
one function every client also runs to apply events in seq order.

Rules (docs/protocol.md, "Checklist"):
- The server orders operations by seq; each event carries its result (a position key,
  a title, a done flag), so applying events in seq order gives every view the same list.
- toggle, rename and verify are last-writer-wins by seq.
- An operation on an unknown or removed item is refused (``not_found``) and changes nothing.
- Positions are fractional keys; a move or insert changes one item's key only. Two inserts
  at the same place both survive: the later one lands right after the anchor, before the
  earlier one.
- Unticking a step clears its verification; only a ticked step can be verified.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..persistence.events import Rejected
from .keys import key_between

MAX_ITEMS = 500
MAX_TITLE = 200
MAX_DESCRIPTION = 2000
OPS = ("add", "toggle", "rename", "move", "remove", "verify")


class Refused(Rejected):
    """An operation that cannot apply to the current list; nothing changes."""


@dataclass(slots=True)
class Item:
    id: str
    title: str
    pos: str
    description: str = ""
    done: bool = False
    done_by: str | None = None
    done_at: str | None = None
    verified: bool = False
    verified_by: str | None = None
    verified_at: str | None = None
    removed: bool = False

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        del data["removed"]
        return data


class Checklist:
    def __init__(self, items: list[Item] | None = None) -> None:
        self.items: dict[str, Item] = {i.id: i for i in items or []}
        self.dirty: set[str] = set()  # changed since loaded (the server saves these)
        self.new: set[str] = set()

    def ordered(self) -> list[Item]:
        live = [i for i in self.items.values() if not i.removed]
        return sorted(live, key=lambda i: (i.pos, i.id))

    def snapshot(self) -> dict[str, Any]:
        items = self.ordered()
        return {
            "items": [i.public() for i in items],
            "progress": {
                "done": sum(i.done for i in items),
                "verified": sum(i.verified for i in items),
                "total": len(items),
            },
        }

    def _live(self, item_id: str) -> Item:
        item = self.items.get(item_id)
        if item is None or item.removed:
            state = "was removed" if item is not None else "does not exist"
            raise Refused("not_found", f"checklist item {item_id!r} {state}")
        return item

    def _pos_after(self, after: str | None, moving: str | None = None) -> str:
        """The key for a place right after ``after`` (None: first), ignoring ``moving``."""
        order = [i for i in self.ordered() if i.id != moving]
        if after is None:
            return key_between(None, order[0].pos if order else None)
        anchor = self._live(after)
        if anchor.id == moving:
            raise Refused("invalid", "an item cannot follow itself")
        index = next(n for n, i in enumerate(order) if i.id == anchor.id)
        nxt = order[index + 1].pos if index + 1 < len(order) else None
        return key_between(anchor.pos, nxt)

    def resolve(self, op: str, data: dict[str, Any]) -> dict[str, Any]:
        """Check ``op`` against the list and return the event data it becomes."""
        if op == "add":
            item_id = data["item_id"]
            if item_id in self.items:
                raise Refused("conflict", f"checklist item {item_id!r} already exists")
            order = self.ordered()
            if len(order) >= MAX_ITEMS:
                raise Refused("invalid", f"a checklist holds at most {MAX_ITEMS} items")
            if "after" in data:
                after = data["after"]
            elif "position" in data:  # an index into the current list
                index = min(data["position"], len(order))
                after = order[index - 1].id if index > 0 else None
            else:  # the end
                after = order[-1].id if order else None
            new = {
                "id": item_id,
                "title": data["title"],
                "pos": self._pos_after(after),
                "description": data.get("description", ""),
            }
            return {"item": new, "after": after}
        item = self._live(data["item_id"])
        if op == "move":
            return {
                "item_id": item.id,
                "after": data["after"],
                "pos": self._pos_after(data["after"], moving=item.id),
            }
        if op == "verify" and data["verified"] and not item.done:
            raise Refused("invalid", "only a ticked step can be verified")
        return dict(data)

    def apply(self, op: str, data: dict[str, Any], author: str, ts: str) -> None:
        """Apply a stored event (what every client does, in seq order)."""
        if op == "add":
            raw = data["item"]
            item = Item(raw["id"], raw["title"], raw["pos"], raw.get("description", ""))
            self.items[item.id] = item
            self.new.add(item.id)
            self.dirty.add(item.id)
            return
        item = self.items[data["item_id"]]
        self.dirty.add(item.id)
        if op == "toggle":
            item.done = bool(data["done"])
            item.done_by, item.done_at = (author, ts) if item.done else (None, None)
            if not item.done:
                item.verified, item.verified_by, item.verified_at = False, None, None
        elif op == "rename":
            item.title = data["title"]
        elif op == "move":
            item.pos = data["pos"]
        elif op == "remove":
            item.removed = True
        elif op == "verify":
            item.verified = bool(data["verified"])
            item.verified_by, item.verified_at = (author, ts) if item.verified else (None, None)
