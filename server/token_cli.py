"""`hotpath token create|list|revoke`: API tokens, on the database directly (the first token
cannot come from the API, which needs a token)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from hotpath.server.auth_tokens import SCOPES, new_token, parse_scopes

_DB = click.option(
    "--db", "db_url", default="", help="SQLAlchemy URL [default: SQLite in --data-dir]"
)
_DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of the SQLite database [default: ./data or $HOTPATH_DATA_DIR]",
)


def _tokens(db_url: str, data_dir: Path | None):  # type: ignore[no-untyped-def]
    from hotpath.server.settings import Settings
    from hotpath.server.storage import open_storage
    from hotpath.server.storage.errors import StorageUnavailable

    overrides: dict[str, object] = {"db_url": db_url} if db_url else {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    settings = Settings(**overrides)
    try:
        return open_storage(settings.database_url(), retention=settings.retention())
    except StorageUnavailable as exc:
        raise click.ClickException(f"cannot open the database: {exc.reason}") from None


@click.group()
def token() -> None:
    """Make, list and revoke API tokens (each names a tenant and scopes)."""


@token.command()
@_DB
@_DATA_DIR
@click.option("--tenant", default="default", show_default=True, help="The token's tenant.")
@click.option(
    "--scope",
    "scopes",
    required=True,
    multiple=True,
    help=f"Comma-separated, repeatable: {'; '.join(f'{k} ({v})' for k, v in SCOPES.items())}.",
)
@click.option("--name", default="", help="What the token is for (shown by list).")
def create(
    db_url: str, data_dir: Path | None, tenant: str, scopes: tuple[str, ...], name: str
) -> None:
    """Make a token; it is printed once, as the last line, and only its hash is kept."""
    try:
        chosen = parse_scopes(scopes)
        plain, record = new_token(tenant, chosen, name)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    storage = _tokens(db_url, data_dir)
    try:
        storage.tokens.add_token(record)
    finally:
        storage.close()
    click.echo(
        f"token {record.id} for tenant {tenant!r}, scopes {','.join(sorted(chosen))}: "
        "keep it secret, it is not shown again",
        err=True,
    )
    click.echo(plain)


@token.command(name="list")
@_DB
@_DATA_DIR
@click.option("--tenant", default=None, help="Only this tenant's tokens.")
def list_tokens(db_url: str, data_dir: Path | None, tenant: str | None) -> None:
    """The tokens (never their secrets), oldest first."""
    storage = _tokens(db_url, data_dir)
    try:
        records = storage.tokens.tokens(tenant)
    finally:
        storage.close()
    click.echo(f"{'id':16}  {'tenant':12}  {'scopes':28}  {'created':20}  {'revoked':20}  name")
    for r in records:
        revoked = f"{r.revoked:%Y-%m-%d %H:%M:%S}" if r.revoked else "-"
        click.echo(
            f"{r.id:16}  {r.tenant:12}  {','.join(sorted(r.scopes)):28}  "
            f"{r.created:%Y-%m-%d %H:%M:%S}   {revoked:20}  {r.name}"
        )


@token.command()
@_DB
@_DATA_DIR
@click.argument("token_id")
def revoke(db_url: str, data_dir: Path | None, token_id: str) -> None:
    """Revoke a token by its id (servers stop accepting it within 30 s)."""
    storage = _tokens(db_url, data_dir)
    try:
        done = storage.tokens.revoke_token(token_id, datetime.now(UTC))
    finally:
        storage.close()
    if not done:
        raise click.ClickException(f"no active token {token_id}")
    click.echo(f"token {token_id} revoked")
