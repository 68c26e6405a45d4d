"""The one exception tree of the service; ``app.main`` renders it as RFC 9457 problems."""

from __future__ import annotations

from typing import Any


class SiltaError(Exception):
    """Base: an error with an HTTP status and a stable machine-readable code."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str | None = None, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code:
            self.code = code
        self.extra = extra

    @property
    def headers(self) -> dict[str, str]:
        """Response headers the answer carries besides the problem body."""
        return {}


class Unauthorized(SiltaError):
    status, code, title = 401, "unauthorized", "Authentication required"


class Forbidden(SiltaError):
    status, code, title = 403, "forbidden", "Not allowed"


class NotResponsible(Forbidden):
    code, title = "not_responsible", "The caller's region does not hold this responsibility"


class NotFound(SiltaError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(SiltaError):
    status, code, title = 409, "conflict", "Conflict"


class DuplicateClient(Conflict):
    code, title = "duplicate_client", "A client with this identity code is already registered"


class ResponsibilityTaken(Conflict):
    code, title = "responsibility_taken", "Another named worker holds this responsibility"


class Unprocessable(SiltaError):
    status, code, title = 422, "unprocessable", "The request breaks a rule"


class ValidationFailed(Unprocessable):
    code, title = "validation_error", "The request is not valid"


class PayloadTooLarge(SiltaError):
    status, code, title = 413, "payload_too_large", "Request body too large"


class UnsupportedMediaType(SiltaError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class ImportRefused(Unprocessable):
    code, title = "import_refused", "The import was refused: nothing was stored"


class ServiceUnavailable(SiltaError):
    status, code, title = 503, "unavailable", "Service temporarily unavailable"


class RateLimited(SiltaError):
    status, code, title = 429, "rate_limited", "Too many requests; retry after the time given in Retry-After"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry in {retry_after} s")
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}
