"""Options and helpers the `hotpath` commands share: the server, labels, the profile type,
and reading a time range of a service from the server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click
import httpx

from hotpath.profiler.labels import parse_labels
from hotpath.profiler.model import CPU, PROFILE_TYPES
from hotpath.profiler.timespec import parse_range

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_SERVER = "http://127.0.0.1:8000"
_TOKEN_KEY = "hotpath.token"


def _keep_token(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    ctx.meta[_TOKEN_KEY] = value  # meta is shared by the whole context chain


def token_option(command: F) -> F:
    """`--token` ($HOTPATH_TOKEN): the API token every request of the command sends."""
    return click.option(
        "--token",
        envvar="HOTPATH_TOKEN",
        show_envvar=True,
        default=None,
        expose_value=False,
        callback=_keep_token,
        help="API token, sent as Authorization: Bearer (`hotpath token create` makes one).",
    )(command)


def auth_headers() -> dict[str, str]:
    """The Authorization header of the running command's `--token`, if it has one."""
    ctx = click.get_current_context(silent=True)
    token = ctx.meta.get(_TOKEN_KEY) if ctx is not None else None
    return {"Authorization": f"Bearer {token}"} if token else {}


def labels_callback(
    _ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]
) -> dict[str, str]:
    """`--label key=value` (repeatable) as a dict; a clear usage error otherwise."""
    try:
        return parse_labels(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def type_option(
    flag: str = "--type", default: str | None = CPU.id, help: str = "Profile type."
) -> Callable[[F], F]:
    """`--type cpu|wall|alloc_bytes|...`: every read is of one profile type."""
    dest = "profile_type" if flag == "--type" else flag.removeprefix("--").replace("-", "_")
    return click.option(
        flag,
        dest,
        type=click.Choice(list(PROFILE_TYPES)),
        default=default,
        show_default=default is not None,
        help=help,
    )


def query(
    server: str,
    path: str,
    service: str,
    start: str,
    until: str,
    labels: dict[str, str],
    extra: list[tuple[str, str]] | None = None,
) -> tuple[httpx.Response, datetime, datetime]:
    """GET a service's time range from the server; a clear CLI error for anything but 200."""
    try:
        begin, end = parse_range(start, until)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    params = [
        ("service", service),
        ("from", begin.isoformat()),
        ("until", end.isoformat()),
        *(("label", f"{k}={v}") for k, v in labels.items()),
        *(extra or []),
    ]
    try:
        response = httpx.get(
            server.rstrip("/") + path, params=params, timeout=60, headers=auth_headers()
        )
    except httpx.TransportError as exc:
        raise click.ClickException(f"cannot reach the server at {server}: {exc}") from None
    if response.status_code != 200:
        raise click.ClickException(server_error(response))
    return response, begin, end


def server_error(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    return f"server said {response.status_code}: {detail}"
