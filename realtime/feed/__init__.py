"""The community feed: growth threads, posts, comments, reactions and follows, as events on
one ``feed`` stream, served live over WebSocket and Server-Sent Events."""

from .model import FEED_STREAM, FeedFilter
from .reducer import FeedReducer
from .service import FeedService

__all__ = ["FEED_STREAM", "FeedFilter", "FeedReducer", "FeedService"]
