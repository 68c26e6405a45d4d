"""Identity codes at rest: encrypted (AES-GCM, key id kept) and found by a keyed hash.

Existing codes are encrypted with the deployment's identity keys — the file named by
``SILTA_IDENTITY_KEY_FILE``, or the one the embedded default keeps (and creates) in its data
folder — so run the migration with the same settings as the service. See app/services/vault.py.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

client = sa.table(
    "client",
    sa.column("id", sa.Uuid()),
    sa.column("personal_id", sa.String()),
    sa.column("personal_id_hash", sa.String()),
    sa.column("personal_id_cipher", sa.LargeBinary()),
    sa.column("personal_id_key", sa.String()),
)


def _vault():  # the service's own keys, read (or, for the embedded default, created) only when rows need them
    from app.config import get_settings
    from app.services.vault import Vault

    settings = get_settings()
    return Vault(settings.identity_key_path, create=settings.identity_key_file is None)


def upgrade() -> None:
    with op.batch_alter_table("client") as batch:
        batch.add_column(sa.Column("personal_id_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("personal_id_cipher", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("personal_id_key", sa.String(length=20), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.select(client.c.id, client.c.personal_id)).all()
    if rows:
        vault = _vault()
        for client_id, code in rows:
            digest, sealed, key_id = vault.seal(code)
            bind.execute(
                sa.update(client)
                .where(client.c.id == client_id)
                .values(personal_id_hash=digest, personal_id_cipher=sealed, personal_id_key=key_id)
            )
    with op.batch_alter_table("client") as batch:
        batch.alter_column("personal_id_hash", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("personal_id_cipher", existing_type=sa.LargeBinary(), nullable=False)
        batch.alter_column("personal_id_key", existing_type=sa.String(length=20), nullable=False)
        batch.drop_constraint("uq_client_personal_id", type_="unique")
        batch.drop_column("personal_id")
        batch.create_unique_constraint("uq_client_personal_id_hash", ["personal_id_hash"])


def downgrade() -> None:
    with op.batch_alter_table("client") as batch:
        batch.add_column(sa.Column("personal_id", sa.String(length=11), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(client.c.id, client.c.personal_id_hash, client.c.personal_id_cipher, client.c.personal_id_key)
    ).all()
    if rows:
        vault = _vault()
        for client_id, digest, sealed, key_id in rows:
            code = vault.open(digest, sealed, key_id)
            bind.execute(sa.update(client).where(client.c.id == client_id).values(personal_id=code))
    with op.batch_alter_table("client") as batch:
        batch.alter_column("personal_id", existing_type=sa.String(length=11), nullable=False)
        batch.drop_constraint("uq_client_personal_id_hash", type_="unique")
        batch.drop_column("personal_id_key")
        batch.drop_column("personal_id_cipher")
        batch.drop_column("personal_id_hash")
        batch.create_unique_constraint("uq_client_personal_id", ["personal_id"])
