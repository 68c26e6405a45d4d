"""An entry's MAC appears in the chain once: a copied entry (same content, same MAC) is never sealed.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("uq_audit_chain_mac", "audit_chain", ["entry_mac"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_audit_chain_mac", table_name="audit_chain")
