"""`hotpath serve`: run the server on uvicorn."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--db", "db_url", default="", help="SQLAlchemy URL [default: SQLite in --data-dir]")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for the SQLite database [default: ./data or $HOTPATH_DATA_DIR]",
)
@click.option("--log-level", default="info", show_default=True)
@click.option(
    "--auth",
    type=click.Choice(["required", "off"]),
    default=None,
    help="Tokens required on every route but the health check and sign-in [default: required, "
    "or $HOTPATH_AUTH]; off is refused unless --host is a loopback address.",
)
def serve(
    host: str, port: int, db_url: str, data_dir: Path | None, log_level: str, auth: str | None
) -> None:
    """Run the hotpath server (FastAPI on uvicorn)."""
    import uvicorn

    from hotpath.server.app import create_app
    from hotpath.server.settings import Settings
    from hotpath.server.storage.errors import StorageUnavailable

    overrides: dict[str, object] = {}
    if db_url:
        overrides["db_url"] = db_url
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if auth is not None:
        overrides["auth"] = auth
    settings = Settings(**overrides)
    if settings.auth == "off" and not is_loopback(host):
        raise click.UsageError(
            f"--auth off serves every tenant's data to anyone who can reach {host}: "
            "only a loopback --host (127.0.0.1, ::1, localhost) may run without tokens"
        )
    try:
        app = create_app(settings)
    except StorageUnavailable as exc:
        raise click.ClickException(
            f"cannot open the database {_shown(settings.database_url())}: {exc.reason}"
        ) from None
    shown = _shown(settings.database_url())
    click.echo(
        f"hotpath server on http://{host}:{port}  (database: {shown}, auth: {settings.auth})"
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _shown(url: str) -> str:
    """The database URL without its password, for the console."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
