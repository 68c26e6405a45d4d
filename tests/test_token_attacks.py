"""Token attacks over HTTP (issue 8): what an attacker sees is one and the same bare 401.

``test_security.py`` drives ``verify_token`` directly; this file attacks the running app the way
a client would — forged, broken, stale and misused tokens, odd ``Authorization`` headers, JWKS-URL
key lookups — and asserts that every answer is the identical problem document (no hint of which
check failed, no token or key material echoed), that none is a 5xx, and that a valid token still
passes, so the matrix cannot pass vacuously.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import math
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from fastapi.routing import APIRoute
from jose import jwe, jwk, jws, jwt

from app.config import Settings
from app.main import ROUTERS, create_app
from tests.conftest import AUDIENCE, ISSUER, KID

URL = "/v1/regions"
JWKS_URL = "https://idp.test/.well-known/jwks.json"
EVIL = "https://evil.test/jwks.json"
BARE_401 = {
    "type": "urn:silta:problem:unauthorized",
    "title": "Authentication required",
    "status": 401,
    "detail": "Authentication required",
    "code": "unauthorized",
}


# --------------------------------------------------------------------------- forging tokens


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64json(value: Any) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def claims(**changes: Any) -> dict[str, Any]:
    """Good claims for a coordinator of region 05; a value of ``None`` removes that claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": f"attacker-{uuid.uuid4().hex[:8]}",
        "iat": now,
        "exp": now + 600,
        "roles": ["coordinator"],
        "region": "05",
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


@dataclass(frozen=True)
class Forge:
    """The test IdP's key (kid ``KID``, published in the JWKS file) and an attacker's keys."""

    idp: rsa.RSAPrivateKey  # loaded once: loading a PEM re-validates the RSA key, ~50 ms a time
    idp_public_pem: bytes
    idp_public_der: bytes
    idp_jwk: dict[str, Any]
    rogue_rsa: rsa.RSAPrivateKey
    rogue_ec: ec.EllipticCurvePrivateKey
    rogue_rsa_jwk: dict[str, Any]

    def sign(self, body: dict[str, Any] | None = None, *, key: Any = None, alg: str = "RS256", **headers: Any) -> str:
        """A JWS over ``body``; header values given as ``None`` are left out (``kid=None``)."""
        header = {name: value for name, value in {"kid": KID, **headers}.items() if value is not None}
        return jwt.encode(body if body is not None else claims(), key or self.idp, alg, headers=header)

    def sign_raw(self, payload: bytes, **headers: Any) -> str:
        """A validly signed JWS whose payload is exactly ``payload`` (not necessarily JSON claims)."""
        return jws.sign(payload, self.idp, headers={"kid": KID, **headers}, algorithm="RS256")

    def rs256_over(self, header: dict[str, Any], body: dict[str, Any] | None = None) -> str:
        """A correct RS256 signature by the IdP's key over exactly this header, whatever it says."""
        signing_input = f"{_b64json(header)}.{_b64json(body if body is not None else claims())}"
        return f"{signing_input}.{_b64(self.idp.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()))}"

    def valid(self) -> str:
        return self.sign()


def unsigned(header: dict[str, Any], body: dict[str, Any], signature: bytes = b"") -> str:
    return f"{_b64json(header)}.{_b64json(body)}.{_b64(signature)}"


def hmac_signed(alg: str, secret: bytes, body: dict[str, Any] | None = None) -> str:
    """A token MACed with ``secret`` (jose itself refuses to use a public key as an HMAC secret)."""
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    signing_input = f"{_b64json({'alg': alg, 'typ': 'JWT', 'kid': KID})}.{_b64json(body or claims(roles=['admin']))}"
    return f"{signing_input}.{_b64(hmac.new(secret, signing_input.encode(), digest).digest())}"


def tampered_payload(f: Forge) -> str:
    header, payload, signature = f.sign(claims(roles=["auditor"], region="05")).split(".")
    body = json.loads(_unb64(payload)) | {"roles": ["admin"]}
    return f"{header}.{_b64json(body)}.{signature}"


