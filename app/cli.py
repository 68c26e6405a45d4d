"""The ``silta`` command."""

from __future__ import annotations

from typing import Annotated

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
    """Migrate (by default) and serve the API with uvicorn."""
    import uvicorn

    settings = get_settings()
    if migrate_first:
        migrate()
    if settings.uses_dev_key:
        typer.echo(
            "development signing key in use; get a token with:\n  silta token --role coordinator --region 05",
            err=True,
        )
    uvicorn.run("app.main:app", host=host, port=port, workers=workers, access_log=False)


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
    from pathlib import Path

    from app.config import Settings
    from app.main import create_app

    document = create_app(Settings(database_url="sqlite://")).openapi()
    Path(output).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    typer.echo(f"wrote {output}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
