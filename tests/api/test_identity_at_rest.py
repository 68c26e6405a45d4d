"""Identity codes at rest: never in the clear, found by keyed hash, readable across key rotation."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.config import Settings
from app.main import create_app
from app.migrate import downgrade, upgrade
from app.services.vault import Vault, VaultError, new_key_file
from tests.api.helpers import add_worker, register
from tests.conftest import hetu


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


FREE_TEXT = {
    "a request's message": ("POST", "/v1/coordination-requests", "message"),
    "a worker's name": ("POST", "/v1/workers", "name"),
    "a cost decision's legal basis": ("POST", "/v1/clients/{client}/cost-decisions", "legal_basis"),
    "a webhook URL": ("POST", "/v1/webhooks", "url"),
    "an external id": ("POST", "/v1/workers", "external_id"),
}


async def _free_text_world(api, auth) -> dict[str, Any]:
    coordinator = auth("coordinator", region="05")
    client = await register(api, coordinator)
    worker = await add_worker(api, coordinator, "05")
    bodies = {
        "/v1/coordination-requests": {"client_id": client["id"], "to_region": "08", "kind": "other", "message": ""},
        "/v1/workers": {"region": "05", "name": "", "role": "counsellor"},
        "/v1/clients/{client}/cost-decisions": {
            "service_type": "supported_housing",
            "payer_region": "08",
            "payer_service": "aftercare",
            "valid_from": client["aftercare_start"],
            "legal_basis": "",
        },
        "/v1/webhooks": {"url": "", "secret": "0123456789abcdef"},
    }
    return {"headers": coordinator, "client": client, "worker": worker["id"], "bodies": bodies}


@pytest.mark.parametrize("where", FREE_TEXT)
async def test_an_identity_code_in_free_text_is_refused_before_any_log_or_event_holds_it(api, auth, app, where):
    """Only personal_id is sealed: any other text goes as it is into the append-only change log, the
    feed and webhooks of other regions, and exports."""
    world = await _free_text_world(api, auth)
    method, path, field = FREE_TEXT[where]
    code = hetu(dt.date(2005, 3, 15), 321, "A")
    text_with_code = f"https://hooks.example.org/{code.lower()}" if field == "url" else f"asiakas {code.lower()}, soita"
    body = world["bodies"][path] | ({"name": "W"} if field == "external_id" else {}) | {field: text_with_code}
    url = path.format(client=world["client"]["id"])
    before = await _raw_rows(app)
    response = await api.request(method, url, json=body, headers=world["headers"])
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"][-1] == field and code.lower() not in response.text.lower()
    assert await _raw_rows(app) == before
    shaped_but_no_code = body | {field: text_with_code.replace(code.lower(), code.lower()[:-1] + "x")}
    assert (await api.request(method, url, json=shaped_but_no_code, headers=world["headers"])).is_success


async def test_an_import_line_with_a_code_outside_personal_id_is_refused(api, auth, app):
    code = hetu(dt.date(2005, 3, 15), 322, "A")
    line = {"type": "worker", "source_system": "Lifecare", "external_id": code, "name": "W", "role": "counsellor"}
    response = await api.post(
        "/v1/imports",
        content=json.dumps(line).encode(),
        headers=auth("coordinator", region="05") | {"Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 422 and response.json()["report"]["errors"][0]["code"] == "validation_error"
    assert code not in response.text and code not in await _raw_rows(app)
