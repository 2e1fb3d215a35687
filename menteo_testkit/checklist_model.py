"""A room's checklist as docs/protocol.md describes it, written from that document alone.

The oracle that the property tests and the soak hold the server to. Nothing here imports
``realtime``: a wrong rule in the server cannot also be the expected result.

- ``EventView`` is what a client holds: a welcome's snapshot, then the ``checklist.*`` events
  after it applied in seq order by the "apply" column of "Checklist events".
- ``Rules`` is what the operations mean ("Checklist operations", "Concurrent edits", the
  limits table): given operations in the server's seq order, it says which refusals the
  document allows for each (one it does not refuse must be acked) and what the list becomes.
  Its order comes from the places the operations name (``after``, ``position``), never from
  the server's position keys.
"""

from __future__ import annotations

import copy
import string
from collections import deque
from dataclasses import dataclass
from typing import Any

# One item as the welcome, GET .../checklist and the events describe it.
ITEM_FIELDS = (
    "id", "title", "description", "pos", "done", "done_by", "done_at",
    "verified", "verified_by", "verified_at", "verified_title",
)  # fmt: skip
MAX_KEY = 32  # "no key is ever longer than 32 characters"
KEY_DIGITS = frozenset(string.digits + string.ascii_letters)  # base-62
MAX_ITEMS = 500
MAX_TITLE, MAX_DESCRIPTION, MAX_ID = 200, 2000, 64
REMEMBERED = 1000  # removed item ids a room remembers (refused to an add)
RESERVED_PREFIX = "roadmap:"

Item = dict[str, Any]


class ViewError(AssertionError):
    """An event that the documented rules cannot apply (it names an unknown item...)."""


def progress(items: list[Item]) -> dict[str, int]:
    return {
        "done": sum(bool(i["done"]) for i in items),
        "verified": sum(bool(i["verified"]) for i in items),
        "total": len(items),
    }


def without_keys(items: list[Item]) -> list[Item]:
    """Items without ``pos`` (the server's choice), to compare with ``Rules``."""
    return [{k: v for k, v in i.items() if k != "pos"} for i in items]


def key_problems(items: list[Item]) -> list[str]:
    """What breaks the documented key rules: base-62 digits, at most 32 characters, and the
    list in order by ``pos`` then ``id`` (compared as plain strings)."""
    problems = [
        f"{i['id']}: key {i['pos']!r}"
        for i in items
        if not isinstance(i["pos"], str)
        or not 1 <= len(i["pos"]) <= MAX_KEY
        or not set(i["pos"]) <= KEY_DIGITS
    ]
    places = [(str(i["pos"]), str(i["id"])) for i in items]
    if places != sorted(places):
        problems.append(f"not in (pos, id) order: {places}")
    return problems


def _unverify(item: Item) -> None:
    item.update(verified=False, verified_by=None, verified_at=None, verified_title=None)


class EventView:
    """A client's list: a snapshot at ``seq``, then every checklist event after it."""

    def __init__(self, items: list[Item] | None = None, seq: int = 0) -> None:
        self.items = {i["id"]: {f: i.get(f) for f in ITEM_FIELDS} for i in items or []}
        self.seq = seq  # the snapshot holds every event up to here

    @classmethod
    def from_welcome(cls, welcome: dict[str, Any]) -> EventView:
        return cls(welcome["checklist"]["items"], welcome["seq"])

    def feed(self, frame: dict[str, Any]) -> bool:
        """Apply ``frame`` if it is a checklist event this view does not hold yet; any
        durable event moves ``seq`` on. True if it was applied."""
        applied = False
        if frame["type"].startswith("checklist.") and frame["seq"] > self.seq:
            self.apply(frame)
            applied = True
        if "seq" in frame:
            self.seq = max(self.seq, frame["seq"])
        return applied

    def apply(self, frame: dict[str, Any]) -> None:
        """One ``checklist.*`` event, by the "apply" column of docs/protocol.md."""
        op = frame["type"].removeprefix("checklist.")
        author, ts = frame["author"]["user_id"], frame["ts"]
        if op == "add":
            raw = frame["item"]
            if raw["id"] in self.items:
                raise ViewError(f"seq {frame['seq']} adds {raw['id']!r}, already in the list")
            new = _fresh(raw["id"], raw["title"], raw.get("description", ""))
            self.items[raw["id"]] = {**new, "pos": raw["pos"]}
            self._rebalance(frame)
            return
        item = self.items.get(frame["item_id"])
        if item is None:
            raise ViewError(f"seq {frame['seq']} names {frame['item_id']!r}, not in the list")
        if op == "toggle":
            item["done"] = bool(frame["done"])
            item["done_by"], item["done_at"] = (author, ts) if item["done"] else (None, None)
            if not item["done"]:
                _unverify(item)
        elif op == "rename":
            item["title"] = frame["title"]
            if frame.get("verified") is False:
                _unverify(item)
        elif op == "move":
            item["pos"] = frame["pos"]
            self._rebalance(frame)
        elif op == "remove":
            del self.items[item["id"]]
        elif op == "verify":
            if frame["verified"]:
                seen = frame.get("verified_title", item["title"])  # older events lack it
                item.update(verified=True, verified_by=author, verified_at=ts, verified_title=seen)
            else:
                _unverify(item)
        else:
            raise ViewError(f"seq {frame['seq']}: no such checklist event {frame['type']!r}")

    def _rebalance(self, frame: dict[str, Any]) -> None:
        for item_id, pos in frame.get("rebalance", {}).items():
            if item_id not in self.items:
                raise ViewError(f"seq {frame['seq']} rebalances {item_id!r}, not in the list")
            self.items[item_id]["pos"] = pos

    def ordered(self) -> list[Item]:
        return sorted(self.items.values(), key=lambda i: (i["pos"], i["id"]))

    def state(self) -> dict[str, Any]:
        items = [dict(i) for i in self.ordered()]
        return {"items": items, "progress": progress(items)}


