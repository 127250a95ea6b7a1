"""The Designer's live per-file state (issue 17): what a started file is doing, parsing or
embedding.

Revision ID: 0004_task_file_phase
Revises: 0003_index_lifecycle
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_task_file_phase"
down_revision = "0003_index_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_files") as table:
        table.add_column(sa.Column("phase", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_files") as table:
        table.drop_column("phase")
