"""`hotpath upload`: store a profile file made by another profiler on the server."""

from __future__ import annotations

import gzip
from pathlib import Path

import click
import httpx

from hotpath.cli.options import (
    DEFAULT_SERVER,
    auth_headers,
    labels_callback,
    server_error,
    token_option,
    type_option,
)
from hotpath.profiler.formats import registry


class UploadRefused(click.ClickException):
    exit_code = 2  # bad input, like the other commands' 4xx


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--service", required=True, help="Service name the profile is stored under.")
@click.option("--label", "labels", multiple=True, callback=labels_callback, metavar="KEY=VALUE")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(registry.names()),
    default=None,
    help="The file's format [default: detected].",
)
@type_option(default=None, help="The profile type [default: what the file says].")
@click.option("--server", default=DEFAULT_SERVER, show_default=True)
@token_option
def upload(
    file: Path,
    service: str,
    labels: dict[str, str],
    fmt: str | None,
    profile_type: str | None,
    server: str,
) -> None:
    """Store a profile file (collapsed, speedscope, pprof, pyinstrument session) on the server.

    Exit codes: 0 stored, 2 refused (the server's message says why) or no answer.
    """
    data = file.read_bytes()
    headers = {"Content-Type": "application/octet-stream"}
    if data[:2] != b"\x1f\x8b":  # compress in transit unless the file is gzip already
        data, headers["Content-Encoding"] = gzip.compress(data, mtime=0), "gzip"
    params = [
        ("service", service),
        *(("label", f"{k}={v}") for k, v in labels.items()),
        *([("format", fmt)] if fmt else []),
        *([("type", profile_type)] if profile_type else []),
    ]
    try:
        response = httpx.post(
            server.rstrip("/") + "/api/v1/profiles",
            params=params,
            content=data,
            headers={**headers, **auth_headers()},
            timeout=120,
        )
    except httpx.TransportError as exc:
        raise UploadRefused(f"cannot reach the server at {server}: {exc}") from None
    if response.status_code not in (200, 201):
        raise UploadRefused(server_error(response))
    answer = response.json()
    for stored in answer["profiles"]:
        again = " (already stored)" if stored["duplicate"] else ""
        click.echo(
            f"{file.name}: {answer['format']} -> {service} {stored['type']}: "
            f"{stored['total']} {stored['unit']} in {stored['stacks']} stacks{again}",
            err=True,
        )
