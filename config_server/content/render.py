"""The merged view of an Environment and its `.yml`/`.properties`/`.json` renderings.

Merging, unflattening and placeholders are the one implementation in `config_client.settings_tree`
(the client resolves the same way); this module adapts it to the server: property sources in,
ConfigLimitExceeded out. Merging follows `protocol.md`: a higher source's key wins, and a list set
by a higher source replaces the lower sources' list whole. Placeholders `${a.b}` and
`${a.b:default}` resolve against the merged settings only (never the server's own environment
variables).

Every expansion is bounded (`limits.py`): a list index when flat keys are unflattened, a value
grown by placeholders, and what placeholders add to one answer in total. Going over a bound raises
ConfigLimitExceeded naming the file (the property source the key came from) and the key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from config_client import settings_tree
from config_client.settings_tree import ExpansionTooLarge, MergedSettings, as_text, origin_of
from config_server.content.limits import check_list_indexes, list_index_error
from config_server.errors import ConfigLimitExceeded
from config_server.model import PropertySource

__all__ = [
    "ExpansionTooLarge",
    "MergedSettings",
    "merge",
    "resolve_placeholders",
    "resolve_text",
    "to_json",
    "to_properties",
    "to_yaml",
    "unflatten",
]


def merge(sources: Iterable[PropertySource]) -> MergedSettings:
    """Flat merged settings from sources given most specific first."""
    return settings_tree.merge((source.name, source.source) for source in sources)


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`a.b[0].c` keys back into nested maps and lists (gaps in a list become null).

    A key with a list index above `MAX_LIST_INDEX` raises ConfigLimitExceeded (it would
    allocate that many entries).
    """
    for key in flat:
        if list_index_error(key):
            check_list_indexes(origin_of(flat, key), [key])
    return settings_tree.unflatten(flat)


def resolve_placeholders(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Substitute `${key}` / `${key:default}` in string values; unresolvable ones stay as written.

    A value may grow to `MAX_VALUE_CHARS` (or its own committed length, when longer), and all
    values together by `MAX_EXPANSION_CHARS`; beyond either, ConfigLimitExceeded names the file
    and the key.
    """
    try:
        return settings_tree.resolve_placeholders(flat)
    except settings_tree.SettingsLimitExceeded as exc:
        raise ConfigLimitExceeded(str(exc)) from None


def resolve_text(text: str, settings: Mapping[str, Any], max_chars: int | None = None) -> str:
    """Substitute placeholders in one string against the settings only (innermost first, bounded
    against cycles); ExpansionTooLarge beyond `max_chars` (see `settings_tree.resolve_text`)."""
    return settings_tree.resolve_text(text, settings, max_chars)


def to_properties(flat: Mapping[str, Any]) -> str:
    """`key: value` lines, sorted by key, as Spring renders `.properties`."""
    return "".join(f"{key}: {as_text(flat[key])}\n" for key in sorted(flat))


def to_yaml(flat: Mapping[str, Any]) -> str:
    """Nested YAML with lists, keys sorted."""
    if not flat:
        return "{}\n"
    return yaml.safe_dump(unflatten(flat), default_flow_style=False, allow_unicode=True, sort_keys=True)


def to_json(flat: Mapping[str, Any]) -> str:
    """Nested JSON with lists."""
    return json.dumps(unflatten(flat), ensure_ascii=False, sort_keys=True)
