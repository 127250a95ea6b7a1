"""Embedding reuse (issue 19): how many of a processed file's chunks reused cached vectors.

Revision ID: 0003_index_lifecycle
Revises: 0002_api_keys
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_index_lifecycle"
down_revision = "0002_api_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_files") as table:
        table.add_column(
            sa.Column("chunks_reused", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("task_files") as table:
        table.drop_column("chunks_reused")
