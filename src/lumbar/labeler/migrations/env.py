"""Alembic environment of the labeler's schema; `lumbar.store.migrate` passes the connection."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `lumbar.store.migrate` runs these migrations
    raise RuntimeError("run the labeler migrations through lumbar.store.migrate(engine)")
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
