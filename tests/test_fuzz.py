"""Contract fuzzing (issue 8): schemathesis against the app's own OpenAPI document, in process.

Every operation of the document the app generates gets its schema examples, schemathesis' boundary
and negative cases, and ``MAX_EXAMPLES`` generated requests (valid and invalid), from a fixed seed:
the same requests on every run, locally and in CI. Each request is signed by one of eight real
callers (systems and coordinators of the organising, residence and an uninvolved region, auditors,
the admin) so that most get past authorisation, and half of the generated path ids name the seeded
world's resources (the access matrix's: a client with both named workers, a pair, a request, a
cost decision, a webhook with a delivery) instead of ids that exist nowhere. Every answer must
have: no 5xx, a documented status, the documented content type, headers and schema, and for every
4xx a problem+json body with a ``code``. Rate limits are off for the fuzzed app.

It runs on both backends (about a minute each on the 2-core machine); the pytest summary prints
the operations fuzzed and the requests sent per backend. A failure names the check, the response
and a curl line that reproduces it.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import hypothesis.strategies as st
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import Settings
from app.main import create_app
from tests.api.test_access_matrix import World, tokens
from tests.conftest import _reset

pytestmark = pytest.mark.fuzz

SEED = 20_260_801
MAX_EXAMPLES = 15  # generated requests per operation, besides the schema's examples and the boundary cases
CALLERS = ("sys05", "coord05", "sys08", "coord08", "coord19", "auditor", "auditor05", "admin")
WORLD_ID = "seeded-world-id"  # URL-safe (path values are quoted after the hooks); the world's id when sent
WORLD_PARAMETERS = frozenset(
    {"code", "worker_id", "assignment_id", "delivery_id", "client_id", "pair_id", "request_id"}
    | {"decision_id", "webhook_id"}
)
PROBLEM_JSON = "application/problem+json"


def problem_json(ctx: Any, response: schemathesis.Response, case: schemathesis.Case | None) -> bool | None:
    """Every error is RFC 9457 problem details with a machine-readable ``code`` and its own status."""
    if response.status_code < 400:
        return None
    content_type = next((v[0] for k, v in response.headers.items() if k.lower() == "content-type" and v), "")
    assert content_type.startswith(PROBLEM_JSON), f"{response.status_code} answered as {content_type!r}"
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("code"), str), f"no problem code in {body!r}"
    assert body.get("status") == response.status_code, f"status {body.get('status')} in a {response.status_code}"
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    problem_json,
]
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "suppress-health-check": ["all"],  # slow or large generation is expected here, not a test bug
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none", "with-security-parameters": False},
    }
)


@schemathesis.serializer("application/jsonl", "application/x-ndjson")
def json_lines(ctx: Any, value: Any) -> bytes:
    """Bulk-import bodies: each generated item one JSON line (anything else sent as it came)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    items = value if isinstance(value, list) else [value]
    return "".join(json.dumps(item) + "\n" for item in items).encode()


# The document the app generates (tests/test_openapi.py holds the committed copy to the same).
schema = schemathesis.openapi.from_dict(create_app(Settings(database_url="sqlite://")).openapi(), config=CONFIG)


class Tally:
    """Requests sent per backend, operation and status; as a pytest plugin it prints them at the end."""

    def __init__(self) -> None:
        self.calls: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.statuses: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
        self.span: dict[str, tuple[float, float]] = {}
        self.keys = 0

    def count(self, backend: str, operation: str, status: int) -> None:
        now = time.monotonic()
        self.span[backend] = (self.span.get(backend, (now, now))[0], now)
        self.calls[backend][operation] += 1
        self.statuses[backend][status] += 1

    def idempotency_key(self) -> str:
        self.keys += 1
        return f"fuzz-{self.keys}"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for backend, calls in self.calls.items():
            classes = collections.Counter(f"{status // 100}xx" for status in self.statuses[backend].elements())
            started, ended = self.span[backend]
            terminalreporter.write_line(
                f"contract fuzzing on {backend}: {len(calls)} operations, {sum(calls.values())} requests"
                f" in {ended - started:.0f} s ({', '.join(f'{k}: {n}' for k, n in sorted(classes.items()))})"
            )


TALLY = Tally()


@pytest.fixture(scope="session")
def tally(request: pytest.FixtureRequest) -> Tally:
    if not request.config.pluginmanager.is_registered(TALLY):
        request.config.pluginmanager.register(TALLY)
    return TALLY


@pytest.fixture(scope="module")
def fuzz_settings(settings: Settings) -> Settings:
    """The test settings without rate limits (they would turn fuzzing into 429s) or background jobs."""
    off = {"rate_limit_search": "off", "rate_limit_export": "off", "rate_limit_import": "off"}
    return Settings.model_validate(settings.model_dump() | off | {"audit_seal_seconds": 0, "housekeeping_seconds": 0})


