"""Tables. Every durable thing is an event on a stream; rooms are streams with members."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, LargeBinary, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel


class Stream(SQLModel, table=True):
    """A sequence of events; ``last_seq`` is the sequencer, locked while appending."""

    id: str = Field(primary_key=True, max_length=64)
    last_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    created_at: str = Field(max_length=40)


class Room(SQLModel, table=True):
    id: str = Field(primary_key=True, foreign_key="stream.id", max_length=64)
    title: str = Field(max_length=200)
    created_at: str = Field(max_length=40)
    archived: bool = False  # readable, no longer written to (``room.updated``)


class Member(SQLModel, table=True):
    room_id: str = Field(primary_key=True, foreign_key="room.id", max_length=64)
    user_id: str = Field(primary_key=True, max_length=128, index=True)
    name: str = Field(max_length=128)
    role: str = Field(max_length=16)


class Event(SQLModel, table=True):
    """One durable event. ``client_id`` makes a retried send idempotent per author."""

    __table_args__ = (
        UniqueConstraint("stream", "author_id", "client_id", name="uq_event_client_id"),
        Index("ix_event_stream_type_seq", "stream", "type", "seq"),
    )

    stream: str = Field(primary_key=True, foreign_key="stream.id", max_length=64)
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    type: str = Field(max_length=32)
    author_id: str = Field(max_length=128)
    author_name: str = Field(max_length=128)
    client_id: str | None = Field(default=None, max_length=64)
    data: str = Field(sa_column=Column(Text, nullable=False))  # JSON object
    ts: str = Field(max_length=40)


class Revocation(SQLModel, table=True):
    """Tokens refused before their ``exp``: every token of a user issued before ``issued_before``
    (``kind`` "user", ``subject`` the user id; one row per user), or one token (``kind``
    "jti", ``subject`` its id). ``expires_at`` is when the row may go: the revoked token's
    ``exp``; 0 for a user's row, which covers tokens of any lifetime. Written with the
    ``token.revoked`` event of the ``access`` stream (access/revocations.py)."""

    __table_args__ = (Index("ix_revocation_expires", "expires_at"),)

    kind: str = Field(primary_key=True, max_length=8)
    subject: str = Field(primary_key=True, max_length=128)
    issued_before: float = Field(default=0.0, sa_column=Column(Float, nullable=False, default=0.0))
    expires_at: float = Field(default=0.0, sa_column=Column(Float, nullable=False, default=0.0))


class Meta(SQLModel, table=True):
    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=200)


class Roadmap(SQLModel, table=True):
    """A curated learning path; copied into a room's checklist as events."""

    id: str = Field(primary_key=True, max_length=64)
    title: str = Field(max_length=200)
    steps: str = Field(sa_column=Column(Text, nullable=False))  # JSON list of steps
    created_at: str = Field(max_length=40)


class ChecklistItem(SQLModel, table=True):
    """The materialized state of a room's checklist, kept beside its ``checklist.*`` events."""

    __tablename__ = "checklist_item"
    # Joins and the writer load a room's live items only; removed rows are tombstones.
    __table_args__ = (Index("ix_checklist_item_live", "room_id", "removed"),)

    room_id: str = Field(primary_key=True, foreign_key="room.id", max_length=64)
    item_id: str = Field(primary_key=True, max_length=64)
    title: str = Field(max_length=200)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    pos: str = Field(max_length=255)
    done: bool = False
    done_by: str | None = Field(default=None, max_length=128)
    done_at: str | None = Field(default=None, max_length=40)
    verified: bool = False
    verified_by: str | None = Field(default=None, max_length=128)
    verified_at: str | None = Field(default=None, max_length=40)
    verified_title: str | None = Field(default=None, max_length=200)  # what was verified
    added_by: str | None = Field(default=None, max_length=128)  # the adder's user id
    removed: bool = False
    removed_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class ChecklistRoom(SQLModel, table=True):
    """A room's checklist version: a new random value at every change, so a process may keep
    the list in memory and use it only while the version is the one it saved."""

    __tablename__ = "checklist_room"

    room_id: str = Field(primary_key=True, foreign_key="room.id", max_length=64)
    version: str = Field(max_length=32)


class NoteSnapshot(SQLModel, table=True):
    """A room's notes document, compacted: every update up to ``seq`` of its notes stream."""

    __tablename__ = "note_snapshot"

    room_id: str = Field(primary_key=True, foreign_key="room.id", max_length=64)
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    state: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: str = Field(max_length=40)


class ReadMarker(SQLModel, table=True):
    """How far a member has read a room: every event up to ``seq`` (only ever moves forward).
    A member without a row has read nothing (0)."""

    __tablename__ = "read_marker"

    room_id: str = Field(primary_key=True, foreign_key="room.id", max_length=64)
    user_id: str = Field(primary_key=True, max_length=128)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_at: str = Field(max_length=40)


