"""Webhooks: subscriptions, the outbox, signed deliveries to a local receiver, retries, dead letters, crashes."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlalchemy import text

from app.services.delivery import Deliverer, backoff, signature
from app.services.webhooks import UnsafeTarget, check_url
from tests.api.helpers import add_worker, register

SECRET = "s3cret-for-the-receiver-0123"


class Receiver:
    """A small HTTP server on 127.0.0.1 that records what it gets and fails on demand."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_next = 0
        self.always_fail = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                failing = receiver.always_fail or receiver.fail_next > 0
                receiver.fail_next = max(0, receiver.fail_next - 1)
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/silta"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
async def http() -> Iterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        yield client


def deliverer(app, http, name: str, **settings) -> Deliverer:
    return Deliverer(app.state.sessionmaker, app.state.settings.model_copy(update=settings), http, name)


async def subscribe(api, auth, url: str, types: list[str] | None = None, region: str = "05") -> dict:
    body = {"url": url, "event_types": types or [], "secret": SECRET}
    response = await api.post("/v1/webhooks", json=body, headers=auth("system", region=region))
    assert response.status_code == 201, response.text
    return response.json()


async def deliveries(api, auth, hook, region="05") -> list[dict]:
    response = await api.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=auth("system", region=region))
    assert response.status_code == 200, response.text
    return response.json()["items"]


LATER = dt.timedelta(days=2)  # past any back-off or lease in these tests


def test_signatures_are_hmac_sha256_over_timestamp_and_body():
    expected = hmac.new(b"key", b"1700000000." + b'{"a":1}', hashlib.sha256).hexdigest()
    assert signature("key", 1700000000, b'{"a":1}') == f"t=1700000000,v1={expected}"


def test_back_off_doubles_with_jitter_up_to_the_cap():
    import random

    rng = random.Random(7)
    for attempts, ceiling in ((1, 10), (2, 20), (3, 40), (10, 300)):
        waits = [backoff(attempts, 10, 300, rng) for _ in range(50)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
        assert len(set(waits)) > 1


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/x",
        "http://[::ffff:169.254.169.254]/x",
        "http://metadata.google.internal/computeMetadata",
        "http://0.0.0.0:8080/",
        "ftp://example.org/x",
        "https://user:pass@example.org/x",
        "http:///nohost",
        "http://0251.0376.0251.0376/x",  # 169.254.169.254 in octal to the resolver; no URL to httpx
    ],
)
def test_unsafe_targets_are_refused(url):
    with pytest.raises(UnsafeTarget):
        check_url(url, production=False)


def test_production_needs_https_and_a_public_address():
    for url in ("http://example.org/x", "https://127.0.0.1/x", "https://10.1.2.3/x", "https://[::1]/x"):
        with pytest.raises(UnsafeTarget):
            check_url(url, production=True)
    check_url("https://hooks.example.org/silta", production=True)
    check_url("http://127.0.0.1:9000/x", production=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://[2002:a9fe:a9fe::1]/latest/meta-data",  # 6to4 carrying 169.254.169.254
        "http://100.100.100.200/latest/meta-data",  # Alibaba Cloud's metadata service
        "http://168.63.129.16/machine",  # Azure's WireServer, a public address inside every VM's network
    ],
)
def test_metadata_services_behind_other_addresses_are_refused_everywhere(url):
    with pytest.raises(UnsafeTarget):
        check_url(url, production=False)


@pytest.mark.parametrize(
    "address",
    ["100.64.0.1", "198.18.0.1", "192.0.0.170", "[64:ff9b::a9fe:a9fe]", "[2001::1]", "[::a9fe:a9fe]"],
)
def test_production_sends_only_to_globally_routable_addresses(address):
    """Shared address space (carrier-grade NAT, cloud-internal), benchmarking, IETF and translation ranges
    are not the public internet: none of them is a receiver's webhook endpoint."""
    with pytest.raises(UnsafeTarget):
        check_url(f"https://{address}/x", production=True)
    check_url("https://93.184.216.34/x", production=True)


