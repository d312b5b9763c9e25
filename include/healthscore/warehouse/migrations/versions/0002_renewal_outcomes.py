"""renewal_outcomes and billing_subscription_states replace the unused outcomes table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07

``outcomes`` (revision 0001) was never written: one row per (account, date, outcome) could not say which
side (CRM or billing) saw what, nor hold both when they disagree. ``renewal_outcomes`` holds one row per
renewal (account, term end) with each side's evidence; ``billing_subscription_states`` is the change log
of Stripe subscription states the billing side is read from (a row only when a state changed).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTCOMES = "('renewed', 'churned', 'contracted', 'expanded')"


def _text(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Text(), nullable=nullable)


def upgrade() -> None:
    op.drop_index(op.f("ix_outcomes_outcome_date"), table_name="outcomes")
    op.drop_table("outcomes")
    op.create_table(
        "billing_subscription_states",
        _text("subscription_id"),
        sa.Column("batch_date", sa.Date(), nullable=False),
        _text("account_id", nullable=True),
        _text("customer_id", nullable=True),
        sa.Column("canceled", sa.Boolean(), nullable=False),
        sa.Column("canceled_date", sa.Date(), nullable=True),
        sa.Column("quantity", sa.BigInteger(), nullable=True),
        sa.Column("mrr_cents", sa.BigInteger(), nullable=True),
        _text("plan", nullable=True),
        sa.Column("term_end_date", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("subscription_id", "batch_date", name=op.f("pk_billing_subscription_states")),
    )
    op.create_index(op.f("ix_billing_subscription_states_batch_date"), "billing_subscription_states",
                    ["batch_date"])
    op.create_table(
        "renewal_outcomes",
        _text("account_id"),
        sa.Column("renewal_date", sa.Date(), nullable=False),
        _text("kind"),
        _text("outcome"),
        _text("source"),
        _text("agreement"),
        _text("crm_outcome", nullable=True),
        sa.Column("crm_date", sa.Date(), nullable=True),
        _text("crm_deal_id", nullable=True),
        sa.Column("crm_arr_before_cents", sa.BigInteger(), nullable=True),
        sa.Column("crm_arr_after_cents", sa.BigInteger(), nullable=True),
        _text("billing_outcome", nullable=True),
        sa.Column("billing_date", sa.Date(), nullable=True),
        _text("billing_subscription_id", nullable=True),
        sa.Column("seats_before", sa.BigInteger(), nullable=True),
        sa.Column("seats_after", sa.BigInteger(), nullable=True),
        sa.Column("mrr_before_cents", sa.BigInteger(), nullable=True),
        sa.Column("mrr_after_cents", sa.BigInteger(), nullable=True),
        _text("plan_before", nullable=True),
        _text("plan_after", nullable=True),
        _text("note", nullable=True),
        sa.Column("first_batch_date", sa.Date(), nullable=False),
        sa.Column("as_of_batch_date", sa.Date(), nullable=False),
        sa.CheckConstraint(f"outcome IN {OUTCOMES}", name=op.f("ck_renewal_outcomes_outcome")),
        sa.CheckConstraint(f"crm_outcome IS NULL OR crm_outcome IN {OUTCOMES}",
                           name=op.f("ck_renewal_outcomes_crm_outcome")),
        sa.CheckConstraint(f"billing_outcome IS NULL OR billing_outcome IN {OUTCOMES}",
                           name=op.f("ck_renewal_outcomes_billing_outcome")),
        sa.CheckConstraint("kind IN ('renewal', 'mid_term')", name=op.f("ck_renewal_outcomes_kind")),
        sa.CheckConstraint("agreement IN ('agree', 'disagree', 'crm_only', 'billing_only')",
                           name=op.f("ck_renewal_outcomes_agreement")),
        sa.PrimaryKeyConstraint("account_id", "renewal_date", "kind", name=op.f("pk_renewal_outcomes")),
    )
    op.create_index(op.f("ix_renewal_outcomes_renewal_date"), "renewal_outcomes", ["renewal_date"])


def downgrade() -> None:
    op.drop_table("renewal_outcomes")
    op.drop_table("billing_subscription_states")
    op.create_table(
        "outcomes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        _text("account_id"),
        sa.Column("outcome_date", sa.Date(), nullable=False),
        _text("outcome"),
        sa.Column("arr_before_cents", sa.BigInteger(), nullable=True),
        sa.Column("arr_after_cents", sa.BigInteger(), nullable=True),
        _text("reason", nullable=True),
        _text("source", nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp(),
                  nullable=False),
        sa.CheckConstraint(
            "outcome IN ('churned', 'renewed', 'expanded', 'contracted')", name=op.f("ck_outcomes_outcome")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcomes")),
        sa.UniqueConstraint(
            "account_id", "outcome_date", "outcome", name=op.f("uq_outcomes_account_id_outcome_date_outcome")
        ),
    )
    op.create_index(op.f("ix_outcomes_outcome_date"), "outcomes", ["outcome_date"])
