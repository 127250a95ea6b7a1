"""Blue/green reindex (issue 19): a task's kind, a reindex's progress and its one-at-a-time key.

Revision ID: 0005_reindex
Revises: 0004_task_file_phase
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_reindex"
down_revision = "0004_task_file_phase"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs and an index, no batch mode: on SQLite a batch copies the table, and
    # dropping the old `tasks` would cascade to its task_files.
    op.add_column(
        "tasks", sa.Column("kind", sa.String(16), nullable=False, server_default="process")
    )
    op.add_column("tasks", sa.Column("started_at", sa.Double(), nullable=True))
    op.add_column("tasks", sa.Column("finished_at", sa.Double(), nullable=True))
    op.add_column("tasks", sa.Column("error", sa.Text(), nullable=True))
    op.add_column("tasks", sa.Column("running_key", sa.String(255), nullable=True))
    op.create_index("ix_tasks_running_key", "tasks", ["running_key"], unique=True)
    op.add_column("task_files", sa.Column("dataset", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_index("ix_tasks_running_key", "tasks")
    # Plain DROP COLUMNs (SQLite 3.35 and later), for the reason above.
    for table, column in (
        ("task_files", "dataset"),
        ("tasks", "running_key"),
        ("tasks", "error"),
        ("tasks", "finished_at"),
        ("tasks", "started_at"),
        ("tasks", "kind"),
    ):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
