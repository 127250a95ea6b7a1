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
        sa.Column("length", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("store", "id"),
    )
    op.create_index(
        "ix_lexical_chunks_metadata",
        "lexical_chunks",
        ["metadata"],
        postgresql_using="gin",
        postgresql_ops={"metadata": "jsonb_path_ops"},
    )
    op.create_table(
        "lexical_stores",
        sa.Column("store", sa.String(512), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("store"),
    )
    op.create_table(
        "lexical_postings",
        sa.Column("store", sa.String(512), nullable=False),
        sa.Column("chunk_id", sa.Text(), nullable=False),
        sa.Column("term", sa.Text(), nullable=False),
        sa.Column("tf", sa.Integer(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("store", "chunk_id", "term"),
        sa.ForeignKeyConstraint(
            ["store", "chunk_id"],
            ["lexical_chunks.store", "lexical_chunks.id"],
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_lexical_postings_term",
        "lexical_postings",
        ["store", "term"],
        postgresql_include=["chunk_id", "tf", "length"],
    )


def downgrade() -> None:
    op.drop_index("ix_lexical_postings_term", table_name="lexical_postings")
    op.drop_table("lexical_postings")
    op.drop_table("lexical_stores")
    op.drop_index("ix_lexical_chunks_metadata", table_name="lexical_chunks")
    op.drop_table("lexical_chunks")
