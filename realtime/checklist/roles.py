"""Who may do what to a room's roadmap (docs/protocol.md, "Roles on the roadmap").

The mentor curates the path and the mentee works it:

- the **mentor** may do everything;
- the **mentee** may add steps, tick and untick any step, and rename, move or remove the
  steps they added themselves; unticking a verified step, and renaming or removing a step
  the mentor verified (even one of their own), are the mentor's;
- a **service** token (the platform's backend) curates like the mentor, but a verification
  is the mentor's word: it neither verifies nor undoes one (no unticking, renaming or
  removing a verified step);
- anyone else (no longer a member) may do nothing.

Decided by the writer's reducer against the stored list and the members as they are at
commit time, so a role that changes applies to the next operation. The web page offers
only what this allows (web/js/checklist.js ``mayDo``: keep the two in step).
"""

from __future__ import annotations

from typing import Any

from .model import Item, Refused

MENTOR, MENTEE, SERVICE = "mentor", "mentee", "service"
# What undoes the mentor's verification: only the mentor may do it to a verified step.
_UNDOES_VERIFICATION = ("untick", "rename", "remove")
# What a mentee may do only to the steps they added.
_OWN_STEPS_ONLY = ("rename", "move", "remove")


def action(op: str, data: dict[str, Any]) -> str:
    """The operation as the role table names it: a toggle is a tick or an untick."""
    if op == "toggle":
        return "tick" if data.get("done") else "untick"
    return op


def refusal(role: str | None, actor: str, act: str, item: Item | None) -> str | None:
    """Why ``actor`` (with ``role`` in the room: mentor, mentee, service, or None when not a
    member) may not ``act`` on ``item`` (None for an add); None when they may."""
    if role is None:
        return "not a member of this room"
    if act == "add" or role == MENTOR:
        return None
    if act == "verify":
        return "only the room's mentor may verify"
    assert item is not None
    if item.verified and act in _UNDOES_VERIFICATION:
        return f"only the room's mentor may {act} a verified step"
    if role == SERVICE:
        return None
    # A mentee (or a role this version does not know: the least of a member's rights).
    if act in _OWN_STEPS_ONLY and item.added_by != actor:
        return f"a mentee may {act} only the steps they added"
    return None


def check(role: str | None, actor: str, op: str, data: dict[str, Any], item: Item | None) -> None:
    """Refuse the operation with ``forbidden`` when the role table does not allow it."""
    reason = refusal(role, actor, action(op, data), item)
    if reason is not None:
        raise Refused("forbidden", reason)
