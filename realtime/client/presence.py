"""Who is in the room, who is online and who is typing, kept from the welcome and the frames
that change them (presence.*, and member.* from issue 16: frames a server does not send
simply never change it)."""

from __future__ import annotations

from typing import Any

Frame = dict[str, Any]


class Presence:
    def __init__(self) -> None:
        self.you: Frame | None = None  # {user_id, name, role}
        self.members: dict[str, Frame] = {}  # user_id -> {user_id, name, role}
        self.online: dict[str, str] = {}  # user_id -> name
        self.typing: set[str] = set()  # user ids

    def welcome(self, frame: Frame) -> None:
        you, room = frame.get("you"), frame.get("room")
        self.you = you if isinstance(you, dict) else None
        members = room.get("members", []) if isinstance(room, dict) else []
        self.members = {m["user_id"]: m for m in members if isinstance(m, dict)}
        self._online(frame.get("presence"))
        self.typing.clear()

    def _online(self, entries: Any) -> None:
        if isinstance(entries, list):
            self.online = {
                e["user_id"]: str(e.get("name", "")) for e in entries if isinstance(e, dict)
            }

    def apply(self, frame: Frame) -> None:
        kind, user = frame["type"], frame.get("user_id")
        if kind == "presence.join" and isinstance(user, str):
            self.online[user] = str(frame.get("name", ""))
        elif kind == "presence.leave":
            self.online.pop(str(user), None)
            self.typing.discard(str(user))
        elif kind == "presence.sync":
            self._online(frame.get("presence"))
        elif kind == "presence.typing" and isinstance(user, str):
            (self.typing.add if frame.get("active") else self.typing.discard)(user)
        elif kind in ("member.added", "member.updated") and isinstance(frame.get("member"), dict):
            member = frame["member"]
            self.members[member["user_id"]] = member
            if self.you is not None and member["user_id"] == self.you.get("user_id"):
                self.you = {**self.you, **member}
        elif kind == "member.removed":
            self.members.pop(str(user), None)
