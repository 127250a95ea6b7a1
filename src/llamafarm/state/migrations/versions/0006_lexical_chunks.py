"""The BM25 index of the stores on a Chroma server (issue 20), used on PostgreSQL.

Revision ID: 0006_lexical_chunks
Revises: 0005_reindex
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006_lexical_chunks"
down_revision = "0005_reindex"
branch_labels = None
depends_on = None

JSONB = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "lexical_chunks",
        sa.Column("store", sa.String(512), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("metadata", JSONB, nullable=False),
        sa.Column("terms", JSONB, nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("store", "id"),
    )
    op.create_index("ix_lexical_chunks_terms", "lexical_chunks", ["terms"], postgresql_using="gin")
    op.create_index(
        "ix_lexical_chunks_metadata",
        "lexical_chunks",
        ["metadata"],
        postgresql_using="gin",
        postgresql_ops={"metadata": "jsonb_path_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_lexical_chunks_metadata", table_name="lexical_chunks")
    op.drop_index("ix_lexical_chunks_terms", table_name="lexical_chunks")
    op.drop_table("lexical_chunks")
