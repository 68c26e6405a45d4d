"""Token verification, JWKS handling and the development signing key.

The only module that imports jose. Rules (STYLE.md "python-jose, safely"): algorithms pinned
in code, ``exp``/``sub``/``aud``/``iss`` required, every jose error is a plain 401, claims
parsed into a model only after the signature checked out.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import OrderedDict
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jwk, jws, jwt
from jose.backends.base import Key
from jose.exceptions import JOSEError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.config import Settings
from app.errors import Unauthorized

ALGORITHMS = ["RS256", "ES256"]
MAX_TOKEN_LENGTH = 8192
# Compact JWS: three unpadded base64url segments (RFC 7515 § 7.1). jose would also take padded or
# standard-alphabet base64 (so one token has many spellings); a JWE has five segments.
COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
DEV_KEY_FILE = "dev-signing-key.pem"
# A client-information system sends the same token for its whole lifetime: its signature is checked
# once and the verified claims reused, for at most this long and only while the signing key is the same
# one; expiry and not-before are still checked on every request. Bounded: the oldest entries go first.
VERIFIED_TOKENS = 4096
VERIFIED_SECONDS = 60.0
DEV_KID = "silta-dev-1"
# Official codes of the 22 organisers (Statistics Finland): 01-21 and Helsinki, 90.
ORGANISER_CODES = frozenset({f"{number:02d}" for number in range(1, 22)} | {"90"})


class Role(StrEnum):
    system = "system"
    coordinator = "coordinator"
    auditor = "auditor"
    admin = "admin"


class TokenClaims(BaseModel):
    """The verified claims Silta uses."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sub: str = Field(min_length=1, max_length=200, pattern=r"\S")
    roles: list[Role] = Field(min_length=1, max_length=4)
    region: str | None = Field(default=None, pattern=r"^[0-9]{2}$")
    client_system: str | None = Field(default=None, max_length=100)
    # NumericDates are JSON numbers (RFC 7519 § 2); jose's own checks accept the string "1735689600".
    exp: float = Field(strict=True)
    nbf: float | None = Field(default=None, strict=True)
    iat: float | None = Field(default=None, strict=True)

    @model_validator(mode="after")
    def _region_for_regional_roles(self) -> TokenClaims:
        if {Role.system, Role.coordinator} & set(self.roles) and not self.region:
            raise ValueError("system and coordinator tokens must carry a region")
        if self.region is not None and self.region not in ORGANISER_CODES:
            raise ValueError("region is not an official organising region")
        return self


def _alg_for(jwk_dict: dict[str, Any]) -> str | None:
    if jwk_dict.get("alg") in ALGORITHMS:
        return str(jwk_dict["alg"])
    if jwk_dict.get("kty") == "RSA":
        return "RS256"
    if jwk_dict.get("kty") == "EC" and jwk_dict.get("crv") == "P-256":
        return "ES256"
    return None


def parse_jwks(document: dict[str, Any]) -> dict[str, tuple[Key, str]]:
    """kid → (public key, algorithm), built once per key; unusable keys are skipped."""
    keys: dict[str, tuple[Key, str]] = {}
    items = document.get("keys", []) if isinstance(document, dict) else []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        alg = _alg_for(item)
        kid = item.get("kid")
        if not alg or not kid or "d" in item:  # no private keys, no symmetric keys
            continue
        try:
            keys[str(kid)] = (jwk.construct(item, alg), alg)
        except (JOSEError, ValueError, TypeError, AttributeError):
            continue  # one malformed key must not take the others (or key rotation) down
    return keys