async def test_subscriptions_per_region_never_show_the_secret(api, auth, app):
    hook = await subscribe(api, auth, "https://hooks.example.org/a", ["client.registered"])
    assert "secret" not in hook and hook["region"] == "05" and hook["event_types"] == ["client.registered"]
    listed = (await api.get("/v1/webhooks", headers=auth("coordinator", region="05"))).json()["items"]
    assert [h["id"] for h in listed] == [hook["id"]]
    assert (await api.get("/v1/webhooks", headers=auth("system", region="08"))).json()["items"] == []
    assert (await api.get(f"/v1/webhooks/{hook['id']}", headers=auth("system", region="08"))).status_code == 404
    assert (
        await api.post("/v1/webhooks", json={"url": "https://x.org/a", "secret": SECRET}, headers=auth("auditor"))
    ).status_code == 403
    refused = await api.post(
        "/v1/webhooks", json={"url": "http://169.254.169.254/", "secret": SECRET}, headers=auth("system", region="05")
    )
    assert refused.status_code == 422 and refused.json()["code"] == "webhook_url_refused"
    async with app.state.engine.connect() as conn:
        logged = (
            await conn.execute(text("SELECT changes FROM change_event WHERE action = 'webhook.created'"))
        ).scalar()
    assert SECRET not in str(logged)
    deleted = await api.delete(f"/v1/webhooks/{hook['id']}", headers=auth("system", region="05"))
    assert deleted.status_code == 204
    assert (await api.get(f"/v1/webhooks/{hook['id']}", headers=auth("system", region="05"))).status_code == 404


async def test_committed_events_are_delivered_signed_to_a_local_receiver(api, auth, app, receiver, http):
    hook = await subscribe(api, auth, receiver.url, ["worker.created"])
    for _ in range(3):
        await add_worker(api, auth("coordinator", region="05"), "05")
    await add_worker(api, auth("coordinator", region="08"), "08")  # another region: not ours
    refused = await api.post(
        "/v1/workers", json={"region": "05", "name": "", "role": "counsellor"}, headers=auth("coordinator", region="05")
    )
    assert refused.status_code == 422  # a failed write has no event and no delivery
    assert await deliverer(app, http, "w1").run_once() == 3
    assert [e["type"] for e in receiver.events()] == ["worker.created"] * 3
    assert [e["seq"] for e in receiver.events()] == [1, 2, 3]
    for headers, body in receiver.received:
        stamp, given = headers["silta-signature"].split(",")
        timestamp = int(stamp.removeprefix("t="))
        assert headers["silta-signature"] == signature(SECRET, timestamp, body)
        assert given.startswith("v1=") and headers["content-type"] == "application/json"
        assert headers["silta-event-type"] == "worker.created" and headers["silta-delivery-id"]
    log = await deliveries(api, auth, hook)
    assert {d["state"] for d in log} == {"delivered"}
    assert all([a["status_code"] for a in d["history"]] == [204] for d in log)
    assert await deliverer(app, http, "w1").run_once() == 0  # nothing twice


async def test_a_delivery_of_personal_data_is_access_logged(api, auth, app, receiver, http):
    await subscribe(api, auth, receiver.url, ["client.registered"])
    client = await register(api, auth("system", region="05"))
    await deliverer(app, http, "w1").run_once()
    assert receiver.events()[0]["client_id"] == client["id"]
    async with app.state.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT actor, actor_region, endpoint FROM access_log WHERE endpoint = 'webhook delivery'")
            )
        ).one()
    assert row.actor.startswith("webhook:") and row.actor_region == "05"