@pytest.fixture(scope="module")
async def fuzz_world(
    app: Any, backend: tuple[str, str], fuzz_settings: Settings, auth: Callable[..., dict[str, str]]
) -> AsyncIterator[tuple[Any, World]]:
    """The fuzzed app on the seeded world; its engine keeps no connection of this event loop for schemathesis'."""
    await _reset(app, backend[0])
    fuzz_app = create_app(fuzz_settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fuzz_app), base_url="http://silta.test") as api:
        world = World(api, tokens(auth))
        await world.build()
    await fuzz_app.state.engine.dispose()
    yield fuzz_app, world
    asgi.shutdown_lifespans()  # the app's lifespan disposes its engine in schemathesis' event loop


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    """Half of the cases name the seeded world's resources instead of ids that exist nowhere."""
    known = dict.fromkeys(WORLD_PARAMETERS & set(path_parameters or {}), WORLD_ID)
    return (
        st.sampled_from([path_parameters, {**(path_parameters or {}), **known}]) if known else st.just(path_parameters)
    )


@schema.hook
def flatmap_case(context: Any, case: schemathesis.Case) -> Any:
    """Each generated case names its caller, drawn like the rest of the case; ``sign`` puts in the token."""

    def named(who: str) -> schemathesis.Case:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {who}"}
        return case

    return st.sampled_from(CALLERS).map(named)


def stable_caller(case: schemathesis.Case) -> str:
    """A caller for the cases hypothesis draws none for (schema examples, boundary cases) that follows
    from the case as generated, so a case has the same caller whatever ran before it."""
    parts = [case.operation.label, case.path_parameters, case.query, dict(case.headers or {}), case.body]
    text = json.dumps(parts, sort_keys=True, default=lambda value: type(value).__name__)  # NotSet, bytes
    return CALLERS[int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big") % len(CALLERS)]


def signed(case: schemathesis.Case, world: World, tally: Tally) -> schemathesis.Case:
    """A copy of the case with the named caller's token and the world's ids in place of their stand-ins
    (the generated case itself is kept as it is: explicit and boundary cases are shared by both backends)."""
    sent = case.derive()
    named = next((sent.headers.pop(k) for k in list(sent.headers) if k.lower() == "authorization"), "")
    who = named.removeprefix("Bearer ")
    for name, value in sent.path_parameters.items():
        if value == WORLD_ID:
            sent.path_parameters[name] = world.ids[name]
    for name, value in sent.headers.items():
        if name.lower() == "idempotency-key" and 1 <= len(value) <= 255:
            # Generated keys repeat ("0", "00"), so most writes would be replays or 422 idempotency_key_reused;
            # a valid key is made unique (replays have their own tests: tests/api/test_idempotency.py).
            sent.headers[name] = tally.idempotency_key()
    sent.headers.update(world.headers[who if who in CALLERS else stable_caller(case)])
    return sent


@schema.parametrize()
def test_the_contract_holds_for_generated_requests(
    case: schemathesis.Case, fuzz_world: tuple[Any, World], db_backend: str, tally: Tally
) -> None:
    fuzz_app, world = fuzz_world
    sent = signed(case, world, tally)
    response = sent.call(app=fuzz_app)
    tally.count(db_backend, case.operation.label, response.status_code)
    sent.validate_response(response, checks=CHECKS)


def answer(status: int, body: dict[str, Any], content_type: str) -> schemathesis.Response:
    request = httpx.Request("GET", "http://silta.test/v1/regions/99")
    response = httpx.Response(status, json=body, headers={"content-type": content_type}, request=request)
    response.elapsed = datetime.timedelta(0)  # set by a client's transport otherwise
    return schemathesis.Response.from_any(response)


def test_the_problem_check_refuses_an_error_that_is_not_a_problem() -> None:
    with pytest.raises(AssertionError, match="answered as 'application/json'"):
        problem_json(None, answer(404, {"detail": "Not Found"}, "application/json"), None)
    body = {"type": "urn:silta:problem:region_not_found", "title": "Not found", "status": 404, "detail": "region 99"}
    with pytest.raises(AssertionError, match="no problem code"):
        problem_json(None, answer(404, body, PROBLEM_JSON), None)
    with pytest.raises(AssertionError, match="status 404 in a 410"):
        problem_json(None, answer(410, body | {"code": "gone"}, PROBLEM_JSON), None)
    assert problem_json(None, answer(404, body | {"code": "region_not_found"}, PROBLEM_JSON), None) is None
