"""Token rejection matrix for ``app.security`` (API.md "Tokens", STYLE.md "python-jose, safely").

Every bad token must end as ``app.errors.Unauthorized`` and never as any other exception. Over
HTTP that is a bare 401 problem with ``WWW-Authenticate: Bearer`` and no reason in it.

The fixtures are self-contained (prefixed ``sec_``) and use no database: the HTTP checks only
exercise the 401 path, which is decided before any query runs.

"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk, jws, jwt
from pydantic import ValidationError

from app.config import Settings
from app.errors import Unauthorized
from app.main import create_app
from app.security import KeyStore, Role, TokenClaims, verify_token

ISS = "https://idp.test"
AUD = "silta-test"
JWKS_URL = "http://127.0.0.1/jwks.json"
PRODUCTION_JWKS_URL = "https://idp.test/jwks.json"  # never fetched: the settings tests only build settings
LEAKY_WORDS = ("expired", "signature", "audience", "issuer", "kid", "alg", "claim", "jose", "jwt", "nbf", "exp")


# --------------------------------------------------------------------------- helpers


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64json(value: Any) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _private_pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _public_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _make_settings(**values: Any) -> Settings:
    """``Settings`` that ignore any ``SILTA_*`` variables of the machine running the tests."""
    with pytest.MonkeyPatch.context() as mp:
        for name in [name for name in os.environ if name.upper().startswith("SILTA_")]:
            mp.delenv(name)
        return Settings(**values)


def _claims(**changes: Any) -> dict[str, Any]:
    """Good claims; a value of ``None`` in ``changes`` removes that claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "sub": "client-system-7",
        "iat": now,
        "exp": now + 600,
        "roles": ["coordinator"],
        "region": "05",
        "client_system": "Effica",
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def _hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 token made by hand; jose refuses to use a PEM as an HMAC secret itself."""
    signing_input = f"{_b64json(header)}.{_b64json(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _swap_segment(token: str, index: int, value: str) -> str:
    parts = token.split(".")
    parts[index] = value
    return ".".join(parts)


@dataclass(frozen=True)
class SecKeys:
    rsa: bytes  # private PEM of kid rsa-1
    ec: bytes  # private PEM of kid ec-1
    other_rsa: bytes  # private PEM of a key that is not in the JWKS
    rsa_public: bytes
    ec_public: bytes
    rsa_jwk: dict[str, Any]
    ec_jwk: dict[str, Any]
    folder: Path

    @property
    def jwks_file(self) -> Path:
        return self.folder / "jwks.json"

    def rs256(self, claims: dict[str, Any] | None = None, *, kid: str | None = "rsa-1", **headers: Any) -> str:
        return self._sign(self.rsa, "RS256", claims, kid, headers)

    def es256(self, claims: dict[str, Any] | None = None, *, kid: str | None = "ec-1", **headers: Any) -> str:
        return self._sign(self.ec, "ES256", claims, kid, headers)

    @staticmethod
    def _sign(pem: bytes, alg: str, claims: dict[str, Any] | None, kid: str | None, headers: dict[str, Any]) -> str:
        if kid is not None:
            headers = {"kid": kid, **headers}
        return jwt.encode(claims if claims is not None else _claims(), pem.decode(), algorithm=alg, headers=headers)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sec_keys(tmp_path_factory: pytest.TempPathFactory) -> SecKeys:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_jwk = {**jwk.construct(_public_pem(rsa_key), "RS256").to_dict(), "kid": "rsa-1", "use": "sig"}
    ec_jwk = {**jwk.construct(_public_pem(ec_key), "ES256").to_dict(), "kid": "ec-1", "use": "sig"}
    folder = tmp_path_factory.mktemp("sec")
    keys = SecKeys(
        rsa=_private_pem(rsa_key),
        ec=_private_pem(ec_key),
        other_rsa=_private_pem(other),
        rsa_public=_public_pem(rsa_key),
        ec_public=_public_pem(ec_key),
        rsa_jwk=rsa_jwk,
        ec_jwk=ec_jwk,
        folder=folder,
    )
    keys.jwks_file.write_text(json.dumps({"keys": [rsa_jwk, ec_jwk]}))
    return keys


@pytest.fixture(scope="module")
def sec_settings(sec_keys: SecKeys) -> Settings:
    return _make_settings(
        jwks_file=sec_keys.jwks_file,
        jwt_issuer=ISS,
        jwt_audience=AUD,
        database_url=f"sqlite:///{sec_keys.folder / 't.db'}",
        data_dir=sec_keys.folder,
    )


@pytest.fixture
def sec_store(sec_settings: Settings) -> KeyStore:
    return KeyStore(sec_settings)


@pytest.fixture
async def sec_client(sec_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(sec_settings)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            yield client
    finally:
        await app.state.engine.dispose()


class SecJwksServer:
    """A JWKS endpoint behind ``httpx.MockTransport`` that counts its requests."""

    def __init__(self, *jwks: dict[str, Any]) -> None:
        self.document: Any = {"keys": list(jwks)}
        self.status = 200
        self.calls = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        assert str(request.url) == JWKS_URL
        return httpx.Response(self.status, json=self.document)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)


def _url_settings(keys: SecKeys, refresh_seconds: int) -> Settings:
    return _make_settings(
        jwks_url=JWKS_URL,
        jwks_refresh_seconds=refresh_seconds,
        jwt_issuer=ISS,
        jwt_audience=AUD,
        database_url=f"sqlite:///{keys.folder / 't.db'}",
        data_dir=keys.folder,
    )


def _file_settings(folder: Path, jwks: list[Any]) -> Settings:
    (folder / "jwks.json").write_text(json.dumps({"keys": jwks}))
    return _make_settings(jwks_file=folder / "jwks.json", jwt_issuer=ISS, jwt_audience=AUD, data_dir=folder)


@pytest.fixture
def sec_no_env() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        for name in [name for name in os.environ if name.upper().startswith("SILTA_")]:
            mp.delenv(name)
        yield mp


# --------------------------------------------------------------------------- the rejection matrix


def _alg_none(k: SecKeys, alg: str = "none") -> str:
    return f"{_b64json({'alg': alg, 'kid': 'rsa-1', 'typ': 'JWT'})}.{_b64json(_claims(roles=['admin']))}."


def _tampered_payload(k: SecKeys) -> str:
    token = k.rs256(_claims(roles=["coordinator"], region="05"))
    payload = json.loads(_unb64(token.split(".")[1]))
    payload.update(roles=["admin"], region="90")
    return _swap_segment(token, 1, _b64json(payload))


def _tampered_signature(k: SecKeys) -> str:
    token = k.rs256()
    signature = bytearray(_unb64(token.split(".")[2]))
    signature[len(signature) // 2] ^= 0x01  # a whole byte, not the unused bits of the last base64 character
    return _swap_segment(token, 2, _b64(bytes(signature)))


def _header_says_es256(k: SecKeys) -> str:
    token = k.rs256(alg="ES256")  # jose signs with RS256 but writes the header's alg as given
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    return token


def _jwe_shaped(k: SecKeys) -> str:
    header = _b64json({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": "rsa-1"})
    return ".".join([header, _b64(os.urandom(256)), _b64(os.urandom(12)), _b64(os.urandom(64)), _b64(os.urandom(16))])


def _jwe_shaped_with_rs256_header(k: SecKeys) -> str:
    header, payload, signature = k.rs256().split(".")
    return ".".join([header, payload, _b64(b"x"), _b64(b"y"), signature])


def _huge(k: SecKeys) -> str:
    token = k.rs256(_claims(padding="x" * 20_000))  # validly signed: only its size is wrong
    assert len(token) > 20_000
    return token


BAD_TOKENS: dict[str, Callable[[SecKeys], str]] = {
    # algorithms
    "alg-none": _alg_none,
    "alg-None": lambda k: _alg_none(k, "None"),
    "alg-NONE": lambda k: _alg_none(k, "NONE"),
    "hs256-rsa-public-pem-as-secret": lambda k: _hs256(
        {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, _claims(roles=["admin"]), k.rsa_public
    ),
    "hs256-ec-public-pem-as-secret-kid-ec": lambda k: _hs256(
        {"alg": "HS256", "typ": "JWT", "kid": "ec-1"}, _claims(roles=["admin"]), k.ec_public
    ),
    "hs256-jwk-json-as-secret": lambda k: _hs256(
        {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, _claims(), json.dumps(k.rsa_jwk).encode()
    ),
    "rs256-signed-header-says-es256": _header_says_es256,
    "es256-signed-with-kid-rsa-1": lambda k: k.es256(kid="rsa-1"),
    "rs256-signed-with-kid-ec-1": lambda k: k.rs256(kid="ec-1"),
    "rs512-header": lambda k: jwt.encode(_claims(), k.rsa.decode(), algorithm="RS512", headers={"kid": "rsa-1"}),
    "ps256-header": lambda k: _swap_segment(k.rs256(), 0, _b64json({"alg": "PS256", "kid": "rsa-1"})),
    # keys
    "unknown-kid": lambda k: k.rs256(kid="rsa-2"),
    "missing-kid": lambda k: k.rs256(kid=None),
    "empty-kid": lambda k: k.rs256(kid=""),
    "kid-not-a-string": lambda k: _swap_segment(k.rs256(), 0, _b64json({"alg": "RS256", "kid": ["rsa-1"]})),
    "signed-by-other-rsa-key": lambda k: jwt.encode(
        _claims(), k.other_rsa.decode(), algorithm="RS256", headers={"kid": "rsa-1"}
    ),
    # integrity
    "tampered-payload": _tampered_payload,
    "tampered-signature": _tampered_signature,
    "signature-removed": lambda k: _swap_segment(k.rs256(), 2, ""),
    "signature-truncated": lambda k: _swap_segment(k.rs256(), 2, k.rs256().split(".")[2][:-8]),
    "header-swapped-for-es256-kid-ec": lambda k: _swap_segment(
        k.rs256(), 0, _b64json({"alg": "ES256", "kid": "ec-1", "typ": "JWT"})
    ),
    # time
    "expired-beyond-leeway": lambda k: k.rs256(_claims(exp=int(time.time()) - 60)),
    "nbf-in-future-beyond-leeway": lambda k: k.rs256(_claims(nbf=int(time.time()) + 120)),
    "exp-not-a-number": lambda k: k.rs256(_claims(exp="tomorrow")),
    "exp-a-list": lambda k: k.rs256(_claims(exp=[1])),
    "iat-not-a-number": lambda k: k.rs256(_claims(iat="now")),
    # audience and issuer
    "wrong-aud": lambda k: k.rs256(_claims(aud="someone-else")),
    "aud-list-without-ours": lambda k: k.rs256(_claims(aud=["someone-else", "silta"])),
    "aud-empty-list": lambda k: k.rs256(_claims(aud=[])),
    "aud-not-a-string": lambda k: k.rs256(_claims(aud=7)),
    "wrong-iss": lambda k: k.rs256(_claims(iss="https://evil.test")),
    "iss-trailing-slash": lambda k: k.rs256(_claims(iss=ISS + "/")),
    # required claims
    "missing-exp": lambda k: k.rs256(_claims(exp=None)),
    "missing-sub": lambda k: k.rs256(_claims(sub=None)),
    "missing-aud": lambda k: k.rs256(_claims(aud=None)),
    "missing-iss": lambda k: k.rs256(_claims(iss=None)),
    "sub-empty": lambda k: k.rs256(_claims(sub="")),
    "sub-not-a-string": lambda k: k.rs256(_claims(sub=42)),
    # silta claims
    "roles-missing": lambda k: k.rs256(_claims(roles=None)),
    "roles-empty": lambda k: k.rs256(_claims(roles=[])),
    "roles-unknown": lambda k: k.rs256(_claims(roles=["superuser"])),
    "roles-one-unknown": lambda k: k.rs256(_claims(roles=["auditor", "root"])),
    "roles-a-string": lambda k: k.rs256(_claims(roles="admin")),
    "roles-wrong-case": lambda k: k.rs256(_claims(roles=["Admin"])),
    "system-without-region": lambda k: k.rs256(_claims(roles=["system"], region=None)),
    "coordinator-without-region": lambda k: k.rs256(_claims(roles=["coordinator"], region=None)),
    "coordinator-region-empty": lambda k: k.rs256(_claims(roles=["coordinator"], region="")),
    "coordinator-region-5": lambda k: k.rs256(_claims(roles=["coordinator"], region="5")),
    "coordinator-region-005": lambda k: k.rs256(_claims(roles=["coordinator"], region="005")),
    "coordinator-region-int": lambda k: k.rs256(_claims(roles=["coordinator"], region=5)),
    "coordinator-region-newline": lambda k: k.rs256(_claims(roles=["coordinator"], region="05\n")),
    "auditor-region-bad-format": lambda k: k.rs256(_claims(roles=["auditor"], region="x1")),
    "client-system-too-long": lambda k: k.rs256(_claims(client_system="x" * 101)),
    "payload-not-an-object": lambda k: jws.sign(b"[1, 2]", k.rsa.decode(), headers={"kid": "rsa-1"}, algorithm="RS256"),
    "payload-not-json": lambda k: jws.sign(b"\xff\xfe", k.rsa.decode(), headers={"kid": "rsa-1"}, algorithm="RS256"),
    # shape
    "20-kb-token": _huge,
    "jwe-shaped-5-segments": _jwe_shaped,
    "5-segments-rs256-header": _jwe_shaped_with_rs256_header,
    "empty": lambda k: "",
    "abc": lambda k: "abc",
    "a.b.c": lambda k: "a.b.c",
    "dots-only": lambda k: "..",
    "non-base64": lambda k: "!!!.@@@.###",
    "non-ascii": lambda k: "ä.ö.å",
    "lone-surrogate": lambda k: "\ud800.e30.e30",
    "nul-bytes": lambda k: "\x00.\x00.\x00",
    "bearer-prefix-in-token": lambda k: "Bearer " + k.rs256(),
    "header-not-an-object": lambda k: f"{_b64json([1])}.{_b64json(_claims())}.c2ln",
    "header-empty-object": lambda k: f"{_b64json({})}.{_b64json(_claims())}.c2ln",
    "header-deeply-nested": lambda k: f"{_b64(b'[' * 5000)}.e30.c2ln",
    "two-segments": lambda k: ".".join(k.rs256().split(".")[:2]),
    "four-segments": lambda k: k.rs256() + ".e30",
}


BAD_TOKENS.update(
    {
        "issued in the future": lambda k: k.rs256(_claims(iat=int(time.time()) + 3600)),
        "critical header extension": lambda k: k.rs256(crit=["b64"], b64=False),
        "blank subject": lambda k: k.rs256(_claims(sub="   ")),
    }
)


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_bad_token_is_unauthorized(case: str, sec_keys: SecKeys, sec_store: KeyStore, sec_settings: Settings):
    token = BAD_TOKENS[case](sec_keys)
    with pytest.raises(Unauthorized) as caught:
        await verify_token(token, sec_store, sec_settings)
    assert caught.value.status == 401
    assert caught.value.code == "unauthorized"


# --------------------------------------------------------------------------- accepted tokens


async def test_valid_rs256_token_gives_its_claims(sec_keys: SecKeys, sec_store: KeyStore, sec_settings: Settings):
    token = sec_keys.rs256(_claims(roles=["coordinator", "auditor"], region="05", client_system="Effica"))
    claims = await verify_token(token, sec_store, sec_settings)
    assert isinstance(claims, TokenClaims)
    assert claims.sub == "client-system-7"
    assert claims.roles == [Role.coordinator, Role.auditor]
    assert claims.region == "05"
    assert claims.client_system == "Effica"


async def test_valid_es256_token_gives_its_claims(sec_keys: SecKeys, sec_store: KeyStore, sec_settings: Settings):
    token = sec_keys.es256(_claims(roles=["system"], region="90", client_system="Pegasos"))
    claims = await verify_token(token, sec_store, sec_settings)
    assert isinstance(claims, TokenClaims)
    assert claims.roles == [Role.system]
    assert claims.region == "90"
    assert claims.client_system == "Pegasos"


@pytest.mark.parametrize(
    ("roles", "region"),
    [(["auditor"], None), (["auditor"], "21"), (["admin"], None), (["system", "coordinator"], "01")],
)
async def test_valid_role_and_region_combinations(
    roles: list[str], region: str | None, sec_keys: SecKeys, sec_store: KeyStore, sec_settings: Settings
):
    claims = await verify_token(sec_keys.rs256(_claims(roles=roles, region=region)), sec_store, sec_settings)
    assert [role.value for role in claims.roles] == roles
    assert claims.region == region


async def test_client_system_is_optional(sec_keys: SecKeys, sec_store: KeyStore, sec_settings: Settings):
    claims = await verify_token(sec_keys.es256(_claims(client_system=None)), sec_store, sec_settings)
    assert claims.client_system is None


async def test_unknown_extra_claims_are_ignored(sec_keys: SecKeys, sec_store: KeyStore, sec_settings: Settings):
    claims = await verify_token(sec_keys.rs256(_claims(jti="abc", scope="x y")), sec_store, sec_settings)
    assert not hasattr(claims, "scope")
    assert claims.sub == "client-system-7"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"exp": -20}, id="exp-20s-ago-within-leeway"),
        pytest.param({"nbf": 20}, id="nbf-20s-ahead-within-leeway"),
        pytest.param({"nbf": -5}, id="nbf-in-the-past"),
        pytest.param({"aud": [AUD]}, id="aud-list-of-one"),
        pytest.param({"aud": ["someone-else", AUD]}, id="aud-list-containing-ours"),
    ],
)
async def test_leeway_and_audience_lists_are_honoured(
    changes: dict[str, Any], sec_keys: SecKeys, sec_store: KeyStore, sec_settings: Settings
):
    now = int(time.time())
    values = {name: now + value if name in {"exp", "nbf"} else value for name, value in changes.items()}
    claims = await verify_token(sec_keys.rs256(_claims(**values)), sec_store, sec_settings)
    assert claims.roles == [Role.coordinator]


async def test_the_same_key_verifies_many_tokens(sec_keys: SecKeys, sec_store: KeyStore, sec_settings: Settings):
    for region in ("01", "02", "03"):
        claims = await verify_token(sec_keys.rs256(_claims(region=region)), sec_store, sec_settings)
        assert claims.region == region


async def test_private_and_symmetric_keys_in_a_jwks_are_not_used(sec_keys: SecKeys, tmp_path: Path):
    private = {**jwk.construct(sec_keys.other_rsa.decode(), "RS256").to_dict(), "kid": "leaked"}
    assert "d" in private
    secret = {"kty": "oct", "kid": "hs-1", "alg": "HS256", "k": _b64(b"shared-secret")}
    settings = _file_settings(tmp_path, [private, secret, sec_keys.rsa_jwk])
    store = KeyStore(settings)
    leaked = jwt.encode(_claims(), sec_keys.other_rsa.decode(), algorithm="RS256", headers={"kid": "leaked"})
    symmetric = _hs256({"alg": "HS256", "kid": "hs-1"}, _claims(), b"shared-secret")
    for token in (leaked, symmetric):
        with pytest.raises(Unauthorized):
            await verify_token(token, store, settings)
    assert (await verify_token(sec_keys.rs256(), store, settings)).sub == "client-system-7"


# --------------------------------------------- hostile but signed payloads, malformed keys


@pytest.mark.parametrize(
    "region",
    [
        pytest.param("٠٥", id="arabic-indic-digits"),
        pytest.param("０５", id="fullwidth-digits"),
        pytest.param("99", id="not-an-official-code-99"),
        pytest.param("00", id="not-an-official-code-00"),
    ],
)
async def test_region_must_be_an_official_ascii_code(
    region: str, sec_keys: SecKeys, sec_store: KeyStore, sec_settings: Settings
):
    token = sec_keys.rs256(_claims(roles=["coordinator"], region=region))
    with pytest.raises(Unauthorized):
        await verify_token(token, sec_store, sec_settings)


async def test_signed_token_with_infinite_exp_is_unauthorized(
    sec_keys: SecKeys, sec_store: KeyStore, sec_settings: Settings
):
    payload = json.dumps(_claims(exp=None)).replace("{", '{"exp": 1e400, ', 1).encode()
    token = jws.sign(payload, sec_keys.rsa.decode(), headers={"kid": "rsa-1"}, algorithm="RS256")
    with pytest.raises(Unauthorized):
        await verify_token(token, sec_store, sec_settings)


async def test_signed_token_with_deeply_nested_claims_is_unauthorized(
    sec_keys: SecKeys, sec_store: KeyStore, sec_settings: Settings
):
    claims = json.dumps(_claims())
    payload = (claims[:-1] + ', "x": ' + "[" * 2000 + "]" * 2000 + "}").encode()
    token = jws.sign(payload, sec_keys.rsa.decode(), headers={"kid": "rsa-1"}, algorithm="RS256")
    assert len(token) < 8192  # under MAX_TOKEN_LENGTH, so the JSON parser really sees it
    with pytest.raises(Unauthorized):
        await verify_token(token, sec_store, sec_settings)


MALFORMED_JWK = {"kty": "RSA", "kid": "broken", "n": "!!!", "e": "AQAB"}


async def test_a_malformed_key_in_the_jwks_file_is_skipped(sec_keys: SecKeys, tmp_path: Path):
    settings = _file_settings(tmp_path, [MALFORMED_JWK, sec_keys.rsa_jwk])
    store = KeyStore(settings)
    assert (await verify_token(sec_keys.rs256(), store, settings)).sub == "client-system-7"


async def test_a_malformed_key_in_a_fetched_jwks_does_not_block_rotation(sec_keys: SecKeys):
    server = SecJwksServer(sec_keys.rsa_jwk)
    settings = _url_settings(sec_keys, refresh_seconds=0)
    store = KeyStore(settings, transport=server.transport)
    await verify_token(sec_keys.rs256(), store, settings)
    server.document = {"keys": [MALFORMED_JWK, sec_keys.rsa_jwk, sec_keys.ec_jwk]}
    claims = await verify_token(sec_keys.es256(), store, settings)
    assert claims.sub == "client-system-7"


# --------------------------------------------------------------------------- JWKS from a URL


async def test_jwks_url_is_fetched_lazily_and_cached(sec_keys: SecKeys):
    server = SecJwksServer(sec_keys.rsa_jwk, sec_keys.ec_jwk)
    settings = _url_settings(sec_keys, refresh_seconds=3600)
    store = KeyStore(settings, transport=server.transport)
    assert server.calls == 0
    assert (await verify_token(sec_keys.rs256(), store, settings)).region == "05"
    assert (await verify_token(sec_keys.es256(), store, settings)).region == "05"
    assert (await verify_token(sec_keys.rs256(), store, settings)).region == "05"
    assert server.calls == 1


async def test_jwks_url_refetch_for_unknown_kid_is_rate_limited(sec_keys: SecKeys):
    server = SecJwksServer(sec_keys.rsa_jwk)
    settings = _url_settings(sec_keys, refresh_seconds=3600)
    store = KeyStore(settings, transport=server.transport)
    await verify_token(sec_keys.rs256(), store, settings)
    assert server.calls == 1

    server.document = {"keys": [sec_keys.rsa_jwk, sec_keys.ec_jwk]}  # the IdP adds ec-1
    for token in (sec_keys.es256(), sec_keys.rs256(kid="nope"), sec_keys.rs256(kid="nope-2")):
        with pytest.raises(Unauthorized):
            await verify_token(token, store, settings)
    assert server.calls == 1  # right after a fetch: unknown kids do not fetch again
    assert (await verify_token(sec_keys.rs256(), store, settings)).sub == "client-system-7"


async def test_jwks_url_new_kid_is_picked_up_once_the_interval_passed(sec_keys: SecKeys):
    server = SecJwksServer(sec_keys.rsa_jwk)
    settings = _url_settings(sec_keys, refresh_seconds=1)
    store = KeyStore(settings, transport=server.transport)
    await verify_token(sec_keys.rs256(), store, settings)
    server.document = {"keys": [sec_keys.rsa_jwk, sec_keys.ec_jwk]}
    with pytest.raises(Unauthorized):
        await verify_token(sec_keys.es256(), store, settings)
    assert server.calls == 1

    await asyncio.sleep(1.1)
    assert (await verify_token(sec_keys.es256(), store, settings)).sub == "client-system-7"
    assert server.calls == 2


async def test_jwks_url_refetches_on_every_unknown_kid_without_a_rate_limit(sec_keys: SecKeys):
    server = SecJwksServer(sec_keys.rsa_jwk)
    settings = _url_settings(sec_keys, refresh_seconds=0)
    store = KeyStore(settings, transport=server.transport)
    await verify_token(sec_keys.rs256(), store, settings)
    assert server.calls == 1

    server.document = {"keys": [sec_keys.rsa_jwk, sec_keys.ec_jwk]}
    assert (await verify_token(sec_keys.es256(), store, settings)).sub == "client-system-7"
    assert server.calls == 2
    with pytest.raises(Unauthorized):
        await verify_token(sec_keys.rs256(kid="nope"), store, settings)
    assert server.calls == 3
    await verify_token(sec_keys.es256(), store, settings)  # known kid: no fetch
    assert server.calls == 3


async def test_jwks_url_rotation_drops_removed_keys(sec_keys: SecKeys):
    server = SecJwksServer(sec_keys.rsa_jwk)
    settings = _url_settings(sec_keys, refresh_seconds=0)
    store = KeyStore(settings, transport=server.transport)
    await verify_token(sec_keys.rs256(), store, settings)
    server.document = {"keys": [sec_keys.ec_jwk]}  # rsa-1 retired, ec-1 introduced
    await verify_token(sec_keys.es256(), store, settings)
    with pytest.raises(Unauthorized):
        await verify_token(sec_keys.rs256(), store, settings)
    assert server.calls == 3  # the retired kid is unknown now: one more fetch (no rate limit here), still refused


@pytest.mark.parametrize(
    "breakage",
    ["http-500", "not-json", "json-list", "keys-not-objects", "no-usable-keys", "connection-refused"],
)
async def test_a_broken_jwks_url_is_a_401_and_keeps_the_known_keys(sec_keys: SecKeys, breakage: str):
    server = SecJwksServer(sec_keys.rsa_jwk)

    def handler(request: httpx.Request) -> httpx.Response:
        if server.calls == 0:
            return server.handler(request)
        server.calls += 1
        if breakage == "connection-refused":
            raise httpx.ConnectError("refused", request=request)
        if breakage == "http-500":
            return httpx.Response(500, json={"keys": [sec_keys.rsa_jwk, sec_keys.ec_jwk]})
        if breakage == "not-json":
            return httpx.Response(200, content=b"<html>maintenance</html>")
        documents = {"json-list": [], "keys-not-objects": {"keys": ["x", 1]}, "no-usable-keys": {"keys": []}}
        return httpx.Response(200, json=documents[breakage])

    settings = _url_settings(sec_keys, refresh_seconds=0)
    store = KeyStore(settings, transport=httpx.MockTransport(handler))
    await verify_token(sec_keys.rs256(), store, settings)
    with pytest.raises(Unauthorized):
        await verify_token(sec_keys.es256(), store, settings)
    assert server.calls == 2
    assert (await verify_token(sec_keys.rs256(), store, settings)).sub == "client-system-7"


async def test_jwks_url_that_never_answers_is_a_401(sec_keys: SecKeys):
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectTimeout("timed out", request=request)

    settings = _url_settings(sec_keys, refresh_seconds=3600)
    store = KeyStore(settings, transport=httpx.MockTransport(handler))
    for token in (sec_keys.rs256(), sec_keys.es256()):
        with pytest.raises(Unauthorized):
            await verify_token(token, store, settings)
    assert calls == 1


# --------------------------------------------------------------------------- over HTTP


def _assert_bare_401(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["code"] == "unauthorized"
    assert body["status"] == 401
    assert set(body) == {"type", "title", "status", "detail", "code"}
    text = f"{body['title']} {body['detail']} {body['type']}".lower()
    assert not [word for word in LEAKY_WORDS if word in text], text


HTTP_BAD_TOKENS = [
    "expired-beyond-leeway",
    "tampered-signature",
    "signed-by-other-rsa-key",
    "wrong-aud",
    "wrong-iss",
    "missing-aud",
    "alg-none",
    "hs256-rsa-public-pem-as-secret",
    "unknown-kid",
    "roles-unknown",
    "coordinator-region-5",
    "20-kb-token",
    "a.b.c",
    "jwe-shaped-5-segments",
]


@pytest.mark.parametrize("case", HTTP_BAD_TOKENS)
async def test_http_bad_token_is_a_bare_401(case: str, sec_keys: SecKeys, sec_client: httpx.AsyncClient):
    token = BAD_TOKENS[case](sec_keys)
    response = await sec_client.get("/v1/regions", headers={"Authorization": f"Bearer {token}"})
    _assert_bare_401(response)


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "bearer"],
    ids=["no-header", "empty", "scheme-only", "scheme-and-space", "basic", "other-scheme", "lowercase-scheme-only"],
)
async def test_http_missing_or_wrong_authorization_is_a_bare_401(
    authorization: str | None, sec_client: httpx.AsyncClient
):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await sec_client.get("/v1/regions", headers=headers)
    _assert_bare_401(response)


async def test_http_valid_token_with_basic_scheme_is_a_401(sec_keys: SecKeys, sec_client: httpx.AsyncClient):
    response = await sec_client.get("/v1/regions", headers={"Authorization": f"Basic {sec_keys.rs256()}"})
    _assert_bare_401(response)


# --------------------------------------------------------------------------- settings


def test_production_without_keys_is_refused(sec_no_env: pytest.MonkeyPatch):
    with pytest.raises(ValidationError) as caught:
        Settings(env="production")
    message = str(caught.value)
    for name in ("SILTA_JWT_ISSUER", "SILTA_JWT_AUDIENCE", "SILTA_JWKS_FILE", "SILTA_DATABASE_URL"):
        assert name in message


@pytest.mark.parametrize("missing", ["jwks_file", "jwt_issuer", "jwt_audience", "database_url"])
def test_production_needs_every_setting(missing: str, sec_keys: SecKeys, sec_no_env: pytest.MonkeyPatch):
    values: dict[str, Any] = {
        "jwks_file": sec_keys.jwks_file,
        "jwt_issuer": ISS,
        "jwt_audience": AUD,
        "database_url": "postgresql://silta@db/silta",
    }
    del values[missing]
    with pytest.raises(ValidationError):
        Settings(env="production", data_dir=sec_keys.folder, **values)


def test_production_refuses_the_development_issuer(sec_keys: SecKeys, sec_no_env: pytest.MonkeyPatch):
    with pytest.raises(ValidationError):
        Settings(
            env="production",
            jwks_file=sec_keys.jwks_file,
            jwt_issuer="silta-dev",
            jwt_audience=AUD,
            database_url="postgresql://silta@db/silta",
        )


def test_production_with_keys_builds_and_makes_no_dev_key(sec_no_env: pytest.MonkeyPatch, tmp_path: Path):
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": []}))
    settings = Settings(
        env="production",
        jwks_file=jwks,
        jwt_issuer=ISS,
        jwt_audience=AUD,
        database_url="postgresql://silta@db/silta",
        data_dir=tmp_path / "data",
        audit_key_file=tmp_path / "audit-key.pem",
        identity_key_file=tmp_path / "identity-keys.json",
    )
    assert settings.env == "production"
    assert not settings.uses_dev_key
    assert (settings.issuer, settings.audience) == (ISS, AUD)
    KeyStore(settings)
    assert not (tmp_path / "data").exists()  # no development signing key was created


def test_production_with_a_jwks_url_builds(sec_no_env: pytest.MonkeyPatch, tmp_path: Path):
    settings = Settings(
        env="production",
        jwks_url=PRODUCTION_JWKS_URL,
        jwt_issuer=ISS,
        jwt_audience=AUD,
        database_url="sqlite:///x.db",
        audit_key_file=tmp_path / "audit-key.pem",
        identity_key_file=tmp_path / "identity-keys.json",
    )
    assert settings.jwks_url == PRODUCTION_JWKS_URL
    assert not settings.uses_dev_key


@pytest.mark.parametrize("url", ["http://idp.example/jwks", "HTTP://idp.example/jwks", "file:///etc/jwks.json"])
def test_production_fetches_its_keys_over_https_only(url: str, sec_no_env: pytest.MonkeyPatch, tmp_path: Path):
    """Whoever can answer the JWKS fetch chooses the keys every token is checked with: over plain
    http that is anyone on the path."""
    with pytest.raises(ValidationError, match="SILTA_JWKS_URL"):
        Settings(
            env="production",
            jwks_url=url,
            jwt_issuer=ISS,
            jwt_audience=AUD,
            database_url="postgresql://silta@db/silta",
            audit_key_file=tmp_path / "audit-key.pem",
            identity_key_file=tmp_path / "identity-keys.json",
        )


@pytest.mark.parametrize(
    ("change", "needed"),
    [
        ({"audit_key_file": None}, "SILTA_AUDIT_KEY_FILE"),
        ({"identity_key_file": None}, "SILTA_IDENTITY_KEY_FILE"),
        ({"audit_access_log": False}, "access and change logs"),
        ({"audit_change_log": False}, "access and change logs"),
    ],
)
def test_production_needs_the_audit_key_and_the_access_log(
    sec_no_env: pytest.MonkeyPatch, tmp_path: Path, change: dict, needed: str
):
    complete = {
        "env": "production",
        "jwks_url": PRODUCTION_JWKS_URL,
        "jwt_issuer": ISS,
        "jwt_audience": AUD,
        "database_url": "sqlite:///x.db",
        "audit_key_file": tmp_path / "audit-key.pem",
        "identity_key_file": tmp_path / "identity-keys.json",
    }
    with pytest.raises(ValidationError, match=needed):
        Settings(**{**complete, **change})


@pytest.mark.parametrize("leeway", [-1, 31, 300])
def test_leeway_is_at_most_30_seconds(leeway: int, sec_no_env: pytest.MonkeyPatch):
    with pytest.raises(ValidationError):
        Settings(jwt_leeway_seconds=leeway)


def test_default_leeway_is_30_seconds(sec_settings: Settings):
    assert sec_settings.jwt_leeway_seconds == 30


# --------------------------------------------------------------------------- verified-token cache


async def test_a_token_is_checked_once_and_its_claims_reused(sec_keys, sec_store, sec_settings, monkeypatch):
    decoded = []
    real_decode = jwt.decode
    monkeypatch.setattr("app.security.jwt.decode", lambda *a, **k: decoded.append(1) or real_decode(*a, **k))
    token = sec_keys.es256()
    first = await verify_token(token, sec_store, sec_settings)
    assert await verify_token(token, sec_store, sec_settings) == first
    assert len(decoded) == 1
    # one character more or less in the signature is another token: checked, and refused
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(Unauthorized):
        await verify_token(tampered, sec_store, sec_settings)
    assert len(decoded) == 2


async def test_a_remembered_token_still_expires(sec_keys, sec_settings):
    settings = sec_settings.model_copy(update={"jwt_leeway_seconds": 0})
    store = KeyStore(settings)
    token = sec_keys.es256(_claims(exp=int(time.time()) + 1))
    await verify_token(token, store, settings)
    await asyncio.sleep(2.1)
    with pytest.raises(Unauthorized):
        await verify_token(token, store, settings)


async def test_a_remembered_token_is_refused_once_its_key_left_the_jwks(sec_keys):
    server = SecJwksServer(sec_keys.rsa_jwk)
    settings = _url_settings(sec_keys, refresh_seconds=0)
    store = KeyStore(settings, transport=server.transport)
    token = sec_keys.rs256()
    await verify_token(token, store, settings)
    server.document = {"keys": [sec_keys.ec_jwk]}  # rsa-1 rotated out
    await verify_token(sec_keys.es256(), store, settings)  # an unknown kid: the JWKS is fetched again
    with pytest.raises(Unauthorized):
        await verify_token(token, store, settings)


async def test_remembered_tokens_are_bounded(sec_keys, sec_store, sec_settings, monkeypatch):
    monkeypatch.setattr("app.security.VERIFIED_TOKENS", 3)
    tokens = [sec_keys.es256(_claims(jti=str(n))) for n in range(5)]
    for token in tokens:
        await verify_token(token, sec_store, sec_settings)
    assert sec_store.remembered(tokens[0], time.time(), 0) is None  # the oldest went first
    assert sec_store.remembered(tokens[-1], time.time(), 0) is not None
