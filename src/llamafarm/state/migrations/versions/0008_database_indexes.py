"""Shared mode (issue 20): each database's index record in the state database, so a reindex's
switch and an embedder change are seen by every replica and worker.

Revision ID: 0008_database_indexes
Revises: 0007_shared_storage
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_database_indexes"
down_revision = "0007_shared_storage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "database_indexes",
        sa.Column("namespace", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(64), primary_key=True),
        sa.Column("database", sa.String(64), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("embedding", sa.JSON(), nullable=False),
        sa.Column("vectors", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("last_write", sa.Double(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("database_indexes")
