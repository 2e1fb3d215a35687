"""The feed's tables as SQLAlchemy Core handles, shared by the reducer, the queries and the
plain-row writes (Core, not the ORM: the writer's hot path builds no objects)."""

from __future__ import annotations

from ..persistence.models import (
    Comment,
    Community,
    Event,
    Follow,
    Member,
    Post,
    Reaction,
    ReactionPending,
    Thread,
)

COMMUNITY_T = Community.__table__  # type: ignore[attr-defined]
THREAD_T = Thread.__table__  # type: ignore[attr-defined]
POST_T = Post.__table__  # type: ignore[attr-defined]
COMMENT_T = Comment.__table__  # type: ignore[attr-defined]
REACTION_T = Reaction.__table__  # type: ignore[attr-defined]
PENDING_T = ReactionPending.__table__  # type: ignore[attr-defined]
FOLLOW_T = Follow.__table__  # type: ignore[attr-defined]
MEMBER_T = Member.__table__  # type: ignore[attr-defined]
EVENT_T = Event.__table__  # type: ignore[attr-defined]
