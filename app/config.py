"""Settings read from the environment (prefix ``SILTA_``)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_ISSUER = "silta-dev"
DEV_AUDIENCE = "silta"
PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class Rate(NamedTuple):
    """``requests`` per ``seconds``: a burst of ``requests`` at once, then one every ``seconds / requests``."""

    requests: int
    seconds: int


def parse_rate(value: object) -> Rate | None:
    """``"30/minute"`` (second, minute, hour, day) or ``"off"``."""
    if value is None or isinstance(value, Rate):
        return value
    text = str(value).strip().lower()
    if text == "off":
        return None
    match = re.fullmatch(r"(\d{1,6})\s*/\s*(second|minute|hour|day)", text)
    if not match or int(match[1]) < 1:
        raise ValueError('a rate limit is "<n>/<second|minute|hour|day>" with n >= 1, or "off"')
    return Rate(int(match[1]), PERIODS[match[2]])


RateSetting = Annotated[Rate | None, BeforeValidator(parse_rate)]


class Settings(BaseSettings):
    """Deployment configuration; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="SILTA_", env_file=None, extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("./data")
    database_url: str | None = None
    db_pool_size: int = 20
    db_max_overflow: int = 10
    db_pool_timeout: float = Field(default=10.0, gt=0, le=60)  # seconds a request waits for a connection
    # Test each pooled PostgreSQL connection before use: one more round trip per request (a client read
    # sends four). Off, the first request per process after a database restart answers 503 (Retry-After)
    # and the whole pool is renewed; the next ones succeed.
    db_pre_ping: bool = False
    shutdown_grace_seconds: int = 20
    # The national overview (aggregates, no personal data) is computed at most once per this many
    # seconds per process and served from that snapshot meanwhile (its computed_at says when); 0 computes
    # it on every request. Computing it reads every in-force assignment in the country.
    overview_max_age_seconds: float = Field(default=60.0, ge=0, le=3600)

    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwks_file: Path | None = None
    jwks_url: str | None = None
    jwks_refresh_seconds: int = 30
    jwt_leeway_seconds: int = 30

    accept_temporary_ids: bool = False
    require_if_match: bool = False
    feed_retention_days: int = 30
    webhook_max_attempts: int = 8
    webhook_backoff_seconds: float = 10.0
    webhook_backoff_cap_seconds: float = 3600.0
    webhook_timeout_seconds: float = 10.0
    webhook_lease_seconds: float = 60.0
    housekeeping_seconds: float = 300.0
    default_grace_days: int = 14

    audit_key_file: Path | None = None
    identity_key_file: Path | None = None
    audit_seal_seconds: float = 2.0
    audit_access_log: bool = True
    audit_change_log: bool = True  # benchmarks only (the cost of logging); production refuses false

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    rate_limit_search: RateSetting = Rate(60, PERIODS["minute"])
    rate_limit_export: RateSetting = Rate(10, PERIODS["minute"])
    rate_limit_import: RateSetting = Rate(30, PERIODS["hour"])
    metrics_gap_seconds: float = 10.0

    @model_validator(mode="after")
    def _production_needs_real_keys(self) -> Settings:
        if self.env == "production":
            missing = [
                name
                for name, value in (
                    ("SILTA_JWT_ISSUER", self.jwt_issuer),
                    ("SILTA_JWT_AUDIENCE", self.jwt_audience),
                    ("SILTA_JWKS_FILE or SILTA_JWKS_URL", self.jwks_file or self.jwks_url),
                    ("SILTA_DATABASE_URL", self.database_url),
                    ("SILTA_AUDIT_KEY_FILE", self.audit_key_file),
                    ("SILTA_IDENTITY_KEY_FILE", self.identity_key_file),
                )
                if not value
            ]
            if missing:
                raise ValueError("production settings need " + ", ".join(missing))
            if self.jwt_issuer == DEV_ISSUER:
                raise ValueError("production must not use the development issuer")
            if self.jwks_url and not self.jwks_url.lower().startswith("https://"):
                raise ValueError("production fetches SILTA_JWKS_URL over https only: whoever answers picks the keys")
            if not (self.audit_access_log and self.audit_change_log):
                raise ValueError("production must keep the access and change logs (SILTA_AUDIT_*_LOG)")
        if not 0 <= self.jwt_leeway_seconds <= 30:
            raise ValueError("SILTA_JWT_LEEWAY_SECONDS must be between 0 and 30")
        return self

    def rate_limit(self, endpoint_class: str) -> Rate | None:
        """The limit of an endpoint class (``search``, ``export``, ``import``); None when it is off."""
        rate: Rate | None = getattr(self, f"rate_limit_{endpoint_class}")
        return rate

    @property
    def uses_dev_key(self) -> bool:
        """True when Silta signs its own development tokens (embedded default)."""
        return not (self.jwks_file or self.jwks_url)

    @property
    def audit_key_path(self) -> Path:
        """The audit key (EC P-256): signs checkpoints and keys the entries' MACs."""
        return self.audit_key_file or self.data_dir / "audit-key.pem"

    @property
    def identity_key_path(self) -> Path:
        """The keys that encrypt identity codes at rest and key their lookup hash (app.services.vault)."""
        return self.identity_key_file or self.data_dir / "identity-keys.json"

    @property
    def issuer(self) -> str:
        return self.jwt_issuer or DEV_ISSUER

    @property
    def audience(self) -> str:
        return self.jwt_audience or DEV_AUDIENCE

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL as given, or the embedded SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'silta.db').resolve()}"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests build their own ``Settings`` instead)."""
    return Settings()
