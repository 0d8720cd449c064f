"""Which optional parts of hotpath are installed, for the commands that need one.

`pip install hotpath` is the in-process API, the agent and the client commands; `hotpath serve`
(and `hotpath demo`, which runs a server) need `hotpath[server]`, `hotpath gate` needs
`hotpath[gate]`. Without the extra such a command stops at once with exit code 2 and the
`pip install` line that fixes it, instead of an ImportError from deep inside.

The extras' packages are read from hotpath's own installed metadata, so pyproject.toml stays
the one list of them.
"""

from __future__ import annotations

import re
from importlib import metadata

import click

# The extra each command needs; the other commands run on a plain install.
COMMAND_EXTRAS = {"serve": "server", "demo": "server", "token": "server", "gate": "gate"}

_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class MissingExtra(click.ClickException):
    """A command run without the extra it needs: a usage problem, so exit code 2."""

    exit_code = 2


def extra_packages(extra: str) -> list[str]:
    """The distributions `hotpath[extra]` adds, from hotpath's installed metadata ([] when
    hotpath itself is not installed, e.g. run from a source tree: nothing to check against)."""
    try:
        requires = metadata.requires("hotpath") or []
    except metadata.PackageNotFoundError:
        return []
    names = []
    for requirement in requires:
        spec, _, marker = requirement.partition(";")
        name = _NAME.match(spec)
        if name is not None and extra in _EXTRA_MARKER.findall(marker):
            names.append(name.group(1))
    return names


def missing(names: list[str]) -> list[str]:
    """Those of the distributions that are not installed."""
    absent = []
    for name in names:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            absent.append(name)
    return absent


def require_extra(command: str) -> None:
    """Raise MissingExtra when `command` needs an extra that is not (wholly) installed."""
    extra = COMMAND_EXTRAS.get(command)
    if extra is None:
        return
    packages = extra_packages(extra)
    absent = missing(packages)
    if absent:
        # Name the missing packages only when the extra is partly there (a broken install).
        which = "" if len(absent) == len(packages) else f" ({', '.join(absent)} missing)"
        raise MissingExtra(
            f"hotpath {command} needs the {extra} extra{which}: pip install 'hotpath[{extra}]'"
        )
