"""Webhook notifications for members who are away (docs/webhooks.md).

``outbox`` holds the durable table's statements, ``judge`` decides at the due time and
builds the body, ``attendance`` knows whether a user has an inbox or feed connection on any
process, ``delivery`` makes one signed attempt, and ``scheduler`` runs it all in tasks of
its own, beside the live path."""

from __future__ import annotations

from .scheduler import Notifier, create_notifier

__all__ = ["Notifier", "create_notifier"]