class KeyStore:
    """Verification keys by ``kid``: from a JWKS file, a JWKS URL (cached), or the dev key."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._url = settings.jwks_url
        self._refresh_seconds = settings.jwks_refresh_seconds
        self._transport = transport
        self._fetched_at = float("-inf")
        self._fetching = asyncio.Lock()
        self._keys: dict[str, tuple[Key, str]] = {}
        # token -> (claims, kid, the key that verified it, when)
        self._verified: OrderedDict[str, tuple[TokenClaims, str, tuple[Key, str], float]] = OrderedDict()
        if settings.jwks_file:
            self._keys = parse_jwks(json.loads(Path(settings.jwks_file).read_text()))
        elif settings.uses_dev_key:
            self._keys = parse_jwks(dev_jwks(ensure_dev_key(settings.data_dir)))

    async def key_for(self, kid: str) -> tuple[Key, str] | None:
        if kid not in self._keys and self._url:
            async with self._fetching:  # requests that arrive during a fetch wait for its keys
                if kid not in self._keys and self._may_refetch():
                    await self._fetch()
        return self._keys.get(kid)

    def remembered(self, token: str, now: float, leeway: int) -> TokenClaims | None:
        """The claims of ``token`` if its signature was checked lately with a key still in use and it is
        still within its validity window; else None (and it is forgotten)."""
        hit = self._verified.get(token)
        if hit is None:
            return None
        claims, kid, key, checked_at = hit
        fresh = now - checked_at < VERIFIED_SECONDS and self._keys.get(kid) is key
        if fresh and now <= claims.exp + leeway and (claims.nbf is None or claims.nbf <= now + leeway):
            return claims
        del self._verified[token]
        return None

    def remember(self, token: str, claims: TokenClaims, kid: str, key: tuple[Key, str], now: float) -> None:
        self._verified[token] = (claims, kid, key, now)
        if len(self._verified) > VERIFIED_TOKENS:
            self._verified.popitem(last=False)

    def _may_refetch(self) -> bool:
        return time.monotonic() - self._fetched_at >= self._refresh_seconds

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            async with httpx.AsyncClient(transport=self._transport, timeout=5.0) as client:
                response = await client.get(str(self._url))
                response.raise_for_status()
                self._keys = parse_jwks(response.json()) or self._keys
        except (httpx.HTTPError, ValueError):
            return  # keep the keys we had; the next unknown kid tries again after the interval


async def verify_token(token: str, keys: KeyStore, settings: Settings) -> TokenClaims:
    """Verified claims of a bearer token, or ``Unauthorized`` (never saying why)."""
    if len(token) > MAX_TOKEN_LENGTH or not COMPACT_JWS.fullmatch(token):
        raise Unauthorized()  # before any parsing: size and shape are all a stranger gets checked for free
    now = time.time()
    remembered = keys.remembered(token, now, settings.jwt_leeway_seconds)
    if remembered is not None:
        return remembered
    try:
        header = jwt.get_unverified_header(token)
        kid = str(header.get("kid", ""))
        found = await keys.key_for(kid)
        if found is None or header.get("alg") != found[1] or "crit" in header:
            raise Unauthorized()  # no extension we would have to understand (RFC 7515 § 4.1.11)
        claims = jwt.decode(
            token,
            found[0],
            algorithms=ALGORITHMS,
            audience=settings.audience,
            issuer=settings.issuer,
            options={
                "require_exp": True,
                "require_sub": True,
                "require_aud": True,
                "require_iss": True,
                "leeway": settings.jwt_leeway_seconds,
            },
        )
        issued = claims.get("iat")
        if issued is not None and issued > time.time() + settings.jwt_leeway_seconds:
            raise Unauthorized()  # jose only checks that iat is a number
        verified = TokenClaims.model_validate(claims)
    # Hostile but validly signed payloads can also overflow (exp: 1e400) or nest too deep.
    except (JOSEError, ValidationError, ValueError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
        raise Unauthorized() from exc
    keys.remember(token, verified, kid, found, now)
    return verified


def ensure_dev_key(data_dir: Path) -> Path:
    """The development signing key (EC P-256), created on first use in the data folder."""
    return ensure_ec_key(data_dir / DEV_KEY_FILE)


def ensure_ec_key(path: Path) -> Path:
    """An EC P-256 private key at ``path``, created (mode 0600) if it does not exist yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.touch(mode=0o600)
        path.write_bytes(pem)
    return path


def dev_jwks(key_path: Path) -> dict[str, Any]:
    """The public half of the development key as a JWKS document."""
    return public_jwks(key_path.read_bytes(), DEV_KID)


def mint_token(
    private_pem: bytes,
    *,
    kid: str,
    algorithm: str,
    issuer: str,
    audience: str,
    subject: str,
    roles: list[str],
    region: str | None = None,
    client_system: str | None = None,
    ttl_seconds: int = 3600,
    extra: dict[str, Any] | None = None,
) -> str:
    """A signed token (development key, tests and tools; production tokens come from the IdP)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": str(uuid.uuid4()),
        "roles": roles,
    }
    if region:
        claims["region"] = region
    if client_system:
        claims["client_system"] = client_system
    claims.update(extra or {})
    return str(jwt.encode(claims, private_pem.decode(), algorithm=algorithm, headers={"kid": kid}))


def mint_dev_token(settings: Settings, **kwargs: Any) -> str:
    """A token signed with the development key of this data folder."""
    pem = ensure_dev_key(settings.data_dir).read_bytes()
    return mint_token(pem, kid=DEV_KID, algorithm="ES256", issuer=settings.issuer, audience=settings.audience, **kwargs)


AUDIT_KID = "silta-audit"


def public_jwks(private_pem: bytes, kid: str) -> dict[str, Any]:
    """The public half of an EC private key as a JWKS document."""
    private = serialization.load_pem_private_key(private_pem, password=None)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = jwk.construct(public_pem, "ES256").to_dict()
    return {"keys": [{**public, "kid": kid, "alg": "ES256", "use": "sig"}]}


def sign_checkpoint(private_pem: bytes, claims: dict[str, Any]) -> str:
    """A compact JWS (ES256) over an audit checkpoint, verifiable with ``public_jwks``."""
    return str(jws.sign(claims, private_pem.decode(), algorithm="ES256", headers={"kid": AUDIT_KID}))


def read_checkpoint(private_pem: bytes, token: str) -> dict[str, Any] | None:
    """The claims of a checkpoint this deployment signed, or None when the signature does not hold."""
    key = public_jwks(private_pem, AUDIT_KID)["keys"][0]
    try:
        claims = json.loads(jws.verify(token, key, algorithms=["ES256"]))
    except (JOSEError, ValueError, TypeError):
        return None
    return claims if isinstance(claims, dict) else None