class NotesAuthor(SQLModel, table=True):
    """Who changed a room's notes, and when last, among the updates a compaction dropped: the
    digest still tells who edited the notes after their update rows are gone."""

    __tablename__ = "notes_author"

    room_id: str = Field(primary_key=True, foreign_key="room.id", max_length=64)
    user_id: str = Field(primary_key=True, max_length=128)
    last_ts: str = Field(max_length=40)


# The community feed: growth threads, posts, comments, reactions, follows. Every post,
# comment, reaction count and deletion is also an event on the one ``feed`` stream; these
# tables are the materialized state, written in the same transaction as the event.


class Community(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    created_at: str = Field(max_length=40)


class Thread(SQLModel, table=True):
    """A member's growth thread: only its owner posts in it."""

    __table_args__ = (Index("ix_thread_community", "community_id", "created_at"),)

    id: str = Field(primary_key=True, max_length=64)
    community_id: str = Field(foreign_key="community.id", max_length=64)
    owner_id: str = Field(max_length=128, index=True)
    owner_name: str = Field(max_length=128)
    title: str = Field(max_length=200)
    created_at: str = Field(max_length=40)


class Post(SQLModel, table=True):
    """``feed_seq`` is the seq of its ``feed.post`` event: the feed's cursor."""

    __table_args__ = (
        Index("ix_post_community_seq", "community_id", "feed_seq"),
        Index("ix_post_thread_seq", "thread_id", "feed_seq"),
        Index("ix_post_author_seq", "author_id", "feed_seq"),
    )

    id: str = Field(primary_key=True, max_length=64)
    thread_id: str = Field(foreign_key="thread.id", max_length=64)
    community_id: str = Field(foreign_key="community.id", max_length=64)
    author_id: str = Field(max_length=128)
    author_name: str = Field(max_length=128)
    body: str = Field(sa_column=Column(Text, nullable=False))
    milestone: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # JSON
    feed_seq: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))
    created_at: str = Field(max_length=40)
    deleted: bool = False


class Comment(SQLModel, table=True):
    __table_args__ = (Index("ix_comment_post_seq", "post_id", "feed_seq"),)

    id: str = Field(primary_key=True, max_length=64)
    post_id: str = Field(foreign_key="post.id", max_length=64)
    author_id: str = Field(max_length=128)
    author_name: str = Field(max_length=128)
    body: str = Field(sa_column=Column(Text, nullable=False))
    feed_seq: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))
    created_at: str = Field(max_length=40)


class Reaction(SQLModel, table=True):
    """At most one of each kind per user per post."""

    post_id: str = Field(primary_key=True, foreign_key="post.id", max_length=64)
    user_id: str = Field(primary_key=True, max_length=128)
    kind: str = Field(primary_key=True, max_length=16)


class ReactionPending(SQLModel, table=True):
    """A post whose reactions changed since its last ``feed.reaction`` event. Written in the
    reaction's own transaction and cleared by the event's, so counts acknowledged to a client
    reach the feed even if the process that was to append the event dies first."""

    __tablename__ = "reaction_pending"

    post_id: str = Field(primary_key=True, foreign_key="post.id", max_length=64)
    mark: str = Field(max_length=32)  # which change: only the event that saw it clears it
    marked_at: float = Field(sa_column=Column(Float, nullable=False))  # Unix time


class Follow(SQLModel, table=True):
    """``kind`` is ``communities``, ``threads`` or ``users``."""

    __table_args__ = (Index("ix_follow_target", "kind", "target_id"),)

    user_id: str = Field(primary_key=True, max_length=128)
    kind: str = Field(primary_key=True, max_length=16)
    target_id: str = Field(primary_key=True, max_length=128)


class WebhookOutbox(SQLModel, table=True):
    """One webhook notification (realtime/notify/): ``pending`` until its due time is
    judged, then ``ready`` (its body frozen, retried under the same id) until ``done`` or
    ``failed``; ``cancelled`` when the user read or came back first. ``next_at`` is when a
    process may take it next (a claim pushes it out by a lease). At most one ``pending`` row
    per user and scope (``room:<id>`` or ``post:<id>``): later messages fold into it."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (
        Index("ix_webhook_outbox_due", "state", "next_at"),
        Index("ix_webhook_outbox_scope", "user_id", "scope", "last_seq"),
        Index(
            "ux_webhook_outbox_pending",
            "user_id",
            "scope",
            unique=True,
            sqlite_where=text("state = 'pending'"),
            postgresql_where=text("state = 'pending'"),
        ),
    )

    id: str = Field(primary_key=True, max_length=32)
    type: str = Field(max_length=32)
    user_id: str = Field(max_length=128)
    scope: str = Field(max_length=80)
    room_id: str | None = Field(default=None, max_length=64)
    post_id: str | None = Field(default=None, max_length=64)
    last_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    state: str = Field(max_length=16)
    next_at: float = Field(sa_column=Column(Float, nullable=False))
    sent_at: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    attempts: int = 0
    body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: str = Field(max_length=40)
    updated_at: str = Field(max_length=40)
