"""The merged view of an Environment and its `.yml`/`.properties`/`.json` renderings.

Pure functions. Merging follows `protocol.md`: a higher source's key wins, and a list set by a
higher source replaces the lower sources' list whole. Placeholders `${a.b}` and `${a.b:default}`
resolve against the merged settings only (never the server's own environment variables).

Every expansion is bounded (`limits.py`): a list index when flat keys are unflattened, a value
grown by placeholders, and what placeholders add to one answer in total. Going over a bound raises
ConfigLimitExceeded naming the file (the property source the key came from) and the key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from config_server.errors import ConfigLimitExceeded
from config_server.limits import (
    MAX_EXPANSION_CHARS,
    MAX_VALUE_CHARS,
    check_list_indexes,
    list_index_error,
    shorten,
)
from config_server.model import PropertySource

_INDEX = re.compile(r"\[(\d+)\]")
_KEY_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


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


def _origin(flat: Mapping[str, Any], key: str) -> str:
    return flat.origin(key) if isinstance(flat, MergedSettings) else "settings"


def merge(sources: Iterable[PropertySource]) -> MergedSettings:
    """Flat merged settings from sources given most specific first."""
    merged = MergedSettings()
    origins = merged.origins
    owned_lists: set[str] = set()
    for source in sources:
        claimed: set[str] = set()
        for key, value in source.source.items():
            prefixes = _list_prefixes(key)
            if key in merged or any(p in owned_lists for p in prefixes):
                continue
            merged[key] = value
            origins[key] = source.name
            claimed.update(prefixes)
        owned_lists |= claimed
    return merged


def _list_prefixes(key: str) -> list[str]:
    return [key[: m.start()] for m in _INDEX.finditer(key)]


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`a.b[0].c` keys back into nested maps and lists (gaps in a list become null).

    A key with a list index above `MAX_LIST_INDEX` raises ConfigLimitExceeded (it would
    allocate that many entries).
    """
    for key in flat:
        if list_index_error(key):
            check_list_indexes(_origin(flat, key), [key])
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
        container.extend([None] * (last + 1 - len(container)))
        container[last] = value
    elif isinstance(container, dict) and isinstance(last, str):
        container.setdefault(last, value)


def _child(container: Any, part: Any, empty: Any) -> Any:
    if isinstance(container, dict) and isinstance(part, str):
        current = container.setdefault(part, empty)
    elif isinstance(container, list) and isinstance(part, int):
        container.extend([None] * (part + 1 - len(container)))
        if container[part] is None:
            container[part] = empty
        current = container[part]
    else:
        return None
    return current if isinstance(current, type(empty)) else None


_PLACEHOLDER = re.compile(r"\$\{([^{}]*)\}")
_MAX_PASSES = 32


class ExpansionTooLarge(Exception):
    """Resolving placeholders in one text went over its limit (raised by `resolve_text`)."""

    def __init__(self, placeholder: str, limit: int) -> None:
        super().__init__(f"placeholder ${{{shorten(placeholder)}}} grows it beyond {limit} characters")
        self.placeholder = placeholder
        self.limit = limit


def resolve_placeholders(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Substitute `${key}` / `${key:default}` in string values; unresolvable ones stay as written.

    A value may grow to `MAX_VALUE_CHARS` (or its own committed length, when longer), and all
    values together by `MAX_EXPANSION_CHARS`; beyond either, ConfigLimitExceeded names the file
    and the key.
    """
    resolved: dict[str, Any] = {}
    added = 0
    for key, value in flat.items():
        if not isinstance(value, str) or "${" not in value:
            resolved[key] = value
            continue
        try:
            text = resolve_text(value, flat, max(MAX_VALUE_CHARS, len(value)))
        except ExpansionTooLarge as exc:
            raise ConfigLimitExceeded(f"{_origin(flat, key)}: key {shorten(key)!r}: {exc}") from None
        added += max(0, len(text) - len(value))
        if added > MAX_EXPANSION_CHARS:
            raise ConfigLimitExceeded(
                f"{_origin(flat, key)}: key {shorten(key)!r}: placeholders add more than "
                f"{MAX_EXPANSION_CHARS} characters to the answer"
            )
        resolved[key] = text
    return resolved


def resolve_text(text: str, settings: Mapping[str, Any], max_chars: int | None = None) -> str:
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
            if name in settings and settings[name] is not None:
                replacement = _text(settings[name])
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


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def to_properties(flat: Mapping[str, Any]) -> str:
    """`key: value` lines, sorted by key, as Spring renders `.properties`."""
    return "".join(f"{key}: {_text(flat[key])}\n" for key in sorted(flat))


def to_yaml(flat: Mapping[str, Any]) -> str:
    """Nested YAML with lists, keys sorted."""
    if not flat:
        return "{}\n"
    return yaml.safe_dump(unflatten(flat), default_flow_style=False, allow_unicode=True, sort_keys=True)


def to_json(flat: Mapping[str, Any]) -> str:
    """Nested JSON with lists."""
    return json.dumps(unflatten(flat), ensure_ascii=False, sort_keys=True)
