"""The merged view of an Environment and its `.yml`/`.properties`/`.json` renderings.

Pure functions. Merging follows `protocol.md`: a higher source's key wins, and a list set by a
higher source replaces the lower sources' list whole. Placeholders `${a.b}` and `${a.b:default}`
resolve against the merged settings only (never the server's own environment variables).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from config_server.model import PropertySource

_INDEX = re.compile(r"\[(\d+)\]")
_KEY_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def merge(sources: Iterable[PropertySource]) -> dict[str, Any]:
    """Flat merged settings from sources given most specific first."""
    merged: dict[str, Any] = {}
    owned_lists: set[str] = set()
    for source in sources:
        claimed: set[str] = set()
        for key, value in source.source.items():
            prefixes = _list_prefixes(key)
            if key in merged or any(p in owned_lists for p in prefixes):
                continue
            merged[key] = value
            claimed.update(prefixes)
        owned_lists |= claimed
    return merged


def _list_prefixes(key: str) -> list[str]:
    return [key[: m.start()] for m in _INDEX.finditer(key)]


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`a.b[0].c` keys back into nested maps and lists (gaps in a list become null)."""
    root: dict[str, Any] = {}
    for key in sorted(flat, key=_natural_key):
        parts = [int(i) if i else name for name, i in _KEY_PART.findall(key)]
        if not parts:
            continue
        _assign(root, parts, flat[key])
    return root


def _natural_key(key: str) -> list:
    return [(0, name, 0) if name else (1, "", int(i)) for name, i in _KEY_PART.findall(key)]


def _assign(container: Any, parts: list, value: Any) -> None:
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


def resolve_placeholders(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Substitute `${key}` / `${key:default}` in string values; unresolvable ones stay as written."""
    return {
        key: resolve_text(value, flat) if isinstance(value, str) else value for key, value in flat.items()
    }


def resolve_text(text: str, settings: Mapping[str, Any]) -> str:
    """Substitute placeholders in one string (innermost first, bounded against cycles)."""
    for _ in range(_MAX_PASSES):
        changed = False

        def substitute(match: re.Match[str]) -> str:
            nonlocal changed
            name, has_default, default = match.group(1).partition(":")
            if name in settings and settings[name] is not None:
                changed = True
                return _text(settings[name])
            if has_default:
                changed = True
                return default
            return "\0" + match.group(0)[1:]

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
