"""The bounds on what committed content may expand to, in one place (see docs/security.md).

A file is bounded when it is read (`MAX_FILE_BYTES`) and parsed (`parsing.MAX_NODES`,
`parsing.MAX_DEPTH`); these bound what it can grow into afterwards: a list index in a flat key
(`servers[N]` would allocate N entries when rendered), a value grown by `${...}` placeholders,
and the total that placeholders may add to one answer (a rendered file or a plain-text resource).
Going over one is a ConfigLimitExceeded naming the file and the key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from config_server.errors import ConfigLimitExceeded

#: Largest list index a flat key may use (`list[10000]` is the 10,001st entry).
MAX_LIST_INDEX = 10_000
#: Longest value (in characters) that resolving placeholders may produce; a longer committed
#: value is served as it is, it is only never grown beyond its own length or this limit.
MAX_VALUE_CHARS = 64 * 1024
#: Most characters placeholders may add to one answer (all values of a rendered file together,
#: or one plain-text resource), on top of the committed content.
MAX_EXPANSION_CHARS = 4 * 1024 * 1024

_INDEX = re.compile(r"\[(\d+)\]")
_INDEX_DIGITS = len(str(MAX_LIST_INDEX))


def list_index_error(key: str) -> str | None:
    """Why a flat key's list index is refused, or None when every index is within the limit."""
    if "[" not in key:
        return None
    for match in _INDEX.finditer(key):
        digits = match.group(1)
        if len(digits) > _INDEX_DIGITS or int(digits) > MAX_LIST_INDEX:
            return f"key {shorten(key)!r} has a list index above {MAX_LIST_INDEX}"
    return None


def check_list_indexes(where: str, keys: Iterable[str]) -> None:
    """Raise ConfigLimitExceeded naming `where` and the first key with an index over the limit."""
    for key in keys:
        reason = list_index_error(key)
        if reason:
            raise ConfigLimitExceeded(f"{where}: {reason}")


def shorten(text: str, limit: int = 120) -> str:
    """`text`, cut to `limit` characters with an ellipsis, for messages about hostile keys."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
