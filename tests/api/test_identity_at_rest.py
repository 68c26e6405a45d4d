"""Identity codes at rest: never in the clear, found by keyed hash, readable across key rotation."""

from __future__ import annotations

import base64
import json
import secrets
import uuid

import httpx
import pytest
from sqlalchemy import text

from app.config import Settings
from app.main import create_app
from app.migrate import downgrade, upgrade
from app.services.vault import Vault, VaultError, new_key_file
from tests.api.helpers import register


async def _raw_rows(app) -> str:
    """Every column of every client row, and the logs and feed, as text."""
    async with app.state.engine.connect() as conn:
        dumps = []
        for table in ("client", "change_event", "feed_event", "access_log"):
            rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
            dumps.append(repr([tuple(row) for row in rows]))
    return "\n".join(dumps)


async def test_the_database_never_holds_an_identity_code_in_the_clear(api, auth, app):
    headers = auth("system", region="05")
    client = await register(api, headers)
    code = client["personal_id"]
    assert (await api.get(f"/v1/clients/{client['id']}", headers=headers)).json()["personal_id"] == code
    found = await api.post("/v1/clients/search", json={"personal_id": code.lower()}, headers=headers)
    assert [c["id"] for c in found.json()["items"]] == [client["id"]]
    dumped = await _raw_rows(app)
    assert code not in dumped and code.lower() not in dumped
    vault: Vault = app.state.sessionmaker.kw["info"]["silta.vault"]
    assert vault.lookup(code) not in dumped.replace(vault.lookup(code), "", 1)  # the hash only in its own column


async def test_a_duplicate_code_is_still_refused_by_its_hash(api, auth, app):
    headers = auth("system", region="05")
    client = await register(api, headers)
    body = {
        "personal_id": client["personal_id"],
        "first_name": "B",
        "last_name": "C",
        "organising_region": "05",
        "residence_region": "05",
        "aftercare_start": client["aftercare_start"],
    }
    again = await api.post("/v1/clients", json=body, headers=headers)
    assert again.status_code == 409 and again.json()["code"] == "duplicate_client"


def test_sealed_codes_open_only_on_their_own_row(tmp_path):
    vault = Vault(tmp_path / "keys.json", create=True)
    digest, sealed, key_id = vault.seal("150305A901E")
    assert vault.open(digest, sealed, key_id) == "150305A901E"
    other_digest, other_sealed, _ = vault.seal("010101-123N")
    with pytest.raises(VaultError):
        vault.open(other_digest, sealed, key_id)  # a ciphertext moved onto another client's row
    with pytest.raises(VaultError):
        vault.open(digest, sealed[:-1] + bytes([sealed[-1] ^ 1]), key_id)
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600


async def test_keys_rotate_without_losing_older_codes(settings, auth, tmp_path):
    key_file = tmp_path / "identity-keys.json"
    new_key_file(key_file, "k1")
    first = create_app(settings.model_copy(update={"identity_key_file": key_file}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=first), base_url="http://silta.test") as api:
        old = await register(api, auth("system", region="05"))
    await first.state.engine.dispose()
    document = json.loads(key_file.read_text())
    document["keys"]["k2"] = base64.b64encode(secrets.token_bytes(32)).decode()
    document["active"] = "k2"
    key_file.write_text(json.dumps(document))
    second = create_app(settings.model_copy(update={"identity_key_file": key_file}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url="http://silta.test") as api:
        new = await register(api, auth("system", region="05"))
        headers = auth("system", region="05")
        for client in (old, new):
            read = await api.get(f"/v1/clients/{client['id']}", headers=headers)
            assert read.json()["personal_id"] == client["personal_id"]
        async with second.state.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id, personal_id_key FROM client"))).all()
            keys = {uuid.UUID(str(row[0])): row[1] for row in rows}
    await second.state.engine.dispose()
    assert (keys[uuid.UUID(old["id"])], keys[uuid.UUID(new["id"])]) == ("k1", "k2")


def test_production_needs_an_identity_key_file():
    with pytest.raises(ValueError, match="SILTA_IDENTITY_KEY_FILE"):
        Settings(
            env="production",
            jwt_issuer="https://idp",
            jwt_audience="silta",
            jwks_url="https://idp/jwks",
            database_url="postgresql://x@db/silta",
            audit_key_file="/keys/audit.pem",
        )


def test_the_migration_encrypts_codes_already_stored_and_reverses(tmp_path, monkeypatch):
    from app.config import get_settings

    monkeypatch.setenv("SILTA_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SILTA_IDENTITY_KEY_FILE", raising=False)
    get_settings.cache_clear()
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0011")
    import sqlite3

    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute(
            "INSERT INTO client (id, personal_id, first_name, last_name, birth_date, support_level,"
            " address_protection, aftercare_start, aftercare_end, version, created_at, updated_at)"
            " VALUES ('0123456789abcdef0123456789abcdef', '150305A901E', 'A', 'B', '2005-03-15', 'standard', 0,"
            " '2025-01-01', '2028-03-14', 1, '2025-01-01 00:00:00', '2025-01-01 00:00:00')"
        )
    upgrade(url)
    with sqlite3.connect(tmp_path / "old.db") as conn:
        query = "SELECT personal_id_hash, personal_id_cipher, personal_id_key FROM client"
        digest, sealed, key_id = conn.execute(query).fetchone()
        columns = [row[1] for row in conn.execute("PRAGMA table_info(client)")]
    assert "personal_id" not in columns
    assert Vault(tmp_path / "identity-keys.json", create=False).open(digest, sealed, key_id) == "150305A901E"
    downgrade(url, "0011")
    with sqlite3.connect(tmp_path / "old.db") as conn:
        assert conn.execute("SELECT personal_id FROM client").fetchone() == ("150305A901E",)
    get_settings.cache_clear()
