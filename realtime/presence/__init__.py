"""Who is in each room, within one process (memory) or across processes (Redis)."""

from __future__ import annotations

from .base import Announce, Presence
from .memory import MemoryPresence

__all__ = ["Announce", "MemoryPresence", "Presence"]
