"""A request's database connection dies under it (the database restarted, an admin killed it).

The answer (503) is already out when the request's session is closed, so closing must not raise:
that would cut off the HTTP connection too. The dead connection is discarded, the pool goes on.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, literal, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import select

from app.db import OuterTransaction, session_scope

pytestmark = pytest.mark.postgres_only


async def _kill_backend_of(app: Any, pid: int) -> None:
    async with app.state.engine.connect() as admin:
        await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


async def _pool_still_serves(app: Any) -> None:
    async with app.state.sessionmaker() as session:
        assert (await session.exec(select(literal(1)))).one() == 1


async def test_closing_a_request_session_whose_connection_died_discards_it_quietly(app: Any) -> None:
    scope = session_scope(app.state.sessionmaker)
    session = await anext(scope)
    pid = (await session.exec(select(func.pg_backend_pid()))).one()
    await _kill_backend_of(app, pid)
    with pytest.raises(StopAsyncIteration):
        await anext(scope)  # what FastAPI does after the answer: the session closes without an error
    await _pool_still_serves(app)


async def test_an_outer_transaction_whose_connection_died_rolls_back_quietly_but_cannot_commit(app: Any) -> None:
    for ending in ("rollback", "commit"):
        outer = OuterTransaction(app.state.sessionmaker)
        session = await outer.begin()
        pid = (await session.exec(select(func.pg_backend_pid()))).one()
        await _kill_backend_of(app, pid)
        if ending == "rollback":
            await outer.rollback()
        else:
            with pytest.raises(SQLAlchemyError):
                await outer.commit()  # nothing was kept: the caller answers 503
        assert outer.connection is None and outer.session is None
        await _pool_still_serves(app)
