"""The OpenAPI document completed with what FastAPI cannot see: problem answers and contract headers.

``install(app)`` wraps ``app.openapi``; routers stay untouched. Every rule reads the generated
document (method, path, parameters, body), so a new route is documented without being listed
here, and tests/test_openapi_contract.py holds the document to the same rules.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from app.domain.access import PURPOSES
from app.errors import (
    Conflict,
    DuplicateClient,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ResponsibilityTaken,
    SiltaError,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from app.middleware import REQUEST_ID
from app.models import examples as model_examples
from app.services.feed import CursorExpired
from app.services.idempotency import KeyInUse, KeyReused
from app.services.preconditions import PreconditionFailed, PreconditionRequired
from app.services.rate_limit import LIMITED

# State-changing calls that take If-Match: 412 when it is stale, 428 when required and missing.
CONDITIONAL_OPERATIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("PATCH", "/v1/clients/{client_id}"),
        ("POST", "/v1/clients/{client_id}/moves"),
        ("POST", "/v1/clients/{client_id}/organising-transfers"),
        ("POST", "/v1/clients/{client_id}/end"),
        ("PATCH", "/v1/workers/{worker_id}"),
        ("POST", "/v1/pairs/{pair_id}/confirm"),
        ("POST", "/v1/pairs/{pair_id}/end"),
        ("POST", "/v1/cost-decisions/{decision_id}/agree"),
        ("POST", "/v1/cost-decisions/{decision_id}/dispute"),
        ("POST", "/v1/coordination-requests/{request_id}/accept"),
        ("POST", "/v1/coordination-requests/{request_id}/decline"),
        ("POST", "/v1/coordination-requests/{request_id}/cancel"),
    }
)
# Reads of the single resources that carry an ETag (documented where the path exists).
ETAG_READS: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/v1/clients/{client_id}"),
        ("GET", "/v1/workers/{worker_id}"),
        ("GET", "/v1/pairs/{pair_id}"),
        ("GET", "/v1/cost-decisions/{decision_id}"),
        ("GET", "/v1/coordination-requests/{request_id}"),
    }
)
# Reads any verified caller may make (reference data and the worker directory): the only /v1
# operations that never answer 403; every other one checks the caller's role or region.
OPEN_READS: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/v1/regions"),
        ("GET", "/v1/regions/{code}"),
        ("GET", "/v1/municipalities/{code}"),
        ("GET", "/v1/workers"),
        ("GET", "/v1/workers/{worker_id}"),
    }
)
# POSTs that only read personal data: the purpose of use applies to them as to GETs.
READING_POSTS = frozenset({("POST", "/v1/clients/search")})
# The conflict each write is best known for (the services raise them); any write may also meet
# ``concurrent_update`` on PostgreSQL.
CONFLICTS = {
    ("POST", "/v1/clients"): ("duplicate_client", DuplicateClient.title),
    ("PATCH", "/v1/clients/{client_id}"): (
        "duplicate_external_id",
        "an external id is already linked to another client",
    ),
    ("POST", "/v1/clients/{client_id}/organising-transfers"): (
        "transfer_pending",
        "an organising transfer is already pending",
    ),
    ("POST", "/v1/clients/{client_id}/end"): ("client_ended", "aftercare has already been ended"),
    ("POST", "/v1/workers"): ("duplicate_worker", "a worker with this external_id exists in the region"),
    ("PATCH", "/v1/regions/{code}/settings"): (
        "clients_past_age_limit",
        "1 client(s) would be past the new age limit before their aftercare begins",
    ),
    ("POST", "/v1/clients/{client_id}/assignments"): ("responsibility_taken", ResponsibilityTaken.title),
    ("POST", "/v1/assignments/{assignment_id}/end"): ("assignment_ended", "the assignment has already ended"),
    ("POST", "/v1/coordination-requests"): ("request_pending", "the same request is already open"),
    ("POST", "/v1/coordination-requests/{request_id}/accept"): ("request_answered", "the request is already declined"),
    ("POST", "/v1/coordination-requests/{request_id}/decline"): ("request_answered", "the request is already accepted"),
    ("POST", "/v1/coordination-requests/{request_id}/cancel"): ("request_answered", "the request is already accepted"),
    ("POST", "/v1/clients/{client_id}/pairs"): (
        "pair_exists",
        "a live pair of this kind already exists for the client",
    ),
    ("POST", "/v1/pairs/{pair_id}/confirm"): ("pair_not_proposed", "the pair is ended, not proposed"),
    ("POST", "/v1/pairs/{pair_id}/end"): ("pair_ended", "the pair has already ended"),
    ("POST", "/v1/clients/{client_id}/cost-decisions"): (
        "overlapping_decision",
        "an agreed decision covers part of this period (2026-12-01 to 2027-12-01)",
    ),
    ("POST", "/v1/cost-decisions/{decision_id}/agree"): ("decision_answered", "the decision is already disputed"),
    ("POST", "/v1/cost-decisions/{decision_id}/dispute"): ("decision_answered", "the decision is already agreed"),
}
CONFLICT_ERRORS: dict[str, type[SiltaError]] = {error.code: error for error in (DuplicateClient, ResponsibilityTaken)}
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PROBLEM_JSON = "application/problem+json"
NOT_FOUND_CODES = {
    "client_id": "client_not_found",
    "worker_id": "worker_not_found",
    "assignment_id": "assignment_not_found",
    "pair_id": "pair_not_found",
    "decision_id": "cost_decision_not_found",
    "request_id": "request_not_found",
    "webhook_id": "webhook_not_found",
}
# Operations without path parameters that answer 404 for what a body or a query names.
REFERENCED: dict[tuple[str, str], str] = {
    ("POST", "/v1/coordination-requests"): "client_not_found",
    ("GET", "/v1/cost-decisions/summary"): "region_not_found",
}
# Answers only particular operations give, with the error that gives them.
ROUTE_PROBLEMS: dict[tuple[str, str], type[SiltaError]] = {("GET", "/v1/events"): CursorExpired}


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _header_parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "description": description, "schema": schema}


PARAMETERS = {
    "X-Request-ID": _header_parameter(
        "X-Request-ID",
        "Correlates the request with Silta's logs; echoed when it matches the pattern and holds nothing shaped"
        " like an identity code, otherwise replaced.",
        {"type": "string", "pattern": REQUEST_ID.pattern},
    ),
    "Idempotency-Key": _header_parameter(
        "Idempotency-Key",
        "The same key with the same body within 24 h replays the first answer (`Idempotent-Replayed: true`);"
        " with another body: 422 `idempotency_key_reused`; while the first is running: 409"
        " `idempotency_key_in_use`. Keys are scoped to the token's subject.",
        {"type": "string", "minLength": 1, "maxLength": 255},
    ),
    "X-Purpose-Of-Use": _header_parameter(
        "X-Purpose-Of-Use",
        "Why personal data is read; stored in the access log. Default: `coordination` for system and"
        " coordinator, `audit` for auditor.",
        {"type": "string", "enum": sorted(PURPOSES)},
    ),
    "If-Match": _header_parameter(
        "If-Match",
        "The ETag from your last read (or `*`): 412 when the resource has changed since; 428 when it is"
        " missing and the deployment requires it (`SILTA_REQUIRE_IF_MATCH=true`).",
        {"type": "string", "minLength": 1},
    ),
}
HEADERS = {
    "X-Request-ID": {
        "description": "The request's id: the one given, or a generated UUID.",
        "schema": {"type": "string"},
    },
    "ETag": {"description": "The resource's current entity tag; send it as If-Match.", "schema": {"type": "string"}},
    "Idempotent-Replayed": {
        "description": "`true` on the stored answer to an earlier request with the same Idempotency-Key.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying (`concurrent_update`, `rate_limited`).",
        "schema": {"type": "integer", "minimum": 1},
    },
    "WWW-Authenticate": {"description": "Always `Bearer`, never a reason.", "schema": {"type": "string"}},
}
PROBLEM = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details with a stable machine-readable `code`; some codes add fields"
    " (`existing_id`, `request_id`, `assignment_id`, `pair_id`).",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "format": "uri", "description": "`urn:silta:problem:<code>`"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
    },
}
LOCATION = {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}
ERROR = {"type": "object", "required": ["loc", "msg"], "properties": {"loc": LOCATION, "msg": {"type": "string"}}}
ERRORS = {"type": "array", "items": ERROR}
VALIDATION_PROBLEM = {
    "title": "ValidationProblem",
    "description": "A 422 problem; a request that fails validation also lists its `errors`.",
    "allOf": [
        _ref("schemas", "Problem"),
        {"type": "object", "properties": {"errors": ERRORS}},
    ],
}


def install(app: FastAPI) -> None:
    """Serve the completed document (FastAPI still regenerates it when the routes change)."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    cache: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def openapi() -> dict[str, Any]:
        generated = generate()
        if not cache or cache[0][0] is not generated:
            cache[:] = [(generated, complete(copy.deepcopy(generated)))]
        return cache[0][1]

    app.openapi = openapi  # type: ignore[method-assign]


