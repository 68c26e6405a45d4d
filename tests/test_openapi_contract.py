"""The committed OpenAPI document is valid, complete by our rules, and its examples are true.

The rules iterate the document, not a list of routes: a new operation is held to them as soon
as it exists. ``violations`` is tested on an undocumented route too, so the rules cannot
quietly stop checking.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.openapi.utils import get_openapi
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from pydantic import BaseModel

import app.models
from app.config import Settings
from app.deps import conditional
from app.main import ROUTERS, create_app
from app.openapi import (
    CONDITIONAL_OPERATIONS,
    CONFLICTS,
    ETAG_READS,
    OPEN_READS,
    READING_POSTS,
    REFERENCED,
    ROUTE_PROBLEMS,
    WRITES,
    parameter_name,
)
from app.services.rate_limit import LIMITED

ROOT = Path(__file__).resolve().parent.parent
SPEC = json.loads((ROOT / "openapi" / "openapi.json").read_text())
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
PROBLEM_SCHEMAS = {"#/components/schemas/Problem", "#/components/schemas/ValidationProblem"}


def operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [(method.upper(), path) for path, item in spec["paths"].items() for method in item if method in METHODS]


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def known_codes() -> set[str]:
    """Every problem code the app itself can raise: ``code=`` arguments, ``code`` attributes, ``problem()``."""
    codes: set[str] = set()
    for source in (ROOT / "app").rglob("*.py"):
        if source.name == "openapi.py":
            continue  # it shows codes; it must not vouch for them
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call):
                codes |= {k.value.value for k in node.keywords if k.arg == "code" and isinstance(k.value, ast.Constant)}
                if getattr(node.func, "id", None) == "problem" and isinstance(node.args[1], ast.Constant):
                    codes.add(node.args[1].value)
            elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Tuple | ast.Name):
                names = node.targets[0].elts if isinstance(node.targets[0], ast.Tuple) else [node.targets[0]]
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                for name, value in zip(names, values, strict=False):
                    if getattr(name, "id", None) == "code" and isinstance(value, ast.Constant):
                        codes.add(value.value)
                if getattr(node.targets[0], "id", None) == "HTTP_CODES" and isinstance(node.value, ast.Dict):
                    codes |= {pair.elts[0].value for pair in node.value.values if isinstance(pair, ast.Tuple)}
    return {code for code in codes if isinstance(code, str)}


KNOWN_CODES = known_codes()


def header_names(spec: dict[str, Any], operation: dict[str, Any]) -> set[str]:
    return {parameter_name(p) for p in operation.get("parameters", []) if resolve(spec, p)["in"] == "header"}


def has_example(spec: dict[str, Any], media: dict[str, Any]) -> bool:
    return (
        "example" in media
        or bool(media.get("examples"))
        or bool(resolve(spec, media.get("schema", {})).get("examples"))
    )


def violations(spec: dict[str, Any], method: str, path: str) -> list[str]:
    """Where the operation breaks our documentation rules (empty when it keeps them all)."""
    operation = spec["paths"][path][method.lower()]
    v1, key, found = path.startswith("/v1/"), (method, path), []
    responses = {status: resolve(spec, answer) for status, answer in operation["responses"].items()}
    parameters = [resolve(spec, p) for p in operation.get("parameters", [])]
    headers, body = header_names(spec, operation), operation.get("requestBody")
    tagged = key in ETAG_READS or key in CONDITIONAL_OPERATIONS

    def need(condition: bool, status: str) -> None:
        if condition and status not in responses:
            found.append(f"no {status} answer")

    need(v1, "401")
    need(v1 and key not in OPEN_READS, "403")
    need(any(p["in"] == "path" for p in parameters) or key in REFERENCED, "404")
    need(v1 and method in WRITES, "409")
    need(key in CONDITIONAL_OPERATIONS, "412")
    need(key in CONDITIONAL_OPERATIONS, "428")
    need(body is not None, "400")
    need(body is not None, "413")
    need(body is not None, "415")
    if key in ROUTE_PROBLEMS:
        need(True, str(ROUTE_PROBLEMS[key].status))
    need(key in LIMITED, "429")
    if key in LIMITED and "retry-after" not in {name.lower() for name in responses.get("429", {}).get("headers", {})}:
        found.append("429: no Retry-After header")
    need(body is not None or any(p["name"].lower() != "x-request-id" for p in parameters), "422")
    wanted = {"x-request-id"}
    wanted |= {"idempotency-key"} if v1 and method == "POST" else set()
    wanted |= {"x-purpose-of-use"} if v1 and (method == "GET" or key in READING_POSTS) else set()
    wanted |= {"if-match"} if key in CONDITIONAL_OPERATIONS else set()
    found += [f"no {name} header parameter" for name in sorted(wanted - headers)]
    if operation.get("security", []) != ([{"HTTPBearer": []}] if v1 else []):
        found.append("security: the bearer token on /v1, nothing elsewhere")
    for status, answer in responses.items():
        answer_headers = {name.lower() for name in answer.get("headers", {})}
        if "x-request-id" not in answer_headers:
            found.append(f"{status}: no X-Request-ID header")
        if status.startswith("2") and tagged and "etag" not in answer_headers:
            found.append(f"{status}: no ETag header")
        if status.startswith("2") and v1 and method == "POST" and "idempotent-replayed" not in answer_headers:
            found.append(f"{status}: no Idempotent-Replayed header")
        if v1 and status[0] in "45":
            found += problem_violations(status, answer)
    if body is not None and not all(has_example(spec, media) for media in body["content"].values()):
        found.append("request body without an example")
    return found


def problem_violations(status: str, answer: dict[str, Any]) -> list[str]:
    content = answer.get("content", {})
    media = content.get("application/problem+json", {})
    if list(content) != ["application/problem+json"] or media.get("schema", {}).get("$ref") not in PROBLEM_SCHEMAS:
        return [f"{status}: not an application/problem+json Problem"]
    examples = [example["value"] for example in media.get("examples", {}).values()]
    found = [] if examples else [f"{status}: no example"]
    for example in examples:
        if example["status"] != int(status) or example["type"] != f"urn:silta:problem:{example['code']}":
            found.append(f"{status}: example {example['code']} does not fit the answer")
        if example["code"] not in KNOWN_CODES:
            found.append(f"{status}: example code {example['code']} is raised nowhere in app/")
    return found


def test_the_committed_document_is_valid_openapi():
    validate(SPEC)


@pytest.mark.parametrize(("method", "path"), operations(SPEC))
def test_every_operation_is_documented_by_the_rules(method, path):
    assert violations(SPEC, method, path) == []


def test_operation_ids_are_unique():
    ids = [SPEC["paths"][path][method.lower()]["operationId"] for method, path in operations(SPEC)]
    assert len(ids) == len(set(ids))


def test_every_listed_operation_exists_and_the_single_resources_carry_etags():
    listed = CONDITIONAL_OPERATIONS | set(CONFLICTS) | set(ROUTE_PROBLEMS) | set(LIMITED) | set(REFERENCED)
    assert set(operations(SPEC)) >= listed
    reads = ETAG_READS & set(operations(SPEC))
    assert reads >= ETAG_READS - {("GET", "/v1/pairs/{pair_id}")}  # that read is being added elsewhere
    for _, path in reads:
        answer = SPEC["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        assert resolve(SPEC, answer["schema"]).get("examples"), f"{path}: the resource has no example"


def test_403_is_documented_where_the_access_matrix_expects_it():
    from tests.api.test_access_matrix import MATRIX

    refusing = {key for key, entry in MATRIX.items() if 403 in entry.expect.values()}
    documented = {key for key in operations(SPEC) if "403" in SPEC["paths"][key[1]][key[0].lower()]["responses"]}
    assert refusing - documented == set(), "a caller gets 403 where the document does not say so"
    assert documented - refusing == set(), "the document promises a 403 no caller gets"


def test_the_conditional_operations_are_the_routes_that_check_if_match():
    def calls(dependant: Any) -> Iterator[Any]:
        for dependency in dependant.dependencies:
            yield dependency.call
            yield from calls(dependency)

    checking = {
        (method, "/v1" + route.path)
        for module in ROUTERS
        for route in module.router.routes
        if any(call is conditional for call in calls(route.dependant))
        for method in route.methods
    }
    assert checking == CONDITIONAL_OPERATIONS


def test_fastapis_validation_error_schema_is_replaced_by_problems():
    assert "HTTPValidationError" not in SPEC["components"]["schemas"]
    assert SPEC["components"]["securitySchemes"]["HTTPBearer"] == {
        **SPEC["components"]["securitySchemes"]["HTTPBearer"],
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }


class Thing(BaseModel):
    name: str


def test_the_rules_catch_a_route_documented_by_nobody():
    application = create_app(Settings(database_url="sqlite://"))

    @application.post("/v1/things", responses={410: {"description": "the thing is gone"}})
    async def make_thing(thing: Thing) -> Thing:
        return thing

    assert violations(application.openapi(), "POST", "/v1/things") == [
        "security: the bearer token on /v1, nothing elsewhere",  # added outside the protected routers
        "410: no example",
        "request body without an example",
    ]
    bare = get_openapi(title="bare", version="0", routes=application.routes)  # FastAPI's own, not completed
    found = violations(bare, "GET", "/v1/clients/{client_id}")
    assert {"no 401 answer", "no 404 answer", "no x-request-id header parameter"} <= set(found)
    assert "422: not an application/problem+json Problem" in found


def examples_with_schemas(spec: dict[str, Any]) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """Every example in the document with the schema it illustrates."""
    for name, schema in spec["components"]["schemas"].items():
        yield from schema_examples(f"schemas/{name}", schema)
    media_types = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            body = operation.get("requestBody", {}).get("content", {})
            media_types += [(f"{method} {path} body", media) for media in body.values()]
            for status, answer in operation["responses"].items():
                content = answer.get("content", {})
                media_types += [(f"{method} {path} {status}", media) for media in content.values()]
            for parameter in operation.get("parameters", []):
                yield from schema_examples(
                    f"{method} {path} {parameter_name(parameter)}", resolve(spec, parameter)["schema"]
                )
    for name, answer in spec["components"].get("responses", {}).items():
        media_types += [(f"responses/{name}", media) for media in answer.get("content", {}).values()]
    for where, media in media_types:
        schema = media.get("schema", {})
        if "example" in media:
            yield where, media["example"], schema
        for name, example in media.get("examples", {}).items():
            yield f"{where} {name}", resolve(spec, example)["value"], schema


def schema_examples(where: str, schema: dict[str, Any]) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    for example in schema.get("examples", []):
        yield where, example, schema
    for name, sub in schema.get("properties", {}).items():
        yield from schema_examples(f"{where}.{name}", sub)
    for keyword in ("items", "additionalProperties"):
        if isinstance(schema.get(keyword), dict):
            yield from schema_examples(f"{where}[]", schema[keyword])
    for keyword in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(keyword, []):
            yield from schema_examples(where, sub)


EXAMPLES = list(examples_with_schemas(SPEC))


def test_the_document_has_examples_to_check():
    assert len(EXAMPLES) > 100


@pytest.mark.parametrize(("where", "example", "schema"), EXAMPLES, ids=[where for where, _, _ in EXAMPLES])
def test_every_example_matches_its_schema(where, example, schema):
    validator = Draft202012Validator(
        {**schema, "components": SPEC["components"]}, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    errors = [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(example)]
    assert errors == []


def model_examples() -> Iterator[tuple[str, type[BaseModel], Any]]:
    for info in pkgutil.iter_modules(app.models.__path__):
        module = importlib.import_module(f"app.models.{info.name}")
        for name, model in inspect.getmembers(module, inspect.isclass):
            if not issubclass(model, BaseModel) or model.__module__ != module.__name__:
                continue
            extra = model.model_config.get("json_schema_extra")
            for example in extra.get("examples", []) if isinstance(extra, dict) else []:
                yield name, model, example


MODEL_EXAMPLES = list(model_examples())


@pytest.mark.parametrize(("name", "model", "example"), MODEL_EXAMPLES, ids=[name for name, _, _ in MODEL_EXAMPLES])
def test_every_model_example_is_accepted_by_its_model(name, model, example):
    model.model_validate(example)
