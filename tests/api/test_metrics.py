"""``/metrics``: requests per route template and status class, open and overdue gaps per region."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Uuid, bindparam, text

from app.services.clock import today
from tests.api.helpers import add_worker, assign, register


async def scrape(api) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of the exposition: name -> {sorted labels: value}."""
    response = await api.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def requests_of(samples, method: str, route: str, status_class: str) -> float:
    key = (("method", method), ("route", route), ("status_class", status_class))
    return samples.get("silta_http_requests_total", {}).get(key, 0.0)


@pytest.fixture
def fresh_gaps(app, monkeypatch):
    """Gap gauges counted on every scrape (no caching between the steps of a test)."""
    monkeypatch.setattr(app.state.metrics, "gap_seconds", 0.0)


async def test_metrics_need_no_token(api):
    response = await api.get("/metrics")
    assert response.status_code == 200
    assert "silta_http_requests_total" in response.text


async def test_a_request_is_counted_and_timed_under_its_route_template(api, auth):
    unknown = uuid.uuid4()
    before = await scrape(api)
    response = await api.get(f"/v1/clients/{unknown}", headers=auth("coordinator", region="05"))
    assert response.status_code == 404
    after = await scrape(api)
    route = "/v1/clients/{client_id}"
    assert requests_of(after, "GET", route, "4xx") == requests_of(before, "GET", route, "4xx") + 1
    latency = (("method", "GET"), ("route", route), ("status_class", "4xx"))
    counted = after["silta_http_request_duration_seconds_count"][latency]
    assert counted == before.get("silta_http_request_duration_seconds_count", {}).get(latency, 0) + 1
    assert str(unknown) not in (await api.get("/metrics")).text


async def test_refused_and_unrouted_requests_are_counted_in_bounded_labels(api, auth):
    before = await scrape(api)
    await api.get("/v1/clients")  # no token
    for n in range(3):
        await api.get(f"/v1/no-such-thing/{uuid.uuid4()}", headers=auth("coordinator", region="05"))
        await api.request("BREW", f"/coffee/{n}")
    await api.post("/v1/clients", content=b"x" * (2 * 1024 * 1024), headers={"content-type": "application/json"})
    after = await scrape(api)
    assert requests_of(after, "GET", "/v1/clients", "4xx") == requests_of(before, "GET", "/v1/clients", "4xx") + 1
    assert requests_of(after, "GET", "unmatched", "4xx") == requests_of(before, "GET", "unmatched", "4xx") + 3
    assert requests_of(after, "other", "unmatched", "4xx") == requests_of(before, "other", "unmatched", "4xx") + 3
    assert requests_of(after, "POST", "/v1/clients", "4xx") == requests_of(before, "POST", "/v1/clients", "4xx") + 1


async def test_the_label_set_is_bounded_by_the_routes(api, auth, app):
    headers = auth("coordinator", region="05")
    await api.get(f"/v1/clients/{uuid.uuid4()}", headers=headers)
    await api.get(f"/v1/workers/{uuid.uuid4()}/pairs", headers=headers)
    await api.get("/v1/regions/05/caseload?limit=5", headers=headers)
    await api.get("/v1/x/010203A123B")
    templates = set(app.openapi()["paths"]) | {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
    samples = await scrape(api)
    for name in ("silta_http_requests_total", "silta_http_request_duration_seconds_count"):
        for labels in samples[name]:
            values = dict(labels)
            assert values["route"] in templates | {"unmatched"}, values
            assert values["method"] in {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
            assert values["status_class"] in {"1xx", "2xx", "3xx", "4xx", "5xx"}


async def test_gap_gauges_count_the_open_and_overdue_gaps_per_region(api, auth, app, fresh_gaps):
    h05 = auth("coordinator", region="05")
    first = await register(api, h05, organising_region="05", residence_region="08")
    second = await register(api, h05, organising_region="05", residence_region="08")
    await register(api, h05, organising_region="05", residence_region="05")
    worker = await add_worker(api, h05, "05")
    assert (await assign(api, h05, second["id"], "organising", worker["id"])).status_code == 201
    # one of 08's gaps is past its due date (the API only opens gaps due after the grace period)
    age = text("UPDATE compliance_gap SET due = :due WHERE client_id = :client AND region = '08'")
    async with app.state.engine.begin() as conn:
        await conn.execute(
            age.bindparams(bindparam("client", type_=Uuid())),
            {"due": today() - dt.timedelta(days=1), "client": uuid.UUID(first["id"])},
        )
        regions = (await conn.execute(text("SELECT count(*) FROM region"))).scalar_one()
    samples = await scrape(api)
    open_gaps = {dict(labels)["region"]: value for labels, value in samples["silta_compliance_gaps_open"].items()}
    overdue = {dict(labels)["region"]: value for labels, value in samples["silta_compliance_gaps_overdue"].items()}
    assert (open_gaps["05"], overdue["05"]) == (2, 0)  # first's and the third client's organising gaps
    assert (open_gaps["08"], overdue["08"]) == (2, 1)  # the residence gaps of first (overdue) and second
    assert sum(open_gaps.values()) == 4 and sum(overdue.values()) == 1
    assert len(open_gaps) == len(overdue) == regions  # every region is reported, zeros included


async def test_gap_gauges_are_cached_briefly(api, auth, app, monkeypatch):
    monkeypatch.setattr(app.state.metrics, "gap_seconds", 3600.0)
    monkeypatch.setattr(app.state.metrics, "gaps_read_at", None)
    before = sum((await scrape(api))["silta_compliance_gaps_open"].values())
    await register(api, auth("coordinator", region="05"), organising_region="05", residence_region="08")
    assert sum((await scrape(api))["silta_compliance_gaps_open"].values()) == before
