"""Shared mode (issue 20): project configs and uploaded files in the state database.

Revision ID: 0007_shared_storage
Revises: 0006_lexical_chunks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_shared_storage"
down_revision = "0006_lexical_chunks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "project_documents",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("namespace", sa.String(64), nullable=False),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("previous", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("modified_at", sa.Double(), nullable=False),
        sa.UniqueConstraint("namespace", "project"),
    )
    op.create_table(
        "blobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("namespace", sa.String(64), nullable=False),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("file_hash", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.UniqueConstraint("namespace", "project", "file_hash"),
    )
    op.create_table(
        "blob_chunks",
        sa.Column(
            "blob_id",
            sa.Integer(),
            sa.ForeignKey("blobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("blob_chunks")
    op.drop_table("blobs")
    op.drop_table("project_documents")