async def test_failures_are_retried_with_back_off_until_delivered(api, auth, app, receiver, http):
    hook = await subscribe(api, auth, receiver.url)
    await add_worker(api, auth("coordinator", region="05"), "05")
    receiver.fail_next = 2
    worker = deliverer(app, http, "w1")
    assert await worker.run_once() == 1
    assert await worker.run_once() == 0  # backing off: not due yet
    now = dt.datetime.now(dt.UTC)
    assert await worker.run_once(now=now + LATER) == 1
    assert await worker.run_once(now=now + 2 * LATER) == 1
    [delivery] = await deliveries(api, auth, hook)
    assert delivery["state"] == "delivered" and delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["history"]] == [500, 500, 204]
    assert len(receiver.received) == 3


async def test_after_the_last_attempt_a_delivery_is_dead_until_redelivered(api, auth, app, receiver, http):
    hook = await subscribe(api, auth, receiver.url)
    await add_worker(api, auth("coordinator", region="05"), "05")
    receiver.always_fail = True
    worker = deliverer(app, http, "w1", webhook_max_attempts=3)
    now = dt.datetime.now(dt.UTC)
    for round_ in range(5):
        await worker.run_once(now=now + round_ * LATER)
    [delivery] = await deliveries(api, auth, hook)
    assert (delivery["state"], delivery["attempts"], len(receiver.received)) == ("dead", 3, 3)
    dead = await api.get(f"/v1/webhooks/{hook['id']}/deliveries?state=dead", headers=auth("system", region="05"))
    assert [d["id"] for d in dead.json()["items"]] == [delivery["id"]]
    receiver.always_fail = False
    again = await api.post(
        f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver", headers=auth("coordinator", region="05")
    )
    assert again.status_code == 200 and again.json()["state"] == "pending"
    assert await worker.run_once() == 1
    [delivery] = await deliveries(api, auth, hook)
    assert delivery["state"] == "delivered"


async def test_a_worker_crashing_mid_batch_loses_nothing(api, auth, app, receiver, http):
    hook = await subscribe(api, auth, receiver.url)
    for _ in range(4):
        await add_worker(api, auth("coordinator", region="05"), "05")
    crashed = deliverer(app, http, "crashed")
    now = dt.datetime.now(dt.UTC)
    claimed = await crashed.claim(now, batch=10)
    assert len(claimed) == 4
    # it sent the first one, then died before recording anything
    first = await crashed._post(*await _subscription_and_delivery(app, claimed[0]))
    assert first.ok
    survivor = deliverer(app, http, "survivor")
    assert await survivor.run_once(now=now) == 0  # the leases still hold
    assert await survivor.run_once(now=now + LATER) == 4  # expired: taken over
    seqs = [e["seq"] for e in receiver.events()]
    assert sorted(set(seqs)) == [1, 2, 3, 4] and len(seqs) == 5  # at least once: the first one twice
    assert {d["state"] for d in await deliveries(api, auth, hook)} == {"delivered"}


async def _subscription_and_delivery(app, delivery_id):
    from app.models.webhook import WebhookDelivery, WebhookSubscription

    async with app.state.sessionmaker() as session:
        delivery = await session.get(WebhookDelivery, delivery_id)
        subscription = await session.get(WebhookSubscription, delivery.subscription_id)
        return subscription, delivery


async def test_deleting_a_subscription_cancels_what_is_pending(api, auth, app, receiver, http):
    hook = await subscribe(api, auth, receiver.url)
    await add_worker(api, auth("coordinator", region="05"), "05")
    await api.delete(f"/v1/webhooks/{hook['id']}", headers=auth("system", region="05"))
    assert await deliverer(app, http, "w1").run_once() == 0
    assert receiver.received == []
    await add_worker(api, auth("coordinator", region="05"), "05")
    async with app.state.engine.connect() as conn:
        states = (await conn.execute(text("SELECT state FROM webhook_delivery"))).scalars().all()
    assert states == ["cancelled"]


