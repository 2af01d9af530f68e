"""Initial labeler schema: users, sessions, gradings (Table 3, versioned), audit.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the four tables."""
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("active", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "gradings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patient_id", sa.String(128), nullable=False, index=True),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("slot", sa.String(32), nullable=False, index=True),
        sa.Column("rater_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        *(sa.Column(f, sa.Integer, nullable=True) for f in ("disc_state", "herniation")),
        *(sa.Column(f, sa.Integer, nullable=True) for f in ("scs", "rfs", "lfs")),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.UniqueConstraint("patient_id", "level", "slot", name="uq_grading_slot"),
        *(
            sa.CheckConstraint(f"{f} IS NULL OR ({f} >= 0 AND {f} <= 3)", name=f"ck_{f}_grade")
            for f in ("disc_state", "herniation", "scs", "rfs", "lfs")
        ),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("patient_id", sa.String(128), nullable=True, index=True),
        sa.Column("level", sa.String(8), nullable=True),
        sa.Column("slot", sa.String(32), nullable=True),
        sa.Column("field", sa.String(32), nullable=True),
        sa.Column("old", sa.Text, nullable=True),
        sa.Column("new", sa.Text, nullable=True),
        sa.Column("version", sa.Integer, nullable=True),
    )


def downgrade() -> None:
    """Drop everything (loses all gradings)."""
    for table in ("audit", "gradings", "sessions", "users"):
        op.drop_table(table)
