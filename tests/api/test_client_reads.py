"""Every client-scoped read answers 404 to uninvolved regions and 403 to roles that read no clients."""

from __future__ import annotations

import pytest

from tests.api.helpers import register

READS = ["", "/responsibility", "/history", "/compliance", "/assignments"]


@pytest.mark.parametrize("suffix", READS)
async def test_client_reads_follow_involvement(api, auth, suffix):
    client = await register(api, auth("system", region="05"))
    path = f"/v1/clients/{client['id']}{suffix}"
    for headers in (
        auth("system", region="05"),
        auth("coordinator", region="08"),
        auth("auditor"),
        auth("auditor", region="08"),
    ):
        assert (await api.get(path, headers=headers)).status_code == 200
    for headers in (auth("system", region="19"), auth("auditor", region="19")):
        response = await api.get(path, headers=headers)
        assert response.status_code == 404 and response.json()["code"] == "client_not_found"
    assert (await api.get(path, headers=auth("admin"))).status_code == 403
    assert (await api.get(path)).status_code == 401


@pytest.mark.parametrize(
    ("suffix", "body"),
    [
        ("/moves", {"residence_region": "19", "effective_date": "2026-01-02"}),
        ("/organising-transfers", {"to_region": "19", "effective_date": "2026-01-02", "reason": "r"}),
        ("/end", {"end_date": "2026-01-02", "reason": "r"}),
        ("/assignments", {"responsibility": "organising", "worker_id": "00000000-0000-4000-8000-000000000000"}),
    ],
)
async def test_client_writes_follow_involvement_and_role(api, auth, suffix, body):
    client = await register(api, auth("system", region="05"))
    path = f"/v1/clients/{client['id']}{suffix}"
    assert (await api.post(path, json=body, headers=auth("coordinator", region="19"))).status_code == 404
    assert (await api.post(path, json=body, headers=auth("auditor"))).status_code == 403
    assert (await api.post(path, json=body, headers=auth("admin"))).status_code == 403
    assert (await api.post(path, json=body)).status_code == 401


async def test_readiness_reports_an_unmigrated_database(tmp_path, signing_key):
    import httpx

    from app.config import Settings
    from app.main import create_app

    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'empty.db'}",
        data_dir=tmp_path,
        jwks_file=signing_key[1],
        jwt_issuer="i",
        jwt_audience="a",
    )
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/readyz")
    await app.state.engine.dispose()
    assert response.status_code == 503 and response.json()["status"] == "unavailable"


@pytest.mark.parametrize("role", ["system", "auditor"])
async def test_the_access_check_is_built_once_not_per_request(api, auth, monkeypatch, role):
    """Building client_for's statement (EXISTS subqueries) and its cache key cost about 130 µs a request."""
    from app.services import access

    client = await register(api, auth("system", region="05"))

    def built_per_request(*_args, **_kwargs):  # noqa: ANN202
        raise AssertionError("client_for built its statement during a request")

    monkeypatch.setattr(access, "held", built_per_request)
    monkeypatch.setattr(access, "involved", built_per_request)
    headers = auth(role, region="05" if role == "system" else None)
    for path in ("/responsibility", "/assignments", "/history"):
        response = await api.get(f"/v1/clients/{client['id']}{path}", headers=headers)
        assert response.status_code == 200, (path, response.text)