@pytest.mark.postgres_only
async def test_parallel_workers_never_take_the_same_delivery(api, auth, app, receiver, http):
    await subscribe(api, auth, receiver.url)
    for _ in range(24):
        await add_worker(api, auth("coordinator", region="05"), "05")
    workers = [deliverer(app, http, f"w{n}") for n in range(4)]

    async def drain(worker: Deliverer) -> None:
        for _ in range(50):  # bounded
            if not await worker.run_once(batch=3):
                return

    await asyncio.gather(*(drain(worker) for worker in workers))
    seqs = [e["seq"] for e in receiver.events()]
    assert sorted(seqs) == list(range(1, 25))
    async with app.state.engine.connect() as conn:
        by = (await conn.execute(text("SELECT count(DISTINCT worker) FROM webhook_attempt"))).scalar()
    assert by > 1


@pytest.fixture
def rebinding_dns(monkeypatch) -> list[str]:
    """``hooks.example.org`` answers a public address to the first lookup and 127.0.0.1 to every later
    one (DNS rebinding); any other name resolves as usual. Returns the names looked up."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def lookup(host, port, *args, **kwargs):
        if host != "hooks.example.org":
            return real(host, port, *args, **kwargs)
        asked.append(host)
        address = "93.184.216.34" if len(asked) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port or 443))]

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    return asked


async def test_a_delivery_goes_to_the_address_that_was_checked(api, auth, app, rebinding_dns):
    """A name checked as public must not be looked up again by the HTTP client, which could then get
    a loopback or metadata address; TLS still checks the certificate against the name."""
    await subscribe(api, auth, "https://hooks.example.org/silta", ["worker.created"])
    await add_worker(api, auth("coordinator", region="05"), "05")
    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(204))
    async with httpx.AsyncClient(transport=transport) as http:
        assert await deliverer(app, http, "w1", env="production").run_once() == 1
    assert [(r.url.host, r.url.path, r.headers["host"], r.extensions.get("sni_hostname")) for r in sent] == [
        ("93.184.216.34", "/silta", "hooks.example.org", "hooks.example.org")
    ]
    assert rebinding_dns == ["hooks.example.org"]  # one lookup: the one that was checked


class Trickler:
    """A receiver on 127.0.0.1 that starts its answer and then sends one byte of it every half second."""

    def __init__(self, seconds: float) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                for _ in range(int(seconds * 2)):
                    try:
                        self.wfile.write(b"z")
                        self.wfile.flush()
                    except OSError:
                        return  # the sender gave up
                    time.sleep(0.5)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/slow"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_a_receiver_that_answers_a_byte_at_a_time_cannot_hold_the_worker(api, auth, app, http):
    """Each byte comes well within httpx's per-read timeout; the attempt as a whole still ends on time,
    so one region's slow endpoint does not stall every other region's deliveries behind it."""
    slow = Trickler(seconds=20)
    try:
        hook = await subscribe(api, auth, slow.url, ["worker.created"])
        await add_worker(api, auth("coordinator", region="05"), "05")
        started = time.monotonic()
        assert await deliverer(app, http, "w1", webhook_timeout_seconds=1).run_once() == 1
        assert time.monotonic() - started < 5
    finally:
        slow.close()
    [delivery] = await deliveries(api, auth, hook)
    assert delivery["state"] == "pending" and delivery["last_error"] == "no answer within 1 s"


async def test_a_stored_target_httpx_cannot_send_to_fails_its_attempt_not_the_round(api, auth, app, http):
    """A subscription stored before its URL was refused must end as a failed attempt (and in time dead),
    not as an exception that leaves the delivery leased and retried forever without an attempt."""
    hook = await subscribe(api, auth, "https://hooks.example.org/silta", ["worker.created"])
    async with app.state.engine.begin() as conn:
        await conn.execute(text("UPDATE webhook_subscription SET url = 'http://0251.0376.0251.0376/x'"))
    await add_worker(api, auth("coordinator", region="05"), "05")
    assert await deliverer(app, http, "w1").run_once() == 1
    [delivery] = await deliveries(api, auth, hook)
    assert (delivery["attempts"], delivery["state"]) == (1, "pending") and "URL" in delivery["last_error"]
