"""The environment variables read by whatever calls a config server: one scheme.

`CONFIG_SERVER_*` variables are the server's own settings (each `CONFIG_SERVER_<FIELD>` fills a
field of `config_server.settings.Settings`). Everything that *calls* a server (the
`config_client` library, `config-client`, `config-server rollout`, the examples) reads
`CONFIG_CLIENT_*` instead, so the two can never collide:

- `CONFIG_CLIENT_SERVERS`: the server's URL, or several comma-separated (replicas of a cluster);
- `CONFIG_CLIENT_TOKEN`: the bearer token.

The names `config-server rollout` and the examples read before, `CONFIG_SERVER_URL` and
`CONFIG_SERVER_TOKEN`, are still accepted when the new name is unset, with a deprecation warning
naming the new one (a `FutureWarning`, which Python shows by default; the commands print it as a
one-line warning).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping

SERVERS_ENV = "CONFIG_CLIENT_SERVERS"
TOKEN_ENV = "CONFIG_CLIENT_TOKEN"
#: The new name -> the deprecated name still accepted in its place.
DEPRECATED_NAMES = {SERVERS_ENV: "CONFIG_SERVER_URL", TOKEN_ENV: "CONFIG_SERVER_TOKEN"}


def _warn(message: str) -> None:
    warnings.warn(message, FutureWarning, stacklevel=4)


def read_variable(
    name: str, environ: Mapping[str, str] | None = None, warn: Callable[[str], None] | None = None
) -> str | None:
    """The value of `name` (SERVERS_ENV or TOKEN_ENV), else of its deprecated name (calling
    `warn` with a message naming both, a FutureWarning by default), else None; blank is unset."""
    environ = os.environ if environ is None else environ
    value = environ.get(name, "").strip()
    if value:
        return value
    old = DEPRECATED_NAMES.get(name)
    value = environ.get(old, "").strip() if old else ""
    if not value:
        return None
    (warn or _warn)(
        f"{old} is deprecated: set {name} instead "
        f"(CONFIG_SERVER_* variables are the config server's own settings)"
    )
    return value


def configured_servers(
    default: str | None = None,
    environ: Mapping[str, str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> str | None:
    """CONFIG_CLIENT_SERVERS (or the deprecated CONFIG_SERVER_URL), else `default`."""
    return read_variable(SERVERS_ENV, environ, warn) or default


def configured_token(
    environ: Mapping[str, str] | None = None, warn: Callable[[str], None] | None = None
) -> str | None:
    """CONFIG_CLIENT_TOKEN (or the deprecated CONFIG_SERVER_TOKEN), else None."""
    return read_variable(TOKEN_ENV, environ, warn)
