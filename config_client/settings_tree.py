"""The pure settings code the server and the client share: merge, unflatten and `${...}` placeholders.

One implementation, here in the client package because it is always installed; the server imports
it (`config_server.content.render`, `config_server.content.limits`), the client never imports the server. Pure
functions over plain mappings: no I/O, no clock, no package of ours beyond this file.

- Merging follows `protocol.md`: property sources come most specific first, a higher source's key
  wins, and a list set by a higher source replaces the lower sources' list whole.
- `unflatten` turns `a.b[0].c` keys back into nested maps and lists; an index above
  MAX_LIST_INDEX is skipped (callers that must refuse it check `list_index_error` first).
- Placeholders `${a.b}` and `${a.b:default}` resolve against the merged settings, then against
  `fallback` when one is given (the client passes the process environment; the server none),
  then the default; innermost first, bounded against cycles. A value may grow to MAX_VALUE_CHARS
  (or its own length, when longer) and all values together by MAX_EXPANSION_CHARS; beyond either,
  SettingsLimitExceeded names the property source the key came from and the key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: Largest list index a flat key may use (`list[10000]` is the 10,001st entry).
MAX_LIST_INDEX = 10_000
#: Longest value (in characters) that resolving placeholders may produce; a longer committed
#: value is served as it is, it is only never grown beyond its own length or this limit.
MAX_VALUE_CHARS = 64 * 1024
#: Most characters placeholders may add to one answer (all values of a rendered file together,
#: or one plain-text resource), on top of the committed content.
MAX_EXPANSION_CHARS = 4 * 1024 * 1024

#: Looks a placeholder's name up outside the settings (None: not there).
Fallback = Callable[[str], "str | None"]

_INDEX = re.compile(r"\[(\d+)\]")
_INDEX_DIGITS = len(str(MAX_LIST_INDEX))
_KEY_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_PLACEHOLDER = re.compile(r"\$\{([^{}]*)\}")
_MAX_PASSES = 32


class SettingsLimitExceeded(ValueError):
    """Settings that would expand past a limit; the message names the source and the key."""


class ExpansionTooLarge(Exception):
    """Resolving placeholders in one text went over its limit (raised by `resolve_text`)."""

    def __init__(self, placeholder: str, limit: int) -> None:
        super().__init__(f"placeholder ${{{shorten(placeholder)}}} grows it beyond {limit} characters")
        self.placeholder = placeholder
        self.limit = limit


class MergedSettings(dict[str, Any]):
    """Flat merged settings that remember the property source (file) each key came from.

    A plain dict to every reader; the origins only name the file in a limit error.
    """

    def __init__(self) -> None:
        super().__init__()
        self.origins: dict[str, str] = {}

    def origin(self, key: str) -> str:
        """The name of the property source that set `key` ("settings" when unknown)."""
        return self.origins.get(key, "settings")


def origin_of(flat: Mapping[str, Any], key: str) -> str:
    """The property source `key` came from when `flat` is MergedSettings, else "settings"."""
    return flat.origin(key) if isinstance(flat, MergedSettings) else "settings"


def shorten(text: str, limit: int = 120) -> str:
    """`text`, cut to `limit` characters with an ellipsis, for messages about hostile keys."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def list_index_error(key: str) -> str | None:
    """Why a flat key's list index is refused, or None when every index is within the limit."""
    if "[" not in key:
        return None
    for match in _INDEX.finditer(key):
        digits = match.group(1)
        if len(digits) > _INDEX_DIGITS or int(digits) > MAX_LIST_INDEX:
            return f"key {shorten(key)!r} has a list index above {MAX_LIST_INDEX}"
    return None


