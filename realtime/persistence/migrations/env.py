"""Alembic environment: always handed a live connection by realtime.persistence.database."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import realtime.persistence.models  # noqa: F401  (registers the tables)

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
