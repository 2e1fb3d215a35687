"""The feed's vocabulary: limits, event types, ids, the records the reducer and REST pass
around (a post's routing, a thread), and which events a follower's filter lets through. The
public shape of posts and comments is built in ``serialize.py``.

Every feed event carries the same routing fields (``post_id``, ``thread_id``,
``community_id``, ``owner_id``: the thread owner) so that a filter reads one event the same
way whatever its type.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

FEED_STREAM = "feed"

POST = "feed.post"
COMMENT = "feed.comment"
REACTION = "feed.reaction"
DELETE = "feed.delete"
COMMENT_DELETE = "feed.comment.delete"
EVENT_TYPES = (POST, COMMENT, REACTION, DELETE, COMMENT_DELETE)

REACTION_KINDS = ("like", "celebrate", "insightful", "support")
FOLLOW_KINDS = ("communities", "threads", "users")

MAX_NAME = 200  # a community's name
MAX_TITLE = 200  # a thread's title
MAX_POST = 10_000
MAX_COMMENT = 2_000
MAX_ID = 128  # a followed user id
MAX_IDEMPOTENCY_KEY = 64

# feed.reaction events are the server's own (aggregated counts), not a user's.
SYSTEM_ID = "system"
SYSTEM_NAME = "Menteo"


def zero_counts() -> dict[str, int]:
    return dict.fromkeys(REACTION_KINDS, 0)


def new_id() -> str:
    """A community's, thread's, post's or comment's id (and a reaction mark)."""
    return uuid.uuid4().hex


@dataclass(slots=True)
class PostRef:
    """What the writer needs to know of a post to route and check an event about it."""

    id: str
    thread_id: str
    community_id: str
    owner_id: str
    feed_seq: int
    deleted: bool = False

    def routing(self) -> dict[str, Any]:
        return {
            "post_id": self.id,
            "thread_id": self.thread_id,
            "community_id": self.community_id,
            "owner_id": self.owner_id,
        }


@dataclass(slots=True)
class ThreadRecord:
    id: str
    community_id: str
    owner_id: str
    owner_name: str
    title: str
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "community_id": self.community_id,
            "owner": {"user_id": self.owner_id, "name": self.owner_name},
            "title": self.title,
            "created_at": self.created_at,
        }


@dataclass(slots=True)
class Follows:
    communities: set[str] = field(default_factory=set)
    threads: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)

    def of_kind(self, kind: str) -> set[str]:
        sets: dict[str, set[str]] = {
            "communities": self.communities,
            "threads": self.threads,
            "users": self.users,
        }
        return sets[kind]

    def set(self, kind: str, target: str, active: bool) -> None:
        targets = self.of_kind(kind)
        if active:
            targets.add(target)
        else:
            targets.discard(target)

    def as_dict(self) -> dict[str, list[str]]:
        return {k: sorted(self.of_kind(k)) for k in FOLLOW_KINDS}


@dataclass(slots=True)
class FeedFilter:
    """One community, or what a user follows (communities, threads, and users' threads)."""

    community: str | None = None
    follows: Follows | None = None

    def matches(self, data: dict[str, Any]) -> bool:
        if self.community is not None:
            return bool(data.get("community_id") == self.community)
        f = self.follows
        if f is None:
            return False
        return (
            data.get("community_id") in f.communities
            or data.get("thread_id") in f.threads
            or data.get("owner_id") in f.users
        )

    def describe(self) -> dict[str, Any]:
        if self.community is not None:
            return {"community": self.community}
        return {"following": True}
