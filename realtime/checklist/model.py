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
- A verification covers the title the mentor saw (``verified_title``): renaming a verified
  step to another title clears its verification (the rename event says so: ``verified:
  false``), so a shared milestone always shows words the mentor verified.
- Who may do which operation is the role table of roles.py (the reducer checks it).
- Removed items are not kept in the list. Their ids stay refused for adds (``taken``, read
  by id when a batch adds); a room keeps the last ``MAX_REMOVED`` of them (store.py).
- Past ``MAX_KEY`` characters a new key rebalances the list: the event carries every live
  item's new key (``rebalance``), in the same order.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, fields
from typing import Any

from ..persistence.events import Rejected
from .keys import MAX_KEY, key_between, spread

MAX_ITEMS = 500
MAX_REMOVED = 1000  # removed items whose ids a room remembers (oldest forgotten first)
ROADMAP_ID_PREFIX = "roadmap:"  # item ids of copied roadmap steps; members may not add them
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
    verified_title: str | None = None  # the title the mentor verified
    added_by: str | None = None  # who added it (the role table: a mentee's own steps)
    removed: bool = False
    removed_seq: int | None = None  # the seq of its removal (the oldest are forgotten first)

    def public(self) -> dict[str, Any]:
        # Field by field, not ``asdict``: a welcome lists every item, and ``asdict`` deep-
        # copies each value through its generic walk (most of a snapshot's cost).
        return {name: getattr(self, name) for name in PUBLIC_FIELDS}

    def unverify(self) -> None:
        self.verified, self.verified_by, self.verified_at = False, None, None
        self.verified_title = None


PUBLIC_FIELDS = tuple(f.name for f in fields(Item) if f.name not in ("removed", "removed_seq"))


def _place(item: Item) -> tuple[str, str]:
    return (item.pos, item.id)


class Checklist:
    def __init__(self, items: list[Item] | None = None, taken: set[str] | None = None) -> None:
        self.items: dict[str, Item] = {i.id: i for i in items or []}
        self.taken: set[str] = taken or set()  # ids of removed items an add may not reuse
        self.dirty: set[str] = set()  # changed since loaded (the server saves these)
        self.new: set[str] = set()
        self._order: list[Item] | None = None  # ordered(), until a position changes
        self.version: str | None = None  # the room's version this list was read at (store.py)
        # The room's members' roles (user id -> role), read with every batch, never kept:
        # a member's role may change without the list changing.
        self.roles: dict[str, str] = {}

    def ordered(self) -> list[Item]:
        """The live items in order, kept sorted as items come, move and go (not re-sorted
        per operation: a roadmap copy adds 500 in one batch)."""
        if self._order is None:
            live = [i for i in self.items.values() if not i.removed]
            self._order = sorted(live, key=_place)
        return self._order

    def _index(self, item: Item) -> int:
        order = self.ordered()
        return bisect.bisect_left(order, _place(item), key=_place)

    def _unplace(self, item: Item) -> None:
        if self._order is not None:
            del self._order[self._index(item)]

    def _place_item(self, item: Item) -> None:
        if self._order is not None:
            bisect.insort(self._order, item, key=_place)

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

    def live(self, item_id: str) -> Item:
        """The live item ``item_id``, or ``not_found``."""
        return self._live(item_id)

    def _live(self, item_id: str) -> Item:
        item = self.items.get(item_id)
        if item is None or item.removed:
            state = "was removed" if item is not None else "does not exist"
            raise Refused("not_found", f"checklist item {item_id!r} {state}")
        return item

    def _pos_after(self, after: str | None, moving: str | None = None) -> str:
        """The key for a place right after ``after`` (None: first), ignoring ``moving``."""
        order = self.ordered()
        if after is None:
            first = next((i for i in order[:2] if i.id != moving), None)
            return key_between(None, first.pos if first is not None else None)
        anchor = self._live(after)
        if anchor.id == moving:
            raise Refused("invalid", "an item cannot follow itself")
        index = self._index(anchor) + 1
        if index < len(order) and order[index].id == moving:
            index += 1
        nxt = order[index].pos if index < len(order) else None
        return key_between(anchor.pos, nxt)

    def resolve(self, op: str, data: dict[str, Any]) -> dict[str, Any]:
        """Check ``op`` against the list and return the event data it becomes."""
        if op == "add":
            item_id = data["item_id"]
            if item_id in self.items or item_id in self.taken:
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
            event: dict[str, Any] = {"item": new, "after": after}
            self._rebalance(event, new, item_id, after)
            return event
        item = self._live(data["item_id"])
        if op == "move":
            event = {
                "item_id": item.id,
                "after": data["after"],
                "pos": self._pos_after(data["after"], moving=item.id),
            }
            self._rebalance(event, event, item.id, data["after"])
            return event
        if op == "verify" and data["verified"]:
            if not item.done:
                raise Refused("invalid", "only a ticked step can be verified")
            seen = data.get("title")
            if seen is not None and seen != item.title:  # renamed while the mentor looked
                raise Refused("conflict", "the step was renamed: verify what it says now")
            event = {k: v for k, v in data.items() if k != "title"}
            return {**event, "verified_title": item.title}
        if op == "rename" and item.verified and data["title"] != item.verified_title:
            return {**data, "verified": False}  # the mentor did not verify these words
        if op == "remove":  # its row keeps no title: the event tells what went (digests)
            return {**data, "title": item.title}
        return dict(data)

    def _rebalance(
        self, event: dict[str, Any], holder: dict[str, Any], item_id: str, after: str | None
    ) -> None:
        """If the new key is too long, give every live item a fresh key in the new order:
        ``event["rebalance"]`` maps the others' ids to theirs, ``holder["pos"]`` is the item's."""
        if len(holder["pos"]) <= MAX_KEY:
            return
        order = [i.id for i in self.ordered() if i.id != item_id]
        place = order.index(after) + 1 if after is not None else 0
        order.insert(place, item_id)
        keys = dict(zip(order, spread(len(order)), strict=True))
        holder["pos"] = keys.pop(item_id)
        event["rebalance"] = keys

    def apply(self, op: str, data: dict[str, Any], author: str, ts: str) -> None:
        """Apply a stored event (what every client does, in seq order)."""
        if op == "add":
            raw = data["item"]
            item = Item(raw["id"], raw["title"], raw["pos"], raw.get("description", ""))
            item.added_by = author
            self.items[item.id] = item
            self.new.add(item.id)
            self.dirty.add(item.id)
            self._place_item(item)
            self._apply_rebalance(data)
            return
        item = self.items[data["item_id"]]
        self.dirty.add(item.id)
        if op == "toggle":
            item.done = bool(data["done"])
            item.done_by, item.done_at = (author, ts) if item.done else (None, None)
            if not item.done:
                item.unverify()
        elif op == "rename":
            item.title = data["title"]
            if data.get("verified") is False:
                item.unverify()
        elif op == "move":
            self._unplace(item)
            item.pos = data["pos"]
            self._place_item(item)
            self._apply_rebalance(data)
        elif op == "remove":
            self._unplace(item)
            item.removed = True
        elif op == "verify":
            item.verified = bool(data["verified"])
            item.verified_by, item.verified_at = (author, ts) if item.verified else (None, None)
            # An event stored before verified titles existed covers the title of its time.
            item.verified_title = data.get("verified_title", item.title) if item.verified else None

    def _apply_rebalance(self, data: dict[str, Any]) -> None:
        if "rebalance" in data:
            self._order = None  # every key changed (rare): sort again when next asked
        for item_id, pos in data.get("rebalance", {}).items():
            self.items[item_id].pos = pos
            self.dirty.add(item_id)
