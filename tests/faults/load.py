"""A bounded write load against a running server: workers, client registrations, assignments.

Each virtual client repeats one round — create a worker (coordinator of region 05), register a
client (organised by 05, living in 08: two responsibility periods), assign the worker as the
client's organising worker — and keeps the id of every write that was acknowledged with a 2xx.
Every other client sends each write with a fresh ``Idempotency-Key`` (the path that stores the
answer with the effect in one transaction). Every outcome is kept with its start and end time, so
a test can tell what happened when.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.api.helpers import born, client_body
from tests.conftest import hetu
from tests.faults.servers import Server

_registrations = itertools.count()


def unique_identity_code() -> str:
    """Valid and unique for the whole test run (birth dates around 20 years ago)."""
    n = next(_registrations)
    return hetu(born(20) + dt.timedelta(days=n % 240 - 120), 2 + n // 240)


@dataclass
class Outcome:
    kind: str
    started: float
    ended: float
    status: int | None  # None: no HTTP answer at all
    error: str | None = None
    problem_json: bool = False


@dataclass
class WriteLoad:
    """``clients`` concurrent clients, each at most ``rounds`` rounds and never past ``seconds``."""

    server: Server
    clients: int = 8
    rounds: int = 1_000
    seconds: float = 60.0
    keep_going: bool = False  # on an error answer or a lost connection: retry (True) or stop the client
    pause: float = 0.05  # between retries after an error, so an outage is not a busy loop
    timeout: float = 15.0
    acked: dict[str, list[str]] = field(default_factory=lambda: {"worker": [], "client": [], "assignment": []})
    outcomes: list[Outcome] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        """Run in the background; ``close`` ends it."""
        self.task = asyncio.create_task(self.run())
        return self.task

    async def close(self) -> None:
        """Stop the clients, also when the test failed half-way (its ``finally``)."""
        self.stop.set()
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def run(self) -> None:
        self.deadline = time.monotonic() + self.seconds
        coordinator = self.server.token("coordinator", region="05")
        system = self.server.token("system", region="05", client_system="Lifecare")
        limits = httpx.Limits(max_connections=self.clients)
        async with httpx.AsyncClient(base_url=self.server.url, timeout=self.timeout, limits=limits) as api:
            clients = (self._client(api, coordinator, system, keyed=n % 2 == 0) for n in range(self.clients))
            await asyncio.gather(*clients)

    @property
    def running(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def acknowledged(self) -> int:
        return sum(len(ids) for ids in self.acked.values())

    async def _client(
        self, api: httpx.AsyncClient, coordinator: dict[str, str], system: dict[str, str], *, keyed: bool
    ) -> None:
        for _ in range(self.rounds):
            if not self.running:
                return
            body = {"region": "05", "name": "Load worker", "role": "social_worker"}
            worker = await self._write(api, "worker", "/v1/workers", body, coordinator, keyed)
            if worker is None:
                continue
            body = client_body(personal_id=unique_identity_code())
            client = await self._write(api, "client", "/v1/clients", body, system, keyed)
            if client is None:
                continue
            body = {"responsibility": "organising", "worker_id": worker}
            await self._write(api, "assignment", f"/v1/clients/{client}/assignments", body, system, keyed)

    async def _write(
        self, api: httpx.AsyncClient, kind: str, path: str, body: dict[str, Any], headers: dict[str, str], keyed: bool
    ) -> str | None:
        """POST; the new id on a 2xx, else None (and, unless ``keep_going``, this client stops)."""
        if not self.running:
            return None
        if keyed:
            headers = {**headers, "Idempotency-Key": str(uuid.uuid4())}
        started = time.monotonic()
        try:
            response = await api.post(path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            self.outcomes.append(Outcome(kind, started, time.monotonic(), None, type(exc).__name__))
            return await self._after_error()
        is_problem = response.headers.get("content-type", "").startswith("application/problem+json")
        self.outcomes.append(Outcome(kind, started, time.monotonic(), response.status_code, None, is_problem))
        if response.is_success:
            new_id = str(response.json()["id"])
            self.acked[kind].append(new_id)
            return new_id
        return await self._after_error()

    async def _after_error(self) -> None:
        if self.keep_going:
            await asyncio.sleep(self.pause)
        else:
            self.stop.set()
        return None

    def statuses(self) -> Counter[str]:
        return Counter(str(o.status) if o.status is not None else o.error or "?" for o in self.outcomes)


async def until(condition: Any, seconds: float, what: str) -> None:
    """Wait (polling) for ``condition()``; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
