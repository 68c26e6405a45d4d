"""Keyset pagination with opaque cursors (stable under concurrent inserts)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import tuple_
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from app.errors import ValidationFailed
from app.models.common import EARLIEST_DATE, EARLIEST_MOMENT, LATEST_DATE, LATEST_MOMENT, MAX_ROW_ID

T = TypeVar("T")
DEFAULT_LIMIT, MAX_LIMIT = 50, 500


@dataclass(frozen=True)
class PageParams:
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps([str(v) for v in values]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as exc:
        raise ValidationFailed("cursor is not valid", code="invalid_cursor") from exc
    if not isinstance(values, list) or len(values) != size or not all(isinstance(v, str) for v in values):
        raise ValidationFailed("cursor is not valid", code="invalid_cursor")
    return values


def _after(page: PageParams, parse: Sequence[Callable[[str], Any]]) -> list[Any] | None:
    if not page.cursor:
        return None
    raw = decode_cursor(page.cursor, len(parse))
    try:
        values = [convert(value) for convert, value in zip(parse, raw, strict=True)]
    except ValueError as exc:
        raise ValidationFailed("cursor is not valid", code="invalid_cursor") from exc
    if not all(_could_be_ours(value) for value in values):
        raise ValidationFailed("cursor is not valid", code="invalid_cursor")
    return values


def _could_be_ours(value: Any) -> bool:
    """A key value a cursor of ours can hold: no naive or far-off timestamp, no id beyond BIGINT."""
    if isinstance(value, dt.datetime):
        return value.tzinfo is not None and EARLIEST_MOMENT <= value <= LATEST_MOMENT
    if isinstance(value, dt.date):
        return EARLIEST_DATE <= value <= LATEST_DATE
    if isinstance(value, int):
        return 0 <= value <= MAX_ROW_ID
    return True


def paginate_loaded(
    items: Sequence[T], *, key_of: Callable[[T], Sequence[Any]], parse: Sequence[Callable[[str], Any]], page: PageParams
) -> Page[T]:
    """The same keyset pages over an answer computed in memory (``items`` in ascending key order)."""
    after = _after(page, parse)
    rest = [item for item in items if after is None or list(key_of(item)) > after]
    chosen = rest[: page.limit]
    more = len(rest) > page.limit
    return Page(items=chosen, next_cursor=encode_cursor(key_of(chosen[-1])) if more and chosen else None)


async def paginate(
    session: AsyncSession,
    statement: SelectOfScalar[Any],
    *,
    keys: Sequence[Any],
    key_of: Callable[[Any], Sequence[Any]],
    parse: Sequence[Callable[[str], Any]],
    page: PageParams,
    descending: bool = False,
) -> Page[Any]:
    """One page of ``statement`` ordered by ``keys`` (unique together), after ``page.cursor``."""
    after = _after(page, parse)
    if after is not None:
        beyond = tuple_(*keys) < tuple_(*after) if descending else tuple_(*keys) > tuple_(*after)
        statement = statement.where(beyond)
    order = [key.desc() for key in keys] if descending else list(keys)
    rows = list((await session.exec(statement.order_by(*order).limit(page.limit + 1))).all())
    more = len(rows) > page.limit
    items = rows[: page.limit]
    return Page(items=items, next_cursor=encode_cursor(key_of(items[-1])) if more and items else None)
