"""The token rejection matrix (API.md "Tokens", STYLE.md "python-jose, safely").

Every bad token is a plain 401: no reason leaked, never a 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk, jwt
from pydantic import ValidationError

from app.config import Settings
from app.errors import Unauthorized
from app.main import create_app
from app.security import KeyStore, verify_token

ISS, AUD = "https://idp.test", "silta-test"


def _pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _public_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = {
        "keys": [
            {**jwk.construct(_public_pem(rsa_key), "RS256").to_dict(), "kid": "rsa-1"},
            {**jwk.construct(_public_pem(ec_key), "ES256").to_dict(), "kid": "ec-1"},
        ]
    }
    folder = tmp_path_factory.mktemp("jwks")
    (folder / "jwks.json").write_text(json.dumps(jwks))
    return {
        "rsa": _pem(rsa_key),
        "ec": _pem(ec_key),
        "other": _pem(other),
        "rsa_public": _public_pem(rsa_key),
        "jwks": jwks,
        "folder": folder,
    }


@pytest.fixture(scope="module")
def settings(keys: dict[str, Any]) -> Settings:
    return Settings(
        jwks_file=keys["folder"] / "jwks.json",
        jwt_issuer=ISS,
        jwt_audience=AUD,
        database_url="sqlite://",
        data_dir=keys["folder"],
    )


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISS,
        "aud": AUD,
        "sub": "svc-1",
        "iat": now,
        "exp": now + 300,
        "roles": ["system"],
        "region": "05",
        "client_system": "Lifecare",
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def sign(
    keys: dict[str, Any], body: dict[str, Any], *, key: str = "rsa", alg: str = "RS256", kid: str | None = "rsa-1"
) -> str:
    headers = {"kid": kid} if kid else {}
    return jwt.encode(body, keys[key].decode(), algorithm=alg, headers=headers)


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def hs256_by_hand(body: dict[str, Any], secret: bytes, kid: str) -> str:
    """The classic key-confusion token (jose itself refuses to make one)."""
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{b64(body)}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


async def test_valid_rs256_and_es256_tokens_give_their_claims(keys, settings):
    store = KeyStore(settings)
    rs = await verify_token(sign(keys, claims()), store, settings)
    es = await verify_token(
        sign(keys, claims(roles=["coordinator"]), key="ec", alg="ES256", kid="ec-1"), store, settings
    )
    assert (rs.sub, rs.roles, rs.region, rs.client_system) == ("svc-1", ["system"], "05", "Lifecare")
    assert es.roles == ["coordinator"]


async def test_leeway_and_audience_lists_are_honoured(keys, settings):
    now = int(time.time())
    store = KeyStore(settings)
    assert await verify_token(sign(keys, claims(exp=now - 20)), store, settings)
    assert await verify_token(sign(keys, claims(aud=["other", AUD])), store, settings)
    assert await verify_token(sign(keys, claims(roles=["auditor"], region=None)), store, settings)


def _bad_tokens(keys: dict[str, Any]) -> dict[str, str]:
    now = int(time.time())
    good = sign(keys, claims())
    head, payload, signature = good.split(".")
    return {
        "alg none": f"{b64({'alg': 'none', 'kid': 'rsa-1'})}.{b64(claims())}.",
        "HS256 with the public key as secret": hs256_by_hand(claims(), keys["rsa_public"], "rsa-1"),
        "HS256 naming the EC key": jwt.encode(claims(), "secret", algorithm="HS256", headers={"kid": "ec-1"}),
        "unknown kid": sign(keys, claims(), kid="nope"),
        "no kid": sign(keys, claims(), kid=None),
        "expired": sign(keys, claims(exp=now - 120)),
        "not yet valid": sign(keys, claims(nbf=now + 120)),
        "wrong audience": sign(keys, claims(aud="someone-else")),
        "wrong issuer": sign(keys, claims(iss="https://evil.test")),
        "missing exp": sign(keys, claims(exp=None)),
        "missing sub": sign(keys, claims(sub=None)),
        "missing aud": sign(keys, claims(aud=None)),
        "missing iss": sign(keys, claims(iss=None)),
        "tampered payload": f"{head}.{b64(claims(roles=['admin']))}.{signature}",
        "tampered signature": f"{head}.{payload}.{signature[:-4]}AAAA",
        "another key under the same kid": sign(keys, claims(), key="other"),
        "ES256 header on an RS256 key": sign(keys, claims(), key="ec", alg="ES256", kid="rsa-1"),
        "20 KB token": sign(keys, claims(padding="x" * 20_000)),
        "JWE shaped": "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d",
        "empty": "",
        "garbage": "abc",
        "three garbage segments": "a.b.c",
        "not base64": "!!!.???.***",
        "no roles": sign(keys, claims(roles=None)),
        "empty roles": sign(keys, claims(roles=[])),
        "unknown role": sign(keys, claims(roles=["root"])),
        "system without region": sign(keys, claims(region=None)),
        "coordinator with a bad region": sign(keys, claims(roles=["coordinator"], region="5")),
    }


@pytest.fixture(scope="module")
def bad_tokens(keys: dict[str, Any]) -> dict[str, str]:
    return _bad_tokens(keys)


@pytest.mark.parametrize(
    "case",
    [
        "alg none",
        "HS256 with the public key as secret",
        "HS256 naming the EC key",
        "unknown kid",
        "no kid",
        "expired",
        "not yet valid",
        "wrong audience",
        "wrong issuer",
        "missing exp",
        "missing sub",
        "missing aud",
        "missing iss",
        "tampered payload",
        "tampered signature",
        "another key under the same kid",
        "ES256 header on an RS256 key",
        "20 KB token",
        "JWE shaped",
        "empty",
        "garbage",
        "three garbage segments",
        "not base64",
        "no roles",
        "empty roles",
        "unknown role",
        "system without region",
        "coordinator with a bad region",
    ],
)
async def test_bad_tokens_are_refused(bad_tokens, settings, case):
    with pytest.raises(Unauthorized):
        await verify_token(bad_tokens[case], KeyStore(settings), settings)


@pytest.mark.parametrize("case", ["alg none", "expired", "wrong audience", "tampered signature", "garbage"])
async def test_http_answers_a_bare_401_without_the_reason(bad_tokens, settings, case):
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/v1/regions", headers={"Authorization": f"Bearer {bad_tokens[case]}"})
        missing = await client.get("/v1/regions")
        basic = await client.get("/v1/regions", headers={"Authorization": "Basic dXNlcjpwdw=="})
    for answer in (response, missing, basic):
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.headers["content-type"] == "application/problem+json"
        body = answer.json()
        assert body["code"] == "unauthorized" and body["detail"] == "Authentication required"
        assert not any(word in answer.text.lower() for word in ("expired", "signature", "audience", "alg"))


async def test_jwks_url_is_refetched_for_a_new_kid_but_rate_limited(keys, tmp_path):
    served = {"document": {"keys": [k for k in keys["jwks"]["keys"] if k["kid"] == "ec-1"]}, "calls": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        served["calls"] += 1
        return httpx.Response(200, json=served["document"])

    base = dict(jwks_url="http://127.0.0.1/jwks.json", jwt_issuer=ISS, jwt_audience=AUD, data_dir=tmp_path)
    limited = Settings(**base, jwks_refresh_seconds=3600)
    store = KeyStore(limited, transport=httpx.MockTransport(handler))
    with pytest.raises(Unauthorized):
        await verify_token(sign(keys, claims()), store, limited)  # rsa-1 not served yet: one fetch
    served["document"] = keys["jwks"]
    with pytest.raises(Unauthorized):
        await verify_token(sign(keys, claims()), store, limited)  # within the interval: no fetch
    assert served["calls"] == 1

    eager = Settings(**base, jwks_refresh_seconds=0)
    fresh = KeyStore(eager, transport=httpx.MockTransport(handler))
    assert (await verify_token(sign(keys, claims()), fresh, eager)).sub == "svc-1"
    assert served["calls"] == 2


async def test_an_unreachable_jwks_url_is_a_401_not_a_500(keys, tmp_path):
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down")

    settings = Settings(jwks_url="http://127.0.0.1/jwks.json", jwt_issuer=ISS, jwt_audience=AUD, data_dir=tmp_path)
    with pytest.raises(Unauthorized):
        await verify_token(sign(keys, claims()), KeyStore(settings, transport=httpx.MockTransport(down)), settings)


def test_private_and_symmetric_keys_in_a_jwks_are_ignored(keys):
    from app.security import parse_jwks

    private = jwk.construct(keys["rsa"].decode(), "RS256").to_dict()
    document = {"keys": [{**private, "kid": "leaked"}, {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]}
    assert parse_jwks(document) == {}


def test_production_refuses_to_start_without_keys(tmp_path):
    with pytest.raises(ValidationError):
        Settings(env="production", data_dir=tmp_path)
    with pytest.raises(ValidationError):
        Settings(
            env="production",
            jwks_file=Path("k.json"),
            jwt_issuer="silta-dev",
            jwt_audience="a",
            database_url="postgresql://db/silta",
        )
    ready = Settings(
        env="production",
        jwks_file=Path("k.json"),
        jwt_issuer=ISS,
        jwt_audience=AUD,
        database_url="postgresql://db/silta",
    )
    assert not ready.uses_dev_key
