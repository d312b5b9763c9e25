"""batch_reconciliation.out_of_scope: records filtered as outside what the product scores, not quarantined.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

landed = accepted + quarantined + out_of_scope. A prospect's new-business deal (its company is not a customer)
is not bad data: it is counted here instead of being quarantined, so a clean day gives a clean report.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("batch_reconciliation",
                  sa.Column("out_of_scope", sa.Integer(), server_default=sa.text("0"), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("batch_reconciliation") as batch:
        batch.drop_column("out_of_scope")
