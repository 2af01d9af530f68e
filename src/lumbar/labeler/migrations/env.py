"""Alembic environment of the labeler's schema; `lumbar.labeler.store.migrate` passes the
connection."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `lumbar.labeler.store.migrate` runs them
    raise RuntimeError("run the labeler migrations through lumbar.labeler.store.migrate(engine)")
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
