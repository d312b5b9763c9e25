"""Model lifecycle: model_versions gets a number, an author, a changelog line and the time it left the champion role.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

``number`` is the registry's sequence (1, 2, 3, ... in registration order), so ``healthscore model list`` reads as
a history; ``demoted_at`` is when a champion was replaced, so ``healthscore model rollback`` (no version) knows the
champion before the current one. Existing rows are numbered by ``created_at`` (then version).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("number", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("author", sa.Text(), nullable=True))
        batch.add_column(sa.Column("changelog", sa.Text(), nullable=True))
        batch.add_column(sa.Column("demoted_at", sa.DateTime(timezone=True), nullable=True))
    versions = sa.table("model_versions", sa.column("version"), sa.column("created_at"), sa.column("number"))
    bind = op.get_bind()
    rows = bind.execute(sa.select(versions.c.version).order_by(versions.c.created_at, versions.c.version)).all()
    for i, (version,) in enumerate(rows, start=1):
        bind.execute(versions.update().where(versions.c.version == version).values(number=i))
    op.create_index(op.f("uq_model_versions_number"), "model_versions", ["number"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("uq_model_versions_number"), table_name="model_versions")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("demoted_at")
        batch.drop_column("changelog")
        batch.drop_column("author")
        batch.drop_column("number")