def complete(spec: dict[str, Any]) -> dict[str, Any]:
    """Add the problem schemas, contract headers and error answers to a generated document."""
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(copy.deepcopy({"Problem": PROBLEM, "ValidationProblem": VALIDATION_PROBLEM}))
    components.update(copy.deepcopy({"parameters": PARAMETERS, "headers": HEADERS}), responses=_responses())
    bearer = components.get("securitySchemes", {}).get("HTTPBearer")
    if bearer is not None:
        bearer["bearerFormat"] = "JWT"
        bearer["description"] = (
            "JWT from the deployment's identity provider, RS256 or ES256, with `iss`, `aud`, `sub`, `exp`;"
            " Silta reads the claims `roles` (system, coordinator, auditor, admin) and `region`."
        )
    for schema in schemas.values():
        if isinstance(schema.get("examples"), list):
            schema["examples"] = [copy.deepcopy(model_examples.restored(example)) for example in schema["examples"]]
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            _add_headers(method.upper(), path, operation)
            _add_problems(method.upper(), path, operation, schemas)
    for replaced in ("HTTPValidationError", "ValidationError"):
        if f'"#/components/schemas/{replaced}"' not in json.dumps(spec):
            schemas.pop(replaced, None)
    components["schemas"] = dict(sorted(schemas.items()))
    return spec