def tampered_signature(f: Forge) -> str:
    header, payload, signature = f.valid().split(".")
    raw = bytearray(_unb64(signature))
    raw[len(raw) // 2] ^= 0x01  # a whole byte, not the unused low bits of the last base64 character
    return f"{header}.{payload}.{_b64(bytes(raw))}"


def signature_of_another_token(f: Forge) -> str:
    header, payload, _ = f.sign(claims(roles=["admin"], region=None)).split(".")
    return f"{header}.{payload}.{f.valid().split('.')[2]}"


def malleable_signature(f: Forge) -> str:
    """The same signature in the standard base64 alphabet, padded: not the compact serialisation."""
    header, payload, signature = f.valid().split(".")
    return f"{header}.{payload}.{base64.b64encode(_unb64(signature)).decode()}"


def jwe_compact(f: Forge) -> str:
    header = _b64json({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": KID, "cty": "JWT"})
    rng = random.Random(8)
    return ".".join(
        [header, _b64(rng.randbytes(256)), _b64(rng.randbytes(12)), _b64(rng.randbytes(300)), _b64(rng.randbytes(16))]
    )


def sized(f: Forge, size: int) -> str:
    token = f.sign(claims(padding="x" * size))  # validly signed: only its size is wrong
    assert len(token) > size
    return token


def shifted(claim: str, seconds: int) -> Callable[[Forge], str]:
    """A token whose ``claim`` lies ``seconds`` from now, rounded away from the edge of the 30 s leeway."""

    def make(f: Forge) -> str:
        exact = time.time() + seconds
        later = (claim == "exp") == (abs(seconds) <= 30)  # within the leeway towards passing, beyond it towards failing
        return f.sign(claims(**{claim: math.ceil(exact) if later else math.floor(exact)}))

    return make


def random_bytes(_: Forge) -> bytes:
    rng = random.Random(20)
    return bytes(byte for byte in rng.randbytes(512) if byte not in b"\r\n")


TOKENS: dict[str, Callable[[Forge], str | bytes]] = {
    # algorithm confusion
    "alg-none-empty-signature": lambda f: unsigned({"alg": "none", "kid": KID, "typ": "JWT"}, claims(roles=["admin"])),
    "alg-none-signed-by-the-idp": lambda f: f.rs256_over({"alg": "none", "kid": KID}, claims(roles=["admin"])),
    "alg-None": lambda f: unsigned({"alg": "None", "kid": KID}, claims(roles=["admin"])),
    "alg-NONE": lambda f: unsigned({"alg": "NONE", "kid": KID}, claims(roles=["admin"])),
    "alg-missing": lambda f: f.rs256_over({"kid": KID, "typ": "JWT"}),
    "alg-lower-case-rs256": lambda f: f.rs256_over({"alg": "rs256", "kid": KID}),
    "alg-a-list": lambda f: f.rs256_over({"alg": ["RS256"], "kid": KID}),
    "hs256-signed-with-public-pem": lambda f: hmac_signed("HS256", f.idp_public_pem),
    "hs256-signed-with-public-der": lambda f: hmac_signed("HS256", f.idp_public_der),
    "hs256-signed-with-published-jwk": lambda f: hmac_signed("HS256", json.dumps(f.idp_jwk).encode()),
    "hs256-signed-with-empty-secret": lambda f: hmac_signed("HS256", b""),
    "hs512-signed-with-public-pem": lambda f: hmac_signed("HS512", f.idp_public_pem),
    "hs512-empty-signature": lambda f: unsigned({"alg": "HS512", "kid": KID}, claims(roles=["admin"])),
    "rs512-signed-with-the-right-key": lambda f: f.sign(alg="RS512"),
    "ps256-header-on-rs256-signature": lambda f: f.rs256_over({"alg": "PS256", "kid": KID}),
    "es256-header-on-rs256-signature": lambda f: f.rs256_over({"alg": "ES256", "kid": KID}),
    "es256-rogue-key-known-kid": lambda f: f.sign(key=f.rogue_ec, alg="ES256"),
    "rs256-rogue-key-known-kid": lambda f: f.sign(key=f.rogue_rsa),
    # headers that must be refused or ignored
    "crit-unknown-extension": lambda f: f.sign(crit=["x-silta"], **{"x-silta": True}),
    "crit-b64-false": lambda f: f.sign(crit=["b64"], b64=False),
    "jku-elsewhere-rogue-kid": lambda f: f.sign(key=f.rogue_rsa, kid="rogue-1", jku=EVIL),
    "jku-elsewhere-known-kid": lambda f: f.sign(key=f.rogue_rsa, jku=EVIL),
    "x5u-elsewhere-known-kid": lambda f: f.sign(key=f.rogue_rsa, x5u="https://evil.test/cert.pem"),
    "jwk-embedded-rogue-key": lambda f: f.sign(key=f.rogue_rsa, jwk=f.rogue_rsa_jwk),
    "jwk-embedded-rogue-key-no-kid": lambda f: f.sign(key=f.rogue_rsa, kid=None, jwk=f.rogue_rsa_jwk),
    "x5c-embedded-rogue-chain": lambda f: f.sign(key=f.rogue_rsa, x5c=[_b64(b"rogue certificate")]),
    # key ids
    "kid-unknown": lambda f: f.sign(kid="test-rsa-2"),
    "kid-missing": lambda f: f.sign(kid=None),
    "kid-empty": lambda f: f.sign(kid=""),
    "kid-path-traversal": lambda f: f.sign(kid="../../../../../dev/null"),
    "kid-sql-injection": lambda f: f.sign(kid="x' OR '1'='1"),
    "kid-a-list": lambda f: f.rs256_over({"alg": "RS256", "kid": [KID]}),
    "kid-4000-characters": lambda f: f.sign(kid="k" * 4000),
    # integrity
    "tampered-payload-role-escalation": tampered_payload,
    "tampered-signature": tampered_signature,
    "signature-stripped": lambda f: f.valid().rsplit(".", 1)[0] + ".",
    "signature-of-another-token": signature_of_another_token,
    "signature-standard-base64-padded": malleable_signature,
    "signature-padded": lambda f: f.valid() + "==",
    "valid-token-with-trailing-garbage": lambda f: f.valid() + "x",
    # time
    "expired-an-hour-ago": lambda f: f.sign(claims(exp=int(time.time()) - 3600)),
    "expired-31s-ago": shifted("exp", -31),
    "nbf-31s-ahead": shifted("nbf", 31),
    "nbf-next-year": lambda f: f.sign(claims(nbf=int(time.time()) + 365 * 86400)),
    "iat-an-hour-ahead": lambda f: f.sign(claims(iat=int(time.time()) + 3600)),
    "exp-a-numeric-string": lambda f: f.sign(claims(exp=str(int(time.time()) + 600))),
    "exp-a-word": lambda f: f.sign(claims(exp="tomorrow")),
    "exp-null": lambda f: f.sign_raw(json.dumps(claims() | {"exp": None}).encode()),
    "exp-true": lambda f: f.sign(claims(exp=True)),
    "exp-infinite": lambda f: f.sign_raw(json.dumps(claims(exp=None)).replace("{", '{"exp": 1e400, ', 1).encode()),
    "nbf-a-numeric-string": lambda f: f.sign(claims(nbf=str(int(time.time()) - 60))),
    "iat-a-numeric-string": lambda f: f.sign(claims(iat=str(int(time.time())))),
    # audience and issuer
    "aud-wrong": lambda f: f.sign(claims(aud="another-service")),
    "aud-list-without-ours": lambda f: f.sign(claims(aud=["another-service", "silta"])),
    "aud-empty-list": lambda f: f.sign(claims(aud=[])),
    "aud-ours-in-upper-case": lambda f: f.sign(claims(aud=AUDIENCE.upper())),
    "aud-missing": lambda f: f.sign(claims(aud=None)),
    "iss-wrong": lambda f: f.sign(claims(iss="https://evil.test")),
    "iss-trailing-slash": lambda f: f.sign(claims(iss=ISSUER + "/")),
    "iss-a-list-with-ours": lambda f: f.sign(claims(iss=[ISSUER])),
    "iss-missing": lambda f: f.sign(claims(iss=None)),
    # required claims
    "exp-missing": lambda f: f.sign(claims(exp=None)),
    "sub-missing": lambda f: f.sign(claims(sub=None)),
    "sub-empty": lambda f: f.sign(claims(sub="")),
    "sub-blank": lambda f: f.sign(claims(sub="   ")),
    "sub-a-number": lambda f: f.sign(claims(sub=7)),
    # Silta's own claims
    "roles-unknown": lambda f: f.sign(claims(roles=["superuser"])),
    "roles-unknown-beside-admin": lambda f: f.sign(claims(roles=["admin", "root"])),
    "roles-missing": lambda f: f.sign(claims(roles=None)),
    "roles-empty": lambda f: f.sign(claims(roles=[])),
    "roles-a-string": lambda f: f.sign(claims(roles="admin")),
    "region-not-an-official-code": lambda f: f.sign(claims(region="99")),
    "region-a-name": lambda f: f.sign(claims(region="Uusimaa")),
    "region-fullwidth-digits": lambda f: f.sign(claims(region="０５")),
    "system-without-region": lambda f: f.sign(claims(roles=["system"], region=None)),
    "coordinator-without-region": lambda f: f.sign(claims(roles=["coordinator"], region=None)),
    "payload-a-json-list": lambda f: f.sign_raw(b'["admin"]'),
    "payload-not-json": lambda f: f.sign_raw(b"\xff\xfe admin"),
    "payload-deeply-nested": lambda f: f.sign_raw(
        (json.dumps(claims())[:-1] + ', "x": ' + "[" * 2000 + "]" * 2000 + "}").encode()
    ),
    # shape and size
    "20-kb-token": lambda f: sized(f, 20_000),
    "200-kb-token": lambda f: sized(f, 200_000),
    "jwe-compact-5-parts": jwe_compact,
    "jwe-encrypted-to-the-idp-key": lambda f: jwe.encrypt(
        json.dumps(claims(roles=["admin"])), f.idp_public_pem, "A256GCM", "RSA-OAEP-256", kid=KID
    ).decode(),
    "jws-json-serialisation": lambda f: json.dumps(
        {"payload": f.valid().split(".")[1], "signatures": [{"protected": f.valid().split(".")[0], "signature": "x"}]}
    ),
    "two-parts": lambda f: f.valid().rsplit(".", 1)[0],
    "four-parts": lambda f: f.valid() + ".e30",
    "garbage": lambda f: "garbage",
    "dots-only": lambda f: "..",
    "a.b.c": lambda f: "a.b.c",
    "header-deeply-nested": lambda f: f"{_b64(b'[' * 5000)}.e30.c2ln",
    "random-bytes": random_bytes,
    "unicode": lambda f: "ключ.🔑.clé".encode(),
    "unicode-in-valid-token": lambda f: f.valid().replace(".", "․", 1).encode(),  # U+2024 one dot leader
    "nul-bytes": lambda f: "\x00.\x00.\x00",
}


def _authorization(token: str | bytes) -> bytes:
    return b"Bearer " + (token if isinstance(token, bytes) else token.encode())


# Whole requests whose credentials are wrong although the token may be fine: (path, headers).
REQUESTS: dict[str, Callable[[Forge], tuple[str, list[tuple[str, str | bytes]]]]] = {
    "no-authorization": lambda f: (URL, []),
    "empty-authorization": lambda f: (URL, [("Authorization", "")]),
    "bearer-without-token": lambda f: (URL, [("Authorization", "Bearer")]),
    "bearer-and-space": lambda f: (URL, [("Authorization", "Bearer ")]),
    "bearer-empty-quotes": lambda f: (URL, [("Authorization", 'Bearer ""')]),
    "basic-scheme-valid-token": lambda f: (URL, [("Authorization", f"Basic {f.valid()}")]),
    "token-scheme-valid-token": lambda f: (URL, [("Authorization", f"Token {f.valid()}")]),
    "dpop-scheme-valid-token": lambda f: (URL, [("Authorization", f"DPoP {f.valid()}")]),
    "scheme-glued-to-token": lambda f: (URL, [("Authorization", f"Bearer{f.valid()}")]),
    "bearer-twice": lambda f: (URL, [("Authorization", f"Bearer Bearer {f.valid()}")]),
    "two-tokens-comma-joined": lambda f: (URL, [("Authorization", f"Bearer {f.valid()}, Bearer {f.valid()}")]),
    "two-headers-valid-first": lambda f: (
        URL,
        [("Authorization", f"Bearer {f.valid()}"), ("Authorization", "Bearer x")],
    ),
    "two-headers-valid-second": lambda f: (
        URL,
        [("Authorization", "Bearer x"), ("Authorization", f"Bearer {f.valid()}")],
    ),
    "two-headers-both-valid": lambda f: (
        URL,
        [("Authorization", f"Bearer {f.valid()}"), ("Authorization", f"Bearer {f.valid()}")],
    ),
    "token-in-query-string": lambda f: (f"{URL}?access_token={f.valid()}", []),
    "token-in-cookie": lambda f: (URL, [("Cookie", f"access_token={f.valid()}")]),
    "token-in-other-header": lambda f: (
        URL,
        [("X-Access-Token", f.valid()), ("Authentication", f"Bearer {f.valid()}")],
    ),
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def forge(signing_key: tuple[bytes, Path]) -> Forge:
    pem, jwks_file = signing_key
    idp = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(idp, rsa.RSAPrivateKey)
    public = idp.public_key()
    rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rogue_public = rogue.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Forge(
        idp=idp,
        idp_public_pem=public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        idp_public_der=public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        idp_jwk=json.loads(jwks_file.read_text())["keys"][0],
        rogue_rsa=rogue,
        rogue_ec=ec.generate_private_key(ec.SECP256R1()),
        rogue_rsa_jwk={**jwk.construct(rogue_public, "RS256").to_dict(), "kid": KID},
    )


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the shared app; no reset needed, as these tests only read reference data."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://silta.test") as http:
        yield http


class JwksServer:
    """The IdP's JWKS endpoint behind ``httpx.MockTransport``, recording every URL it is asked for."""

    def __init__(self, forge: Forge, delay: float = 0.0) -> None:
        self.document = {"keys": [forge.idp_jwk]}
        self.delay = delay
        self.urls: list[str] = []

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        await asyncio.sleep(self.delay)
        return httpx.Response(200, json=self.document)


@pytest.fixture
def jwks_server(forge: Forge) -> JwksServer:
    return JwksServer(forge)


@pytest.fixture
async def url_client(settings: Settings, jwks_server: JwksServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client on an app that fetches its keys from ``JWKS_URL`` (at most every 30 s for unknown kids)."""
    url_settings = settings.model_copy(update={"jwks_file": None, "jwks_url": JWKS_URL, "jwks_refresh_seconds": 30})
    application = create_app(url_settings, jwks_transport=httpx.MockTransport(jwks_server.handler))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://silta.test"
        ) as http:
            yield http
    finally:
        await application.state.engine.dispose()


@pytest.fixture(autouse=True)
def _no_errors_logged(caplog: pytest.LogCaptureFixture) -> Any:
    """A refused token is routine: nothing may reach the unhandled-error path (which logs at ERROR)."""
    yield
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def assert_bare_401(response: httpx.Response, *never_echoed: str | bytes) -> None:
    """The one answer to every authentication failure, identical whatever check failed."""
    assert response.status_code == 401, response.text[:300]
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == BARE_401
    exposed = response.text + json.dumps(dict(response.headers))
    for secret in never_echoed:
        text = secret.decode("latin-1") if isinstance(secret, bytes) else secret
        if len(text) >= 16:
            assert text not in exposed


# --------------------------------------------------------------------------- the attack matrix


@pytest.mark.parametrize("case", list(TOKENS))
async def test_token_attack_is_a_bare_401(case: str, forge: Forge, client: httpx.AsyncClient):
    token = TOKENS[case](forge)
    response = await client.get(URL, headers={"Authorization": _authorization(token)})
    assert_bare_401(response, token, forge.idp_jwk["n"])


@pytest.mark.parametrize("case", list(REQUESTS))
async def test_misused_credentials_are_a_bare_401(case: str, forge: Forge, client: httpx.AsyncClient):
    path, headers = REQUESTS[case](forge)
    response = await client.get(path, headers=headers)
    assert_bare_401(response, *(value for _, value in headers))


VALID = {
    "valid-rs256": lambda f: ("Bearer", f.valid()),
    "scheme-in-lower-case": lambda f: ("bearer", f.valid()),
    "nbf-29s-ahead": lambda f: ("Bearer", shifted("nbf", 29)(f)),
    "expired-29s-ago": lambda f: ("Bearer", shifted("exp", -29)(f)),
    "aud-list-with-ours": lambda f: ("Bearer", f.sign(claims(aud=["another-service", AUDIENCE]))),
    "auditor-without-region": lambda f: ("Bearer", f.sign(claims(roles=["auditor"], region=None))),
    "exp-a-float": lambda f: ("Bearer", f.sign(claims(exp=time.time() + 600.5))),
    "jku-x5u-and-jwk-headers-ignored": lambda f: ("Bearer", f.sign(jku=EVIL, x5u=EVIL, jwk=f.rogue_rsa_jwk)),
}


@pytest.mark.parametrize("case", list(VALID))
async def test_valid_token_passes(case: str, forge: Forge, client: httpx.AsyncClient):
    scheme, token = VALID[case](forge)
    response = await client.get(URL, headers={"Authorization": f"{scheme} {token}"})
    assert response.status_code == 200, response.text[:300]
    assert len(response.json()["items"]) == 22


@pytest.mark.parametrize("size", [20_000, 200_000])
async def test_huge_tokens_are_refused_before_any_parsing_or_crypto(
    size: int, forge: Forge, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
):
    calls: list[str] = []
    for name in ("get_unverified_header", "decode"):
        original = getattr(jwt, name)
        monkeypatch.setattr(jwt, name, lambda *a, _n=name, _o=original, **k: calls.append(_n) or _o(*a, **k))
    assert (await client.get(URL, headers={"Authorization": f"Bearer {forge.valid()}"})).status_code == 200
    assert calls == ["get_unverified_header", "decode"]  # the spies see a normal verification

    calls.clear()
    token = sized(forge, size)
    response = await client.get(URL, headers={"Authorization": f"Bearer {token}"})
    assert_bare_401(response, token)
    assert calls == []  # refused before any parsing or crypto: proven by the spies, not by a clock


# Every route that reads a body: FastAPI parses JSON before it resolves dependencies.
BODY_ROUTES = sorted(
    (method, "/v1" + re.sub(r"{[^}]+}", str(uuid.UUID(int=1)), route.path))
    for module in ROUTERS
    for route in module.router.routes
    if isinstance(route, APIRoute) and route.body_field is not None
    for method in route.methods
)


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
@pytest.mark.parametrize("body", [b"{", b"\xff\xfe", b"[" * 5000], ids=["truncated", "not-utf8", "deeply-nested"])
async def test_bad_token_with_a_malformed_body_is_a_bare_401(
    method: str, path: str, body: bytes, client: httpx.AsyncClient
):
    headers = {"Authorization": "Bearer garbage", "Content-Type": "application/json", "Idempotency-Key": "k-1"}
    assert_bare_401(await client.request(method, path, content=body, headers=headers))
    assert_bare_401(await client.request(method, path, content=body, headers={"Content-Type": "application/json"}))


async def test_a_malformed_body_with_a_valid_token_is_still_a_validation_error(forge: Forge, client: httpx.AsyncClient):
    headers = {"Authorization": f"Bearer {forge.valid()}", "Content-Type": "application/json"}
    response = await client.post("/v1/clients", content=b"{", headers=headers)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


# --------------------------------------------------------------------------- keys from a JWKS URL

URL_MODE_ATTACKS = [
    "kid-unknown",
    "kid-missing",
    "kid-empty",
    "kid-path-traversal",
    "kid-4000-characters",
    "jku-elsewhere-rogue-kid",
    "jku-elsewhere-known-kid",
    "x5u-elsewhere-known-kid",
    "jwk-embedded-rogue-key",
    "jwk-embedded-rogue-key-no-kid",
    "rs256-rogue-key-known-kid",
    "es256-rogue-key-known-kid",
    "alg-none-empty-signature",
    "hs256-signed-with-published-jwk",
]


@pytest.mark.parametrize("case", URL_MODE_ATTACKS)
async def test_jwks_url_mode_refuses_the_attack_and_fetches_only_its_own_url(
    case: str, forge: Forge, jwks_server: JwksServer, url_client: httpx.AsyncClient
):
    token = TOKENS[case](forge)
    assert_bare_401(await url_client.get(URL, headers={"Authorization": _authorization(token)}), token)
    assert (await url_client.get(URL, headers={"Authorization": f"Bearer {forge.valid()}"})).status_code == 200
    assert jwks_server.urls == [JWKS_URL]  # jku/x5u/jwk never followed; the valid token needed no second fetch


async def test_jwks_url_mode_ignores_key_locations_in_a_valid_token(
    forge: Forge, jwks_server: JwksServer, url_client: httpx.AsyncClient
):
    token = forge.sign(jku=EVIL, x5u=EVIL, jwk=forge.rogue_rsa_jwk)
    assert (await url_client.get(URL, headers={"Authorization": f"Bearer {token}"})).status_code == 200
    assert jwks_server.urls == [JWKS_URL]


async def test_a_flood_of_random_kids_does_not_fetch_per_request(
    forge: Forge, jwks_server: JwksServer, url_client: httpx.AsyncClient
):
    assert (await url_client.get(URL, headers={"Authorization": f"Bearer {forge.valid()}"})).status_code == 200
    for _ in range(200):
        token = forge.sign(kid=uuid.uuid4().hex)
        assert_bare_401(await url_client.get(URL, headers={"Authorization": f"Bearer {token}"}))
    assert (await url_client.get(URL, headers={"Authorization": f"Bearer {forge.valid()}"})).status_code == 200
    assert jwks_server.urls == [JWKS_URL]


async def test_a_concurrent_flood_of_random_kids_at_cold_start_fetches_once(
    forge: Forge, jwks_server: JwksServer, url_client: httpx.AsyncClient
):
    jwks_server.delay = 0.05
    tokens = [unsigned({"alg": "RS256", "kid": uuid.uuid4().hex}, claims(), b"x") for _ in range(100)]
    responses = await asyncio.gather(*(url_client.get(URL, headers={"Authorization": f"Bearer {t}"}) for t in tokens))
    for response in responses:
        assert_bare_401(response)
    assert jwks_server.urls == [JWKS_URL]


async def test_concurrent_valid_tokens_at_cold_start_wait_for_the_one_fetch(
    forge: Forge, jwks_server: JwksServer, url_client: httpx.AsyncClient
):
    jwks_server.delay = 0.05
    headers = {"Authorization": f"Bearer {forge.valid()}"}
    responses = await asyncio.gather(*(url_client.get(URL, headers=headers) for _ in range(10)))
    assert [response.status_code for response in responses] == [200] * 10
    assert jwks_server.urls == [JWKS_URL]
