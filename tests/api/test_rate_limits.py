"""Rate limits per token subject on the expensive endpoints: 429 ``rate_limited`` with ``Retry-After``.

The limiter's clock is replaced by a hand-turned one, so a window passes without sleeping.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.config import Rate, Settings, parse_rate
from app.services import rate_limit
from app.services.rate_limit import LIMITED, subject_key

SEARCH = "/v1/clients/search"
EXPORT = "/v1/regions/05/caseload/export"
QUERY = {"system": "Lifecare", "external_id": "LC-404"}


class Clock:
    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(app, monkeypatch):
    """Three searches and one export a minute, on a clock the test turns."""
    fake, real = Clock(), app.state.rate_limit_clock
    app.state.rate_limit_clock = fake  # (monkeypatch cannot restore attributes of Starlette's State)
    monkeypatch.setattr(app.state.settings, "rate_limit_search", Rate(3, 60))
    monkeypatch.setattr(app.state.settings, "rate_limit_export", Rate(1, 60))
    yield fake
    app.state.rate_limit_clock = real


async def search(api, headers):
    return await api.post(SEARCH, json=QUERY, headers=headers)


async def test_a_burst_beyond_the_limit_is_refused_with_retry_after(api, auth, clock):
    headers = auth("coordinator", region="05", sub="busy-system")
    assert [(await search(api, headers)).status_code for _ in range(3)] == [200, 200, 200]
    refused = await search(api, headers)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "rate_limited" and refused.json()["status"] == 429
    assert refused.headers["Retry-After"] == "20"  # one request every 60/3 s comes back
    clock.advance(5)
    assert (await search(api, headers)).headers["Retry-After"] == "15"  # refusals do not extend the wait


async def test_another_subject_keeps_its_own_allowance(api, auth, clock):
    busy = auth("coordinator", region="05", sub="busy-system")
    for _ in range(4):
        await search(api, busy)
    assert (await search(api, busy)).status_code == 429
    assert (await search(api, auth("coordinator", region="05", sub="quiet-system"))).status_code == 200


async def test_the_allowance_comes_back_with_time(api, auth, clock):
    headers = auth("coordinator", region="05", sub="busy-system")
    for _ in range(3):
        await search(api, headers)
    assert (await search(api, headers)).status_code == 429
    clock.advance(19.5)
    assert (await search(api, headers)).headers["Retry-After"] == "1"
    clock.advance(0.5)
    assert (await search(api, headers)).status_code == 200  # one came back after 20 s
    assert (await search(api, headers)).status_code == 429
    clock.advance(60)
    assert [(await search(api, headers)).status_code for _ in range(4)] == [200, 200, 200, 429]  # never more than 3


async def test_each_endpoint_class_has_its_own_limit(api, auth, clock):
    headers = auth("coordinator", region="05", sub="busy-system")
    for _ in range(3):
        await search(api, headers)
    assert (await search(api, headers)).status_code == 429
    first = await api.get(EXPORT, headers=headers)
    assert first.status_code == 200  # the exhausted search allowance does not touch the export one
    second = await api.get(EXPORT, headers=headers)
    assert second.status_code == 429 and second.headers["Retry-After"] == "60"
    assert (await api.get("/v1/audit/export?log=change", headers=auth("auditor", sub="busy-system"))).status_code == 429


async def test_a_request_refused_with_401_spends_nothing(api, auth, clock):
    for _ in range(5):
        expired = auth("coordinator", region="05", sub="busy-system", exp=1_000_000_000)
        assert (await search(api, expired)).status_code == 401
    headers = auth("coordinator", region="05", sub="busy-system")
    assert [(await search(api, headers)).status_code for _ in range(4)] == [200, 200, 200, 429]


async def test_other_endpoints_are_not_limited(api, auth, clock):
    headers = auth("coordinator", region="05", sub="busy-system")
    for _ in range(4):
        await search(api, headers)
    assert [(await api.get("/v1/clients", headers=headers)).status_code for _ in range(5)] == [200] * 5


async def test_a_class_can_be_switched_off(api, auth, clock, monkeypatch, app):
    monkeypatch.setattr(app.state.settings, "rate_limit_search", None)
    headers = auth("coordinator", region="05", sub="busy-system")
    assert {(await search(api, headers)).status_code for _ in range(5)} == {200}


async def test_buckets_name_no_one(api, auth, clock, app):
    await search(api, auth("coordinator", region="05", sub="worker-4711@region05"))
    async with app.state.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT subject, endpoint_class FROM rate_limit_bucket"))).all()
    assert [tuple(row) for row in rows] == [(subject_key("worker-4711@region05"), "search")]


async def test_housekeeping_forgets_buckets_whose_allowance_is_whole_again(api, auth, clock, app):
    start = clock.now
    await search(api, auth("coordinator", region="05", sub="one"))  # one request of 3 a minute: back after 20 s
    clock.advance(10)
    await search(api, auth("coordinator", region="05", sub="two"))
    async with app.state.sessionmaker() as session:
        assert await rate_limit.purge(session, now=start + 19) == 0
        assert await rate_limit.purge(session, now=start + 20) == 1  # "one" has its whole allowance back
        assert await rate_limit.purge(session, now=start + 30) == 1


def test_every_endpoint_class_has_its_setting():
    # (that every limited route exists and documents its 429 is checked in tests/test_openapi_contract.py)
    assert {endpoint_class for endpoint_class in LIMITED.values()} <= {
        name.removeprefix("rate_limit_") for name in Settings.model_fields if name.startswith("rate_limit_")
    }


@pytest.mark.parametrize(
    ("given", "expected"),
    [("60/minute", Rate(60, 60)), (" 2 / Hour ", Rate(2, 3600)), ("1/second", Rate(1, 1)), ("off", None)],
)
def test_limits_are_written_as_requests_per_period(given, expected):
    assert parse_rate(given) == expected


@pytest.mark.parametrize("given", ["0/minute", "10", "10/fortnight", "-1/hour", "ten/minute"])
def test_a_limit_that_cannot_be_read_is_refused(given):
    with pytest.raises(ValueError, match="rate limit"):
        Settings(rate_limit_search=given)