def merge(sources: Iterable[tuple[str, Mapping[str, Any]]]) -> MergedSettings:
    """Flat merged settings from (name, source) pairs given most specific first."""
    merged = MergedSettings()
    origins = merged.origins
    owned_lists: set[str] = set()
    for name, source in sources:
        claimed: set[str] = set()
        for key, value in source.items():
            prefixes = [key[: m.start()] for m in _INDEX.finditer(key)]
            if key in merged or any(p in owned_lists for p in prefixes):
                continue
            merged[key] = value
            origins[key] = name
            claimed.update(prefixes)
        owned_lists |= claimed
    return merged


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`a.b[0].c` keys back into nested maps and lists (gaps in a list become null).

    Conflicting keys keep the first shape in natural order (names before indexes, indexes in
    numeric order); a key with an index above MAX_LIST_INDEX is skipped, so this stays bounded.
    """
    root: dict[str, Any] = {}
    for key in sorted(flat, key=_natural_key):
        parts = [int(i) if i else name for name, i in _KEY_PART.findall(key)]
        if not parts:
            continue
        _assign(root, parts, flat[key])
    return root


def _natural_key(key: str) -> list[tuple[int, str, int]]:
    return [(0, name, 0) if name else (1, "", int(i)) for name, i in _KEY_PART.findall(key)]


def _assign(container: Any, parts: list[str | int], value: Any) -> None:
    for here, nxt in zip(parts, parts[1:], strict=False):
        empty: Any = [] if isinstance(nxt, int) else {}
        container = _child(container, here, empty)
        if container is None:
            return
    last = parts[-1]
    if isinstance(container, list) and isinstance(last, int):
        if last > MAX_LIST_INDEX:
            return
        container.extend([None] * (last + 1 - len(container)))
        container[last] = value
    elif isinstance(container, dict) and isinstance(last, str):
        container.setdefault(last, value)


def _child(container: Any, part: Any, empty: Any) -> Any:
    if isinstance(container, dict) and isinstance(part, str):
        current = container.setdefault(part, empty)
    elif isinstance(container, list) and isinstance(part, int):
        if part > MAX_LIST_INDEX:
            return None
        container.extend([None] * (part + 1 - len(container)))
        if container[part] is None:
            container[part] = empty
        current = container[part]
    else:
        return None
    return current if isinstance(current, type(empty)) else None


def resolve_placeholders(flat: Mapping[str, Any], fallback: Fallback | None = None) -> dict[str, Any]:
    """Substitute `${key}` / `${key:default}` in string values; unresolvable ones stay as written.

    A value may grow to `MAX_VALUE_CHARS` (or its own committed length, when longer), and all
    values together by `MAX_EXPANSION_CHARS`; beyond either, SettingsLimitExceeded names the file
    and the key.
    """
    resolved: dict[str, Any] = {}
    added = 0
    for key, value in flat.items():
        if not isinstance(value, str) or "${" not in value:
            resolved[key] = value
            continue
        try:
            text = resolve_text(value, flat, max(MAX_VALUE_CHARS, len(value)), fallback)
        except ExpansionTooLarge as exc:
            raise SettingsLimitExceeded(f"{origin_of(flat, key)}: key {shorten(key)!r}: {exc}") from None
        added += max(0, len(text) - len(value))
        if added > MAX_EXPANSION_CHARS:
            raise SettingsLimitExceeded(
                f"{origin_of(flat, key)}: key {shorten(key)!r}: placeholders add more than "
                f"{MAX_EXPANSION_CHARS} characters to the answer"
            )
        resolved[key] = text
    return resolved


def resolve_text(
    text: str, settings: Mapping[str, Any], max_chars: int | None = None, fallback: Fallback | None = None
) -> str:
    """Substitute placeholders in one string (innermost first, bounded against cycles).

    The text may grow to `max_chars` (default: its length plus `MAX_EXPANSION_CHARS`); a
    substitution beyond that raises ExpansionTooLarge, before the larger text is built.
    """
    limit = len(text) + MAX_EXPANSION_CHARS if max_chars is None else max_chars
    for _ in range(_MAX_PASSES):
        changed = False
        size = len(text)

        def substitute(match: re.Match[str]) -> str:
            nonlocal changed, size
            name, has_default, default = match.group(1).partition(":")
            outside = None
            if name in settings and settings[name] is not None:
                replacement = as_text(settings[name])
            elif fallback is not None and (outside := fallback(name)) is not None:
                replacement = outside
            elif has_default:
                replacement = default
            else:
                return "\0" + match.group(0)[1:]
            changed = True
            size += len(replacement) - len(match.group(0))
            if size > limit:
                raise ExpansionTooLarge(name, limit)
            return replacement

        text = _PLACEHOLDER.sub(substitute, text)
        if not changed:
            break
    return text.replace("\0", "$")


def unresolved_placeholder(text: str) -> str | None:
    """The first `${...}` left in a resolved text (its name and default, as written), or None."""
    match = _PLACEHOLDER.search(text)
    return None if match is None else match.group(1)


def as_text(value: Any) -> str:
    """A value as placeholders and `.properties` show it: `true`/`false`, "" for null."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
