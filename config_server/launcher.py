"""The `config-server` console script: checks that the server's packages are installed first.

A plain install of the package (`pip install .` from a checkout) gives the client only (requests,
PyYAML); the server's packages come with the `[server]` extra. Without them `config-server` exits
with status 2 and one line saying how to install them, instead of an ImportError trace from `cli.py` (which
imports click at once and Flask, gevent and GitPython when serving).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys

DISTRIBUTION = "gitconfig-server"
#: Top-level modules the server imports, checked when the package metadata cannot be read.
_MODULES = (
    "click",
    "flask",
    "git",
    "gevent",
    "gunicorn",
    "watchdog",
    "cryptography",
    "yaml",
    "prometheus_client",
    "jsonschema",
    "redis",
)


def missing_server_packages() -> list[str]:
    """Names of the `[server]` extra's distributions (or, without metadata, modules) not installed."""
    try:
        requirements = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return [name for name in _MODULES if importlib.util.find_spec(name) is None]
    missing = []
    for requirement in requirements:
        if not re.search(r"""extra\s*==\s*['"]server['"]""", requirement):
            continue
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        if name is None:
            continue
        try:
            importlib.metadata.version(name.group(0))
        except importlib.metadata.PackageNotFoundError:
            missing.append(name.group(0))
    return missing


def main() -> None:
    """Run `config_server.cli.main`, or exit 2 naming the extra when the server is not installed."""
    missing = missing_server_packages()
    if missing:
        print(
            f"config-server: the server's packages are not installed ({', '.join(missing)}); "
            f"install the [server] extra from the lock: pip install --require-hashes -r "
            f"requirements-server.txt (README, Installing)",
            file=sys.stderr,
        )
        sys.exit(2)
    from config_server.cli import main as cli_main

    cli_main()
