"""The bounds on what committed content may expand to (see docs/security.md).

The numbers live with the one implementation that applies them, `config_client.settings_tree`
(the client enforces the same ones); this module re-exports them for the server and turns an
index over the limit into the server's ConfigLimitExceeded.

A file is bounded when it is read (`MAX_FILE_BYTES`) and parsed (`parsing.MAX_NODES`,
`parsing.MAX_DEPTH`); these bound what it can grow into afterwards: a list index in a flat key
(`servers[N]` would allocate N entries when rendered), a value grown by `${...}` placeholders,
and the total that placeholders may add to one answer (a rendered file or a plain-text resource).
Going over one is a ConfigLimitExceeded naming the file and the key.
"""

from __future__ import annotations

from collections.abc import Iterable

from config_client.settings_tree import (
    MAX_EXPANSION_CHARS,
    MAX_LIST_INDEX,
    MAX_VALUE_CHARS,
    list_index_error,
    shorten,
)
from config_server.errors import ConfigLimitExceeded

__all__ = [
    "MAX_EXPANSION_CHARS",
    "MAX_LIST_INDEX",
    "MAX_VALUE_CHARS",
    "check_list_indexes",
    "list_index_error",
    "shorten",
]


def check_list_indexes(where: str, keys: Iterable[str]) -> None:
    """Raise ConfigLimitExceeded naming `where` and the first key with an index over the limit."""
    for key in keys:
        reason = list_index_error(key)
        if reason:
            raise ConfigLimitExceeded(f"{where}: {reason}")
