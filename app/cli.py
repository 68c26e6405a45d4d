"""The ``silta`` command."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import typer

from app.config import get_settings
from app.security import Role, mint_dev_token

cli = typer.Typer(help="Silta: aftercare responsibility across regions.", no_args_is_help=True)


@cli.command()
def migrate() -> None:
    """Migrate the configured database to the latest schema."""
    from app.migrate import upgrade

    upgrade(get_settings().sqlalchemy_url)
    typer.echo("database at the latest revision")


@cli.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    migrate_first: Annotated[bool, typer.Option("--migrate/--no-migrate")] = True,
) -> None:
    """Migrate (by default) and serve the API with uvicorn, logging JSON lines to stderr."""
    import logging
    import signal

    import uvicorn

    from app import logs
    from app.migrate import upgrade

    settings = get_settings()
    logs.configure(settings.log_level)
    log = logging.getLogger("silta")
    if migrate_first:
        upgrade(settings.sqlalchemy_url)
        log.info("database at the latest revision")
    if settings.uses_dev_key:
        log.warning("development signing key in use; get a token with: silta token --role coordinator --region 05")
    if workers > 1:
        _share_metrics_between_workers(settings.data_dir)
    # On SIGTERM/SIGINT uvicorn stops accepting, lets the requests in flight finish (for at most
    # the grace period), shuts the app down, then re-raises the signal. A stop that was asked for
    # and done is a success: exit 0 rather than die of the re-raised signal.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _stopped)
    # uvicorn keeps our logging (log_config=None); its access log is replaced by app.middleware's line
    uvicorn.run(
        "app.main:app",
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )


def _stopped(_signal: int, _frame: Any) -> None:
    """Uvicorn re-raises the signal once it has shut down (or it came before uvicorn took over)."""
    raise SystemExit(0)


def _share_metrics_between_workers(data_dir: Path) -> None:
    """Workers write their counts to files in a fresh folder; a scrape of any worker sums them (app.metrics)."""
    import os

    from app.metrics import MULTIPROCESS_DIR

    folder = Path(os.environ.get(MULTIPROCESS_DIR) or data_dir / "metrics")
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):  # an earlier run's counts would be added to this one's
        stale.unlink()
    os.environ[MULTIPROCESS_DIR] = str(folder)


@cli.command()
def token(
    role: Annotated[list[Role], typer.Option(help="repeat for several roles")],
    region: Annotated[str | None, typer.Option(help="region code, e.g. 05")] = None,
    subject: Annotated[str, typer.Option(help="the token's sub")] = "dev-user",
    client_system: Annotated[str | None, typer.Option()] = None,
    hours: Annotated[int, typer.Option(min=1, max=24)] = 8,
) -> None:
    """Print a development token signed with the embedded default's key."""
    settings = get_settings()
    if not settings.uses_dev_key:
        typer.echo("tokens come from your identity provider when JWKS is configured", err=True)
        raise typer.Exit(2)
    typer.echo(
        mint_dev_token(
            settings,
            subject=subject,
            roles=[r.value for r in role],
            region=region,
            client_system=client_system,
            ttl_seconds=hours * 3600,
        )
    )


@cli.command()
def openapi(output: Annotated[str, typer.Option(help="file to write")] = "openapi/openapi.json") -> None:
    """Write the OpenAPI document of the app (committed as openapi/openapi.json)."""
    import json

    from app.config import Settings
    from app.main import create_app

    document = create_app(Settings(database_url="sqlite://")).openapi()
    Path(output).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    typer.echo(f"wrote {output}")


@cli.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="a JSON Lines file")],
    region: Annotated[str, typer.Option(help="the region imported into, e.g. 05")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check every line, store nothing")] = False,
    atomic: Annotated[bool, typer.Option("--atomic/--no-atomic", help="all lines or none")] = True,
    source_system: Annotated[str | None, typer.Option(help="for lines naming no source_system")] = None,
) -> None:
    """Import FILE into the configured database, as POST /v1/imports does; print the report as JSON.

    The caller is ``cli:<os user>``, a system and coordinator of REGION (workers need a coordinator).
    Exit 0 when every line was fine, 1 when a line failed (see ``errors``), 2 when the file was refused.
    """
    import asyncio
    import getpass
    import json
    import re

    from app.domain.access import COORDINATOR, SYSTEM, Caller
    from app.errors import ImportRefused, SiltaError

    if not re.fullmatch(r"\d{2}", region):
        raise typer.BadParameter("a two-digit region code, e.g. 05", param_hint="--region")
    caller = Caller(
        subject=f"cli:{getpass.getuser()}",
        roles=frozenset({SYSTEM, COORDINATOR}),
        region=region,
        client_system=source_system,
    )
    try:
        report = asyncio.run(_import(caller, file.read_bytes(), dry_run=dry_run, atomic=atomic, system=source_system))
    except ImportRefused as refused:
        answer = {"code": refused.code, "detail": refused.detail, **refused.extra}
        typer.echo(json.dumps(answer, indent=2, ensure_ascii=False))
        raise typer.Exit(1) from None
    except SiltaError as error:
        typer.echo(f"{error.code}: {error.detail}", err=True)
        raise typer.Exit(2) from None
    typer.echo(report.model_dump_json(indent=2))
    if report.failed:
        raise typer.Exit(1)