def _add_headers(method: str, path: str, operation: dict[str, Any]) -> None:
    v1, key = path.startswith("/v1/"), (method, path)
    wanted = ["X-Request-ID"]
    if v1 and method == "POST":
        wanted.append("Idempotency-Key")
    if v1 and (method == "GET" or key in READING_POSTS):
        wanted.append("X-Purpose-Of-Use")
    if key in CONDITIONAL_OPERATIONS:
        wanted.append("If-Match")
    parameters = operation.setdefault("parameters", [])
    declared = {parameter_name(p) for p in parameters if p.get("in") == "header"}
    parameters.extend(_ref("parameters", name) for name in wanted if name.lower() not in declared)
    for status, response in operation.get("responses", {}).items():
        headers = response.setdefault("headers", {})
        headers["X-Request-ID"] = _ref("headers", "X-Request-ID")
        if status.startswith("2") and (key in ETAG_READS or key in CONDITIONAL_OPERATIONS):
            headers["ETag"] = _ref("headers", "ETag")
        if status.startswith("2") and v1 and method == "POST":
            headers["Idempotent-Replayed"] = _ref("headers", "Idempotent-Replayed")


def parameter_name(parameter: dict[str, Any]) -> str:
    """A parameter's lower-cased name, also for a ``$ref`` to one of ours."""
    return str(parameter.get("name") or parameter.get("$ref", "").rsplit("/", 1)[-1]).lower()