# What operations mean ------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The answers the document allows an operation: an ack (``ack``) and/or an error with
    one of ``refusals`` (when several rules refuse it, the document names no precedence)."""

    refusals: frozenset[str]
    ack: bool

    def allows(self, code: str | None) -> bool:
        """``code``: the error code answered, None for an ack."""
        return self.ack if code is None else code in self.refusals


ACK = Verdict(frozenset(), True)


def _refuse(*codes: str, ack: bool = False) -> Verdict:
    return Verdict(frozenset(codes), ack)


def _bad_text(value: object, low: int, high: int) -> bool:
    """Not a string of ``low..high`` characters without NUL or a lone surrogate."""
    if not isinstance(value, str) or not low <= len(value) <= high or "\x00" in value:
        return True
    return any(0xD800 <= ord(c) <= 0xDFFF for c in value)


def _bad_client_id(value: object) -> bool:
    """The limits table: 64 characters, no control character (C0, DEL, C1)."""
    if _bad_text(value, 1, MAX_ID):
        return True
    assert isinstance(value, str)
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)


def _bad_place(add: dict[str, Any]) -> bool:
    """An add's place: ``after`` an item id or null; else ``position`` an index >= 0, an
    item id or null."""
    name = "after" if "after" in add else "position"
    place = add.get(name)
    if place is None:
        return False
    if isinstance(place, str):
        return _bad_text(place, 1, MAX_ID)
    return name == "after" or isinstance(place, bool) or not isinstance(place, int) or place < 0


def _fresh(item_id: str, title: str, description: str) -> Item:
    """A new item as an add makes it: not done, not verified."""
    item: Item = {f: None for f in ITEM_FIELDS if f != "pos"}
    item.update(id=item_id, title=title, description=description, done=False, verified=False)
    return item


class Rules:
    """The list as the operations, applied in seq order, make it (without keys)."""

    def __init__(self, mentor: str) -> None:
        self.mentor = mentor  # the room's mentor: the only one who verifies
        self.order: list[str] = []  # live item ids, first to last
        self.items: dict[str, Item] = {}
        self.removed: deque[str] = deque(maxlen=REMEMBERED)

    def state(self) -> dict[str, Any]:
        items = [copy.deepcopy(self.items[i]) for i in self.order]
        return {"items": items, "progress": progress(items)}

    @staticmethod
    def _normalized(op: dict[str, Any]) -> dict[str, Any]:
        """The documented spellings: ``item: {id, title, description}`` for an add,
        ``after_id`` for a move's ``after``, and ``id`` as the item id when no ``item_id``."""
        op = dict(op)
        nested = op.get("item")
        if op["type"] == "checklist.add" and isinstance(nested, dict):
            op = {**{k: v for k, v in nested.items() if k != "id"}, **op}
            if "id" in nested:
                op.setdefault("item_id", nested["id"])
        if "after_id" in op:
            op.setdefault("after", op["after_id"])
        op.setdefault("item_id", op.get("id"))
        return op

    def judge(self, op: dict[str, Any], author: str) -> Verdict:
        """The answers the document allows ``op`` from ``author`` on the list as it is now."""
        op = self._normalized(op)
        frame = self._frame_refusals(op, author)
        if frame:
            return _refuse(*frame)
        kind, item_id = op["type"].removeprefix("checklist."), op["item_id"]
        if kind == "add":
            return self._judge_add(op, item_id)
        if item_id not in self.items:
            return _refuse("not_found")
        if kind == "move":
            after = op["after"]
            if after == item_id:  # it cannot follow itself: a field out of bounds
                return _refuse("invalid")
            return ACK if after is None or after in self.items else _refuse("not_found")
        if kind == "verify" and op.get("verified", True):
            codes = [] if self.items[item_id]["done"] else ["invalid"]  # only a ticked step
            seen = op.get("title")
            if seen is not None and seen != self.items[item_id]["title"]:
                codes.append("conflict")  # renamed since the mentor looked
            return _refuse(*codes) if codes else ACK
        return ACK

    def _frame_refusals(self, op: dict[str, Any], author: str) -> list[str]:
        """Refusals that need no list: the frame's own fields, and the author's role."""
        kind, codes = op["type"].removeprefix("checklist."), []
        if _bad_client_id(op.get("id")) or _bad_text(op.get("item_id"), 1, MAX_ID):
            codes.append("invalid")
        if kind in ("add", "rename") and _bad_text(op.get("title"), 1, MAX_TITLE):
            codes.append("invalid")
        if kind == "add":
            if "description" in op and _bad_text(op["description"], 0, MAX_DESCRIPTION):
                codes.append("invalid")
            if str(op.get("item_id")).startswith(RESERVED_PREFIX):
                codes.append("invalid")
            if _bad_place(op):
                codes.append("invalid")
        if kind == "toggle" and not isinstance(op.get("done"), bool):
            codes.append("invalid")
        if kind == "move" and (
            "after" not in op or (op["after"] is not None and _bad_text(op["after"], 1, MAX_ID))
        ):
            codes.append("invalid")
        if kind == "verify":
            if author != self.mentor:
                codes.append("forbidden")
            if "verified" in op and not isinstance(op["verified"], bool):
                codes.append("invalid")
            if "title" in op and op.get("verified", True) and _bad_text(op["title"], 1, MAX_TITLE):
                codes.append("invalid")
        return codes

    def _judge_add(self, op: dict[str, Any], item_id: str) -> Verdict:
        codes = []
        if item_id in self.items or item_id in self.removed:
            codes.append("conflict")
        if len(self.order) >= MAX_ITEMS:
            codes.append("invalid")
        place = op["after"] if "after" in op else op.get("position")
        if isinstance(place, str) and place not in self.items:
            codes.append("not_found")
        if codes:
            return _refuse(*codes)
        if isinstance(place, int) and place > len(self.order):
            # Past the end is no index into the list: the document does not say whether
            # that is the end or out of bounds, so either answer passes.
            return _refuse("invalid", ack=True)
        return ACK

    def apply(self, op: dict[str, Any], author: str, ts: str) -> None:
        """An acked operation, applied at its seq (``ts``: its event's commit time)."""
        op = self._normalized(op)
        kind, item_id = op["type"].removeprefix("checklist."), op["item_id"]
        if kind == "add":
            self.items[item_id] = _fresh(item_id, op["title"], op.get("description", ""))
            self.order.insert(self._index(op), item_id)
            return
        item = self.items[item_id]
        if kind == "toggle":
            item["done"] = op["done"]
            item["done_by"], item["done_at"] = (author, ts) if op["done"] else (None, None)
            if not op["done"]:
                _unverify(item)  # unticking clears the verification
        elif kind == "rename":
            if item["verified"] and op["title"] != item["title"]:
                _unverify(item)  # the verification covers the words the mentor saw
            item["title"] = op["title"]
        elif kind == "move":  # right after ``after`` at the time it is applied
            self.order.remove(item_id)
            after = op["after"]
            self.order.insert(0 if after is None else self.order.index(after) + 1, item_id)
        elif kind == "remove":
            self.order.remove(item_id)
            del self.items[item_id]
            self.removed.append(item_id)
        elif kind == "verify":
            if op.get("verified", True):
                item.update(verified=True, verified_by=author, verified_at=ts)
                item["verified_title"] = item["title"]
            else:
                _unverify(item)

    def _index(self, add: dict[str, Any]) -> int:
        """Where an add lands: right after its anchor (so of two adds at one place the later
        comes first), at an index, or at the end."""
        place = add["after"] if "after" in add else add.get("position", len(self.order))
        if place is None:
            return 0
        if isinstance(place, str):
            return self.order.index(place) + 1
        return min(int(place), len(self.order))