async def _import(caller: Any, body: bytes, *, dry_run: bool, atomic: bool, system: str | None) -> Any:
    from app.services.imports import import_file as run

    settings = get_settings()
    async with _audited_sessions() as factory:
        return await run(factory, caller, body, settings=settings, dry_run=dry_run, atomic=atomic, source_system=system)


audit = typer.Typer(help="The tamper-evident audit chain.", no_args_is_help=True)
cli.add_typer(audit, name="audit")


@contextlib.asynccontextmanager
async def _audited_sessions() -> AsyncIterator[Any]:
    """Sessions like the service's own (writes are change-logged, reads access-logged)."""
    from app.db import make_engine, make_sessionmaker
    from app.services.audit import MAC_KEY, NO_CHANGE_LOG, AuditedSession, AuditKey
    from app.services.vault import VAULT, Vault

    settings = get_settings()
    engine = make_engine(settings)
    key = AuditKey(settings.audit_key_path, create=settings.audit_key_file is None)
    vault = Vault(settings.identity_key_path, create=settings.identity_key_file is None)
    info = {MAC_KEY: key, VAULT: vault, NO_CHANGE_LOG: not settings.audit_change_log}
    try:
        yield make_sessionmaker(engine, sync_session_class=AuditedSession, info=info)
    finally:
        await engine.dispose()


async def _with_audit_session(work: Any) -> Any:
    async with _audited_sessions() as factory, factory() as session:
        return await work(session)


@audit.command("verify")
def audit_verify(
    workers: Annotated[int, typer.Option(min=1, max=16, help="processes, each walking a stretch of the chain")] = 2,
) -> None:
    """Recompute the chain; exit 1 and name the first broken position if it does not hold."""
    import asyncio
    import dataclasses
    import json
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from app.services import chain_verify

    stretches = asyncio.run(_with_audit_session(lambda session: chain_verify.stretches(session, workers)))
    with ProcessPoolExecutor(len(stretches), mp_context=multiprocessing.get_context("spawn")) as pool:
        walks = list(pool.map(_walk_stretch, stretches))
    ends = [end for _, _, end in stretches]
    report = asyncio.run(_with_audit_session(lambda session: chain_verify.finish(session, walks, ends)))
    typer.echo(json.dumps(dataclasses.asdict(report), indent=2))
    if not report.ok:
        raise typer.Exit(1)


def _walk_stretch(stretch: tuple[int, str, int | None]) -> Any:
    """One process of ``silta audit verify``: walk one stretch of the chain (``chain_verify.stretches``).

    Without the cyclic garbage collector: a walk's batches are JSON values, rows and tuples, freed by
    their reference counts, and the collector's passes over each batch's hundreds of thousands of new
    objects took half the walk's time (issue 9). The process ends with its stretch.
    """
    import asyncio
    import gc

    gc.disable()

    from app.services import chain_verify

    start, previous, end = stretch
    return asyncio.run(
        _with_audit_session(lambda session: chain_verify.walk(session, start=start, previous=previous, upto=end))
    )


@audit.command("seal")
def audit_seal(full: Annotated[bool, typer.Option(help="look through the whole of every log")] = False) -> None:
    """Seal the entries written since the last seal (the service also does this every few seconds)."""
    import asyncio

    from app.services import chain

    sealed = asyncio.run(_with_audit_session(lambda session: chain.seal(session, full=full)))
    typer.echo(f"sealed {sealed} entries")


@cli.command()
def deliver(
    batch: Annotated[int, typer.Option(min=1, max=500, help="deliveries claimed at a time")] = 20,
    poll: Annotated[float, typer.Option(min=0.05, help="seconds to wait when nothing is due")] = 1.0,
    once: Annotated[bool, typer.Option(help="send one batch and exit")] = False,
    worker: Annotated[str | None, typer.Option(help="this worker's name in the delivery log")] = None,
) -> None:
    """Push webhook deliveries until SIGTERM or SIGINT (run as many workers as you like)."""
    import asyncio
    import os
    import signal
    import socket

    import httpx

    from app.services.delivery import Deliverer

    settings = get_settings()
    name = worker or f"{socket.gethostname()}:{os.getpid()}"

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        timeout = httpx.Timeout(settings.webhook_timeout_seconds, connect=min(5.0, settings.webhook_timeout_seconds))
        async with (
            _audited_sessions() as factory,
            httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client,
        ):
            deliverer = Deliverer(factory, settings, client, name)
            if once:
                typer.echo(f"tried {await deliverer.run_once(batch=batch)} deliveries")
            else:
                await deliverer.run(stop, batch=batch, poll=poll)

    asyncio.run(run())


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