def _add_problems(method: str, path: str, operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    """The problem answers this operation can give, each with examples carrying real codes."""
    v1, write, body = path.startswith("/v1/"), method in WRITES, "requestBody" in operation
    parameters = operation.get("parameters", [])
    path_parameters = [p["name"] for p in parameters if p.get("in") == "path"]
    answers: dict[str, Any] = {}
    if v1:
        answers["401"] = _ref("responses", "Unauthorized")
    if v1 and (method, path) not in OPEN_READS:
        answers["403"] = _ref("responses", "Forbidden")
    if path_parameters or (method, path) in REFERENCED:
        code = _not_found_code(path, path_parameters[0]) if path_parameters else REFERENCED[method, path]
        thing = code.removesuffix("_not_found").replace("_", " ")
        detail = NotFound.title if code == NotFound.code else f"{thing} not found"
        answers["404"] = _problem(
            "Not found, or not visible to the caller's region (never 403).", _example(NotFound, code, detail)
        )
    if v1 and write:
        answers["409"] = _conflict(method, path)
    if (method, path) in ROUTE_PROBLEMS:
        error = ROUTE_PROBLEMS[method, path]
        answers[str(error.status)] = _problem(error.title + ".", _example(error, error.code, error.title))
    if (method, path) in CONDITIONAL_OPERATIONS:
        answers["412"] = _ref("responses", "PreconditionFailed")
        answers["428"] = _ref("responses", "PreconditionRequired")
    if body:
        answers["400"] = _ref("responses", "BadRequest")
        answers["413"] = _ref("responses", "PayloadTooLarge")
        answers["415"] = _ref("responses", "UnsupportedMediaType")
    if (method, path) in LIMITED:
        answers["429"] = _ref("responses", "RateLimited")
    if body or any(parameter_name(p) != "x-request-id" for p in parameters):
        answers["422"] = _problem(
            "The request is not valid (`errors` lists the fields) or breaks a rule of the service (`code` names it).",
            _unprocessable(method, path, operation, schemas),
            schema="ValidationProblem",
        )
    responses = operation.get("responses", {})
    for status, answer in answers.items():  # a route's own problem answer (with content) wins over ours
        if "content" not in responses.get(status, {}) or "HTTPValidationError" in json.dumps(responses[status]):
            responses[status] = answer
    for status, answer in responses.items():  # a problem a route declared by description only
        if v1 and status[0] in "45" and "$ref" not in answer and "content" not in answer:
            answer["content"] = {PROBLEM_JSON: {"schema": _ref("schemas", "Problem")}}
    operation["responses"] = dict(sorted(responses.items(), key=lambda item: (not item[0].isdigit(), item[0])))


def _responses() -> dict[str, Any]:
    """The problem answers that read the same on every operation."""
    unauthorized = _problem("No valid bearer token.", _example(Unauthorized, "unauthorized", Unauthorized.title))
    unauthorized["headers"]["WWW-Authenticate"] = _ref("headers", "WWW-Authenticate")
    forbidden = _example(Forbidden, "forbidden", "this needs one of the roles: system, coordinator")
    stale = _example(PreconditionFailed, PreconditionFailed.code, "read the resource again and reapply your change")
    missing = _example(
        PreconditionRequired, PreconditionRequired.code, "send If-Match with the ETag from your last read"
    )
    too_large = _example(PayloadTooLarge, "payload_too_large", PayloadTooLarge.title)
    wrong_type = _example(UnsupportedMediaType, UnsupportedMediaType.code, "send the body as application/json")
    unreadable = _example(SiltaError, SiltaError.code, SiltaError.title)
    rate_limited = _problem(
        "The caller (the token's `sub`) has used up its allowance for this kind of endpoint; retry after"
        " `Retry-After` seconds. Limits per deployment: `SILTA_RATE_LIMIT_SEARCH`, `…_EXPORT`, `…_IMPORT`.",
        _example(RateLimited, RateLimited.code, "retry in 20 s"),
    )
    rate_limited["headers"]["Retry-After"] = _ref("headers", "Retry-After")
    return {
        "BadRequest": _problem(
            "The body cannot be read as JSON at all (not UTF-8, or nested too deep); `422` for JSON that does"
            " not fit the schema.",
            unreadable,
        ),
        "Unauthorized": unauthorized,
        "Forbidden": _problem("The caller's role or region may not do this.", forbidden),
        "PreconditionFailed": _problem("If-Match does not match the resource's current ETag.", stale),
        "PreconditionRequired": _problem("This deployment requires If-Match and none was sent.", missing),
        "PayloadTooLarge": _problem("The request body is over 1 MiB (imports: 64 MiB).", too_large),
        "UnsupportedMediaType": _problem(
            "The body's Content-Type is none of the request body's media types (JSON: `application/json` or"
            " `application/*+json`, any charset).",
            wrong_type,
        ),
        "RateLimited": rate_limited,
    }


def _not_found_code(path: str, parameter: str) -> str:
    if parameter == "code":
        return "municipality_not_found" if path.startswith("/v1/municipalities/") else "region_not_found"
    return NOT_FOUND_CODES.get(parameter, "not_found")


def _conflict(method: str, path: str) -> dict[str, Any]:
    examples: dict[str, Any] = {}
    if (method, path) in CONFLICTS:
        code, detail = CONFLICTS[method, path]
        named: dict[str, Any] = {"existing_id": model_examples.CLIENT_ID} if code == DuplicateClient.code else {}
        examples |= _example(CONFLICT_ERRORS.get(code, Conflict), code, detail, **named)
    retryable = (method, path) not in READING_POSTS  # a write may meet a serialization failure on PostgreSQL
    if retryable:
        concurrent = "A concurrent change got in the way; retry the request"
        examples |= _example(Conflict, "concurrent_update", concurrent, title=concurrent)
    if method == "POST":
        examples |= _example(KeyInUse, KeyInUse.code, KeyInUse.title)
    answer = _problem("The change conflicts with the current state; `code` names the conflict.", examples)
    if retryable:
        answer["headers"]["Retry-After"] = _ref("headers", "Retry-After")
    return answer


def _unprocessable(method: str, path: str, operation: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    examples: dict[str, Any] = {}
    errors = _validation_errors(operation, schemas)
    if errors:
        examples |= _example(ValidationFailed, "validation_error", "see errors", errors=errors)
    if any(parameter_name(p) == "x-purpose-of-use" for p in operation.get("parameters", [])):
        detail = f"X-Purpose-Of-Use must be one of: {', '.join(sorted(PURPOSES))}"
        examples |= _example(ValidationFailed, "validation_error", detail, name="purpose_of_use")
    if method == "POST" and path.startswith("/v1/"):
        examples |= _example(KeyReused, KeyReused.code, KeyReused.title)
    return examples


def _validation_errors(operation: dict[str, Any], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    """One realistic entry of ``errors`` for this operation, worded as FastAPI words it."""
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    body_schema = schemas.get(content.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1], {})
    if body_schema.get("required"):
        return [{"loc": [body_schema["required"][0]], "msg": "Field required"}]
    for parameter in operation.get("parameters", []):
        where, schema = parameter.get("in"), parameter.get("schema", {})
        loc = [where, parameter.get("name")]
        if where == "path" and schema.get("format") == "uuid":
            return [{"loc": loc, "msg": "Input should be a valid UUID, invalid character: found `n` at 0"}]
        if where == "path" and "pattern" in schema:
            return [{"loc": loc, "msg": f"String should match pattern '{schema['pattern']}'"}]
        if where == "query" and "minimum" in schema:
            return [{"loc": loc, "msg": f"Input should be greater than or equal to {schema['minimum']}"}]
    if content:
        return [{"loc": ["body"], "msg": "Input should be a valid dictionary or object to extract fields from"}]
    return []


def _example(
    error: type[SiltaError], code: str, detail: str, *, title: str = "", name: str = "", **extra: Any
) -> dict[str, Any]:
    """A named example of a problem as ``app.problems`` renders it (status and title from the error class)."""
    value = {
        "type": f"urn:silta:problem:{code}",
        "title": title or error.title,
        "status": error.status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return {name or code: {"summary": code, "value": value}}


def _problem(description: str, examples: dict[str, Any], schema: str = "Problem") -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"X-Request-ID": _ref("headers", "X-Request-ID")},
        "content": {PROBLEM_JSON: {"schema": _ref("schemas", schema), "examples": examples}},
    }
